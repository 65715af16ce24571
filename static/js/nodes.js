// The nodes page: redrawn from the server when a node, a job or a session changes anywhere in the
// cluster (static/js/live.js), and every `refresh-seconds` for the heartbeats' ages.
import { follow, swapFromServer } from "./live.js";

const live = document.getElementById("nodes-live");
const every = Math.max(1, Number(live.dataset.refreshSeconds) || 30) * 1000;

async function redraw() {
  try {
    await swapFromServer("nodes-live");
  } catch {
    const updated = document.getElementById("nodes-updated");
    if (updated) updated.textContent = "· could not reach the server, retrying";
  }
}

const following = follow(["nodes", "jobs", "sessions"], redraw, { fallbackSeconds: every / 1000 });
setInterval(() => { if (!document.hidden) following.refresh(); }, every);
