// The usage page's charts: hours and CPU hours of jobs and sessions per row of the table, drawn with
// the vendored Chart.js from the rows the page carries (<script type="application/json">, for the CSP).
"use strict";

const USAGE_MAX_BARS = 20; // the rows with the most hours; the table has them all
const USAGE_COLOURS = { jobs: "rgba(31, 111, 235, 0.7)", sessions: "rgba(130, 80, 223, 0.7)" };

function usageChart(rows, jobKey, sessionKey, title) {
  const top = [...rows]
    .sort((a, b) => b[jobKey] + b[sessionKey] - (a[jobKey] + a[sessionKey]))
    .slice(0, USAGE_MAX_BARS);
  return {
    type: "bar",
    data: {
      labels: top.map((row) => row.name),
      datasets: [
        { label: "jobs", data: top.map((row) => row[jobKey]), backgroundColor: USAGE_COLOURS.jobs },
        { label: "sessions", data: top.map((row) => row[sessionKey]), backgroundColor: USAGE_COLOURS.sessions },
      ],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      indexAxis: "y",
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      scales: {
        x: { stacked: true, beginAtZero: true, title: { display: true, text: title } },
        y: { stacked: true, grid: { display: false } },
      },
    },
  };
}

const USAGE_CHARTS = {
  hours: (rows) => usageChart(rows, "job_hours", "session_hours", "hours"),
  cpu: (rows) => usageChart(rows, "job_cpu_hours", "session_cpu_hours", "CPU hours"),
};

document.addEventListener("DOMContentLoaded", () => {
  const grouping = document.querySelector('#usage-filters select[name="by"]');
  if (grouping) {
    grouping.addEventListener("change", () => grouping.form.requestSubmit()); // the table follows the select
  }
  const source = document.getElementById("usage-data");
  if (!window.Chart || !source) {
    return; // the table says it all
  }
  const rows = JSON.parse(source.textContent);
  for (const canvas of document.querySelectorAll("canvas[data-usage-chart]")) {
    const build = USAGE_CHARTS[canvas.dataset.usageChart];
    if (build) {
      const chart = new window.Chart(canvas, build(rows));
      canvas.dataset.drawn = String(chart.data.datasets.length);
    }
  }
});
