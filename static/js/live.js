// Live pages: redraw when the platform says something shown here changed, instead of polling.
//
// follow(topics, redraw, options) opens the portal's websocket /ws/live/ and calls redraw(changes)
// after each change it is told of (coalesced: at most one redraw at a time, none while the tab is
// hidden; the pending one runs when it is shown again). Without the websocket (a proxy that does
// not pass it, the server restarting) the page falls back to polling every `fallbackSeconds`, and
// keeps trying to reconnect; once reconnected it redraws once, since changes may have been missed.
// `redraw` gets the list of changes, or null when it should fetch everything.

const RECONNECT_FIRST = 1000;
const RECONNECT_MOST = 60000;

export function follow(topics, redraw, { job = null, fallbackSeconds = 15, onMode = () => {} } = {}) {
  let socket = null;
  let pending = null; // changes not yet redrawn; null entries mean "everything"
  let running = false;
  let fallbackTimer = null;
  let reconnectDelay = RECONNECT_FIRST;
  let stopped = false;

  async function flush() {
    if (running || pending === null || document.hidden) return;
    const changes = pending.includes(null) ? null : pending;
    pending = null;
    running = true;
    try { await redraw(changes); } catch { /* the next change or poll redraws */ }
    running = false;
    if (pending !== null) flush();
  }

  function want(changes) {
    pending = (pending || []).concat(changes === null ? [null] : changes);
    flush();
  }

  function poll(on) {
    clearInterval(fallbackTimer);
    fallbackTimer = on ? setInterval(() => want(null), fallbackSeconds * 1000) : null;
  }

  function connect() {
    if (stopped) return;
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ topics: topics.join(",") });
    if (job !== null) query.set("job", job);
    socket = new WebSocket(`${scheme}://${window.location.host}/ws/live/?${query}`);
    socket.addEventListener("open", () => {
      reconnectDelay = RECONNECT_FIRST;
      poll(false);
      onMode("live");
      want(null); // whatever changed while connecting
    });
    socket.addEventListener("message", (event) => {
      const frame = JSON.parse(event.data);
      want(frame.resync ? null : frame.changes || []);
    });
    socket.addEventListener("close", (event) => {
      socket = null;
      if (stopped) return;
      if (event.code === 4401 || event.code === 4403) { window.location.reload(); return; } // logged out
      poll(true);
      onMode("polling");
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MOST);
    });
  }

  document.addEventListener("visibilitychange", flush);
  connect();
  return {
    refresh: () => want(null),
    stop() { stopped = true; poll(false); if (socket) socket.close(); },
  };
}

// Swap an element of this page for the same element of the page fetched afresh (server-rendered lists).
export async function swapFromServer(id) {
  const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (!response.ok || response.redirected) {
    window.location.reload(); // logged out, or no longer allowed: show what the server says
    return;
  }
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById(id);
  const here = document.getElementById(id);
  if (fresh && here) here.replaceChildren(...fresh.childNodes);
}
