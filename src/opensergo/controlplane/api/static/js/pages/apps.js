import { api } from "../api.js";
import { h, table, pager, badge, debounce, fmtAgo } from "../dom.js";

const PAGE = 50;

function health(a) {
  if (a.healthyInstances === a.instances) return badge("healthy", "ok");
  if (a.healthyInstances === 0) return badge("down", "bad");
  return badge(`${a.instances - a.healthyInstances} unhealthy`, "warn");
}

export async function render(root, { params, setParams }) {
  const data = await api("/api/v1/apps");
  const all = data.items;
  let offset = Number(params.get("offset") || 0);
  const search = h("input", { id: "app-filter", type: "search", value: params.get("q") || "", placeholder: "name, namespace, service…" });
  const holder = h("div");

  function draw() {
    const q = search.value.trim().toLowerCase();
    const rows = q
      ? all.filter((a) => a.app.toLowerCase().includes(q) || a.namespace.toLowerCase().includes(q) ||
          a.services.some((s) => s.toLowerCase().includes(q)) || (a.language || "").toLowerCase().includes(q))
      : all;
    if (offset >= rows.length) offset = 0;
    const page = rows.slice(offset, offset + PAGE);
    holder.replaceChildren(
      table(
        [{ label: "App" }, { label: "Namespace" }, { label: "Instances", num: true }, { label: "Health" },
         { label: "Language" }, { label: "Framework" }, { label: "Services" }, { label: "Last heartbeat" }],
        page.map((a) => [
          h("a", { href: `#/apps/${encodeURIComponent(a.namespace)}/${encodeURIComponent(a.app)}` }, a.app),
          a.namespace,
          `${a.healthyInstances} / ${a.instances}`,
          health(a),
          a.language || h("span", { class: "muted" }, "–"),
          a.framework || h("span", { class: "muted" }, "–"),
          a.services.length ? a.services.slice(0, 3).join(", ") + (a.services.length > 3 ? ` +${a.services.length - 3}` : "") : h("span", { class: "muted" }, "–"),
          fmtAgo(a.lastSeen),
        ]),
        { caption: "Apps", className: "apps", empty: q ? "No app matches the filter." : "No app has registered yet." }),
      pager(rows.length, offset, PAGE, (o) => { offset = o; setParams({ offset: o || null }); draw(); }));
  }

  search.addEventListener("input", debounce(() => { offset = 0; setParams({ q: search.value, offset: null }); draw(); }, 150));
  root.append(
    h("h1", {}, "Apps"),
    h("p", { class: "subtitle" }, `${all.length.toLocaleString("en-US")} apps, ${all.reduce((n, a) => n + a.instances, 0).toLocaleString("en-US")} instances`),
    h("div", { class: "toolbar" }, h("div", { class: "field grow" }, h("label", { for: "app-filter" }, "Filter"), search)),
    holder);
  draw();
}
