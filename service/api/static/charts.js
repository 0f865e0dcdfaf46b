// Charts on a <canvas>, hand-written (no library): line charts over epochs
// (LineChart: a few fixed series; CurvesChart: one line per trial of a
// sweep) and a scatter of values against a parameter (ScatterChart).
"use strict";

const CHART_PAD = {l: 52, r: 16, t: 30, b: 34};
const INK = "#1d2330", MUTED = "#6b7280", GRID = "#e3e6eb";

// Sizes the canvas to its box and returns its context and size.
function chartContext(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 500, h = canvas.clientHeight || 280;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  return {g, w, h};
}

function chartTitle(g, title) {
  g.font = "600 13px system-ui, sans-serif"; g.fillStyle = INK;
  g.fillText(title, CHART_PAD.l, 18);
}

function chartEmpty(g, h, text) {
  g.font = "13px system-ui, sans-serif"; g.fillStyle = MUTED;
  g.fillText(text, CHART_PAD.l, h / 2);
}

// A padded value range that never collapses to a point.
function valueRange(values) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const span = hi - lo;
  return [lo - span * 0.05, hi + span * 0.05];
}

// Horizontal grid lines with their values; returns the y mapping.
function valueAxis(g, w, h, lo, hi) {
  const y = v => CHART_PAD.t + (hi - v) / (hi - lo) * (h - CHART_PAD.t - CHART_PAD.b);
  g.font = "11px system-ui, sans-serif"; g.strokeStyle = GRID; g.fillStyle = MUTED; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4, yy = y(v);
    g.beginPath(); g.moveTo(CHART_PAD.l, yy); g.lineTo(w - CHART_PAD.r, yy); g.stroke();
    g.fillText(v.toFixed(3), 6, yy + 4);
  }
  return y;
}

// Epochs 1..maxX along the bottom; returns the x mapping.
function epochAxis(g, w, h, maxX) {
  const x = e => CHART_PAD.l + (e - 1) / (maxX - 1) * (w - CHART_PAD.l - CHART_PAD.r);
  const step = Math.max(1, Math.ceil(maxX / 10));
  for (let e = 1; e <= maxX; e += step) g.fillText(String(e), x(e) - 3, h - CHART_PAD.b + 16);
  g.fillText("epoch", w - CHART_PAD.r - 34, h - 4);
  return x;
}

function polyline(g, pts, x, y, color, width, dash) {
  g.strokeStyle = color; g.fillStyle = color; g.lineWidth = width;
  g.setLineDash(dash ? [6, 4] : []);
  g.beginPath();
  pts.forEach(([e, v], i) => (i ? g.lineTo(x(e), y(v)) : g.moveTo(x(e), y(v))));
  g.stroke(); g.setLineDash([]);
}

class LineChart {
  constructor(canvas, title, series) {
    this.canvas = canvas;
    this.title = title;
    this.series = series; // [{key, label, color, dash}]
    this.points = {};     // key -> [[epoch, value], ...]
    for (const s of series) this.points[s.key] = [];
    this.draw();
  }

  add(epoch, values) {
    for (const s of this.series) {
      const v = values[s.key];
      if (typeof v === "number" && isFinite(v)) this.points[s.key].push([epoch, v]);
    }
    this.canvas.dataset.points = String(this.points[this.series[0].key].length);
    this.draw();
  }

  draw() {
    const {g, w, h} = chartContext(this.canvas);
    chartTitle(g, this.title);
    const all = this.series.flatMap(s => this.points[s.key]);
    if (!all.length) { chartEmpty(g, h, "waiting for the first epoch…"); return; }
    const [lo, hi] = valueRange(all.map(p => p[1]));
    const y = valueAxis(g, w, h, lo, hi);
    const x = epochAxis(g, w, h, Math.max(2, ...all.map(p => p[0])));
    let legendX = CHART_PAD.l + g.measureText(this.title).width + 90;
    for (const s of this.series) {
      const pts = this.points[s.key];
      polyline(g, pts, x, y, s.color, 2, s.dash);
      for (const [e, v] of pts) { g.beginPath(); g.arc(x(e), y(v), 2.5, 0, 7); g.fill(); }
      if (pts.length) {
        g.fillRect(legendX, 9, 14, 3);
        g.fillStyle = INK; g.fillText(s.label, legendX + 18, 14);
        legendX += g.measureText(s.label).width + 40;
      }
    }
  }
}

// A color per trial number, spread around the hue circle.
const trialColor = n => `hsl(${(n * 137.5) % 360}, 65%, 45%)`;

