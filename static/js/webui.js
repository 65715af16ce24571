// The WebUI of a data session: renders the app's pages from its declared identifiers and talks
// to the session process through the platform's websocket proxy. No build step.
//
// Class names carry a "webui-" prefix: the portal's stylesheet is loaded on this page too, and
// its generic names (.grid is a CSS grid there) must not reshape the WebUI's tables.

const root = document.getElementById("webui");
const sessionId = root.dataset.session;
const $ = (selector, scope = document) => scope.querySelector(selector);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
};

const SEP = "\u001f"; // joins the elements of a key; no set element holds a control character
const ENDED = ["succeeded", "failed", "cancelled"];
const UNDO_DEPTH = 100;
const ui = {
  interface: null, values: {}, jobs: new Map(), logs: new Map(), page: 0, cases: [],
  widgets: [], // the shown page's widgets: {widget, item, node, cells?, chart?, shape?}
  errors: new Map(), // identifier -> Map(key -> {message, raw}): values the session refused
  undo: [], // {name, cells: [[key, old]]} or {name, scalar: true, value}
  submitting: new Set(), // procedures whose request is on its way
  follow: new Map(), // job id -> false once the user scrolled its log up
  comparison: null, showAll: false,
};
let socket = null;
let nextRe = 1;
const pending = new Map();
let reconnectDelay = 500;

function setStatus(text, kind = "") {
  const bar = $("#status");
  bar.textContent = text;
  bar.className = `webui-status ${kind}`;
}

// ------------------------------------------------------------ connection

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // `pro app run` serves the page itself and names its socket; on the platform it is the session's proxy.
  const path = root.dataset.socket || `/ws/sessions/${sessionId}/`;
  socket = new WebSocket(`${scheme}://${location.host}${path}`);
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

const lost = () => ({ type: "error", message: "The connection was lost" });

function receive(message) {
  if (message.re && pending.has(message.re)) {
    const { resolve } = pending.get(message.re);
    pending.delete(message.re);
    resolve(message);
  }
  switch (message.type) {
    case "state": return onState(message);
    case "values": Object.assign(ui.values, message.values); return onValues(Object.keys(message.values));
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
    if (!ENDED.includes(job.state)) request({ op: "job_log", job: job.id });
  }
}

// ------------------------------------------------------------ identifiers and values

const identifier = (name) => ui.interface.identifiers.find((item) => item.name === name);
const procedure = (name) => ui.interface.procedures.find((item) => item.name === name);
const keyOf = (key) => (Array.isArray(key) ? key.join(SEP) : key === null || key === undefined ? "" : String(key));

function tableOf(name) {
  const rows = ui.values[name] || [];
  const table = new Map();
  for (const row of rows) table.set(row.slice(0, -1).join(SEP), row[row.length - 1]);
  return table;
}

function formatValue(value, type) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "number" && type !== "int") return Number.isInteger(value) ? String(value) : String(+value.toFixed(6));
  return String(value);
}

function unitLabel(item) { return item.unit ? ` [${item.unit}]` : ""; }

// ------------------------------------------------------------ tabs and pages

function renderTabs() {
  const tabs = $("#page-tabs");
  tabs.replaceChildren(...ui.interface.pages.map((page, index) => el("button", {
    class: `webui-tab${index === ui.page ? " active" : ""}`, role: "tab", type: "button", id: `webui-tab-${index}`,
    "aria-selected": String(index === ui.page), "aria-controls": "page", tabindex: index === ui.page ? "0" : "-1",
    onclick: () => showPage(index),
  }, page.title)));
  $("#page").setAttribute("aria-labelledby", `webui-tab-${ui.page}`);
}

function showPage(index, focus = false) {
  ui.page = index;
  renderTabs();
  renderPage();
  if (focus) $(`#webui-tab-${index}`).focus();
}

// The tab list is one stop for Tab; arrows, Home and End move between tabs (ARIA's tabs pattern).
$("#page-tabs").addEventListener("keydown", (event) => {
  const count = ui.interface ? ui.interface.pages.length : 0;
  const moves = { ArrowRight: ui.page + 1, ArrowLeft: ui.page - 1 + count, Home: 0, End: count - 1 };
  if (!count || !(event.key in moves)) return;
  event.preventDefault();
  showPage(moves[event.key] % count, true);
});

