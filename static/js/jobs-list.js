// The jobs page: one page of the jobs that match the filters, redrawn when the platform says one
// of them changed (static/js/live.js), polled slowly only when the websocket is not there.
import { follow } from "./live.js";

const table = document.getElementById("jobs-table");
const filters = document.getElementById("jobs-filters");
const showOwner = table.dataset.showOwner === "1";
const pageSize = Number(table.dataset.pageSize) || 50;
const updated = document.getElementById("updated");
const COLUMNS = showOwner ? 11 : 10;
let offset = 0;
let shown = new Set(); // the jobs on this page: a change of another one on a later page matters less

const cell = (text, cls = "") => { const td = document.createElement("td"); td.textContent = text ?? ""; if (cls) td.className = cls; return td; };

function progressCell(job) {
  const progress = job.progress || {};
  const td = document.createElement("td");
  if (job.state === "running" && progress.fraction != null) {
    const box = document.createElement("div");
    box.className = "job-progress";
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = progress.fraction;
    bar.setAttribute("aria-label", `job ${job.id} progress`);
    const text = document.createElement("span");
    text.className = "muted";
    text.textContent = progress.message || `${Math.round(progress.fraction * 100)} %`;
    box.append(bar, text);
    td.append(box);
  } else {
    td.className = "muted";
    td.textContent = job.error_message || job.solver_status || progress.message || "";
  }
  return td;
}

function row(job) {
  const tr = document.createElement("tr");
  tr.dataset.job = job.id;
  const link = document.createElement("a");
  link.href = `/jobs/${job.id}/`;
  link.textContent = `#${job.id}`;
  const first = document.createElement("td");
  first.append(link);
  const state = document.createElement("span");
  state.className = `badge state-${job.state}`;
  state.textContent = job.state;
  const stateCell = document.createElement("td");
  stateCell.append(state);
  tr.append(first, cell(`${job.app} ${job.version}`), cell(job.procedure));
  if (showOwner) tr.append(cell(job.owner));
  tr.append(stateCell, progressCell(job), cell(job.priority), cell(`${job.attempt}/${job.max_attempts}`), cell(job.node || "—"),
    cell(new Date(job.created_at).toLocaleString()), cell(job.run_seconds != null ? `${job.run_seconds.toFixed(2)} s` : ""));
  return tr;
}

function query() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(filters)) if (value) params.set(name, value);
  return params;
}

function emptyRow(filtered) {
  const empty = document.createElement("tr");
  const td = cell(filtered ? "No job matches these filters." : "No jobs yet: run a solve from an app's version page, the WebUI, the CLI or the API.", "muted");
  td.colSpan = COLUMNS;
  empty.append(td);
  return empty;
}

async function refresh() {
  const params = query();
  const filtered = [...params.keys()].length > 0;
  params.set("offset", offset);
  params.set("limit", pageSize);
  try {
    const response = await fetch(`/api/v1/jobs?${params}`, { credentials: "same-origin" });
    if (response.status === 401 || response.status === 403) { window.location.reload(); return; }
    const jobs = await response.json();
    if (!response.ok) { updated.textContent = jobs.error?.message || "the filters are not valid"; return; }
    const total = Number(response.headers.get("X-Total-Count") || jobs.length);
    if (offset > 0 && offset >= total) { offset = Math.max(0, total - pageSize); return refresh(); }
    table.querySelector("tbody").replaceChildren(...(jobs.length ? jobs.map(row) : [emptyRow(filtered)]));
    shown = new Set(jobs.map((job) => job.id));
    document.getElementById("page-info").textContent = total ? `${offset + 1}–${offset + jobs.length} of ${total}` : "";
    document.getElementById("newer").disabled = offset === 0;
    document.getElementById("older").disabled = offset + jobs.length >= total;
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch {
    updated.textContent = "cannot reach the platform; retrying";
  }
}

// The filters live in the address, so that a reload or a shared link shows the same jobs.
function remember() {
  const params = query();
  if (offset) params.set("offset", offset);
  history.replaceState(null, "", params.toString() ? `?${params}` : window.location.pathname);
}

function restore() {
  const params = new URLSearchParams(window.location.search);
  for (const [name, value] of params) if (filters.elements[name]) filters.elements[name].value = value;
  offset = Math.max(0, Number(params.get("offset")) || 0);
}

let typing = null;
function filtersChanged(delay) {
  clearTimeout(typing);
  typing = setTimeout(() => { offset = 0; remember(); live.refresh(); }, delay);
}

filters.addEventListener("change", () => filtersChanged(0));
filters.addEventListener("input", (event) => { if (event.target.type === "search" || event.target.type === "text") filtersChanged(300); });
filters.addEventListener("submit", (event) => { event.preventDefault(); filtersChanged(0); });
filters.addEventListener("reset", () => setTimeout(() => filtersChanged(0)));
document.getElementById("newer").addEventListener("click", () => { offset = Math.max(0, offset - pageSize); remember(); live.refresh(); });
document.getElementById("older").addEventListener("click", () => { offset += pageSize; remember(); live.refresh(); });

restore();
// On the first page every change redraws it (a new job lands there, a job may move in or out
// of a filter); on a later page, only a change to one of the jobs it shows.
const live = follow(["jobs"], (changes) => {
  if (changes === null || offset === 0 || changes.some((change) => shown.has(change.id))) return refresh();
  return undefined;
}, { onMode: (mode) => { table.dataset.live = mode; } });
live.refresh();
