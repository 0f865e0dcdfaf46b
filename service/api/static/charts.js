// Line charts on a <canvas>, hand-written (no library): epochs on x, one line per series.
"use strict";

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
    const c = this.canvas, ratio = window.devicePixelRatio || 1;
    const w = c.clientWidth || 500, h = c.clientHeight || 280;
    c.width = w * ratio; c.height = h * ratio;
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const pad = {l: 52, r: 16, t: 30, b: 34};
    const all = this.series.flatMap(s => this.points[s.key]);
    g.font = "600 13px system-ui, sans-serif"; g.fillStyle = "#1d2330";
    g.fillText(this.title, pad.l, 18);
    if (!all.length) {
      g.font = "13px system-ui, sans-serif"; g.fillStyle = "#6b7280";
      g.fillText("waiting for the first epoch…", pad.l, h / 2);
      return;
    }
    const maxX = Math.max(2, ...all.map(p => p[0]));
    let lo = Math.min(...all.map(p => p[1])), hi = Math.max(...all.map(p => p[1]));
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const span = hi - lo; lo -= span * 0.05; hi += span * 0.05;
    const x = e => pad.l + (e - 1) / (maxX - 1) * (w - pad.l - pad.r);
    const y = v => pad.t + (hi - v) / (hi - lo) * (h - pad.t - pad.b);
    // grid and axes
    g.font = "11px system-ui, sans-serif"; g.strokeStyle = "#e3e6eb"; g.fillStyle = "#6b7280";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4, yy = y(v);
      g.beginPath(); g.moveTo(pad.l, yy); g.lineTo(w - pad.r, yy); g.stroke();
      g.fillText(v.toFixed(3), 6, yy + 4);
    }
    const step = Math.max(1, Math.ceil(maxX / 10));
    for (let e = 1; e <= maxX; e += step) g.fillText(String(e), x(e) - 3, h - pad.b + 16);
    g.fillText("epoch", w - pad.r - 34, h - 4);
    // lines
    let legendX = pad.l + g.measureText(this.title).width + 90;
    for (const s of this.series) {
      const pts = this.points[s.key];
      g.strokeStyle = s.color; g.fillStyle = s.color; g.lineWidth = 2;
      g.setLineDash(s.dash ? [6, 4] : []);
      g.beginPath();
      pts.forEach(([e, v], i) => (i ? g.lineTo(x(e), y(v)) : g.moveTo(x(e), y(v))));
      g.stroke(); g.setLineDash([]);
      for (const [e, v] of pts) { g.beginPath(); g.arc(x(e), y(v), 2.5, 0, 7); g.fill(); }
      if (pts.length) {
        g.fillRect(legendX, 9, 14, 3);
        g.fillStyle = "#1d2330"; g.fillText(s.label, legendX + 18, 14);
        legendX += g.measureText(s.label).width + 40;
      }
    }
  }
}

window.LineChart = LineChart;
