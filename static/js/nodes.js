// The nodes page: fetches itself every few seconds and swaps in the fresh table, so that node
// states, heartbeats and running work stay current without a visible reload.
const live = document.getElementById("nodes-live");
const every = Math.max(1, Number(live.dataset.refreshSeconds) || 5) * 1000;

async function refresh() {
  if (document.hidden) return;
  try {
    const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok || response.redirected) {
      window.location.reload(); // logged out, or no longer an admin: show what the server says
      return;
    }
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("nodes-live");
    if (fresh) live.replaceChildren(...fresh.childNodes);
  } catch {
    const updated = document.getElementById("nodes-updated");
    if (updated) updated.textContent = "· could not reach the server, retrying";
  }
}

setInterval(refresh, every);
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