function renderPage() {
  if (!ui.interface) return;
  for (const record of ui.widgets) if (record.chart) record.chart.destroy();
  const page = ui.interface.pages[ui.page];
  ui.widgets = page ? page.widgets.map(buildWidget) : [];
  $("#page").replaceChildren(...(ui.widgets.length ? ui.widgets.map((record) => record.node) : [el("p", { class: "muted" }, "This app has no pages.")]));
}

function buildWidget(widget) {
  const item = identifier(widget.target) || procedure(widget.target);
  const record = { widget, item, title: widget.title || (item && item.title) || widget.target };
  if (!item) record.node = el("p", { class: "muted" }, `${widget.target} is not part of this app`);
  else if (widget.widget === "button") record.node = renderButton(item, record.title);
  else if (widget.widget === "chart") renderChart(record);
  else if (widget.widget === "field") renderField(record);
  else renderTable(record);
  return record;
}

function replaceWidget(record) {
  if (record.chart) record.chart.destroy();
  const fresh = buildWidget(record.widget);
  ui.widgets[ui.widgets.indexOf(record)] = fresh;
  record.node.replaceWith(fresh.node);
}

// New values: refresh the cells in place, rebuild only what changed shape (a set's elements).
function onValues(names) {
  const changed = new Set(names);
  for (const record of ui.widgets) {
    const { item, widget } = record;
    if (!item || widget.widget === "button") continue;
    const index = item.index || [];
    if (widget.widget === "chart") {
      if (changed.has(item.name) || index.some((set) => changed.has(set))) replaceWidget(record);
    } else if (record.shape !== undefined && record.shape !== shapeOf(item)) {
      replaceWidget(record);
    } else if (changed.has(item.name)) {
      refreshCells(record);
    }
  }
}

const shapeOf = (item) => JSON.stringify((item.index || []).map((set) => ui.values[set] || []));

// ------------------------------------------------------------ cells: showing values

function refreshCells(record, force = false) {
  const { item } = record;
  const values = item.index && item.index.length ? tableOf(item.name) : new Map([["", ui.values[item.name]]]);
  const refused = ui.errors.get(item.name);
  for (const [key, node] of record.cells) {
    const text = formatValue(values.get(key), item.type);
    if (node.tagName !== "INPUT") { node.textContent = text; continue; }
    // A cell being typed into, or showing a refused value, keeps what the user sees.
    const typing = node === document.activeElement && node.value !== node.committed;
    if (!force && (typing || (refused && refused.has(key)))) { node.committed = text; continue; }
    node.value = text;
    node.committed = text;
  }
}

function refusedIn(name) {
  if (!ui.errors.has(name)) ui.errors.set(name, new Map());
  return ui.errors.get(name);
}

function markCell(name, key, raw, message) {
  refusedIn(name).set(key, { message, raw });
  const node = cellNode(name, key);
  if (node) showRefusal(node, raw, message);
}

function showRefusal(node, raw, message) {
  node.value = raw;
  node.classList.add("webui-invalid");
  node.setAttribute("aria-invalid", "true");
  node.title = message;
}

function clearMark(name, key) {
  const refused = ui.errors.get(name);
  if (refused) refused.delete(key);
  const node = cellNode(name, key);
  if (!node) return;
  node.classList.remove("webui-invalid");
  node.removeAttribute("aria-invalid");
  node.removeAttribute("title");
}

function clearMarks(name) {
  for (const key of [...(ui.errors.get(name) || new Map()).keys()]) clearMark(name, key);
}

function cellNode(name, key) {
  for (const record of ui.widgets) {
    if (record.cells && record.item.name === name && record.cells.has(key)) return record.cells.get(key);
  }
  return null;
}

// Every refused value with its own message, under its table (the status bar holds only one).
function renderErrors(name) {
  const refused = ui.errors.get(name) || new Map();
  for (const record of ui.widgets) {
    if (!record.errorList || record.item.name !== name) continue;
    record.errorList.replaceChildren(...[...refused.values()].map(({ message }) => el("li", {}, message)));
    record.errorList.hidden = refused.size === 0;
  }
}

// ------------------------------------------------------------ widgets

function renderField(record) {
  const { item, title } = record;
  const label = `${title}${unitLabel(item)}`;
  record.cells = new Map();
  if (item.kind !== "parameter") {
    // Read-only values are text, not inputs: long text wraps instead of being cut off.
    const output = el("output", { class: `webui-output webui-type-${item.type}`, "aria-label": title });
    record.cells.set("", output);
    record.node = el("div", { class: "webui-field" }, el("span", { class: "webui-label" }, label), output);
  } else {
    const input = el("input", { class: "webui-cell webui-scalar", type: "text", "aria-label": title, autocomplete: "off" });
    input.webuiCell = { name: item.name, key: null };
    record.cells.set("", input);
    record.errorList = el("ul", { class: "webui-errors", hidden: "hidden" });
    record.node = el("div", { class: "webui-field" }, el("label", {}, label, input), record.errorList);
  }
  refreshCells(record, true);
}

