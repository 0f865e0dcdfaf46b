// fitq's dashboard: the job list (#/, below the sweeps) and a job page
// (#/jobs/ID) fed by the job's event stream, read with fetch() so the API key
// travels in the Authorization header (EventSource cannot send one); the sweep
// pages are in sweeps.js, the comparison of jobs chosen in the list
// (#/compare/ID,ID,…) in compare.js. No dependencies.
"use strict";

const KEY_STORAGE = "fitq.apiKey";
const LIST_REFRESH_MS = 2000;
const RECONNECT_MS = 2000;
const TERMINAL = ["succeeded", "failed", "cancelled"];

const view = document.getElementById("view");
let leave = () => {};  // stops the current page's timers and streams
const selected = new Set();  // the jobs ticked in the list, to compare

// -- the key --------------------------------------------------------------------

const apiKey = () => localStorage.getItem(KEY_STORAGE) || "";

function showKeyState() {
  const has = Boolean(apiKey());
  document.getElementById("key-form").hidden = has;
  document.getElementById("key-set").hidden = !has;
}

document.getElementById("key-form").addEventListener("submit", ev => {
  ev.preventDefault();
  const value = document.getElementById("key-input").value.trim();
  if (value) localStorage.setItem(KEY_STORAGE, value);
  document.getElementById("key-input").value = "";
  showKeyState(); route();
});
document.getElementById("key-forget").addEventListener("click", () => {
  localStorage.removeItem(KEY_STORAGE); showKeyState(); route();
});

// -- the API ----------------------------------------------------------------------

class ApiError extends Error {}

async function api(path, options = {}) {
  const headers = {Authorization: `Bearer ${apiKey()}`, ...(options.headers || {})};
  const response = await fetch(path, {...options, headers});
  if (!response.ok) {
    let detail = response.statusText;
    try { const body = await response.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (_) { /* not JSON */ }
    throw new ApiError(`${response.status}: ${detail}`);
  }
  return response;
}

// Reads a job's Server-Sent Events; resumes with Last-Event-ID after a drop.
function followEvents(jobId, onEvent, isDone) {
  const controller = new AbortController();
  let lastId = null, stopped = false;
  async function connect() {
    while (!stopped) {
      try {
        const headers = lastId === null ? {} : {"Last-Event-ID": String(lastId)};
        const response = await api(`/v1/jobs/${jobId}/events`, {headers, signal: controller.signal});
        if (response.status === 204) return;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, {stream: true});
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
            const event = parseBlock(block);
            if (!event) continue;
            if (event.id !== null) lastId = event.id;
            onEvent(event);
          }
        }
        if (isDone()) return;
      } catch (err) {
        if (stopped) return;
        if (err instanceof ApiError) { onEvent({kind: "error", data: {detail: err.message}}); return; }
      }
      await new Promise(r => setTimeout(r, RECONNECT_MS));
    }
  }
  connect();
  return () => { stopped = true; controller.abort(); };
}

function parseBlock(block) {
  let kind = "message", id = null; const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const name = at < 0 ? line : line.slice(0, at);
    let value = at < 0 ? "" : line.slice(at + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") kind = value;
    else if (name === "data") data.push(value);
    else if (name === "id") id = Number(value);
  }
  return data.length ? {kind, id, data: JSON.parse(data.join("\n"))} : null;
}

// -- helpers ------------------------------------------------------------------------

const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const num = v => (typeof v === "number" ? v.toFixed(4) : "");
const when = t => (t ? new Date(t).toLocaleString() : "");
const phaseText = p => (p ? p.replace("_", " ") : "");

function badge(status, phase) {
  const extra = status === "running" && phase ? ` · ${phaseText(phase)}` : "";
  return `<span class="badge ${esc(status)}" data-status="${esc(status)}">${esc(status)}${esc(extra)}</span>`;
}

function fraction(p) {
  if (!p.epochs) return 0;
  const inEpoch = p.steps ? Math.min(p.step / p.steps, 1) : 0;
  const done = p.status === "succeeded" ? p.epochs : Math.max(0, p.epoch - 1 + inEpoch);
  return Math.min(done / p.epochs, 1);
}

