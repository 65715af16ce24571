// The jobs page: polls the API and redraws the table, so it stays current without a reload.
const table = document.getElementById("jobs-table");
const filter = document.getElementById("state-filter");
const showOwner = table.dataset.showOwner === "1";

const cell = (text, cls = "") => { const td = document.createElement("td"); td.textContent = text ?? ""; if (cls) td.className = cls; return td; };

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
  const progress = job.progress || {};
  const text = job.error_message || job.solver_status || progress.message || (progress.fraction != null ? `${Math.round(progress.fraction * 100)} %` : "");
  tr.append(first, cell(`${job.app} ${job.version}`), cell(job.procedure));
  if (showOwner) tr.append(cell(job.owner));
  tr.append(stateCell, cell(text, "muted"), cell(job.priority), cell(`${job.attempt}/${job.max_attempts}`), cell(job.node || "—"),
    cell(new Date(job.created_at).toLocaleString()), cell(job.run_seconds != null ? `${job.run_seconds.toFixed(2)} s` : ""));
  return tr;
}

async function refresh() {
  const query = filter.value ? `?state=${filter.value}` : "";
  try {
    const response = await fetch(`/api/v1/jobs${query}`, { credentials: "same-origin" });
    const jobs = await response.json();
    const body = table.querySelector("tbody");
    if (!jobs.length) {
      const empty = document.createElement("tr");
      const td = cell("No jobs yet: run a solve from an app's version page, the WebUI, the CLI or the API.", "muted");
      td.colSpan = 11;
      empty.append(td);
      body.replaceChildren(empty);
    } else {
      body.replaceChildren(...jobs.map(row));
    }
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    document.getElementById("updated").textContent = "cannot reach the platform; retrying";
  }
}

filter.addEventListener("change", refresh);
refresh();
setInterval(refresh, 2000);
