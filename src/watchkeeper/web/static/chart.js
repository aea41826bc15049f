// watchkeeper's own small line chart on a canvas: a few series over time, gaps where a
// value is unknown, a light grid, no animation. Drawing 720 points costs well under a
// millisecond, and it only happens when a sample arrives or the canvas changes size.
// Live, it shows the in-memory ring as samples arrive; given a stored range
// (showHistory), it shows that range's buckets instead, with a min-max band where the
// range has one, and leaves a bucket with nothing stored (null) as a gap in the line.
(function () {
  "use strict";

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  class LineChart {
    // options: {series: [{key, label, color: "--c1"}], format(value) -> text,
    //           fixedMax: number | null, window: seconds shown, legend: element}
    constructor(canvas, options) {
      this.canvas = canvas;
      this.ctx = canvas.getContext("2d");
      this.series = options.series;
      this.format = options.format || String;
      this.fixedMax = options.fixedMax || null;
      this.window = options.window || 3600;
      this.ts = [];
      this.values = {};
      for (const s of this.series) this.values[s.key] = [];
      this.limit = options.limit || 720;
      this.history = null;
      this.draws = 0;
      this.pending = false;
      if (options.legend) this.legend(options.legend);
      if (window.ResizeObserver) {
        new ResizeObserver(() => this.schedule()).observe(canvas);
      }
    }

    legend(element) {
      element.replaceChildren();
      for (const s of this.series) {
        const item = document.createElement("span");
        const swatch = document.createElement("i");
        swatch.dataset.color = s.color;
        swatch.style.background = cssVar(s.color);
        item.append(swatch, document.createTextNode(s.label));
        element.append(item);
      }
      this.legendElement = element;
    }

    recolor() {
      if (!this.legendElement) return;
      for (const swatch of this.legendElement.querySelectorAll("i")) {
        swatch.style.background = cssVar(swatch.dataset.color);
      }
      this.schedule();
    }

    // Replace everything: ts is an array of unix seconds, columns maps key -> values.
    load(ts, columns) {
      this.ts = ts.slice(-this.limit);
      for (const s of this.series) {
        this.values[s.key] = (columns[s.key] || []).slice(-this.limit);
      }
      this.schedule();
    }

    push(point) {
      if (point.ts == null) return;
      this.ts.push(point.ts);
      for (const s of this.series) this.values[s.key].push(point[s.key]);
      if (this.ts.length > this.limit) {
        this.ts.shift();
        for (const s of this.series) this.values[s.key].shift();
      }
      this.schedule();
    }

    // A stored range: {start, end, step, ts: [bucket starts], series: {key: {avg, min, max}}}.
    // Live samples still arrive (push) but are not drawn until live() is called.
    showHistory(range, label) {
      this.history = Object.assign({ label }, range);
      this.schedule();
    }

    live() {
      this.history = null;
      this.schedule();
    }

    peak() {
      let max = 0;
      const columns = [];
      for (const s of this.series) {
        if (!this.history) { columns.push(this.values[s.key]); continue; }
        const got = this.history.series[s.key];
        if (got) columns.push(got.avg, got.max || []);
      }
      for (const values of columns) {
        for (const v of values) if (v != null && v > max) max = v;
      }
      return max;
    }

    // What is drawn: times and, per series, {avg, min, max} (min/max may be null).
    view() {
      if (!this.history) {
        const end = this.ts.length ? this.ts[this.ts.length - 1] : Date.now() / 1000;
        // Show what there is: at least two minutes, at most the configured window.
        const span = this.ts.length ? end - this.ts[0] : 0;
        const shown = Math.max(120, Math.min(this.window, span));
        const columns = {};
        for (const s of this.series) columns[s.key] = { avg: this.values[s.key] };
        return { start: end - shown, end, ts: this.ts, columns, label: `−${Math.round(shown / 60)} min` };
      }
      const h = this.history;
      const half = h.step / 2;  // a bucket's value sits at its middle
      const columns = {};
      for (const s of this.series) columns[s.key] = h.series[s.key] || { avg: [] };
      return { start: h.start, end: h.end, ts: h.ts.map((t) => t + half), columns, label: `−${h.label}` };
    }

    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        if (!document.hidden) this.draw();
      });
    }

    draw() {
      const canvas = this.canvas;
      const ratio = window.devicePixelRatio || 1;
      const width = canvas.clientWidth;
      const height = canvas.clientHeight;
      if (!width || !height) return;
      if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
        canvas.width = Math.round(width * ratio);
        canvas.height = Math.round(height * ratio);
      }
      const ctx = this.ctx;
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);
      ctx.font = "11px system-ui, sans-serif";
      const labelWidth = ctx.measureText(this.format(this.fixedMax || niceMax(this.peak()))).width;
      const pad = { left: Math.ceil(labelWidth) + 10, right: 6, top: 8, bottom: 18 };
      const plotW = width - pad.left - pad.right;
      const plotH = height - pad.top - pad.bottom;
      const muted = cssVar("--muted");
      const line = cssVar("--line");
      const view = this.view();
      const start = view.start;
      const shown = Math.max(1, view.end - view.start);

      const max = this.fixedMax || niceMax(this.peak());
      ctx.fillStyle = muted;
      ctx.strokeStyle = line;
      ctx.lineWidth = 1;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (let i = 0; i <= 2; i++) {
        const y = Math.round(pad.top + plotH * (i / 2)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(pad.left, y);
        ctx.lineTo(width - pad.right, y);
        ctx.stroke();
        ctx.fillText(this.format(max * (1 - i / 2)), pad.left - 6, y);
      }
      ctx.textBaseline = "alphabetic";
      ctx.textAlign = "left";
      ctx.fillText(view.label, pad.left, height - 4);
      ctx.textAlign = "right";
      ctx.fillText("now", width - pad.right, height - 4);

      const x = (t) => pad.left + ((t - start) / shown) * plotW;
      const y = (v) => pad.top + plotH - (Math.min(v, max) / max) * plotH;
      ctx.lineJoin = "round";
      const segments = {};
      for (const s of this.series) {
        const column = view.columns[s.key];
        const color = cssVar(s.color);
        if (column.min && column.max) this.band(view.ts, column.min, column.max, start, x, y, color);
        segments[s.key] = this.line(view.ts, column.avg, start, x, y, color);
      }
      // What a test (or a curious person) can read back: which range, how many buckets,
      // and how many separate pieces each line was drawn in (a gap splits a line).
      canvas.dataset.range = this.history ? this.history.label : "live";
      canvas.dataset.points = String(view.ts.length);
      canvas.dataset.segments = JSON.stringify(segments);
      this.draws += 1;
      canvas.dataset.draws = String(this.draws);
    }

    // One series' line, broken wherever a value is null; returns the pieces drawn.
    line(ts, values, start, x, y, color) {
      const ctx = this.ctx;
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.8;
      ctx.beginPath();
      let drawing = false;
      let pieces = 0;
      for (let i = 0; i < ts.length; i++) {
        const t = ts[i];
        const v = values[i];
        if (v == null || t < start) { drawing = false; continue; }
        if (drawing) ctx.lineTo(x(t), y(v));
        else { ctx.moveTo(x(t), y(v)); drawing = true; pieces += 1; }
      }
      ctx.stroke();
      return pieces;
    }

    // The min-max band under a line, one closed shape per run of known buckets.
    band(ts, low, high, start, x, y, color) {
      const ctx = this.ctx;
      ctx.save();
      ctx.fillStyle = color;
      ctx.globalAlpha = 0.16;
      let run = [];
      const flush = () => {
        if (run.length) {
          ctx.beginPath();
          run.forEach((i, n) => (n ? ctx.lineTo(x(ts[i]), y(high[i])) : ctx.moveTo(x(ts[i]), y(high[i]))));
          for (let n = run.length - 1; n >= 0; n--) ctx.lineTo(x(ts[run[n]]), y(low[run[n]]));
          ctx.closePath();
          ctx.fill();
        }
        run = [];
      };
      for (let i = 0; i < ts.length; i++) {
        if (low[i] == null || high[i] == null || ts[i] < start) flush();
        else run.push(i);
      }
      flush();
      ctx.restore();
    }
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (value <= step * exp) return step * exp;
    }
    return 10 * exp;
  }

  window.WKChart = { LineChart };
})();