function renderButton(item, title) {
  const button = el("button", { class: item.kind === "solve" ? "primary" : "", type: "button", "data-procedure": item.name }, title);
  button.addEventListener("click", () => runProcedure(item));
  button.disabled = busy(item.name);
  return el("div", { class: "webui-button" }, button);
}

// A solve stays busy from the click until its job ends, so that it cannot be submitted twice.
function busy(name) {
  if (ui.submitting.has(name)) return true;
  for (const job of ui.jobs.values()) if (job.procedure === name && !ENDED.includes(job.state)) return true;
  return false;
}

function updateButtons() {
  for (const button of document.querySelectorAll("#page button[data-procedure]")) {
    button.disabled = busy(button.dataset.procedure);
    button.setAttribute("aria-busy", String(button.disabled));
  }
}

async function runProcedure(item) {
  if (busy(item.name)) return;
  ui.submitting.add(item.name);
  updateButtons();
  const isSolve = item.kind === "solve";
  const reply = await request({ op: isSolve ? "solve" : "run", procedure: item.name }).catch(lost);
  ui.submitting.delete(item.name);
  updateButtons();
  if (reply.type === "error") setStatus(reply.message, "error");
}

function renderTable(record) {
  const { item, title } = record;
  const editable = item.kind === "parameter";
  const index = item.index || [];
  const rows = ui.values[index[0]] || [];
  const cols = index.length === 2 ? ui.values[index[1]] || [] : [null];
  const table = el("table", { class: "webui-grid", "data-identifier": item.name, role: editable ? "grid" : null },
    el("caption", {}, `${title}${unitLabel(item)}`),
    el("thead", {}, headerRow(item, index, cols)));
  table.append(gridBody(record, rows, cols, editable));
  table.webuiRows = rows;
  table.webuiCols = cols;
  record.shape = shapeOf(item);
  record.errorList = el("ul", { class: "webui-errors", hidden: "hidden" });
  record.node = el("div", { class: "webui-table" }, el("div", { class: "webui-scroll" }, table), record.errorList);
  refreshCells(record, true);
  const refused = ui.errors.get(item.name);
  for (const [key, { raw, message }] of refused || []) if (record.cells.has(key)) showRefusal(record.cells.get(key), raw, message);
  renderErrors(item.name);
}

function headerRow(item, index, cols) {
  if (index.length !== 2) {
    return el("tr", {}, el("th", { scope: "col" }, index.length ? setTitle(index[0]) : ""), el("th", { scope: "col" }, item.title || item.name));
  }
  const corner = el("th", { scope: "col", class: "webui-corner" }, `${setTitle(index[0])} \\ ${setTitle(index[1])}`);
  return el("tr", {}, corner, cols.map((col) => el("th", { scope: "col" }, col)));
}

// Built with bare DOM calls and no per-cell listeners (the page listens once): a table of
// 10,000 cells renders in a few tens of milliseconds.
function gridBody(record, rows, cols, editable) {
  const { item } = record;
  const body = document.createElement("tbody");
  record.cells = new Map();
  for (const row of rows) {
    const tr = document.createElement("tr");
    const head = document.createElement("th");
    head.scope = "row";
    head.textContent = row;
    tr.append(head);
    for (const col of cols) {
      const key = col === null ? [row] : [row, col];
      const td = document.createElement("td");
      let node = td;
      if (editable) {
        node = document.createElement("input");
        node.type = "text";
        node.className = "webui-cell";
        node.autocomplete = "off";
        node.setAttribute("aria-label", `${item.name} ${key.join(" ")}`);
        node.webuiCell = { name: item.name, key };
        td.append(node);
      } else {
        td.className = `webui-value webui-type-${item.type}`;
      }
      record.cells.set(key.join(SEP), node);
      tr.append(td);
    }
    body.append(tr);
  }
  return body;
}

// ------------------------------------------------------------ editing

