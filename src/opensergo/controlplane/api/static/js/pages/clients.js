import { api } from "../api.js";
import { h, table, pager, badge, debounce, fmtAgo, shortKind, STATE_BADGE } from "../dom.js";

const PAGE = 100;

export async function render(root, { params, setParams }) {
  const data = await api("/api/v1/clients", { params: { connected: "true" } });
  const all = data.items;
  let offset = Number(params.get("offset") || 0);
  const search = h("input", { id: "client-filter", type: "search", value: params.get("q") || "", placeholder: "identifier, peer, app, kind…" });
  const holder = h("div");
  function draw() {
    const q = search.value.trim().toLowerCase();
    const rows = q ? all.filter((c) => `${c.identifier} ${c.peer} ${c.subscriptions.map((s) => `${s.app} ${s.kind}`).join(" ")}`.toLowerCase().includes(q)) : all;
    holder.replaceChildren(
      table([{ label: "Client" }, { label: "Peer" }, { label: "Replica" }, { label: "Connected" }, { label: "Subscriptions" }],
        rows.slice(offset, offset + PAGE).map((c) => [
          h("span", { class: "mono" }, c.identifier || c.id),
          h("span", { class: "mono" }, c.peer),
          h("span", { class: "mono" }, c.replica || "–"),
          fmtAgo(c.connectedAt),
          h("div", {}, c.subscriptions.map((s) => h("div", {},
            h("a", { href: `#/apps/${encodeURIComponent(s.namespace)}/${encodeURIComponent(s.app)}` }, `${s.namespace}/${s.app}`),
            ` ${shortKind(s.kind)} v${s.ackedVersion ?? s.pushedVersion ?? "–"} `,
            badge(s.state, STATE_BADGE[s.state] || "plain"),
            s.message && s.state !== "acked" ? h("span", { class: "muted" }, ` ${s.message}`) : null))),
        ]),
        { caption: "Connected clients", className: "clients", empty: "No data plane is connected." }),
      pager(rows.length, offset, PAGE, (o) => { offset = o; setParams({ offset: o || null }); draw(); }));
  }
  search.addEventListener("input", debounce(() => { offset = 0; setParams({ q: search.value, offset: null }); draw(); }, 150));
  root.append(h("h1", {}, "Clients"),
    h("p", { class: "subtitle" }, `${all.length.toLocaleString("en-US")} connected data planes and the state of each subscription`),
    h("div", { class: "toolbar" }, h("div", { class: "field grow" }, h("label", { for: "client-filter" }, "Filter"), search)),
    holder);
  draw();
}
