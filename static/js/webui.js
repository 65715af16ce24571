// The WebUI of a data session: renders the app's pages from its declared identifiers and talks
// to the session process through the platform's websocket proxy. No build step.

const root = document.getElementById("webui");
const sessionId = root.dataset.session;
const $ = (selector, scope = document) => scope.querySelector(selector);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
};

const ui = { interface: null, values: {}, jobs: new Map(), logs: new Map(), page: 0, charts: [], cases: [] };
let socket = null;
let nextRe = 1;
const pending = new Map();
let reconnectDelay = 500;

function setStatus(text, kind = "") {
  const bar = $("#status");
  bar.textContent = text;
  bar.className = `status-bar ${kind}`;
}

// ------------------------------------------------------------ connection

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/sessions/${sessionId}/`);
  socket.addEventListener("open", () => { reconnectDelay = 500; setStatus("Connected", "ok"); });
  socket.addEventListener("message", (event) => receive(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    for (const { reject } of pending.values()) reject(new Error("disconnected"));
    pending.clear();
    if ([4401, 4404, 4410].includes(event.code)) {
      setStatus(event.code === 4410 ? "This session has ended." : "This session cannot be reached.", "error");
      showEnded();
      return;
    }
    setStatus(`Disconnected; reconnecting…`, "warn");
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 8000);
  });
}

function request(message) {
  const re = nextRe++;
  return new Promise((resolve, reject) => {
    pending.set(re, { resolve, reject });
    socket.send(JSON.stringify({ ...message, re }));
  });
}

function receive(message) {
  if (message.re && pending.has(message.re)) {
    const { resolve } = pending.get(message.re);
    pending.delete(message.re);
    resolve(message);
  }
  switch (message.type) {
    case "state": return onState(message);
    case "values": Object.assign(ui.values, message.values); return renderPage(true);
    case "status": return setStatus(message.status);
    case "job": ui.jobs.set(message.job.id, message.job); return renderJobs();
    case "log": return onLog(message);
    default: return undefined;
  }
}

function onState(state) {
  ui.interface = state.interface;
  ui.values = state.values;
  ui.jobs = new Map(state.jobs.map((job) => [job.id, job]));
  $("#app-title").firstChild.textContent = `${state.app.title} `;
  setStatus(state.status || "Ready", "ok");
  renderTabs();
  renderPage();
  renderJobs();
  for (const job of ui.jobs.values()) {
    if (job.state === "queued" || job.state === "running") request({ op: "job_log", job: job.id });
  }
}

function onLog(message) {
  const text = message.reset ? message.text : (ui.logs.get(message.job) || "") + message.text;
  ui.logs.set(message.job, text);
  const pre = document.querySelector(`pre[data-log="${message.job}"]`);
  if (pre) { pre.textContent = text; pre.scrollTop = pre.scrollHeight; }
}

// ------------------------------------------------------------ identifiers and values

const identifier = (name) => ui.interface.identifiers.find((item) => item.name === name);
const procedure = (name) => ui.interface.procedures.find((item) => item.name === name);

function tableOf(name) {
  // {key: value}; keys of two indices are "a|b"
  const rows = ui.values[name] || [];
  const table = new Map();
  for (const row of rows) table.set(row.slice(0, -1).join("|"), row[row.length - 1]);
  return table;
}

function formatValue(value, type) {
  if (value === null || value === undefined) return "";
  if (type === "float" && typeof value === "number") return Number.isInteger(value) ? String(value) : String(+value.toFixed(6));
  return String(value);
}

async function sendEdit(input, name, key, value) {
  input.classList.add("saving");
  try {
    const reply = await request({ op: "set", identifier: name, key, value });
    input.classList.remove("saving");
    if (reply.type === "error") return markError(input, reply.message);
    input.classList.remove("invalid");
    input.removeAttribute("title");
    setStatus(`${name} updated`, "ok");
  } catch (error) {
    markError(input, "Not saved: the connection was lost");
  }
  return undefined;
}

function markError(input, message) {
  input.classList.remove("saving");
  input.classList.add("invalid");
  input.title = message;
  setStatus(message, "error");
}

// ------------------------------------------------------------ widgets

function renderTabs() {
  const tabs = $("#page-tabs");
  tabs.replaceChildren(...ui.interface.pages.map((page, index) => el("button", {
    class: `tab${index === ui.page ? " active" : ""}`, role: "tab", type: "button",
    onclick: () => { ui.page = index; renderTabs(); renderPage(); },
  }, page.title)));
}

function renderPage(keepFocus = false) {
  if (!ui.interface) return;
  const focused = keepFocus ? document.activeElement : null;
  if (focused && focused.dataset && focused.dataset.cell && focused.closest("#page")) {
    refreshValues();
    return;
  }
  for (const chart of ui.charts) chart.destroy();
  ui.charts = [];
  const page = ui.interface.pages[ui.page];
  const container = $("#page");
  container.replaceChildren(...(page ? page.widgets.map(renderWidget) : [el("p", { class: "muted" }, "This app has no pages.")]));
}

function refreshValues() {
  // Update the shown values without rebuilding the inputs (the user is typing in one).
  for (const input of document.querySelectorAll("#page [data-cell]")) {
    if (input === document.activeElement || input.classList.contains("invalid")) continue;
    const [name, key] = JSON.parse(input.dataset.cell);
    const item = identifier(name);
    const value = key === null ? ui.values[name] : tableOf(name).get(key);
    input.value = formatValue(value, item.type);
  }
}

function renderWidget(widget) {
  const item = identifier(widget.target) || procedure(widget.target);
  const title = widget.title || (item && item.title) || widget.target;
  if (widget.widget === "button") return renderButton(item, title);
  if (widget.widget === "chart") return renderChart(item, title, widget.chart);
  if (widget.widget === "field") return renderField(item, title);
  return renderTable(item, title);
}

function unitLabel(item) { return item.unit ? ` [${item.unit}]` : ""; }

function renderField(item, title) {
  const editable = item.kind === "parameter";
  const input = el("input", {
    class: "cell", value: formatValue(ui.values[item.name], item.type), "data-cell": JSON.stringify([item.name, null]),
    "aria-label": title, readonly: editable ? null : "readonly", type: item.type === "bool" ? "text" : "text",
  });
  if (editable) input.addEventListener("change", () => sendEdit(input, item.name, null, input.value));
  return el("div", { class: "widget-field" }, el("label", {}, `${title}${unitLabel(item)}`, input));
}

function renderButton(item, title) {
  const isSolve = item.kind === "solve";
  const button = el("button", { class: isSolve ? "primary" : "", type: "button" }, title);
  button.addEventListener("click", async () => {
    button.disabled = true;
    const reply = await request({ op: isSolve ? "solve" : "run", procedure: item.name }).catch(() => ({ type: "error", message: "The connection was lost" }));
    button.disabled = false;
    if (reply.type === "error") setStatus(reply.message, "error");
  });
  return el("div", { class: "widget-button" }, button);
}

function renderTable(item, title) {
  const editable = item.kind === "parameter";
  const index = item.index || [];
  const table = tableOf(item.name);
  const sets = index.map((name) => ui.values[name] || []);
  const head = el("caption", {}, `${title}${unitLabel(item)}`);
  let grid;
  if (index.length === 2) {
    grid = el("table", { class: "data grid", "data-identifier": item.name },
      head,
      el("thead", {}, el("tr", {}, el("th", {}, ""), sets[1].map((col) => el("th", {}, col)))),
      el("tbody", {}, sets[0].map((row, r) => el("tr", {}, el("th", {}, row),
        sets[1].map((col, c) => el("td", {}, cellInput(item, [row, col], table.get(`${row}|${col}`), editable, r, c)))))));
  } else {
    grid = el("table", { class: "data grid", "data-identifier": item.name },
      head,
      el("tbody", {}, (sets[0] || []).map((row, r) => el("tr", {}, el("th", {}, row),
        el("td", {}, cellInput(item, [row], table.get(row), editable, r, 0))))));
  }
  return el("div", { class: "widget-table" }, grid);
}

function cellInput(item, key, value, editable, row, col) {
  const input = el("input", {
    class: "cell", value: formatValue(value, item.type), "data-cell": JSON.stringify([item.name, key.join("|")]),
    "data-row": row, "data-col": col, "aria-label": `${item.name} ${key.join(" ")}`, readonly: editable ? null : "readonly",
  });
  if (editable) {
    input.addEventListener("change", () => sendEdit(input, item.name, key, input.value));
    input.addEventListener("paste", (event) => pasteBlock(event, item, row, col));
  }
  return input;
}

async function pasteBlock(event, item, row, col) {
  const text = event.clipboardData.getData("text/plain");
  if (!text.includes("\t") && !text.trim().includes("\n")) return; // one value: a normal paste
  event.preventDefault();
  const index = item.index;
  const rows = ui.values[index[0]] || [];
  const cols = index.length === 2 ? ui.values[index[1]] || [] : [null];
  const cells = [];
  text.replace(/\r/g, "").replace(/\n$/, "").split("\n").forEach((line, r) => {
    line.split("\t").forEach((raw, c) => {
      const rowName = rows[row + r];
      const colName = cols[col + c];
      if (rowName === undefined || colName === undefined) return;
      cells.push([index.length === 2 ? [rowName, colName] : [rowName], raw.trim()]);
    });
  });
  const reply = await request({ op: "paste", identifier: item.name, cells });
  if (reply.type === "error") {
    setStatus(reply.message, "error");
    for (const bad of reply.cells || []) {
      const key = Array.isArray(bad.key) ? bad.key.join("|") : bad.key;
      const input = document.querySelector(`[data-cell='${JSON.stringify([item.name, key])}']`);
      if (input) markError(input, bad.message);
    }
  } else {
    setStatus(`Pasted ${reply.count} cells into ${item.name}`, "ok");
  }
}

function renderChart(item, title, kind) {
  const canvas = el("canvas", { "aria-label": title, role: "img" });
  const box = el("div", { class: "widget-chart" }, el("h3", {}, `${title}${unitLabel(item)}`), canvas);
  const index = item.index || [];
  const table = tableOf(item.name);
  const labels = ui.values[index[0]] || [];
  const datasets = index.length === 2
    ? (ui.values[index[1]] || []).map((col) => ({ label: col, data: labels.map((row) => table.get(`${row}|${col}`)) }))
    : [{ label: title, data: labels.map((row) => table.get(row)) }];
  if (window.Chart) {
    queueMicrotask(() => ui.charts.push(new window.Chart(canvas, {
      type: kind === "line" ? "line" : "bar", data: { labels, datasets }, options: { animation: false, responsive: true },
    })));
  }
  return box;
}

// ------------------------------------------------------------ jobs

function renderJobs() {
  const box = $("#jobs");
  const jobs = [...ui.jobs.values()].sort((a, b) => b.id - a.id);
  if (!jobs.length) { box.replaceChildren(el("p", { class: "muted" }, "No solves yet.")); return; }
  box.replaceChildren(...jobs.map((job) => {
    const live = job.state === "queued" || job.state === "running";
    const progress = job.progress || {};
    return el("div", { class: `job job-${job.state}`, "data-job": job.id },
      el("div", { class: "job-head" },
        el("strong", {}, `Job ${job.id}`), " ", el("span", { class: `badge state-${job.state}` }, job.state), " ", job.procedure,
        live ? el("button", { type: "button", class: "small", onclick: () => request({ op: "cancel_job", job: job.id, interrupt: true }) }, "Interrupt") : null,
        live ? el("button", { type: "button", class: "small danger", onclick: () => request({ op: "cancel_job", job: job.id }) }, "Cancel") : null),
      progress.fraction != null ? el("progress", { max: 1, value: progress.fraction }) : null,
      el("div", { class: "muted" }, job.error_message || job.solver_status || progress.message || ""),
      el("pre", { class: "log", "data-log": job.id }, ui.logs.get(job.id) || ""));
  }));
}

// ------------------------------------------------------------ cases

async function refreshCases() {
  const reply = await request({ op: "list_cases" });
  if (reply.type === "error") return setStatus(reply.message, "error");
  ui.cases = reply.cases;
  const body = $("#case-list tbody");
  body.replaceChildren(...ui.cases.map((c) => el("tr", { "data-case": c.id },
    el("td", {}, el("input", { type: "checkbox", class: "compare-pick", value: c.id, "aria-label": `compare ${c.name}` })),
    el("td", {}, c.name), el("td", { class: "muted" }, new Date(c.created_at).toLocaleString()),
    el("td", {},
      el("button", { type: "button", class: "small", onclick: () => loadCase(c) }, "Load"),
      el("button", { type: "button", class: "small danger", onclick: () => deleteCase(c) }, "Delete")))));
  body.append(el("tr", {}, el("td", { colspan: 4 },
    el("button", { type: "button", id: "compare-button", onclick: compareCases }, "Compare the two chosen (or one with the current data)"))));
  return undefined;
}

async function loadCase(c) {
  const reply = await request({ op: "load_case", case: c.id });
  setStatus(reply.type === "error" ? reply.message : `Loaded case ${c.name}`, reply.type === "error" ? "error" : "ok");
}

async function deleteCase(c) {
  if (!confirm(`Delete case ${c.name}?`)) return;
  await request({ op: "delete_case", case: c.id });
  refreshCases();
}

async function compareCases() {
  const picked = [...document.querySelectorAll(".compare-pick:checked")].map((box) => box.value);
  if (picked.length < 1 || picked.length > 2) { setStatus("Choose one or two cases to compare", "warn"); return; }
  const [left, right] = picked.length === 2 ? picked : [picked[0], "current"];
  const reply = await request({ op: "compare_cases", left, right });
  if (reply.type === "error") { setStatus(reply.message, "error"); return; }
  const name = (id) => (id === "current" ? "current data" : (ui.cases.find((c) => c.id === id) || {}).name || id);
  const changed = reply.identifiers.filter((item) => item.changed).length;
  $("#comparison").replaceChildren(
    el("h3", {}, `${name(left)} ↔ ${name(right)}: ${changed} identifier(s) differ`),
    ...reply.identifiers.filter((item) => item.cells.length).map((item) => el("table", { class: "data compare" },
      el("caption", {}, item.identifier, item.changed ? el("span", { class: "badge failed" }, " changed") : ""),
      el("thead", {}, el("tr", {}, el("th", {}, "key"), el("th", {}, name(left)), el("th", {}, name(right)))),
      el("tbody", {}, item.cells.map((cell) => el("tr", { class: cell.changed ? "changed" : "" },
        el("td", {}, cell.key || "—"), el("td", {}, formatValue(cell.left, "float")), el("td", {}, formatValue(cell.right, "float"))))))),
  );
}

$("#cases-button").addEventListener("click", () => { $("#cases-dialog").showModal(); refreshCases(); });
$("#save-case").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = event.target.name.value.trim();
  const reply = await request({ op: "save_case", name });
  if (reply.type === "error") { setStatus(reply.message, "error"); return; }
  event.target.reset();
  refreshCases();
});

// ------------------------------------------------------------ a session that is not running

function showEnded() {
  const state = root.dataset.state;
  $("#page").replaceChildren(el("div", { class: "ended" },
    el("p", {}, state === "lost" ? "This session was lost: its process stopped." : "This session is not running."),
    root.dataset.error ? el("p", { class: "muted" }, root.dataset.error) : null,
    el("form", { method: "post", action: root.dataset.restart },
      el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "" }),
      el("button", { class: "primary", name: "action", value: "restart" }, "Restart it"))));
}

if (["starting", "running"].includes(root.dataset.state)) connect();
else { setStatus(`Session ${root.dataset.state}`, "error"); showEnded(); }