async function commitCell(input) {
  const { name, key } = input.webuiCell;
  const keyText = keyOf(key);
  const refused = (ui.errors.get(name) || new Map()).has(keyText);
  // Enter and the blur that follows may both report one change: send it once.
  if ((input.value === input.committed && !refused) || input.webuiSending === input.value) return;
  const old = key === null ? ui.values[name] : tableOf(name).get(keyText);
  const sent = input.value;
  input.webuiSending = sent;
  input.classList.add("webui-saving");
  const reply = await request({ op: "set", identifier: name, key, value: sent }).catch(lost);
  input.webuiSending = undefined;
  input.classList.remove("webui-saving");
  if (reply.type === "error") {
    markCell(name, keyText, sent, reply.message || "Not saved");
    renderErrors(name);
    setStatus(reply.message, "error");
    return;
  }
  clearMark(name, keyText);
  renderErrors(name);
  if (input.value === sent) { input.value = formatValue(reply.value, identifier(name).type) || sent; input.committed = input.value; }
  remember(key === null ? { name, scalar: true, value: old } : { name, cells: [[key, old]] });
  setStatus(`${name} updated`, "ok");
}

function remember(change) {
  ui.undo.push(change);
  if (ui.undo.length > UNDO_DEPTH) ui.undo.shift();
}

async function undo() {
  const change = ui.undo.pop();
  if (!change) { setStatus("Nothing to undo", "warn"); return; }
  const message = change.scalar
    ? { op: "set", identifier: change.name, key: null, value: change.value }
    : { op: "paste", identifier: change.name, cells: change.cells };
  const reply = await request(message).catch(lost);
  if (reply.type === "error") { setStatus(`Could not undo: ${reply.message}`, "error"); return; }
  clearMarks(change.name);
  renderErrors(change.name);
  for (const record of ui.widgets) if (record.cells && record.item.name === change.name) refreshCells(record, true);
  setStatus(`Undid the last change of ${change.name}`, "ok");
}

function parseBlock(text) {
  return text.replace(/\r/g, "").replace(/\n$/, "").split("\n").map((line) => line.split("\t"));
}

async function pasteBlock(event, input) {
  const text = event.clipboardData.getData("text/plain");
  if (!text.includes("\t") && !text.trim().includes("\n")) return; // one value: a normal paste
  event.preventDefault();
  const { name } = input.webuiCell;
  const table = input.closest("table");
  const [row, col] = position(input);
  const rows = table.webuiRows;
  const cols = table.webuiCols;
  const cells = [];
  const raws = new Map();
  let outside = 0;
  parseBlock(text).forEach((line, r) => line.forEach((raw, c) => {
    const rowName = rows[row + r];
    const colName = cols[col + c];
    if (rowName === undefined || colName === undefined) { outside += 1; return; }
    const key = colName === null ? [rowName] : [rowName, colName];
    cells.push([key, raw.trim()]);
    raws.set(key.join(SEP), raw.trim());
  }));
  const old = tableOf(name);
  const reply = await request({ op: "paste", identifier: name, cells }).catch(lost);
  clearMarks(name);
  if (reply.type === "error") {
    for (const bad of reply.cells || []) {
      const key = keyOf(bad.key);
      markCell(name, key, raws.has(key) ? raws.get(key) : "", bad.message);
    }
    renderErrors(name);
    setStatus(reply.message, "error");
    return;
  }
  renderErrors(name);
  for (const record of ui.widgets) if (record.cells && record.item.name === name) refreshCells(record, true);
  remember({ name, cells: cells.map(([key]) => [key, old.get(key.join(SEP))]) });
  const left = outside ? `; ${outside} beyond the table left out` : "";
  setStatus(`Pasted ${reply.count} cells into ${name}${left}`, "ok");
}

// ------------------------------------------------------------ keyboard: spreadsheet habits

function position(input) {
  const td = input.parentElement;
  return [td.parentElement.sectionRowIndex, td.cellIndex - 1];
}

function moveTo(input, dr, dc) {
  const table = input.closest("table");
  const [row, col] = position(input);
  const tr = table.tBodies[0].rows[row + dr];
  const target = tr && tr.cells[col + dc + 1] && tr.cells[col + dc + 1].querySelector("input");
  if (!target) return false;
  target.focus();
  target.select();
  return true;
}

function cancelEdit(input) {
  const { name, key } = input.webuiCell;
  clearMark(name, keyOf(key));
  renderErrors(name);
  input.value = input.committed;
  input.webuiEditing = false;
  input.select();
}

