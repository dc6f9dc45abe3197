// Live metric charts of one app: one card per resource, refreshed every second.

import { api } from "./api.js";
import { h, fmtNum, badge } from "./dom.js";
import { LineChart } from "./chart.js";
import { tracesLink } from "./traces.js";

const LIVE = { "60": "Last minute", "300": "Last 5 minutes", "900": "Last 15 minutes", "3600": "Last hour" };
const HISTORY = { "86400": "Last 24 hours (history)", "604800": "Last 7 days (history)" };

const LIVE_KEYS = { pass: "pass", block: "block", error: "error", avgRt: "avgRt", p99Rt: "p99Rt", concurrency: "concurrency", open: "breakerOpen", half: "breakerHalfOpen" };
const HIST_KEYS = { pass: "passQps", block: "blockQps", error: "errorQps", avgRt: "avgRt", p99Rt: "p99Rt", concurrency: "concurrencyMax", open: "breakerOpenMax", half: "none" };

function makeCharts(keys, marks) {
  return [
    new LineChart("Requests per second", [
      { key: keys.pass, label: "pass", color: "#1a7f37" },
      { key: keys.block, label: "block", color: "#cf222e" },
      { key: keys.error, label: "error", color: "#9a6700" },
    ], { marks }),
    new LineChart("Response time (ms)", [
      { key: keys.avgRt, label: "avg", color: "#0969da", unit: " ms" },
      { key: keys.p99Rt, label: "p99", color: "#8250df", unit: " ms" },
    ]),
    new LineChart("Concurrency", [{ key: keys.concurrency, label: "in flight", color: "#0550ae" }]),
    new LineChart("Circuit breakers", [
      { key: keys.open, label: "open", color: "#cf222e" },
      { key: keys.half, label: "half-open", color: "#9a6700" },
    ], { step: true }),
  ];
}

function breakerBadges(breakers) {
  if (!breakers || !breakers.length) return h("span", { class: "muted" }, "no circuit breaker");
  return breakers.map((b) => {
    const i = b.instances;
    const state = i.open ? "open" : i["half-open"] ? "half-open" : "closed";
    return h("span", { style: "margin-right:.5rem" }, badge(`${b.strategy}: ${state}`, state === "closed" ? "ok" : state === "open" ? "bad" : "warn",
      `breaker ${b.strategy}: ${i.closed} closed, ${i.open} open, ${i["half-open"]} half-open`));
  });
}

export function liveMetrics(namespace, app, { initialWindow = "60", resource = null } = {}) {
  const cards = new Map();
  const list = h("div", { "data-testid": "metric-cards" });
  const status = h("p", { class: "muted", role: "status" }, "Waiting for metrics…");
  const range = h("select", { id: "metrics-range" },
    Object.entries({ ...LIVE, ...HISTORY }).map(([v, label]) => h("option", { value: v, selected: v === initialWindow }, label)));
  const el = h("section", { "aria-label": "Live metrics" },
    h("div", { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "metrics-range" }, "Range"), range),
      h("p", { class: "muted", style: "margin:0" }, "Charts refresh every second from the metrics the SDKs export over OTLP.")),
    status, list);
  let timer = null;
  let busy = false;
  let stopped = false;

  function card(name, keys) {
    let c = cards.get(name);
    if (c && c.keys === keys) return c;
    if (c) c.el.remove();
    // Each block point links to the traces blocked around that second (exports spread counts
    // over their one-second interval, so the window is a little wider).
    const step = keys === HIST_KEYS ? 60 : 1;
    const marks = {
      key: keys.block,
      href: (p) => tracesLink(namespace, app, { resource: name, blocked: true, start: p.t - 2 * step, end: p.t + 2 * step }),
      label: (p) => `${fmtNum(p[keys.block], 2)} blocked/s at ${new Date(p.t * 1000).toLocaleTimeString("en-GB", { hour12: false })}: show the blocked traces`,
    };
    const charts = makeCharts(keys, marks);
    const summary = h("span", { class: "muted" });
    const breakers = h("span");
    const blockedLink = h("a", { href: tracesLink(namespace, app, { resource: name, blocked: true }), class: "blocked-traces", hidden: true }, "Blocked traces");
    const node = h("article", { class: "resource-card", "data-resource": name },
      h("header", {}, h("h3", {}, name), summary, breakers, " ", blockedLink),
      h("div", { class: "charts" }, charts.map((c2) => c2.el)));
    c = { el: node, charts, summary, breakers, keys, blockedLink };
    cards.set(name, c);
    list.append(node);
    return c;
  }

  async function tick() {
    if (busy || stopped || document.hidden) return;
    busy = true;
    try {
      const seconds = Number(range.value);
      if (HISTORY[range.value]) {
        const end = Math.floor(Date.now() / 1000);
        const data = await api("/api/v1/metrics/history", { params: { namespace, app, resource, start: end - seconds, end } });
        const byResource = new Map();
        for (const p of data.items) {
          if (!byResource.has(p.resource)) byResource.set(p.resource, []);
          byResource.get(p.resource).push(p);
        }
        status.textContent = byResource.size ? `History at ${data.resolution}-second resolution.` : "No history for this range yet.";
        for (const [name, points] of byResource) {
          const c = card(name, HIST_KEYS);
          c.charts.forEach((chart) => chart.update(points, end - seconds, end));
          c.summary.textContent = "";
        }
        for (const [name, c] of cards) if (!byResource.has(name)) { c.el.remove(); cards.delete(name); }
      } else {
        const data = await api("/api/v1/metrics/series", { params: { namespace, app, resource, window: seconds } });
        status.textContent = data.resources.length ? "" : "No metrics from this app yet. Export them with opensergo.observability.enable_metrics() (see docs/dashboard.md).";
        const seen = new Set();
        for (const r of data.resources) {
          seen.add(r.resource);
          const c = card(r.resource, LIVE_KEYS);
          c.charts.forEach((chart) => chart.update(r.points, data.start, data.end));
          const t = r.last10s;
          c.summary.textContent = `last 10 s: ${fmtNum(t.passQps, 2)} pass/s, ${fmtNum(t.blockQps, 2)} block/s, ${fmtNum(t.errorQps, 2)} error/s, avg ${fmtNum(t.avgRt, 2)} ms, p99 ${fmtNum(t.p99Rt, 2)} ms, ${fmtNum(r.concurrency, 0)} in flight`;
          c.breakers.replaceChildren(...[breakerBadges(r.breakers)].flat());
          c.blockedLink.hidden = !r.points.some((p) => p.block > 0);
        }
        for (const [name, c] of cards) if (!seen.has(name)) { c.el.remove(); cards.delete(name); }
      }
      el.dataset.updated = String(Date.now());
    } catch (err) {
      status.textContent = `Cannot load metrics: ${err.message}`;
    } finally {
      busy = false;
    }
  }

  range.addEventListener("change", () => { for (const c of cards.values()) c.el.remove(); cards.clear(); tick(); });
  tick();
  timer = setInterval(tick, 1000);
  return { el, stop: () => { stopped = true; clearInterval(timer); } };
}