// One line per trial: its metric at each epoch. The best trial is drawn last
// and thick; pruned trials are dashed. data-lines counts the lines drawn.
class CurvesChart {
  constructor(canvas, title) {
    this.canvas = canvas;
    this.title = title;
    this.curves = new Map(); // job id -> {number, points: [[epoch, value]], pruned}
    this.best = null;
    this.draw();
  }

  set(jobId, number, points, pruned) {
    this.curves.set(jobId, {number, points, pruned});
  }

  draw() {
    const {g, w, h} = chartContext(this.canvas);
    chartTitle(g, this.title);
    const lines = [...this.curves.entries()].filter(([, c]) => c.points.length);
    this.canvas.dataset.lines = String(lines.length);
    const all = lines.flatMap(([, c]) => c.points);
    if (!all.length) { chartEmpty(g, h, "waiting for the first epoch…"); return; }
    const [lo, hi] = valueRange(all.map(p => p[1]));
    const y = valueAxis(g, w, h, lo, hi);
    const x = epochAxis(g, w, h, Math.max(2, ...all.map(p => p[0])));
    lines.sort(([a], [b]) => (a === this.best) - (b === this.best));
    for (const [jobId, c] of lines) {
      const best = jobId === this.best;
      polyline(g, c.points, x, y, trialColor(c.number), best ? 3.5 : 1.5, c.pruned);
      // dots too: a trial stopped at its first epoch has a point, not a line
      for (const [e, v] of c.points) { g.beginPath(); g.arc(x(e), y(v), best ? 3.5 : 2.5, 0, 7); g.fill(); }
    }
  }
}

// Points (value of a parameter, value of the metric); a log x axis when the
// parameter's positive values span a decade or more (learning rates), and
// one column per value when the parameter is not a number (activations).
class ScatterChart {
  constructor(canvas, title, metric) {
    this.canvas = canvas;
    this.title = title;
    this.metric = metric;
    this.points = []; // [{x, y, number, best}]
  }

  draw() {
    const {g, w, h} = chartContext(this.canvas);
    chartTitle(g, this.title);
    const pts = this.points.filter(p => p.x !== undefined && typeof p.y === "number");
    this.canvas.dataset.points = String(pts.length);
    if (!pts.length) { chartEmpty(g, h, `no trial has a value of ${this.metric} yet`); return; }
    const numeric = pts.every(p => typeof p.x === "number");
    const names = numeric ? [] : [...new Set(pts.map(p => JSON.stringify(p.x)))];
    const xs = pts.map(p => (numeric ? p.x : names.indexOf(JSON.stringify(p.x))));
    const log = numeric && Math.min(...xs) > 0 && Math.max(...xs) / Math.min(...xs) >= 10;
    const fx = log ? Math.log10 : v => v;
    const [lo, hi] = valueRange(pts.map(p => p.y));
    const y = valueAxis(g, w, h, lo, hi);
    const [xlo, xhi] = numeric ? valueRange(xs.map(fx)) : [-0.5, names.length - 0.5];
    const width = w - CHART_PAD.l - CHART_PAD.r;
    const x = v => CHART_PAD.l + (fx(v) - xlo) / (xhi - xlo) * width;
    // tick labels centred on their tick, the outer ones kept inside the chart
    const tick = (text, at) => {
      const half = g.measureText(text).width / 2;
      g.fillText(text, Math.min(Math.max(at - half, CHART_PAD.l), w - CHART_PAD.r - 2 * half), h - CHART_PAD.b + 16);
    };
    if (numeric) {
      const [first, last] = [Math.min(...xs), Math.max(...xs)].map(fx);
      const ticks = first === last ? [first] : [0, 1, 2, 3, 4].map(i => first + (last - first) * i / 4);
      for (const t of ticks) tick(Number((log ? 10 ** t : t).toPrecision(2)).toString(), x(log ? 10 ** t : t));
      if (log) g.fillText("(log scale)", w - CHART_PAD.r - 60, h - 4);
    } else {
      names.forEach((name, i) => {
        const value = JSON.parse(name);
        tick(typeof value === "string" ? value : name, x(i));
      });
    }
    pts.forEach((p, i) => {
      g.fillStyle = trialColor(p.number);
      g.beginPath(); g.arc(x(xs[i]), y(p.y), p.best ? 6 : 4, 0, 7); g.fill();
      if (p.best) { g.strokeStyle = INK; g.lineWidth = 1.5; g.stroke(); }
    });
  }
}

window.LineChart = LineChart;
window.CurvesChart = CurvesChart;
window.ScatterChart = ScatterChart;
window.trialColor = trialColor;