function onCellKey(event, input) {
  const ctrl = event.ctrlKey || event.metaKey;
  const editing = input.webuiEditing;
  const inGrid = input.webuiCell.key !== null;
  if (ctrl && event.key.toLowerCase() === "z" && !event.shiftKey && input.value === input.committed) {
    event.preventDefault(); // nothing typed to take back: undo the last change that was saved
    undo();
    return;
  }
  if (ctrl || event.altKey) return;
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1], Enter: [event.shiftKey ? -1 : 1, 0] };
  if (event.key === "Escape") { event.preventDefault(); cancelEdit(input); return; }
  if (event.key === "F2") { input.webuiEditing = true; input.setSelectionRange(input.value.length, input.value.length); return; }
  if (!(event.key in moves)) return;
  if (editing && (event.key === "ArrowLeft" || event.key === "ArrowRight")) return; // the caret moves
  if (event.key === "Enter") commitCell(input);
  if (!inGrid) return;
  const [dr, dc] = moves[event.key];
  if (moveTo(input, dr, dc) || event.key !== "Enter") event.preventDefault();
}

function cellFrom(event) {
  const target = event.target;
  return target && target.webuiCell ? target : null;
}

// One listener per kind for the whole page, whatever the number of cells.
const page = $("#page");
page.addEventListener("change", (event) => { const input = cellFrom(event); if (input) commitCell(input); });
page.addEventListener("paste", (event) => { const input = cellFrom(event); if (input) pasteBlock(event, input); });
page.addEventListener("keydown", (event) => { const input = cellFrom(event); if (input) onCellKey(event, input); });
page.addEventListener("input", (event) => { const input = cellFrom(event); if (input) input.webuiEditing = true; });
page.addEventListener("mousedown", (event) => { const input = cellFrom(event); if (input) input.webuiEditing = true; });
page.addEventListener("focusout", (event) => { const input = cellFrom(event); if (input) input.webuiEditing = false; });
document.addEventListener("keydown", (event) => {
  // Ctrl+Z outside any text field (on a button, say) undoes the last saved change too.
  const field = event.target.closest && event.target.closest("input, textarea, select, dialog");
  if (!field && (event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z" && !event.shiftKey && ui.interface) {
    event.preventDefault();
    undo();
  }
});

// ------------------------------------------------------------ charts

function renderChart(record) {
  const { item, title, widget } = record;
  const index = item.index || [];
  const table = tableOf(item.name);
  const labels = ui.values[index[0]] || [];
  const datasets = index.length === 2
    ? (ui.values[index[1]] || []).map((col) => ({ label: col, data: labels.map((row) => table.get(`${row}${SEP}${col}`)) }))
    : [{ label: title, data: labels.map((row) => table.get(row)) }];
  const heading = el("h3", {}, `${title}${unitLabel(item)}`);
  // Outputs start at 0 before any solve: bars of nothing would draw bare axes.
  const hasData = datasets.some((set) => set.data.some((value) => typeof value === "number" && Number.isFinite(value) && value !== 0));
  if (!hasData) {
    const why = labels.length ? "No data to chart: every value is empty or 0." : "No data to chart: there are no elements.";
    record.node = el("div", { class: "webui-chart" }, heading, el("p", { class: "webui-empty" }, why));
    return;
  }
  const canvas = el("canvas", { "aria-label": title, role: "img" });
  record.node = el("div", { class: "webui-chart" }, heading, canvas);
  if (window.Chart) {
    queueMicrotask(() => {
      if (!canvas.isConnected) return;
      record.chart = new window.Chart(canvas, {
        type: widget.chart === "line" ? "line" : "bar", data: { labels, datasets }, options: { animation: false, responsive: true },
      });
    });
  }
}

// ------------------------------------------------------------ jobs

function onLog(message) {
  const text = message.reset ? message.text : (ui.logs.get(message.job) || "") + message.text;
  ui.logs.set(message.job, text);
  const pre = document.querySelector(`pre[data-log="${message.job}"]`);
  if (!pre) return;
  pre.textContent = text;
  if (ui.follow.get(message.job) !== false) pre.scrollTop = pre.scrollHeight;
}

// A log follows its end until the user scrolls it up, and again once they scroll back down.
function watchLog(pre, jobId) {
  pre.addEventListener("scroll", () => {
    ui.follow.set(jobId, pre.scrollHeight - pre.scrollTop - pre.clientHeight < 4);
  });
}

function renderJobs() {
  const box = $("#jobs");
  const jobs = [...ui.jobs.values()].sort((a, b) => b.id - a.id);
  updateButtons();
  if (!jobs.length) { box.replaceChildren(el("p", { class: "muted" }, "No solves yet.")); return; }
  const scrolled = new Map([...box.querySelectorAll("pre[data-log]")].map((pre) => [Number(pre.dataset.log), pre.scrollTop]));
  box.replaceChildren(...jobs.map(jobNode));
  for (const pre of box.querySelectorAll("pre[data-log]")) {
    const id = Number(pre.dataset.log);
    pre.scrollTop = ui.follow.get(id) === false ? scrolled.get(id) || 0 : pre.scrollHeight;
    watchLog(pre, id);
  }
}

function jobNode(job) {
  const live = !ENDED.includes(job.state);
  const progress = job.progress || {};
  return el("div", { class: `webui-job job-${job.state}`, "data-job": job.id },
    el("div", { class: "webui-job-head" },
      el("strong", {}, `Job ${job.id}`), " ", el("span", { class: `badge state-${job.state}` }, job.state), " ", job.procedure,
      live ? el("button", { type: "button", class: "webui-small", onclick: () => request({ op: "cancel_job", job: job.id, interrupt: true }) }, "Interrupt") : null,
      live ? el("button", { type: "button", class: "webui-small danger", onclick: () => request({ op: "cancel_job", job: job.id }) }, "Cancel") : null),
    progress.fraction != null ? el("progress", { max: 1, value: progress.fraction }) : null,
    el("div", { class: "muted" }, job.error_message || job.solver_status || progress.message || ""),
    el("pre", { class: "webui-log", "data-log": job.id, tabindex: "0", "aria-label": `log of job ${job.id}` }, ui.logs.get(job.id) || ""));
}

// ------------------------------------------------------------ cases

async function refreshCases() {
  const reply = await request({ op: "list_cases" }).catch(lost);
  if (reply.type === "error") return setStatus(reply.message, "error");
  ui.cases = reply.cases;
  const body = $("#case-list tbody");
  body.replaceChildren(...ui.cases.map((c) => el("tr", { "data-case": c.id },
    el("td", {}, el("input", { type: "checkbox", class: "webui-compare-pick", value: c.id, "aria-label": `compare ${c.name}` })),
    el("td", {}, c.name, c.where ? el("span", { class: `badge webui-where-${c.where}` }, c.where) : null),
    el("td", { class: "muted" }, new Date(c.created_at).toLocaleString()),
    el("td", {},
      el("button", { type: "button", class: "webui-small", onclick: () => loadCase(c) }, "Load"),
      // A local session (`pro app run --remote`) lists its own files and the platform's cases.
      c.where === "local" && root.dataset.remote ? el("button", { type: "button", class: "webui-small", onclick: () => moveCase("push_case", c) }, "Push to platform") : null,
      c.where === "platform" ? el("button", { type: "button", class: "webui-small", onclick: () => moveCase("pull_case", c) }, "Keep a local copy") : null,
      el("button", { type: "button", class: "webui-small danger", onclick: () => deleteCase(c) }, "Delete")))));
  body.append(el("tr", {}, el("td", { colspan: 4 },
    el("button", { type: "button", id: "compare-button", onclick: compareCases }, "Compare the two chosen (or one with the current data)"))));
  return undefined;
}

async function loadCase(c) {
  const reply = await request({ op: "load_case", case: c.id }).catch(lost);
  setStatus(reply.type === "error" ? reply.message : `Loaded case ${c.name}`, reply.type === "error" ? "error" : "ok");
}

async function moveCase(op, c) {
  const reply = await request({ op, case: c.id }).catch(lost);
  const done = op === "push_case" ? `Pushed case ${c.name} to the platform` : `Kept a local copy of case ${c.name}`;
  setStatus(reply.type === "error" ? reply.message : done, reply.type === "error" ? "error" : "ok");
  refreshCases();
}

async function deleteCase(c) {
  if (!confirm(`Delete case ${c.name}?`)) return;
  await request({ op: "delete_case", case: c.id }).catch(lost);
  refreshCases();
}

async function compareCases() {
  const picked = [...document.querySelectorAll(".webui-compare-pick:checked")].map((box) => box.value);
  if (picked.length < 1 || picked.length > 2) { setStatus("Choose one or two cases to compare", "warn"); return; }
  const created = (id) => (ui.cases.find((c) => c.id === id) || {}).created_at || "";
  // The older case is the old side, so that a delta reads "new − old".
  const [left, right] = picked.length === 2 ? picked.sort((a, b) => created(a).localeCompare(created(b))) : [picked[0], "current"];
  const reply = await request({ op: "compare_cases", left, right }).catch(lost);
  if (reply.type === "error") { setStatus(reply.message, "error"); return; }
  const name = (id) => (id === "current" ? "current data" : (ui.cases.find((c) => c.id === id) || {}).name || "a deleted case");
  ui.comparison = { ...reply, leftName: name(left), rightName: name(right) };
  renderComparison();
}

async function saveCase(name, overwrite = false) {
  const reply = await request({ op: "save_case", name, overwrite }).catch(lost);
  const ask = $("#save-case-confirm");
  if (reply.type === "exists") {
    $("#save-case-question").textContent = `A case named “${name}” exists. Replace it with the current data?`;
    ask.dataset.name = name;
    ask.hidden = false;
    $("#save-case-overwrite").focus();
    setStatus(`A case named ${name} exists`, "warn");
    return;
  }
  ask.hidden = true;
  if (reply.type === "error") { setStatus(reply.message, "error"); return; }
  $("#save-case").reset();
  refreshCases();
}

$("#cases-button").addEventListener("click", () => { $("#cases-dialog").showModal(); refreshCases(); });
$("#save-case").addEventListener("submit", (event) => {
  event.preventDefault();
  saveCase(event.target.name.value.trim());
});
$("#save-case-overwrite").addEventListener("click", () => saveCase($("#save-case-confirm").dataset.name, true));
$("#save-case-cancel").addEventListener("click", () => { $("#save-case-confirm").hidden = true; setStatus("Not saved", "warn"); });
$("#compare-all").addEventListener("change", (event) => { ui.showAll = event.target.checked; renderComparison(); });

// ------------------------------------------------------------ a session that is not running

function showEnded() {
  const state = root.dataset.state;
  $("#page").replaceChildren(el("div", { class: "webui-ended" },
    el("p", {}, state === "lost" ? "This session was lost: its process stopped." : "This session is not running."),
    root.dataset.error ? el("p", { class: "muted" }, root.dataset.error) : null,
    el("form", { method: "post", action: root.dataset.restart },
      el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "" }),
      el("button", { class: "primary", name: "action", value: "restart" }, "Restart it"))));
}