function progressBar(p, wide = false) {
  return `<span class="bar${wide ? " wide" : ""}"><span style="width:${(fraction(p) * 100).toFixed(1)}%"></span></span>`;
}

const packText = pack => (pack ? `trained in a pack of ${pack.size}` : "alone");

function needKey() {
  view.innerHTML = `<div class="panel"><h2>Enter your API key</h2>
    <p class="muted">fitq's dashboard talks to the API with your key, kept in this browser only.
    <code>fitq up</code> writes one to <code>.fitq/api_key</code>; <code>fitq keys create NAME</code> makes more.</p></div>`;
}

function showError(message) {
  view.innerHTML = `<div class="panel error" id="page-error">${esc(message)}</div>`;
}

// -- the job list -----------------------------------------------------------------------

async function listPage() {
  let timer = null, stopped = false;
  leave = () => { stopped = true; clearTimeout(timer); };
  view.innerHTML = `<div class="panel" id="sweeps-panel" hidden><h2 style="margin-top:0">Sweeps</h2><div id="sweeps"></div></div>
    <div class="panel"><div class="job-head"><h2 style="margin:0">Jobs</h2>
      <div class="actions"><button id="compare" disabled>Compare</button>
      <button id="compare-clear" class="link" hidden>clear</button></div></div>
      <div id="jobs"><p class="muted">Loading…</p></div></div>`;
  document.getElementById("compare").addEventListener("click", () => {
    location.hash = `#/compare/${[...selected].join(",")}`;
  });
  document.getElementById("compare-clear").addEventListener("click", () => {
    selected.clear(); showSelection();
    for (const box of document.querySelectorAll("input.pick")) box.checked = false;
  });
  showSelection();
  async function refresh() {
    try {
      const [page, sweeps] = await Promise.all(
        ["/v1/jobs?limit=100", "/v1/sweeps?limit=20"].map(async path => (await api(path)).json()));
      if (stopped) return;
      renderSweepList(sweeps.items);
      renderList(page.items);
    } catch (err) {
      if (!stopped) showError(err.message);
      return;
    }
    timer = setTimeout(refresh, LIST_REFRESH_MS);
  }
  refresh();
}

// The Compare button says how many jobs are ticked, and waits for two.
function showSelection() {
  const button = document.getElementById("compare");
  if (!button) return;
  button.textContent = selected.size ? `Compare (${selected.size})` : "Compare";
  button.disabled = selected.size < 2;
  document.getElementById("compare-clear").hidden = !selected.size;
}

const tagList = tags => (tags || []).map(t => `<span class="tag">${esc(t)}</span>`).join(" ");

function renderList(jobs) {
  const box = document.getElementById("jobs");
  if (!box) return;
  if (!jobs.length) { box.innerHTML = `<p class="muted">No jobs yet. Submit one with <code>fitq submit SPEC --data FILE</code>.</p>`; return; }
  const rows = jobs.map(j => {
    const m = j.metrics || {}, p = {...j.progress, status: j.status};
    return `<tr class="job-row" data-job="${esc(j.id)}">
      <td><input type="checkbox" class="pick" aria-label="compare ${esc(j.name || j.id)}" ${selected.has(j.id) ? "checked" : ""}></td>
      <td><a href="#/jobs/${esc(j.id)}">${esc(j.name || j.id.slice(0, 12))}</a> ${tagList(j.tags)}<div class="muted" style="font-size:.8rem">${esc(j.id)}</div></td>
      <td>${badge(j.status, j.phase)}</td>
      <td>${progressBar(p)} <span class="muted">${j.progress.epoch}/${j.progress.epochs}</span></td>
      <td class="num">${num(m.loss)}</td><td class="num">${num(m.accuracy)}</td>
      <td class="num">${num(m.val_loss)}</td><td class="num">${num(m.val_accuracy)}</td>
      <td class="muted">${esc(when(j.created_at))}</td></tr>`;
  }).join("");
  box.innerHTML = `<table><thead><tr><th></th><th>job</th><th>status</th><th>progress</th><th>loss</th>
    <th>accuracy</th><th>val loss</th><th>val accuracy</th><th>created</th></tr></thead><tbody>${rows}</tbody></table>`;
  for (const tr of box.querySelectorAll("tr.job-row")) {
    tr.addEventListener("click", () => { location.hash = `#/jobs/${tr.dataset.job}`; });
    const pick = tr.querySelector("input.pick");
    pick.addEventListener("click", ev => ev.stopPropagation());  // ticks, does not open the job
    pick.addEventListener("change", () => {
      if (pick.checked) selected.add(tr.dataset.job); else selected.delete(tr.dataset.job);
      showSelection();
    });
  }
}

