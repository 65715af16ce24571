// One job: follows its log and state, and draws the objective and bound over time. It fetches
// when the platform says the job changed (static/js/live.js), and stops once the job has ended
// and its whole log is shown.
import { follow } from "./live.js";

const jobId = Number(document.getElementById("job").dataset.job);
const finished = new Set(["succeeded", "failed", "cancelled"]);
const TRACEBACK = "Traceback (most recent call last):";
let offset = 0;
let chart = null;
let logText = "";

function facts(job) {
  const rows = [
    ["Attempt", `${job.attempt} of ${job.max_attempts}`], ["Node", job.node || "—"],
    ...(job.executor && job.executor !== "local" ? [["Runs on", `${job.executor} ${job.external_id || "(submitting)"}`]] : []),
    ["Priority", job.priority],
    ["Time limit", `${job.time_limit} s`], ["Memory limit", `${job.memory_limit_mb} MB`],
    ["Queued for", job.queue_seconds != null ? `${job.queue_seconds.toFixed(2)} s` : "—"],
    ["Ran for", job.run_seconds != null ? `${job.run_seconds.toFixed(2)} s` : "—"],
    ["Solver status", job.solver_status || "—"],
  ];
  if (job.waiting_for) rows.unshift(["Waiting", job.waiting_for]);
  if (job.state !== "failed" && job.error_message) rows.push(["Note", job.error_message]);
  document.getElementById("facts").replaceChildren(...rows.flatMap(([name, value]) => {
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = value;
    return [dt, dd];
  }));
}

// Only a job that reports an objective or a bound gets a chart: no blank axes.
function drawChart(points) {
  const usable = points.filter((p) => p.objective != null || p.bound != null);
  document.getElementById("chart-box").classList.toggle("is-empty", !usable.length);
  if (!window.Chart || !usable.length) return;
  const data = {
    labels: usable.map((p) => p.t),
    datasets: [
      { label: "objective", data: usable.map((p) => p.objective), stepped: true },
      { label: "bound", data: usable.map((p) => p.bound), stepped: true },
    ],
  };
  if (chart) { chart.data = data; chart.update("none"); return; }
  chart = new window.Chart(document.getElementById("progress-chart"), {
    type: "line", data, options: { animation: false, scales: { x: { title: { display: true, text: "seconds" } } } },
  });
}

// A failed job: the app's error first, its traceback (the last one in the log) folded below it.
function showFailure(job) {
  const box = document.getElementById("job-error");
  box.hidden = job.state !== "failed";
  if (box.hidden) return;
  document.getElementById("error-message").textContent = job.error_message || "The job failed.";
  const start = logText.lastIndexOf(TRACEBACK);
  const folded = document.getElementById("traceback-box");
  folded.hidden = start < 0;
  if (start >= 0) document.getElementById("traceback").textContent = logText.slice(start).trimEnd();
}

function showActions(job) {
  const over = finished.has(job.state);
  document.getElementById("job-actions").classList.toggle("job-actions-done", over);
  document.getElementById("interrupt").disabled = job.state !== "running" || Boolean(job.interrupt_requested_at);
  document.getElementById("cancel").disabled = over;
}

function appendLog(text) {
  const pre = document.getElementById("log");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  pre.append(text);
  logText += text;
  if (atBottom) pre.scrollTop = pre.scrollHeight; // follow the end unless the reader scrolled up
}

function showResult(job) {
  if (!job.result_case) return;
  const links = document.getElementById("result-links");
  const download = document.createElement("a");
  download.href = `/api/v1/jobs/${jobId}/result`;
  download.textContent = "download the case";
  const asJson = document.createElement("a");
  asJson.href = `/api/v1/jobs/${jobId}/result?format=json`;
  asJson.textContent = "view as JSON";
  links.replaceChildren("Result: ", download, " · ", asJson);
}

async function fetchJson(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (response.status === 401 || response.status === 403) window.location.reload();
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// Fetch the job and the log from where it was read; true while the job may still change.
async function update() {
  let job;
  for (;;) {
    const [fresh, log] = await Promise.all([fetchJson(`/api/v1/jobs/${jobId}`), fetchJson(`/api/v1/jobs/${jobId}/log?offset=${offset}`)]);
    job = fresh;
    if (log.text) appendLog(log.text);
    offset = log.offset;
    if (!(log.text && log.offset < (log.size || 0))) {
      if (finished.has(job.state) && !log.finished) { // its last lines are still being written
        await new Promise((resolve) => { setTimeout(resolve, 500); });
        continue;
      }
      if (finished.has(job.state)) live.stop();
      break;
    }
  }
  const state = document.getElementById("job-state");
  state.textContent = job.state;
  state.className = `badge state-${job.state}`;
  const progress = job.progress || {};
  document.getElementById("fraction").value = job.state === "succeeded" ? 1 : progress.fraction || 0;
  document.getElementById("message").textContent = progress.message || "";
  facts(job);
  drawChart(job.progress_points || []);
  showActions(job);
  showFailure(job);
  showResult(job);
}

const live = follow(["jobs"], update, { job: jobId, fallbackSeconds: 5 });
live.refresh();