// ------------------------------------------------------------ comparing cases

function deltaOf(left, right) {
  if (typeof left !== "number" || typeof right !== "number") return "";
  const delta = right - left;
  return delta === 0 ? "0" : `${delta > 0 ? "+" : "−"}${formatValue(Math.abs(delta), "float")}`;
}

const setTitle = (name) => (identifier(name) || {}).title || name;
const isScalar = (item) => item.kind !== "set" && item.cells.length === 1 && item.cells[0].key.length === 0 && !Array.isArray(item.cells[0].left) && !Array.isArray(item.cells[0].right);
const isSet = (item) => item.kind === "set" || (!item.kind && item.cells.length === 1 && (Array.isArray(item.cells[0].left) || Array.isArray(item.cells[0].right)));
const numeric = (item) => item.cells.some((cell) => typeof cell.left === "number" || typeof cell.right === "number");

function renderComparison() {
  const c = ui.comparison;
  if (!c) return;
  const changed = c.identifiers.filter((item) => item.changed);
  const shown = ui.showAll ? c.identifiers : changed;
  $("#compare-toggle").hidden = false;
  const heading = el("h3", {}, `${c.leftName} → ${c.rightName}: ${changed.length} of ${c.identifiers.length} identifiers differ`);
  const scalars = shown.filter(isScalar);
  const sets = shown.filter(isSet);
  const tables = shown.filter((item) => !isScalar(item) && !isSet(item));
  const parts = [
    changed.length || ui.showAll ? null : el("p", { class: "muted" }, "No differences: the two hold the same data."),
    scalars.length ? compareScalars(scalars, c) : null,
    sets.length ? compareSets(sets, c) : null,
    ...tables.map((item) => ((item.cells[0] || { key: [] }).key.length === 2 ? comparePivot(item, c) : compareFlat(item, c))),
  ];
  $("#comparison").replaceChildren(heading, ...parts.filter(Boolean));
}