// -- a job ---------------------------------------------------------------------------------

async function jobPage(jobId) {
  let job;
  try { job = await (await api(`/v1/jobs/${jobId}`)).json(); } catch (err) { showError(err.message); return; }
  const state = {status: job.status, phase: job.phase, progress: {...job.progress, status: job.status}, history: [], epochs: 0};
  view.innerHTML = `
    <div class="panel">
      <div class="job-head">
        <h1>${esc(job.name || "job")}</h1><span class="muted">${esc(job.id)}</span>
        <span id="status">${badge(job.status, job.phase)}</span>
        <div class="actions">
          <button id="cancel" class="danger">Cancel</button>
          <button id="download">Download model</button>
        </div>
      </div>
      <div style="margin-top:.9rem">${progressBar(state.progress, true)}</div>
      <div class="facts">
        <div><span>epoch</span><b id="f-epoch"></b></div>
        <div><span>step</span><b id="f-step"></b></div>
        <div><span>eta</span><b id="f-eta">–</b></div>
        <div><span>attempt</span><b id="f-attempt">${job.attempt}/${job.max_attempts}</b></div>
        <div><span>device</span><b id="f-device">${esc(job.device || "–")}</b></div>
        <div><span>dataset</span><b>${esc(job.dataset_id)}</b></div>
        <div><span>pack</span><b id="f-pack">${packText(job.pack)}</b></div>
        ${job.sweep_id ? `<div><span>sweep</span><b><a id="f-sweep" href="#/sweeps/${esc(job.sweep_id)}">${esc(job.sweep_id.slice(0, 12))}</a></b></div>` : ""}
        ${(job.tags || []).length ? `<div><span>tags</span><b id="f-tags">${tagList(job.tags)}</b></div>` : ""}
      </div>
      <p id="job-error" class="error">${esc(job.error || "")}</p>
    </div>
    <div class="charts">
      <div class="panel"><canvas id="loss-chart" data-points="0"></canvas></div>
      <div class="panel"><canvas id="accuracy-chart" data-points="0"></canvas></div>
    </div>
    <div class="grid2">
      <div class="panel"><h3 style="margin-top:0">Status history</h3><ol class="history" id="history"></ol>
        <h3>Test metrics</h3><div id="test-metrics" class="muted">${job.test_metrics ? "" : "none yet"}</div></div>
      <div class="panel"><h3 style="margin-top:0">Spec</h3><pre id="spec">${esc(JSON.stringify(job.spec, null, 2))}</pre></div>
    </div>`;
  const named = ((job.spec.compile || {}).metrics || []).find(m => typeof m === "string");
  const accuracyKey = Object.keys(job.metrics || {}).find(k => !k.startsWith("val_") && k !== "loss") || named || "accuracy";
  const lossChart = new LineChart(document.getElementById("loss-chart"), "loss", [
    {key: "loss", label: "train", color: "#2563eb"}, {key: "val_loss", label: "validation", color: "#dc2626", dash: true}]);
  const accChart = new LineChart(document.getElementById("accuracy-chart"), accuracyKey, [
    {key: accuracyKey, label: "train", color: "#15803d"}, {key: `val_${accuracyKey}`, label: "validation", color: "#d97706", dash: true}]);

  const cancelButton = document.getElementById("cancel");
  const downloadButton = document.getElementById("download");
  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    try { await api(`/v1/jobs/${jobId}/cancel`, {method: "POST"}); } catch (err) { alert(err.message); cancelButton.disabled = false; }
  });
  downloadButton.addEventListener("click", async () => {
    try {
      const blob = await (await api(`/v1/jobs/${jobId}/model`)).blob();
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob); a.download = `${job.name || job.id}.safetensors`;
      document.body.appendChild(a); a.click(); a.remove();
    } catch (err) { alert(err.message); }
  });

  function render() {
    document.getElementById("status").innerHTML = badge(state.status, state.phase);
    const p = state.progress;
    document.querySelector(".bar.wide > span").style.width = `${(fraction(p) * 100).toFixed(1)}%`;
    document.getElementById("f-epoch").textContent = `${p.epoch}/${p.epochs}`;
    document.getElementById("f-step").textContent = p.steps ? `${p.step}/${p.steps}` : "–";
    if (p.attempt != null) document.getElementById("f-attempt").textContent = `${p.attempt}/${job.max_attempts}`;
    if (p.device) document.getElementById("f-device").textContent = p.device;
    document.getElementById("f-eta").textContent = p.eta_seconds != null && state.status === "running" ? `${Math.round(p.eta_seconds)} s` : "–";
    cancelButton.disabled = TERMINAL.includes(state.status);
    downloadButton.disabled = state.status !== "succeeded";
    document.getElementById("history").innerHTML = state.history.map(h =>
      `<li>${badge(h.status)} <span class="muted">${esc(when(h.at))}${h.attempt ? ` · attempt ${h.attempt}` : ""}</span>${h.error ? ` <span class="error">${esc(h.error)}</span>` : ""}</li>`).join("");
  }

  function onEvent(event) {
    const d = event.data;
    if (event.kind === "progress") {
      state.status = d.status; state.phase = d.phase; state.progress = {...d};
    } else if (event.kind === "epoch") {
      state.epochs += 1;
      lossChart.add(d.epoch, d); accChart.add(d.epoch, d);
    } else if (event.kind === "phase") {
      state.phase = d.phase;
    } else if (event.kind === "status") {
      state.history.push(d); state.status = d.status;
      refreshPack();
      state.progress = {...state.progress, status: d.status};
      if (d.error) document.getElementById("job-error").textContent = d.error;
      if (d.test_metrics) {
        document.getElementById("test-metrics").innerHTML = Object.entries(d.test_metrics)
          .map(([k, v]) => `${esc(k)} <b>${num(v)}</b>`).join(" · ");
      }
    } else if (event.kind === "error") {
      document.getElementById("job-error").textContent = d.detail;
    }
    render();
  }

  // The pack is set when a worker claims the job: read it again at each status change.
  async function refreshPack() {
    try {
      const fresh = await (await api(`/v1/jobs/${jobId}`)).json();
      document.getElementById("f-pack").textContent = packText(fresh.pack);
    } catch (_) { /* the next status change tries again */ }
  }

  render();
  const stop = followEvents(jobId, onEvent, () => TERMINAL.includes(state.status));
  leave = stop;
}

// -- routing -----------------------------------------------------------------------------

function route() {
  leave(); leave = () => {};
  showKeyState();
  if (!apiKey()) { needKey(); return; }
  const job = location.hash.match(/^#\/jobs\/([A-Za-z0-9_-]+)$/);
  const sweep = location.hash.match(/^#\/sweeps\/([A-Za-z0-9_-]+)$/);
  const compare = location.hash.match(/^#\/compare\/([A-Za-z0-9_,-]+)$/);
  if (job) jobPage(job[1]);
  else if (sweep) sweepPage(sweep[1]);
  else if (compare) comparePage(compare[1].split(",").filter(Boolean));
  else listPage();
}

window.addEventListener("hashchange", route);
route();
