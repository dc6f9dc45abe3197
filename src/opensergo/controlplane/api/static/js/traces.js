// The trace list of one app (a tab of the app page): filters, newest first, links to the waterfall.

import { api } from "./api.js";
import { h, fill, table, badge, fmtNum } from "./dom.js";

export function fmtStartNs(ns) {
  if (!ns) return "–";
  const d = new Date(ns / 1e6);
  return d.toLocaleTimeString("en-GB", { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

export function tracesLink(namespace, app, { resource, blocked, start, end } = {}) {
  const q = new URLSearchParams({ tab: "traces" });
  if (resource) q.set("resource", resource);
  if (blocked) q.set("blocked", "1");
  if (start !== undefined && start !== null) q.set("start", String(start));
  if (end !== undefined && end !== null) q.set("end", String(end));
  return `#/apps/${encodeURIComponent(namespace)}/${encodeURIComponent(app)}?${q}`;
}

export function tracesView(namespace, app, params, setParams) {
  const resource = h("input", { id: "trace-resource", type: "search", value: params.get("resource") || "", placeholder: "any resource", size: 28 });
  const blocked = h("input", { id: "trace-blocked", type: "checkbox", checked: params.get("blocked") === "1" });
  const start = params.get("start");
  const end = params.get("end");
  const holder = h("div", { "data-testid": "trace-list" });
  const status = h("p", { class: "muted", role: "status" });
  const window = start || end
    ? h("p", {}, `Traces that started between ${start ? fmtStartNs(Number(start) * 1e9) : "…"} and ${end ? fmtStartNs(Number(end) * 1e9) : "…"}. `,
        h("a", { href: tracesLink(namespace, app, { resource: params.get("resource"), blocked: params.get("blocked") === "1" }) }, "Any time"))
    : null;

  async function load() {
    setParams({ resource: resource.value || null, blocked: blocked.checked ? "1" : null });
    status.textContent = "Loading…";
    try {
      const data = await api("/api/v1/traces", {
        params: { namespace, app, resource: resource.value || null, blocked: blocked.checked ? "true" : null, start, end, limit: 100 },
      });
      status.textContent = `${data.items.length} trace(s) shown; this replica holds ${data.stored.traces} recent trace(s) (${data.stored.spans} of at most ${data.stored.maxSpans} spans).`;
      fill(holder, table(
        [{ label: "Started" }, { label: "Trace" }, { label: "Duration (ms)", num: true }, { label: "Spans", num: true }, { label: "Services" }, { label: "Outcome" }],
        data.items.map((t) => [
          fmtStartNs(t.start),
          h("a", { href: `#/traces/${t.traceId}`, class: "mono", title: t.traceId }, t.name || t.traceId.slice(0, 12)),
          fmtNum(t.durationMs, 2),
          t.spans,
          t.apps.join(", "),
          [t.blocked ? badge(`blocked by ${t.blockedBy.join(", ")}`, "bad") : null,
           t.error ? badge("error", "warn") : null,
           !t.blocked && !t.error ? badge("ok", "ok") : null,
           ...t.lanes.map((l) => badge(`lane ${l}`, "plain"))],
        ]),
        { caption: `Traces of ${app}`, className: "traces", empty: "No trace matches. The SDK exports traces when tracing is on (the default with enable_from_env and opensergo-run)." }));
    } catch (err) {
      status.textContent = `Cannot load traces: ${err.message}`;
    }
  }

  resource.addEventListener("change", load);
  blocked.addEventListener("change", load);
  const el = h("section", { "aria-label": "Traces" },
    h("div", { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "trace-resource" }, "Resource"), resource),
      h("div", { class: "field" }, h("label", { for: "trace-blocked" }, blocked, " Blocked requests only")),
      h("button", { onclick: load }, "Refresh")),
    window, status, holder);
  load();
  return el;
}
