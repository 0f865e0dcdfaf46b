// fitq's dashboard, comparing jobs (#/compare/ID,ID,…; chosen with the boxes
// of the job list): every job's loss and accuracy curves on one chart each
// (train solid, validation dashed, a colour per job), their final and test
// metrics side by side, and the paths where their specs differ. It polls
// while a job still runs. Loaded before app.js, whose helpers (api, esc,
// badge, num, …) it uses; the charts are charts.js's CurvesChart.
"use strict";

const COMPARE_REFRESH_MS = 2000;
const COMPARE_MAX = 10;  // jobs on one page: past this the colours and lines blur

// A value's leaves by dotted path (list items by index); an empty object or list is a leaf.
function flattenSpec(value, prefix = "", out = {}) {
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v])
    : value && typeof value === "object" ? Object.entries(value) : [];
  if (!entries.length) { out[prefix] = value; return out; }
  for (const [k, v] of entries) flattenSpec(v, prefix ? `${prefix}.${k}` : String(k), out);
  return out;
}

// The paths whose values are not the same in every spec: [[path, [value | undefined, …]], …].
function specDifferences(specs) {
  const flats = specs.map(s => flattenSpec(s));
  const paths = [...new Set(flats.flatMap(f => Object.keys(f)))];
  return paths
    .map(p => [p, flats.map(f => (p in f ? f[p] : undefined))])
    .filter(([, values]) => new Set(values.map(v => (v === undefined ? "\u0000" : JSON.stringify(v)))).size > 1);
}

// The first compiled metric that is not the loss (what the accuracy chart draws).
function accuracyKeyOf(jobs) {
  for (const j of jobs) {
    const found = Object.keys(j.metrics || {}).find(k => !k.startsWith("val_") && k !== "loss");
    if (found) return found;
  }
  const named = jobs.flatMap(j => (j.spec.compile || {}).metrics || []).find(m => typeof m === "string");
  return named || "accuracy";
}

function metricNames(jobs, field) {
  return [...new Set(jobs.flatMap(j => Object.keys(j[field] || {})))];
}

async function comparePage(ids) {
  let stopped = false, timer = null;
  leave = () => { stopped = true; clearTimeout(timer); };
  const asked = [...new Set(ids)];
  ids = asked.slice(0, COMPARE_MAX);
  let jobs;
  try {
    jobs = await Promise.all(ids.map(async id => (await api(`/v1/jobs/${id}`)).json()));
  } catch (err) { showError(err.message); return; }
  const accuracyKey = accuracyKeyOf(jobs);
  view.innerHTML = `
    <div class="panel">
      <div class="job-head"><h1>Compare ${jobs.length} jobs</h1>
        <a class="muted" href="#/">back to the list</a>
        ${asked.length > ids.length ? `<span class="muted">the first ${ids.length} of the ${asked.length} chosen</span>` : ""}</div>
      <div id="compare-jobs" style="margin-top:.8rem"></div>
    </div>
    <div class="charts">
      <div class="panel"><canvas id="compare-loss" data-lines="0"></canvas></div>
      <div class="panel"><canvas id="compare-accuracy" data-lines="0"></canvas></div>
    </div>
    <div class="panel"><h3 style="margin-top:0">Spec differences</h3><div id="spec-diff"></div></div>`;
  const lossChart = new CurvesChart(document.getElementById("compare-loss"), "loss (train solid, validation dashed)");
  const accChart = new CurvesChart(document.getElementById("compare-accuracy"), `${accuracyKey} (train solid, validation dashed)`);
  renderDifferences(jobs);

  async function refresh() {
    try {
      const [fresh, histories] = await Promise.all([
        Promise.all(ids.map(async id => (await api(`/v1/jobs/${id}`)).json())),
        Promise.all(ids.map(async id => (await api(`/v1/jobs/${id}/metrics`)).json())),
      ]);
      if (stopped) return;
      jobs = fresh;
      histories.forEach((h, i) => {
        for (const [chart, key] of [[lossChart, "loss"], [accChart, accuracyKey]]) {
          for (const [series, dashed] of [[key, false], [`val_${key}`, true]]) {
            const points = h.epochs.filter(e => typeof e[series] === "number").map(e => [e.epoch, e[series]]);
            chart.set(`${ids[i]}:${series}`, i, points, dashed);
          }
        }
      });
      lossChart.draw(); accChart.draw();
      renderJobs(jobs);
    } catch (err) {
      if (!stopped) showError(err.message);
      return;
    }
    if (jobs.some(j => !TERMINAL.includes(j.status))) timer = setTimeout(refresh, COMPARE_REFRESH_MS);
  }
  refresh();
}

function renderJobs(jobs) {
  const box = document.getElementById("compare-jobs");
  if (!box) return;
  const latest = metricNames(jobs, "metrics"), test = metricNames(jobs, "test_metrics");
  const head = [...latest, ...test.map(k => `test ${k}`)].map(k => `<th>${esc(k.replaceAll("_", " "))}</th>`).join("");
  const rows = jobs.map((j, i) => `<tr class="compare-row" data-job="${esc(j.id)}">
      <td><span class="swatch" style="background:${trialColor(i)}"></span>
        <a href="#/jobs/${esc(j.id)}">${esc(j.name || j.id.slice(0, 12))}</a></td>
      <td>${badge(j.status, j.phase)}</td>
      <td>${(j.tags || []).map(t => `<span class="tag">${esc(t)}</span>`).join(" ")}</td>
      ${latest.map(k => `<td class="num">${num((j.metrics || {})[k])}</td>`).join("")}
      ${test.map(k => `<td class="num">${num((j.test_metrics || {})[k])}</td>`).join("")}</tr>`).join("");
  box.innerHTML = `<table><thead><tr><th>job</th><th>status</th><th>tags</th>${head}</tr></thead><tbody>${rows}</tbody></table>`;
}

function renderDifferences(jobs) {
  const box = document.getElementById("spec-diff");
  const differences = specDifferences(jobs.map(j => j.spec));
  if (!differences.length) { box.innerHTML = `<p class="muted">The specs are the same.</p>`; return; }
  const cell = v => (v === undefined ? `<span class="muted">—</span>` : `<code>${esc(JSON.stringify(v))}</code>`);
  const head = jobs.map((j, i) => `<th class="as-named"><span class="swatch" style="background:${trialColor(i)}"></span> ${esc(j.name || j.id.slice(0, 12))}</th>`).join("");
  const rows = differences.map(([path, values]) =>
    `<tr data-path="${esc(path)}"><td><code>${esc(path)}</code></td>${values.map(v => `<td>${cell(v)}</td>`).join("")}</tr>`).join("");
  box.innerHTML = `<table><thead><tr><th>path</th>${head}</tr></thead><tbody>${rows}</tbody></table>`;
}

window.comparePage = comparePage;
