// watchkeeper's own small line chart on a canvas: a few series over time, gaps where a
// value is unknown, a light grid, no animation. Drawing 720 points costs well under a
// millisecond, and it only happens when a sample arrives or the canvas changes size.
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

    peak() {
      let max = 0;
      for (const s of this.series) {
        for (const v of this.values[s.key]) if (v != null && v > max) max = v;
      }
      return max;
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
      const end = this.ts.length ? this.ts[this.ts.length - 1] : Date.now() / 1000;
      // Show what there is: at least two minutes, at most the configured window.
      const span = this.ts.length ? end - this.ts[0] : 0;
      const shown = Math.max(120, Math.min(this.window, span));
      const start = end - shown;

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
      ctx.fillText(`−${Math.round(shown / 60)} min`, pad.left, height - 4);
      ctx.textAlign = "right";
      ctx.fillText("now", width - pad.right, height - 4);

      const x = (t) => pad.left + ((t - start) / shown) * plotW;
      const y = (v) => pad.top + plotH - (Math.min(v, max) / max) * plotH;
      ctx.lineJoin = "round";
      for (const s of this.series) {
        const values = this.values[s.key];
        ctx.strokeStyle = cssVar(s.color);
        ctx.lineWidth = 1.8;
        ctx.beginPath();
        let drawing = false;
        for (let i = 0; i < this.ts.length; i++) {
          const t = this.ts[i];
          const v = values[i];
          if (v == null || t < start) { drawing = false; continue; }
          if (drawing) ctx.lineTo(x(t), y(v));
          else { ctx.moveTo(x(t), y(v)); drawing = true; }
        }
        ctx.stroke();
      }
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
