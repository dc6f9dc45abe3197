// One trace as a waterfall: a row per span (parents before children), bars on a shared time axis,
// the selected span's attributes, events and log records below.

import { api } from "../api.js";
import { h, fill, table, badge, fmtNum } from "../dom.js";
import { fmtStartNs } from "../traces.js";

const PALETTE = ["#0969da", "#1a7f37", "#8250df", "#bf3989", "#9a6700", "#0550ae", "#6639ba", "#1b7c83"];

// Depth-first order: children under their parent, siblings by start time.
function ordered(spans) {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const children = new Map();
  const roots = [];
  for (const s of spans) {
    if (s.parentSpanId && byId.has(s.parentSpanId)) {
      if (!children.has(s.parentSpanId)) children.set(s.parentSpanId, []);
      children.get(s.parentSpanId).push(s);
    } else roots.push(s);
  }
  const out = [];
  const walk = (s, depth) => {
    out.push({ span: s, depth });
    for (const c of (children.get(s.spanId) || []).sort((a, b) => a.start - b.start)) walk(c, depth + 1);
  };
  for (const r of roots.sort((a, b) => a.start - b.start)) walk(r, 0);
  return out;
}

function attributesTable(attrs, caption) {
  const rows = Object.entries(attrs || {}).sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => [h("span", { class: "mono" }, k), h("span", { class: "mono" }, typeof v === "object" ? JSON.stringify(v) : String(v))]);
  return table([{ label: "Attribute" }, { label: "Value" }], rows, { caption, empty: "No attribute." });
}

export async function render(root, { match }) {
  const [traceId] = match;
  const data = await api(`/api/v1/traces/${encodeURIComponent(traceId)}`);
  const total = Math.max(1, data.spans.reduce((m, s) => Math.max(m, s.end), 0) - data.start);
  const colors = new Map();
  const colorOf = (app) => {
    if (!colors.has(app)) colors.set(app, PALETTE[colors.size % PALETTE.length]);
    return colors.get(app);
  };
  const details = h("section", { class: "panel", id: "span-details", "aria-live": "polite" }, h("p", { class: "muted" }, "Select a span to see its attributes."));
  const logsOf = (spanId) => data.logs.filter((l) => l.spanId === spanId);

  function show(span) {
    const blocked = span.attributes["opensergo.blocked"] === true;
    const logs = logsOf(span.spanId);
    fill(details,
      h("h2", {}, span.name),
      h("dl", { class: "meta" },
        h("dt", {}, "Service"), h("dd", {}, `${span.namespace}/${span.app}`),
        h("dt", {}, "Instance"), h("dd", { class: "mono" }, span.instance || "–"),
        h("dt", {}, "Kind"), h("dd", {}, span.kind),
        h("dt", {}, "Duration"), h("dd", {}, `${fmtNum(span.durationMs, 3)} ms (from +${fmtNum((span.start - data.start) / 1e6, 3)} ms)`),
        h("dt", {}, "Status"), h("dd", {}, span.status + (span.statusMessage ? `: ${span.statusMessage}` : "")),
        h("dt", {}, "Span id"), h("dd", { class: "mono" }, span.spanId)),
      blocked ? h("div", { class: "alert error", role: "note" },
        `Blocked by rule ${span.attributes["opensergo.rule"]} (${span.attributes["opensergo.strategy.kind"]} ${span.attributes["opensergo.strategy"]}).`) : null,
      attributesTable(span.attributes, `Attributes of ${span.name}`),
      span.events.length ? [h("h3", {}, "Events"), table([{ label: "At (ms)", num: true }, { label: "Event" }, { label: "Attributes" }],
        span.events.map((e) => [fmtNum((e.time - data.start) / 1e6, 3), e.name, h("span", { class: "mono" }, JSON.stringify(e.attributes))]))] : null,
      logs.length ? [h("h3", {}, "Logs"), table([{ label: "At (ms)", num: true }, { label: "Severity" }, { label: "Message" }],
        logs.map((l) => [fmtNum((l.time - data.start) / 1e6, 3), l.severity, h("span", { class: "mono" }, String(l.body))]))] : null);
  }

  const rows = ordered(data.spans).map(({ span, depth }) => {
    const left = ((span.start - data.start) / total) * 100;
    const width = Math.max(0.3, ((span.end - span.start) / total) * 100);
    const blocked = span.attributes["opensergo.blocked"] === true;
    const cls = `wf-bar${blocked ? " blocked" : ""}${span.status === "error" ? " error" : ""}`;
    const button = h("button", {
      class: "wf-row", "data-span": span.spanId, "aria-label": `${span.app}: ${span.name}, ${fmtNum(span.durationMs, 3)} ms${blocked ? ", blocked" : ""}`,
      onclick: () => { for (const b of root.querySelectorAll(".wf-row")) b.removeAttribute("aria-pressed"); button.setAttribute("aria-pressed", "true"); show(span); },
    },
      h("span", { class: "wf-label", style: `padding-left:${depth * 1.1}rem` },
        h("span", { class: "wf-swatch", style: `background:${colorOf(span.app)}` }),
        h("span", { class: "wf-app" }, span.app), " ", h("span", { class: "wf-name" }, span.name),
        span.kind === "client" || span.kind === "server" ? h("span", { class: "muted" }, ` ${span.kind}`) : null),
      h("span", { class: "wf-track" },
        h("span", { class: cls, style: `left:${left}%;width:${width}%;background:${blocked ? "" : colorOf(span.app)}` }),
        // The duration after the bar, or before it when the bar reaches the right edge.
        h("span", { class: "wf-time", style: left + width > 80 ? `right:${100 - left}%;margin-right:.35rem` : `left:${left + width}%` },
          `${fmtNum(span.durationMs, 2)} ms`)));
    return button;
  });

  const s = data.summary;
  root.append(
    h("p", { class: "muted", style: "margin:0" }, "Trace ", h("span", { class: "mono" }, data.traceId)),
    h("h1", {}, s.name || "Trace"),
    h("dl", { class: "meta" },
      h("dt", {}, "Started"), h("dd", {}, fmtStartNs(data.start)),
      h("dt", {}, "Duration"), h("dd", {}, `${fmtNum(data.durationMs, 3)} ms`),
      h("dt", {}, "Spans"), h("dd", {}, String(data.spans.length) + (data.hiddenSpans ? ` (${data.hiddenSpans} hidden: namespaces you may not view)` : "")),
      h("dt", {}, "Services"), h("dd", {}, s.apps.map((a) => h("a", { href: `#/apps/${a.split("/").map(encodeURIComponent).join("/")}?tab=traces`, style: "margin-right:.5rem" }, a))),
      h("dt", {}, "Outcome"), h("dd", {}, s.blocked ? badge(`blocked by ${s.blockedBy.join(", ")}`, "bad") : s.error ? badge("error", "warn") : badge("ok", "ok"),
        ...s.lanes.map((l) => h("span", { style: "margin-left:.4rem" }, badge(`lane ${l}`, "plain"))))),
    h("div", { class: "waterfall", role: "group", "aria-label": "Spans on a time axis" },
      h("div", { class: "wf-axis", "aria-hidden": "true" }, h("span", {}, "0 ms"), h("span", {}, `${fmtNum(total / 2e6, 2)} ms`), h("span", {}, `${fmtNum(total / 1e6, 2)} ms`)),
      rows),
    details);
  const first = rows.find((r) => r.querySelector(".blocked")) || rows[0];
  if (first) first.click();
}
