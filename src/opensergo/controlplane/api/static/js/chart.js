// Small SVG line charts: fixed time axis (the last N seconds), nulls break the line.

import { h, svg, fmtNum } from "./dom.js";

const W = 320;
const H = 130;
const PAD = { left: 38, right: 8, top: 8, bottom: 18 };
const DASHES = ["", "5 3", "2 2", "8 3 2 3"];

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export class LineChart {
  // series: [{key, label, color, unit}]; marks: {key, href(point), label(point)} draws a link on
  // every point where that series is above zero (block events -> the blocked traces).
  constructor(title, series, { unit = "", step = false, marks = null } = {}) {
    this.series = series;
    this.unit = unit;
    this.step = step;
    this.marks = marks;
    this.markGroup = svg("g", { class: "marks" });
    this.svg = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
    this.grid = svg("g");
    this.lines = series.map((s, i) => svg("path", {
      class: "line", stroke: s.color, "stroke-dasharray": DASHES[i % DASHES.length] || null, "data-series": s.key,
    }));
    this.svg.append(this.grid, ...this.lines, this.markGroup);
    this.values = series.map(() => h("strong", {}, "–"));
    this.legend = h("div", { class: "legend" }, series.map((s, i) => h("span", {},
      h("span", { class: "swatch", style: `background:${s.color}` }), `${s.label} `, this.values[i])));
    this.title = title;
    this.el = h("figure", { class: "chart", style: "margin:0" }, h("h4", {}, title), this.svg, this.legend);
  }

  // points: [{t, <key>: number|null}], start/end: seconds (end exclusive)
  update(points, start, end) {
    let max = 0;
    for (const p of points) for (const s of this.series) {
      const v = p[s.key];
      if (v !== null && v !== undefined && v > max) max = v;
    }
    const top = niceMax(max);
    const span = Math.max(1, end - start - 1);
    const x = (t) => PAD.left + ((t - start) / span) * (W - PAD.left - PAD.right);
    const y = (v) => PAD.top + (1 - v / top) * (H - PAD.top - PAD.bottom);
    this.grid.replaceChildren();
    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4;
      const yy = y(v);
      this.grid.append(svg("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: yy, y2: yy }));
      const label = svg("text", { class: "axis", x: PAD.left - 4, y: yy + 3, "text-anchor": "end" });
      label.textContent = fmtNum(v, top < 10 ? 2 : 1);
      this.grid.append(label);
    }
    const spanText = span >= 7200 ? `-${Math.round((end - start) / 3600)}h` : span >= 120 ? `-${Math.round((end - start) / 60)}min` : `-${end - start}s`;
    for (const [t, anchor, text] of [[start, "start", spanText], [end - 1, "end", "now"]]) {
      const label = svg("text", { class: "axis", x: x(t), y: H - 4, "text-anchor": anchor });
      label.textContent = text;
      this.grid.append(label);
    }
    const summary = [];
    this.series.forEach((s, i) => {
      let d = "";
      let pen = false;
      let last = null;
      let prevY = null;
      for (const p of points) {
        const v = p[s.key];
        if (v === null || v === undefined) { pen = false; continue; }
        const px = x(p.t).toFixed(1);
        const py = y(v).toFixed(1);
        if (this.step && pen && prevY !== null) d += `L${px},${prevY}`;
        d += `${pen ? "L" : "M"}${px},${py}`;
        pen = true;
        prevY = py;
        last = v;
      }
      this.lines[i].setAttribute("d", d);
      this.values[i].textContent = last === null ? "–" : `${fmtNum(last, 2)}${s.unit || this.unit}`;
      summary.push(`${s.label} ${last === null ? "no data" : fmtNum(last, 2) + (s.unit || this.unit)}`);
    });
    this.markGroup.replaceChildren();
    if (this.marks) {
      const key = this.marks.key;
      for (const p of points) {
        const v = p[key];
        if (!(v > 0)) continue;
        const link = svg("a", { class: "block-mark", href: this.marks.href(p), "data-t": p.t });
        const title = svg("title");
        title.textContent = this.marks.label(p);
        link.append(title, svg("circle", { cx: x(p.t).toFixed(1), cy: y(v).toFixed(1), r: 3.5 }));
        this.markGroup.append(link);
      }
    }
    this.svg.setAttribute("aria-label", `${this.title}, last ${spanText.slice(1)}; latest: ${summary.join(", ")}`);
  }
}
