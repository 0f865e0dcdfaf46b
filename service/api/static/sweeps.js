// fitq's dashboard, sweeps: the sweep list (on #/, above the jobs) and a sweep
// page (#/sweeps/ID): every trial's validation curve on one chart, the
// ranking, and the metric against each parameter. It polls the sweep and its
// trials, and reads each trial's History only for the epochs it has not seen.
// Loaded before app.js, whose helpers (api, esc, badge, num, …) it uses.
"use strict";

const SWEEP_REFRESH_MS = 2000;
const HISTORY_FETCHES = 6;  // trial Histories read at once

function trialCounts(s) {
  const t = s.trials, ended = t.succeeded + t.failed + t.cancelled;
  return `${ended}/${t.total} ended` + (t.running ? ` · ${t.running} running` : "");
}

function renderSweepList(sweeps) {
  const panel = document.getElementById("sweeps-panel");
  if (!panel) return;
  panel.hidden = !sweeps.length;
  const rows = sweeps.map(s => `<tr class="sweep-row" data-sweep="${esc(s.id)}">
      <td><a href="#/sweeps/${esc(s.id)}">${esc(s.name || s.id.slice(0, 12))}</a><div class="muted" style="font-size:.8rem">${esc(s.id)}</div></td>
      <td>${badge(s.status)}</td><td>${esc(trialCounts(s))}</td>
      <td>${esc(s.metric.name)} <span class="muted">(${esc(s.metric.goal)})</span></td>
      <td class="num">${s.best ? num(s.best.value) : ""}</td>
      <td class="muted">${esc(when(s.created_at))}</td></tr>`).join("");
  document.getElementById("sweeps").innerHTML = `<table><thead><tr><th>sweep</th><th>status</th>
    <th>trials</th><th>metric</th><th>best</th><th>created</th></tr></thead><tbody>${rows}</tbody></table>`;
  for (const tr of panel.querySelectorAll("tr.sweep-row")) {
    tr.addEventListener("click", () => { location.hash = `#/sweeps/${tr.dataset.sweep}`; });
  }
}

async function allTrials(sweepId) {
  const items = [];
  let cursor = null;
  do {
    const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const page = await (await api(`/v1/sweeps/${sweepId}/trials?limit=200${query}`)).json();
    items.push(...page.items); cursor = page.next_cursor;
  } while (cursor);
  return items;
}

const paramText = v => (typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(3) : JSON.stringify(v));

function ashaText(rule) {
  return rule ? `ASHA from epoch ${rule.min_epochs}, keep 1/${rule.reduction_factor}` : "none";
}

