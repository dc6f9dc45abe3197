import { api } from "../api.js";
import { h, table, pager, badge, debounce, fmtAgo, shortKind, STATE_BADGE } from "../dom.js";

const PAGE = 100;

// Filtered and paged by the server (/api/v1/clients?q=&offset=&limit=): at 10,000 connected
// data planes the page fetches and draws 100 of them, never the whole list.
export async function render(root, { params, setParams }) {
  let offset = Number(params.get("offset") || 0);
  const search = h("input", { id: "client-filter", type: "search", value: params.get("q") || "", placeholder: "identifier, peer, app, kind…" });
  const holder = h("div", { "aria-live": "polite" });
  const subtitle = h("p", { class: "subtitle" }, "Connected data planes and the state of each subscription");
  let seq = 0;
  let everyone = null;

  async function draw() {
    const id = ++seq;
    const q = search.value.trim();
    const data = await api("/api/v1/clients", { params: { connected: "true", q, offset, limit: PAGE } });
    if (id !== seq) return;
    if (!q) everyone = data.total;
    if (everyone !== null) {
      subtitle.textContent = `${everyone.toLocaleString("en-US")} connected data planes and the state of each subscription`
        + (q ? ` (${data.total.toLocaleString("en-US")} match)` : "");
    }
    holder.replaceChildren(
      table([{ label: "Client" }, { label: "Peer" }, { label: "Replica" }, { label: "Connected" }, { label: "Subscriptions" }],
        data.items.map((c) => [
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
        { caption: "Connected clients", className: "clients", empty: q ? "No client matches." : "No data plane is connected." }),
      pager(data.total, data.offset, data.limit, (o) => { offset = o; setParams({ offset: o || null }); draw(); }));
  }
  search.addEventListener("input", debounce(() => { offset = 0; setParams({ q: search.value, offset: null }); draw(); }, 150));
  root.append(h("h1", {}, "Clients"), subtitle,
    h("div", { class: "toolbar" }, h("div", { class: "field grow" }, h("label", { for: "client-filter" }, "Filter"), search)),
    holder);
  await draw();
}
