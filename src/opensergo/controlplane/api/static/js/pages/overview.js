import { api } from "../api.js";
import { h, table, fmtNum } from "../dom.js";

function card(label, value, href) {
  const body = [h("div", { class: "value" }, value), h("div", { class: "label" }, label)];
  return h("div", { class: "card" }, href ? h("a", { href, style: "color:inherit;text-decoration:none" }, body) : body);
}

export async function render(root) {
  const [o, traffic] = await Promise.all([
    api("/api/v1/overview"),
    api("/api/v1/metrics/apps").catch(() => ({ items: [] })),
  ]);
  root.append(
    h("h1", {}, "Overview"),
    h("p", { class: "subtitle" }, `Store revision ${o.revision} · replica ${o.replica || "–"}`),
    h("div", { class: "cards" },
      card("Apps", o.apps.toLocaleString("en-US"), "#/apps"),
      card("Instances (healthy / all)", `${o.healthyInstances.toLocaleString("en-US")} / ${o.instances.toLocaleString("en-US")}`, "#/apps"),
      card("Rules", o.rules.toLocaleString("en-US"), "#/rules"),
      card("Connected clients", o.clients.toLocaleString("en-US"), "#/clients"),
      card("ACKs / NACKs", `${fmtNum(o.acks ?? 0, 0)} / ${fmtNum(o.nacks ?? 0, 0)}`),
      card("Namespaces", o.namespaces.length)),
    h("h2", {}, "Live traffic (last 10 s)"),
    table(
      [{ label: "App" }, { label: "Namespace" }, { label: "Pass QPS", num: true }, { label: "Block QPS", num: true },
       { label: "Error QPS", num: true }, { label: "Avg RT (ms)", num: true }, { label: "Resources", num: true }, { label: "Open breakers", num: true }],
      traffic.items
        .sort((a, b) => (b.passQps + b.blockQps) - (a.passQps + a.blockQps))
        .slice(0, 20)
        .map((a) => [
          h("a", { href: `#/apps/${encodeURIComponent(a.namespace)}/${encodeURIComponent(a.app)}?tab=metrics` }, a.app),
          a.namespace, fmtNum(a.passQps, 2), fmtNum(a.blockQps, 2), fmtNum(a.errorQps, 2), fmtNum(a.avgRt, 2),
          a.resources, a.breakersOpen]),
      { caption: "Live traffic per app", empty: "No app exports metrics yet (see docs/dashboard.md: enable_metrics)." }),
  );
}