async function sweepPage(sweepId) {
  let stopped = false, timer = null;
  leave = () => { stopped = true; clearTimeout(timer); };
  let sweep;
  try { sweep = await (await api(`/v1/sweeps/${sweepId}`)).json(); } catch (err) { showError(err.message); return; }
  const names = Object.keys(sweep.parameters);
  const metric = sweep.metric.name;
  view.innerHTML = `
    <div class="panel">
      <div class="job-head">
        <h1>${esc(sweep.name || "sweep")}</h1><span class="muted">${esc(sweep.id)}</span>
        <span id="status">${badge(sweep.status)}</span>
        <div class="actions"><button id="cancel" class="danger">Cancel sweep</button></div>
      </div>
      <div class="facts">
        <div><span>trials</span><b id="f-trials"></b></div>
        <div><span>metric</span><b>${esc(metric)} (${esc(sweep.metric.goal)})</b></div>
        <div><span>method</span><b>${esc(sweep.method)}</b></div>
        <div><span>early termination</span><b>${esc(ashaText(sweep.early_terminate))}</b></div>
        <div><span>best</span><b id="f-best">–</b></div>
      </div>
    </div>
    <div class="panel"><canvas id="curves-chart" class="tall" data-lines="0"></canvas></div>
    <div class="panel"><h3 style="margin-top:0">Ranking</h3><div id="ranking"><p class="muted">Loading…</p></div></div>
    <div class="charts">${names.map((n, i) => `<div class="panel"><canvas id="scatter-${i}" class="scatter" data-param="${esc(n)}" data-points="0"></canvas></div>`).join("")}</div>`;
  const curves = new CurvesChart(document.getElementById("curves-chart"), `${metric}, every trial`);
  const scatters = names.map((n, i) => new ScatterChart(document.getElementById(`scatter-${i}`), `${metric} against ${n}`, metric));
  const histories = new Map();  // job id -> History rows, in epoch order
  let curveKey = null;          // what the curves show: the metric's validation twin if logged

  const cancelButton = document.getElementById("cancel");
  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    try { await api(`/v1/sweeps/${sweepId}/cancel`, {method: "POST"}); } catch (err) { alert(err.message); cancelButton.disabled = false; }
  });

  async function readHistories(trials) {
    const behind = trials.filter(t => t.epochs > (histories.get(t.job_id) || []).length);
    for (let i = 0; i < behind.length; i += HISTORY_FETCHES) {
      await Promise.all(behind.slice(i, i + HISTORY_FETCHES).map(async t => {
        const rows = histories.get(t.job_id) || [];
        const after = rows.length ? rows[rows.length - 1].epoch : 0;
        const history = await (await api(`/v1/jobs/${t.job_id}/metrics?after=${after}`)).json();
        histories.set(t.job_id, rows.concat(history.epochs));
      }));
    }
  }

  function render(trials) {
    document.getElementById("status").innerHTML = badge(sweep.status);
    document.getElementById("f-trials").textContent = trialCounts(sweep);
    document.getElementById("f-best").textContent = sweep.best
      ? `${num(sweep.best.value)} (${Object.entries(sweep.best.params).map(([k, v]) => `${k}=${paramText(v)}`).join(", ")})` : "–";
    cancelButton.disabled = TERMINAL.includes(sweep.status);
    const best = sweep.best ? sweep.best.job_id : null;

    if (curveKey === null) {
      const row = [...histories.values()].find(rows => rows.length);
      if (row) {
        const twin = `val_${metric}`;
        curveKey = !metric.startsWith("val_") && row[0][twin] !== undefined ? twin : metric;
        curves.title = `${curveKey}, every trial`;
      }
    }
    for (const t of trials) {
      const rows = histories.get(t.job_id) || [];
      const points = curveKey === null ? [] : rows.filter(r => typeof r[curveKey] === "number").map(r => [r.epoch, r[curveKey]]);
      curves.set(t.job_id, t.number, points, t.pruned);
    }
    curves.best = best;
    curves.draw();
    scatters.forEach((chart, i) => {
      chart.points = trials.map(t => ({x: t.params[names[i]], y: t.value, number: t.number, best: t.job_id === best}));
      chart.draw();
    });

    const rows = trials.map((t, i) => `<tr class="trial-row" data-job="${esc(t.job_id)}">
        <td><span class="swatch" style="background:${trialColor(t.number)}"></span> ${t.value === null ? "–" : i + 1}</td>
        ${names.map(n => `<td class="num">${esc(paramText(t.params[n]))}</td>`).join("")}
        <td class="num">${num(t.value)}</td>
        <td>${badge(t.status)}${t.pruned ? ' <span class="tag" data-pruned="true">pruned</span>' : ""}</td>
        <td class="num">${t.epochs}</td>
        <td><a href="#/jobs/${esc(t.job_id)}">${esc(t.job_id.slice(0, 12))}</a></td></tr>`).join("");
    document.getElementById("ranking").innerHTML = `<table><thead><tr><th>#</th>
      ${names.map(n => `<th>${esc(n)}</th>`).join("")}<th>${esc(metric)}</th><th>status</th><th>epochs</th><th>job</th></tr></thead>
      <tbody>${rows}</tbody></table>`;
  }

  async function refresh() {
    try {
      sweep = await (await api(`/v1/sweeps/${sweepId}`)).json();
      const trials = await allTrials(sweepId);
      await readHistories(trials);
      if (stopped) return;
      render(trials);
    } catch (err) {
      if (!stopped) showError(err.message);
      return;
    }
    if (!TERMINAL.includes(sweep.status)) timer = setTimeout(refresh, SWEEP_REFRESH_MS);
  }
  refresh();
}
