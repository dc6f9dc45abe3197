import { api } from "../api.js";
import { h, fill, table, tabs, badge, debounce, fmtAgo, fmtTime, shortKind, STATE_BADGE, pager } from "../dom.js";
import { liveMetrics } from "../metrics.js";
import { tracesView } from "../traces.js";
import { endpointsView, contractVersionsView } from "../endpoints.js";
import { hotKeysView } from "../hotkeys.js";

const TABS = [
  { id: "instances", label: "Instances" },
  { id: "endpoints", label: "Endpoints" },
  { id: "contracts", label: "Service contracts" },
  { id: "subscriptions", label: "Subscribed kinds" },
  { id: "rules", label: "Rules" },
  { id: "metrics", label: "Live metrics" },
  { id: "hotkeys", label: "Hot keys" },
  { id: "traces", label: "Traces" },
];
const PAGE = 100;

// Filtered and paged by the server (/api/v1/instances?app=&namespace=&q=&offset=&limit=): an app
// with 10,000 instances fetches and draws 100 at a time.
function instancesView(app) {
  const holder = h("div", { "aria-live": "polite" });
  const search = h("input", { id: "instance-filter", type: "search", placeholder: "host, node, address, label…" });
  let offset = 0;
  let seq = 0;
  const draw = async () => {
    const id = ++seq;
    const data = await api("/api/v1/instances", {
      params: { namespace: app.namespace, app: app.app, q: search.value.trim(), offset, limit: PAGE },
    });
    if (id !== seq) return;
    const rows = data.items.map((i) => [
      h("span", { class: "mono" }, i.hostName ? `${i.hostName}/${i.pid}` : i.nodeId || i.name),
      i.tag || i.labels.tag || h("span", { class: "muted" }, "–"),
      i.env || i.labels.env || h("span", { class: "muted" }, "–"),
      i.cluster || i.labels.cluster || h("span", { class: "muted" }, "–"),
      [i.region, i.zone].filter(Boolean).join(" / ") || h("span", { class: "muted" }, "–"),
      h("span", { class: "mono" }, (i.addresses || []).join(", ") || "–"),
      i.healthy ? badge("healthy", "ok") : badge("stale", "bad"),
      i.lastSeen ? h("span", { title: fmtTime(i.lastSeen) }, fmtAgo(i.lastSeen)) : h("span", { class: "muted" }, "other replica"),
    ]);
    fill(holder,
      table([{ label: "Identity" }, { label: "Tag" }, { label: "Env" }, { label: "Cluster" }, { label: "Locality" },
             { label: "Addresses" }, { label: "Health" }, { label: "Last heartbeat" }], rows,
      { caption: "Instances", className: "instances", empty: search.value.trim() ? "No instance matches." : "No registered instance." }),
      data.total > PAGE ? pager(data.total, data.offset, data.limit, (o) => { offset = o; draw(); }) : null);
  };
  search.addEventListener("input", debounce(() => { offset = 0; draw(); }, 150));
  draw();
  const exporters = app.metricExporters.length
    ? [h("h2", {}, "Metric exporters"), table([{ label: "Instance" }, { label: "Language" }, { label: "SDK" }, { label: "Last export" }],
        app.metricExporters.map((e) => [h("span", { class: "mono" }, e.instance), e.language || "–", e.sdk || "–", fmtAgo(e.lastSeen)]))]
    : [];
  const toolbar = h("div", { class: "toolbar" },
    h("div", { class: "field grow" }, h("label", { for: "instance-filter" }, "Filter"), search));
  return h("div", {}, toolbar, holder, exporters);
}

function contractsView(app) {
  const versions = h("div");
  contractVersionsView(app.namespace, app.app).then((el) => { if (el) versions.replaceChildren(el); }).catch(() => {});
  if (!app.services.length) return h("div", {}, h("p", { class: "empty" }, "No service contract reported (the SDK reports one when service metadata is given, and opensergo-run derives it from the app's routes)."), versions);
  const parts = [];
  for (const s of app.services) {
    parts.push(h("section", { class: "panel", "aria-label": `Service ${s.name}` },
      h("h3", { class: "mono" }, s.name),
      s.description ? h("p", {}, s.description) : null,
      h("p", { class: "muted" }, `Protocols: ${(s.protocols || []).join(", ") || "–"} · reported by ${s.instances} instance(s)`),
      table([{ label: "Method" }, { label: "Input types" }, { label: "Output types" }, { label: "HTTP" }, { label: "Streaming" }],
        (s.methods || []).map((m) => [
          h("span", { class: "mono" }, m.name),
          h("span", { class: "mono" }, (m.inputTypes || []).join(", ") || "–"),
          h("span", { class: "mono" }, (m.outputTypes || []).join(", ") || "–"),
          h("span", { class: "mono" }, (m.httpPaths || []).map((p, i) => `${(m.httpMethods || [])[i] || ""} ${p}`.trim()).join(", ") || "–"),
          [m.clientStreaming ? "client" : null, m.serverStreaming ? "server" : null].filter(Boolean).join(", ") || "–",
        ]), { caption: `Methods of ${s.name}`, empty: "No method." })));
  }
  if (app.types.length) {
    parts.push(h("h2", {}, "Types"), table([{ label: "Type" }, { label: "Fields" }],
      app.types.map((t) => [h("span", { class: "mono" }, t.name),
        h("span", { class: "mono" }, (t.fields || []).map((f) => `${f.name}: ${f.typeName || (f.type || "").replace("TYPE_", "").toLowerCase()}`).join(", ") || "–")])));
  }
  return h("div", {}, parts, versions);
}