function compareCaption(text, item) {
  return el("caption", {}, text, item && item.changed ? el("span", { class: "badge failed" }, "changed") : null);
}

function sidesHead(first, c, withDelta) {
  return el("thead", {}, el("tr", {}, first.map((text) => el("th", { scope: "col" }, text)),
    el("th", { scope: "col" }, c.leftName), el("th", { scope: "col" }, c.rightName),
    withDelta ? el("th", { scope: "col" }, "Δ new − old") : null));
}

function compareScalars(items, c) {
  return el("table", { class: "webui-compare", "data-compare": "scalars" }, compareCaption("Single values"),
    sidesHead(["Identifier"], c, items.some(numeric)),
    el("tbody", {}, items.map((item) => {
      const [cell] = item.cells;
      return el("tr", { class: cell.changed ? "webui-changed" : "", "data-identifier": item.identifier },
        el("th", { scope: "row" }, `${item.title}${unitLabel(item)}`),
        el("td", {}, formatValue(cell.left, item.type)), el("td", {}, formatValue(cell.right, item.type)),
        items.some(numeric) ? el("td", { class: "webui-delta" }, cell.changed ? deltaOf(cell.left, cell.right) : "") : null);
    })));
}

function compareSets(items, c) {
  const missing = (a, b) => (a || []).filter((x) => !(b || []).includes(x));
  return el("table", { class: "webui-compare", "data-compare": "sets" }, compareCaption("Sets"),
    el("thead", {}, el("tr", {}, ["Set", c.leftName, c.rightName, "Added", "Removed"].map((text) => el("th", { scope: "col" }, text)))),
    el("tbody", {}, items.map((item) => {
      const [{ left, right, changed }] = item.cells;
      return el("tr", { class: changed ? "webui-changed" : "", "data-identifier": item.identifier },
        el("th", { scope: "row" }, item.title), el("td", {}, formatValue(left)), el("td", {}, formatValue(right)),
        el("td", {}, missing(right, left).join(", ")), el("td", {}, missing(left, right).join(", ")));
    })));
}

