// One job: follows its log and state, and draws the objective and bound over time.
const jobId = document.getElementById("job").dataset.job;
const finished = new Set(["succeeded", "failed", "cancelled"]);
let offset = 0;
let chart = null;
let done = false;

function facts(job) {
  const rows = [
    ["Attempt", `${job.attempt} of ${job.max_attempts}`], ["Node", job.node || "—"], ["Priority", job.priority],
    ["Time limit", `${job.time_limit} s`], ["Memory limit", `${job.memory_limit_mb} MB`],
    ["Queued for", job.queue_seconds != null ? `${job.queue_seconds.toFixed(2)} s` : "—"],
    ["Ran for", job.run_seconds != null ? `${job.run_seconds.toFixed(2)} s` : "—"],
    ["Solver status", job.solver_status || "—"], ["Error", job.error_message || "—"],
  ];
  document.getElementById("facts").replaceChildren(...rows.flatMap(([name, value]) => {
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = value;
    return [dt, dd];
  }));
}

function drawChart(points) {
  if (!window.Chart || !points.length) return;
  const data = {
    labels: points.map((p) => p.t),
    datasets: [
      { label: "objective", data: points.map((p) => p.objective), stepped: true },
      { label: "bound", data: points.map((p) => p.bound), stepped: true },
    ],
  };
  if (chart) { chart.data = data; chart.update("none"); return; }
  chart = new window.Chart(document.getElementById("progress-chart"), {
    type: "line", data, options: { animation: false, scales: { x: { title: { display: true, text: "seconds" } } } },
  });
}

async function poll() {
  const [job, log] = await Promise.all([
    fetch(`/api/v1/jobs/${jobId}`).then((r) => r.json()),
    fetch(`/api/v1/jobs/${jobId}/log?offset=${offset}`).then((r) => r.json()),
  ]);
  if (log.text) {
    const pre = document.getElementById("log");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.textContent += log.text;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
  offset = log.offset;
  const state = document.getElementById("job-state");
  state.textContent = job.state;
  state.className = `badge state-${job.state}`;
  const progress = job.progress || {};
  document.getElementById("fraction").value = job.state === "succeeded" ? 1 : progress.fraction || 0;
  document.getElementById("message").textContent = progress.message || "";
  facts(job);
  drawChart(job.progress_points || []);
  document.getElementById("interrupt").disabled = job.state !== "running";
  document.getElementById("cancel").disabled = finished.has(job.state);
  if (job.result_case) {
    document.getElementById("result-links").innerHTML =
      `Result: <a href="/api/v1/jobs/${jobId}/result">download the case</a> · <a href="/api/v1/jobs/${jobId}/result?format=json">view as JSON</a>`;
  }
  done = finished.has(job.state) && log.finished;
  return Boolean(log.text) && log.offset < (log.size || 0); // a page of a long log: the next one is there already
}

async function loop() {
  let more = false;
  try { more = await poll(); } catch (error) { /* a missed poll; the next one catches up */ }
  if (!done) setTimeout(loop, more ? 0 : 1000);
}
loop();
