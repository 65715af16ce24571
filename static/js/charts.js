// Charts beside the tables of the statistics and security pages, drawn with the vendored Chart.js
// from the JSON the page carries (<script type="application/json">: data, not script, for the CSP).
"use strict";

const COLOURS = {
  accent: "#1f6feb",
  accentSoft: "rgba(31, 111, 235, 0.55)",
  ok: "#1a7f37",
  danger: "#cf222e",
  denied: "#bc4c00",
  purple: "#8250df",
  grey: "#8c959f",
};
const OUTCOME_COLOURS = { success: COLOURS.ok, failure: COLOURS.danger, denied: COLOURS.denied };

function seconds(value) {
  return value === null || value === undefined ? null : Number(value.toFixed(3));
}

function common(yTitle, stacked = false) {
  return {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    interaction: { mode: "index", intersect: false },
    plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
    scales: {
      x: { stacked, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 10 }, grid: { display: false } },
      y: { stacked, beginAtZero: true, title: { display: Boolean(yTitle), text: yTitle }, ticks: {} },
    },
  };
}

// Whole numbers on the axis of a count: no "0.2 jobs".
function counts(options) {
  options.scales.y.ticks.precision = 0;
  return options;
}

// A dashed line's legend shows a line, not a box.
function lines(options) {
  options.plugins.legend.labels = { usePointStyle: true, pointStyle: "line", boxWidth: 24 };
  return options;
}

const BUILDERS = {
  // The statistics page: rows {day, jobs, queue_median, queue_p95, run_median, run_p95}, oldest first.
  "job-counts": (rows) => ({
    type: "bar",
    data: {
      labels: rows.map((row) => row.day),
      datasets: [{ label: "jobs started", data: rows.map((row) => row.jobs), backgroundColor: COLOURS.accentSoft, borderColor: COLOURS.accent, borderWidth: 1 }],
    },
    options: counts({ ...common("jobs"), plugins: { legend: { display: false } } }),
  }),
  "job-times": (rows) => ({
    type: "line",
    data: {
      labels: rows.map((row) => row.day),
      datasets: [
        ["queue median", "queue_median", COLOURS.accent, []],
        ["queue p95", "queue_p95", COLOURS.accent, [6, 4]],
        ["run median", "run_median", COLOURS.purple, []],
        ["run p95", "run_p95", COLOURS.purple, [6, 4]],
      ].map(([label, key, colour, dash]) => ({
        label,
        data: rows.map((row) => seconds(row[key])),
        borderColor: colour,
        backgroundColor: colour,
        borderDash: dash,
        pointRadius: rows.length > 40 ? 0 : 3,
        spanGaps: true,
        tension: 0.2,
      })),
    },
    options: lines(common("seconds")),
  }),
  // The security page: {days: [...], outcomes: {success: [counts per day], ...}}.
  "security-events": (data) => ({
    type: "bar",
    data: {
      labels: data.days,
      datasets: Object.entries(data.outcomes).map(([outcome, counts]) => ({
        label: outcome,
        data: counts,
        backgroundColor: OUTCOME_COLOURS[outcome] || COLOURS.grey,
      })),
    },
    options: counts(common("events", true)),
  }),
};

document.addEventListener("DOMContentLoaded", () => {
  if (!window.Chart) {
    return; // the tables still say it all
  }
  for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
    const source = document.getElementById(canvas.dataset.source);
    const build = BUILDERS[canvas.dataset.chart];
    if (!source || !build) {
      continue;
    }
    const chart = new window.Chart(canvas, build(JSON.parse(source.textContent)));
    canvas.dataset.drawn = String(chart.data.datasets.length);
  }
});