// One- or many-dimensional: a row per key, a column per index set, the two sides and the delta.
function compareFlat(item, c) {
  const cells = ui.showAll ? item.cells : item.cells.filter((cell) => cell.changed);
  const width = (item.cells[0] || { key: [] }).key.length;
  const sets = (item.index || []).length === width ? item.index.map(setTitle) : Array.from({ length: width }, (_, i) => `key ${i + 1}`);
  const withDelta = numeric(item);
  return el("table", { class: "webui-compare", "data-identifier": item.identifier }, compareCaption(`${item.title}${unitLabel(item)}`, item),
    sidesHead(sets, c, withDelta),
    el("tbody", {}, cells.map((cell) => el("tr", { class: cell.changed ? "webui-changed" : "" },
      cell.key.map((part, i) => el(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : {}, part)),
      el("td", {}, formatValue(cell.left, item.type)), el("td", {}, formatValue(cell.right, item.type)),
      withDelta ? el("td", { class: "webui-delta" }, cell.changed ? deltaOf(cell.left, cell.right) : "") : null))));
}

// Two-dimensional: rows × columns as in the data page, each changed cell "old → new" and its delta.
function comparePivot(item, c) {
  const byKey = new Map(item.cells.map((cell) => [cell.key.join(SEP), cell]));
  const wanted = (cell) => ui.showAll || cell.changed;
  const rows = [...new Set(item.cells.filter(wanted).map((cell) => cell.key[0]))];
  const cols = [...new Set(item.cells.filter(wanted).map((cell) => cell.key[1]))];
  const [rowSet, colSet] = (item.index || []).length === 2 ? item.index.map(setTitle) : ["", ""];
  return el("table", { class: "webui-compare webui-pivot", "data-identifier": item.identifier },
    compareCaption(`${item.title}${unitLabel(item)}`, item),
    el("thead", {}, el("tr", {}, el("th", { scope: "col", class: "webui-corner" }, `${rowSet} \\ ${colSet}`), cols.map((col) => el("th", { scope: "col" }, col)))),
    el("tbody", {}, rows.map((row) => el("tr", {}, el("th", { scope: "row" }, row), cols.map((col) => pivotCell(byKey.get(`${row}${SEP}${col}`), item))))));
}

function pivotCell(cell, item) {
  if (!cell) return el("td", { class: "muted" }, "");
  if (!cell.changed) return el("td", { class: "muted" }, formatValue(cell.left, item.type));
  const delta = deltaOf(cell.left, cell.right);
  return el("td", { class: "webui-changed" },
    el("span", { class: "webui-old" }, formatValue(cell.left, item.type)), " → ",
    el("span", { class: "webui-new" }, formatValue(cell.right, item.type)),
    delta ? el("span", { class: "webui-delta" }, `Δ ${delta}`) : null);
}

if (["starting", "running"].includes(root.dataset.state)) connect();
else { setStatus(`Session ${root.dataset.state}`, "error"); showEnded(); }
