/* plot.js: a tiny canvas plotter for the dashboard (lines, dots, horizontal reference
   lines, categorical y axes, bars). No dependencies; sized to the canvas's CSS box. */
"use strict";

const Plot = (() => {
  const PAD = { left: 52, right: 12, top: 22, bottom: 30 };
  const FONT = "12px system-ui, sans-serif";
  const INK = "#2b3440", GRID = "#e3e7ec", MUTED = "#7a8592";

  function setup(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600, h = canvas.clientHeight || 240;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;
    return { ctx, w, h };
  }

  /* about n "nice" tick values covering [lo, hi] */
  function ticks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
    const out = [];
    for (let k = Math.ceil(lo / step); k * step <= hi + step * 1e-9; k++) out.push(+(k * step).toPrecision(12));
    return out;
  }

  function fmt(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) return v.toExponential(1);
    return +v.toPrecision(3) + "";
  }

  function range(values, lo, hi) {
    let a = lo, b = hi;
    if (a === undefined) a = Math.min(...values);
    if (b === undefined) b = Math.max(...values);
    if (!isFinite(a) || !isFinite(b)) return [0, 1];
    if (a === b) { a -= 0.5; b += 0.5; }
    return [a, b];
  }

  function message(canvas, text) {
    const { ctx, w, h } = setup(canvas);
    ctx.fillStyle = MUTED;
    ctx.textAlign = "center";
    ctx.fillText(text, w / 2, h / 2);
  }

  /* spec: {series: [{label, color, points: [[x, y]], style: "line"|"dots"}],
            hlines: [{y, label, color}], xfmt, yfmt, ycats: [names], xlabel, ylabel,
            xmin, xmax, ymin, ymax, empty} */
  function lines(canvas, spec) {
    const series = (spec.series || []).filter(s => s.points && s.points.length);
    if (!series.length) return message(canvas, spec.empty || "no data");
    const xs = series.flatMap(s => s.points.map(p => p[0]));
    const ys = series.flatMap(s => s.points.map(p => p[1])).concat((spec.hlines || []).map(l => l.y));
    const cats = spec.ycats;
    const [x0, x1] = range(xs, spec.xmin, spec.xmax);
    let [y0, y1] = cats ? [-0.5, cats.length - 0.5] : range(ys, spec.ymin, spec.ymax);
    if (!cats) { const m = (y1 - y0) * 0.06; y0 -= m; y1 += m; }
    const { ctx, w, h } = setup(canvas);
    const pw = w - PAD.left - PAD.right, ph = h - PAD.top - PAD.bottom;
    const X = x => PAD.left + (x - x0) / (x1 - x0) * pw;
    const Y = y => PAD.top + ph - (y - y0) / (y1 - y0) * ph;
    const xfmt = spec.xfmt || fmt, yfmt = spec.yfmt || fmt;

    ctx.strokeStyle = GRID; ctx.fillStyle = MUTED; ctx.lineWidth = 1;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    const yt = cats ? cats.map((_, i) => i) : ticks(y0, y1, 5);
    for (const v of yt) {
      ctx.beginPath(); ctx.moveTo(PAD.left, Y(v)); ctx.lineTo(w - PAD.right, Y(v)); ctx.stroke();
      ctx.fillText(cats ? String(cats[v]).slice(0, 7) : yfmt(v), PAD.left - 5, Y(v));
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (const v of ticks(x0, x1, Math.max(2, Math.floor(pw / 90)))) {
      ctx.beginPath(); ctx.moveTo(X(v), PAD.top); ctx.lineTo(X(v), PAD.top + ph); ctx.stroke();
      ctx.fillText(xfmt(v), X(v), PAD.top + ph + 6);
    }
    ctx.strokeStyle = INK;
    ctx.strokeRect(PAD.left, PAD.top, pw, ph);

    ctx.save();
    ctx.beginPath(); ctx.rect(PAD.left, PAD.top, pw, ph); ctx.clip();
    for (const l of spec.hlines || []) {
      ctx.strokeStyle = l.color || "#c0392b"; ctx.setLineDash([6, 4]); ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(PAD.left, Y(l.y)); ctx.lineTo(w - PAD.right, Y(l.y)); ctx.stroke();
      ctx.setLineDash([]);
    }
    for (const s of series) {
      ctx.strokeStyle = ctx.fillStyle = s.color || INK;
      if (s.style === "dots") {
        for (const [x, y, c] of s.points) {
          ctx.fillStyle = c || s.color || INK;
          ctx.beginPath(); ctx.arc(X(x), Y(y), 3, 0, 2 * Math.PI); ctx.fill();
        }
      } else {
        ctx.lineWidth = 2; ctx.beginPath();
        s.points.forEach(([x, y], i) => i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y)));
        ctx.stroke();
      }
    }
    ctx.restore();

    /* legend (series and reference lines) along the top */
    ctx.textAlign = "left"; ctx.textBaseline = "middle";
    let lx = PAD.left;
    const items = series.map(s => [s.label, s.color || INK, false])
      .concat((spec.hlines || []).map(l => [l.label, l.color || "#c0392b", true]));
    for (const [label, color, dashed] of items) {
      if (!label) continue;
      ctx.strokeStyle = ctx.fillStyle = color; ctx.lineWidth = 2;
      ctx.setLineDash(dashed ? [4, 3] : []);
      ctx.beginPath(); ctx.moveTo(lx, 10); ctx.lineTo(lx + 16, 10); ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = INK; ctx.fillText(label, lx + 20, 10);
      lx += 30 + ctx.measureText(label).width;
    }
    if (spec.xlabel) {
      ctx.fillStyle = MUTED; ctx.textAlign = "right"; ctx.textBaseline = "bottom";
      ctx.fillText(spec.xlabel, w - PAD.right, h - 1);
    }
  }

  /* spec: {bars: [{label, value, color}], empty} */
  function bars(canvas, spec) {
    const items = spec.bars || [];
    if (!items.length) return message(canvas, spec.empty || "no data");
    const { ctx, w, h } = setup(canvas);
    const pw = w - PAD.left - PAD.right, ph = h - PAD.top - PAD.bottom;
    const top = Math.max(...items.map(b => b.value), 1);
    const yt = ticks(0, top, 4);
    const y1 = Math.max(top, yt[yt.length - 1]);
    const Y = v => PAD.top + ph - v / y1 * ph;
    ctx.strokeStyle = GRID; ctx.fillStyle = MUTED; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const v of yt) {
      ctx.beginPath(); ctx.moveTo(PAD.left, Y(v)); ctx.lineTo(w - PAD.right, Y(v)); ctx.stroke();
      ctx.fillText(fmt(v), PAD.left - 5, Y(v));
    }
    const slot = pw / items.length, bw = Math.min(48, slot * 0.7);
    ctx.textAlign = "center";
    items.forEach((b, i) => {
      const cx = PAD.left + slot * (i + 0.5);
      ctx.fillStyle = b.color || "#3b7dd8";
      ctx.fillRect(cx - bw / 2, Y(b.value), bw, PAD.top + ph - Y(b.value));
      ctx.fillStyle = INK; ctx.textBaseline = "top";
      ctx.fillText(String(b.label).slice(0, 10), cx, PAD.top + ph + 6);
      ctx.textBaseline = "bottom";
      ctx.fillText(String(b.value), cx, Y(b.value) - 2);
    });
    ctx.strokeStyle = INK;
    ctx.strokeRect(PAD.left, PAD.top, pw, ph);
  }

  return { lines, bars, message, ticks, fmt };
})();
