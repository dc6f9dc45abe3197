// The endpoints of an app (a tab of the app page): each method of its current service contracts as
// the resource the integrations guard, with live figures, the rules targeting it, and a
// "Protect this endpoint" action opening the rule form with the target filled in.

import { api, canEdit } from "./api.js";
import { h, fill, table, badge, fmtNum } from "./dom.js";
import { tracesLink } from "./traces.js";

export function protectLink(namespace, app, resource) {
  const q = new URLSearchParams({ kind: "faulttolerancerules", ns: namespace, app, target: resource });
  return `#/rules/new?${q}`;
}

function live(m) {
  if (!m) return h("span", { class: "muted" }, "no traffic");
  return h("span", {},
    `${fmtNum(m.passQps, 2)} pass/s`, m.blockQps ? [", ", h("strong", { class: "blocked" }, `${fmtNum(m.blockQps, 2)} block/s`)] : null,
    m.errorQps ? `, ${fmtNum(m.errorQps, 2)} error/s` : null, m.avgRt !== null && m.avgRt !== undefined ? `, avg ${fmtNum(m.avgRt, 2)} ms` : null);
}

export function endpointsView(namespace, app) {
  const holder = h("div", { "data-testid": "endpoint-list" });
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  const writable = canEdit(namespace);
  let timer = null;
  let stopped = false;

  async function load() {
    if (stopped || document.hidden) return;
    try {
      const data = await api(`/api/v1/apps/${encodeURIComponent(namespace)}/${encodeURIComponent(app)}/endpoints`);
      status.textContent = data.items.length
        ? `${data.items.length} endpoint(s) from contract ${data.contracts.map((c) => c.slice(0, 12)).join(", ")}; figures over the last ${data.window} s, refreshed every 2 s.`
        : "";
      fill(holder, table(
        [{ label: "Endpoint (resource)" }, { label: "Operation" }, { label: "Request → response" }, { label: "Live" }, { label: "Rules" }, { label: "" }],
        data.items.map((e) => [
          h("span", { class: "mono" }, e.resource),
          h("span", {}, h("span", { class: "mono" }, e.method), e.description ? h("div", { class: "muted" }, e.description) : null),
          h("span", { class: "mono" }, `${(e.inputTypes || []).join(", ") || "–"} → ${(e.outputTypes || []).join(", ") || "–"}`),
          [live(e.metrics), e.metrics && e.metrics.blockQps ? [" ", h("a", { href: tracesLink(namespace, app, { resource: e.resource, blocked: true }) }, "blocked traces")] : null],
          e.rules.length
            ? e.rules.map((r) => h("div", {}, h("a", { href: `#/rules/${encodeURIComponent(namespace)}/faulttolerancerules/${encodeURIComponent(r.name)}` }, r.name),
                h("span", { class: "muted" }, ` (${r.strategies})`)))
            : badge("unprotected", "plain"),
          writable ? h("a", { class: "button", href: protectLink(namespace, app, e.resource), "data-protect": e.resource }, "Protect this endpoint") : null,
        ]),
        { caption: `Endpoints of ${app}`, className: "endpoints", empty: "No service contract stored for this app yet. Under opensergo-run, contracts are derived from the app's routes and reported automatically." }));
    } catch (err) {
      status.textContent = `Cannot load endpoints: ${err.message}`;
    }
  }

  load();
  timer = setInterval(load, 2000);
  return { el: h("section", { "aria-label": "Endpoints" }, status, holder), stop: () => { stopped = true; clearInterval(timer); } };
}

// Contract versions: every stored version (oldest first), which ones live instances report, and
// what changed from the previous one.
export async function contractVersionsView(namespace, app) {
  const base = `/api/v1/apps/${encodeURIComponent(namespace)}/${encodeURIComponent(app)}/contracts`;
  const data = await api(base);
  if (!data.versions.length) return null;
  const detail = h("div");
  const rows = data.versions.map((v, i) => [
    h("span", { class: "mono", title: v.hash }, v.hash.slice(0, 12)),
    v.created || "–",
    v.protocols.join(", ") || "–",
    v.methods,
    v.instances ? badge(`current (${v.instances} instance${v.instances > 1 ? "s" : ""})`, "ok") : badge("earlier", "plain"),
    i > 0 ? h("button", { onclick: () => showDiff(data.versions[i - 1], v) }, "What changed") : h("span", { class: "muted" }, "first version"),
  ]);
  async function showDiff(before, after) {
    const d = await api(`${base}/diff`, { params: { from: before.hash, to: after.hash } });
    const list = (title, items, kind) => items.length ? [h("h4", {}, title), h("ul", {}, items.map((x) => h("li", { class: "mono" }, badge(kind, kind === "added" ? "ok" : kind === "removed" ? "bad" : "warn"), " ", x)))] : null;
    fill(detail, h("section", { class: "panel", "aria-live": "polite" },
      h("h3", {}, `${before.hash.slice(0, 12)} → ${after.hash.slice(0, 12)}`),
      list("Methods added", d.added, "added"), list("Methods removed", d.removed, "removed"),
      list("Methods changed", d.changed.map((c) => `${c.method} (${c.fields.join(", ")})`), "changed"),
      list("Types added", d.typesAdded, "added"), list("Types removed", d.typesRemoved, "removed"), list("Types changed", d.typesChanged, "changed"),
      !d.added.length && !d.removed.length && !d.changed.length && !d.typesAdded.length && !d.typesRemoved.length && !d.typesChanged.length ? h("p", {}, "No difference in methods or types.") : null));
  }
  return h("section", { "aria-label": "Contract versions" },
    h("h2", {}, "Versions"),
    table([{ label: "Hash" }, { label: "Stored" }, { label: "Protocols" }, { label: "Methods", num: true }, { label: "State" }, { label: "" }], rows,
      { caption: "Contract versions", className: "contract-versions" }),
    detail);
}
