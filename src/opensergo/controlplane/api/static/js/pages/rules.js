import { api } from "../api.js";
import { h, table, pager, badge, debounce, shortKind } from "../dom.js";
import { allKinds, INSTANCE_KIND } from "../kinds.js";

const PAGE = 100;

function rolloutCell(r) {
  const s = r.rollout;
  if (!r.app) return h("span", { class: "muted", title: "No app label: not delivered" }, "no app");
  const total = s.acked + s.nacked + s.pending + s.rejected + s.outdated;
  if (!total) return h("span", { class: "muted" }, "no subscriber");
  const parts = [];
  if (s.acked) parts.push(badge(`${s.acked} ACKed`, "ok"));
  if (s.nacked + s.rejected) parts.push(badge(`${s.nacked + s.rejected} NACKed`, "bad"));
  if (s.pending + s.outdated) parts.push(badge(`${s.pending + s.outdated} pending`, "warn"));
  return h("span", { class: "actions" }, parts);
}

export async function render(root, { params, setParams }) {
  const [kinds, namespaces] = await Promise.all([allKinds(), api("/api/v1/namespaces")]);
  const ruleKinds = kinds.filter((k) => k.kind !== INSTANCE_KIND);
  const ns = h("select", { id: "rule-ns" },
    h("option", { value: "" }, "All namespaces"),
    namespaces.items.map((n) => h("option", { value: n.name, selected: n.name === params.get("ns") }, n.name)));
  const kind = h("select", { id: "rule-kind" },
    h("option", { value: "" }, "All kinds"),
    ruleKinds.map((k) => h("option", { value: k.plural, selected: k.plural === params.get("kind") }, `${k.kind} (${k.group.split(".")[0]})`)));
  const search = h("input", { id: "rule-filter", type: "search", value: params.get("q") || "", placeholder: "rule or app name" });
  const holder = h("div", { "aria-live": "polite" });
  let offset = Number(params.get("offset") || 0);
  let seq = 0;

  async function draw() {
    const id = ++seq;
    const data = await api("/api/v1/rules", { params: { namespace: ns.value, kind: kind.value, q: search.value.trim(), offset, limit: PAGE } });
    if (id !== seq) return;
    holder.replaceChildren(
      table([{ label: "Name" }, { label: "Kind" }, { label: "Namespace" }, { label: "App" }, { label: "Version", num: true }, { label: "Rollout" }],
        data.items.map((r) => [
          h("a", { href: `#/rules/${encodeURIComponent(r.namespace)}/${r.plural}/${encodeURIComponent(r.name)}` }, r.name),
          r.kind, r.namespace,
          r.app ? h("a", { href: `#/apps/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.app)}` }, r.app) : h("span", { class: "muted" }, "–"),
          r.resourceVersion,
          rolloutCell(r),
        ]),
        { caption: "Rules", className: "rules", empty: "No rule matches." }),
      pager(data.total, data.offset, data.limit, (o) => { offset = o; setParams({ offset: o || null }); draw(); }));
  }
  const refilter = () => { offset = 0; setParams({ ns: ns.value, kind: kind.value, q: search.value, offset: null }); draw(); };
  ns.addEventListener("change", refilter);
  kind.addEventListener("change", refilter);
  search.addEventListener("input", debounce(refilter, 200));
  const newLink = h("a", { class: "button primary", href: "#/rules/new", id: "new-rule" }, "New rule");
  newLink.addEventListener("click", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (ns.value) q.set("ns", ns.value);
    if (kind.value) q.set("kind", kind.value);
    location.hash = `#/rules/new${q.toString() ? `?${q}` : ""}`;
  });
  root.append(
    h("h1", {}, "Rules"),
    h("div", { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "rule-ns" }, "Namespace"), ns),
      h("div", { class: "field" }, h("label", { for: "rule-kind" }, "Kind"), kind),
      h("div", { class: "field grow" }, h("label", { for: "rule-filter" }, "Filter"), search),
      newLink),
    holder);
  await draw();
}

export { shortKind };