function subscriptionsView(app) {
  return table([{ label: "Kind" }, { label: "Clients", num: true }, { label: "Pushed version", num: true }, { label: "Answers" }],
    app.subscriptions.map((s) => [
      h("span", { title: s.kind }, shortKind(s.kind)),
      s.clients,
      s.version || "–",
      Object.entries(s.states).map(([state, n]) => h("span", { style: "margin-right:.4rem" }, badge(`${n} ${state}`, STATE_BADGE[state] || "plain"))),
    ]), { caption: "Subscribed kinds", empty: "No connected client subscribes for this app." });
}

function rulesView(app) {
  return h("div", {},
    h("div", { class: "actions", style: "margin-bottom:.75rem" },
      h("a", { class: "button", href: `#/rules/new?ns=${encodeURIComponent(app.namespace)}&app=${encodeURIComponent(app.app)}` }, "New rule for this app")),
    table([{ label: "Kind" }, { label: "Name" }, { label: "Version", num: true }],
      app.rules.map((r) => [r.kind, h("a", { href: `#/rules/${encodeURIComponent(r.namespace)}/${r.plural}/${encodeURIComponent(r.name)}` }, r.name), r.resourceVersion || "–"]),
      { caption: "Rules of this app", empty: "No rule targets this app." }));
}

export async function render(root, { match, params, setParams }) {
  const [namespace, name] = match;
  // The instances tab pages them from /api/v1/instances: leave the (possibly long) list out here.
  const app = await api(`/api/v1/apps/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}?instances=false`);
  let current = params.get("tab") || "instances";
  let metrics = null;
  let endpoints = null;
  let hotKeys = null;
  const panel = h("div", { id: "tabpanel", role: "tabpanel", tabindex: "0" });
  const tabHolder = h("div");

  function select(id, focus = true) {
    current = id;
    setParams({ tab: id === "instances" ? null : id });
    if (id !== "traces") setParams({ resource: null, blocked: null, start: null, end: null });
    if (metrics) { metrics.stop(); metrics = null; }
    if (endpoints) { endpoints.stop(); endpoints = null; }
    if (hotKeys) { hotKeys.stop(); hotKeys = null; }
    tabHolder.replaceChildren(tabs(TABS, current, select, "App sections"));
    if (focus) tabHolder.querySelector(`#tab-${id}`)?.focus({ preventScroll: true });
    panel.setAttribute("aria-labelledby", `tab-${id}`);
    if (id === "instances") panel.replaceChildren(instancesView(app));
    else if (id === "endpoints") { endpoints = endpointsView(namespace, name); panel.replaceChildren(endpoints.el); }
    else if (id === "contracts") panel.replaceChildren(contractsView(app));
    else if (id === "subscriptions") panel.replaceChildren(subscriptionsView(app));
    else if (id === "rules") panel.replaceChildren(rulesView(app));
    else if (id === "hotkeys") { hotKeys = hotKeysView(namespace, name); panel.replaceChildren(hotKeys.el); }
    else if (id === "traces") panel.replaceChildren(tracesView(namespace, name, new URLSearchParams(location.hash.split("?")[1] || ""), setParams));
    else {
      metrics = liveMetrics(namespace, name);
      panel.replaceChildren(metrics.el);
    }
  }

  root.append(
    h("p", { class: "muted", style: "margin:0" }, h("a", { href: "#/apps" }, "Apps"), " / ", namespace),
    h("h1", {}, name),
    h("dl", { class: "meta" },
      h("dt", {}, "Namespace"), h("dd", {}, namespace),
      h("dt", {}, "Instances"), h("dd", {}, `${app.healthyInstances} healthy of ${app.instanceCount}`),
      h("dt", {}, "Language"), h("dd", {}, app.language || "–"),
      h("dt", {}, "Framework"), h("dd", {}, app.framework || "–"),
      h("dt", {}, "Subscribed kinds"), h("dd", {}, app.subscriptions.map((s) => shortKind(s.kind)).join(", ") || "–")),
    tabHolder, panel);
  select(current, false);
  return () => { if (metrics) metrics.stop(); if (endpoints) endpoints.stop(); if (hotKeys) hotKeys.stop(); };
}
