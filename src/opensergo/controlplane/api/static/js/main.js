// Router and session bar. Each page module exports `render(root, ctx)` and may return a cleanup.

import { api, loadSession, session } from "./api.js";
import { h, toast } from "./dom.js";

const routes = [
  [/^\/login$/, "login", () => import("./pages/login.js")],
  [/^\/?$/, "overview", () => import("./pages/overview.js")],
  [/^\/apps$/, "apps", () => import("./pages/apps.js")],
  [/^\/apps\/([^/]+)\/([^/]+)$/, "apps", () => import("./pages/app.js")],
  [/^\/rules$/, "rules", () => import("./pages/rules.js")],
  [/^\/rules\/new$/, "rules", () => import("./pages/rule.js")],
  [/^\/rules\/([^/]+)\/([^/]+)\/([^/]+)$/, "rules", () => import("./pages/rule.js")],
  [/^\/clients$/, "clients", () => import("./pages/clients.js")],
  [/^\/traces\/([0-9a-fA-F]{32})$/, "apps", () => import("./pages/trace.js")],
];

let cleanup = null;
let renderId = 0;

export function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  return { path, params: new URLSearchParams(query) };
}

export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

// Change the query part of the URL without re-rendering (filters, tabs, pages).
export function setParams(updates) {
  const { path, params } = parseHash();
  for (const [k, v] of Object.entries(updates)) {
    if (v === null || v === undefined || v === "") params.delete(k);
    else params.set(k, v);
  }
  const q = params.toString();
  history.replaceState(null, "", `#${path}${q ? `?${q}` : ""}`);
}

function renderSession() {
  const box = document.getElementById("session");
  box.replaceChildren();
  if (!session.authEnabled) {
    box.append(h("span", { class: "muted", title: "The control plane listens on loopback only; auth is off." }, "auth off (loopback)"));
    return;
  }
  if (!session.authenticated || !session.user) return;
  const roles = Object.entries(session.user.roles || {}).map(([ns, r]) => `${ns === "*" ? "all" : ns}: ${r}`).join(", ");
  box.append(
    h("span", { title: roles }, "Signed in as ", h("strong", {}, session.user.name)),
    h("button", {
      onclick: async () => {
        await api("/api/v1/logout", { method: "POST" }).catch(() => {});
        Object.assign(session, { authenticated: false, user: null, csrfToken: null });
        renderSession();
        go("#/login");
      },
    }, "Log out"));
}

export async function render() {
  const id = ++renderId;
  const { path, params } = parseHash();
  const main = document.getElementById("main");
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } cleanup = null; }
  let found = routes.find(([re]) => re.test(path));
  if (!found) found = routes[1];
  const [re, nav, load] = found;
  if (session.authEnabled && !session.authenticated && nav !== "login") {
    location.hash = `#/login?next=${encodeURIComponent(location.hash || "#/")}`;
    return;
  }
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  renderSession();
  const match = path.match(re).slice(1).map(decodeURIComponent);
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  main.removeAttribute("data-ready");
  try {
    const page = await load();
    if (id !== renderId) return;
    const root = h("div");
    const result = await page.render(root, { params, match, go, setParams, path });
    if (id !== renderId) { if (typeof result === "function") result(); return; }
    main.replaceChildren(root);
    cleanup = typeof result === "function" ? result : null;
    const heading = main.querySelector("h1");
    document.title = heading ? `${heading.textContent} · OpenSergo` : "OpenSergo dashboard";
    main.dataset.ready = nav;
  } catch (err) {
    if (id !== renderId) return;
    if (err && err.status === 401) return; // redirected to the login page
    main.replaceChildren(h("h1", {}, "Something went wrong"),
      h("div", { class: "alert error", role: "alert" }, String((err && err.message) || err)));
    main.dataset.ready = "error";
  }
}

export function refreshSession() {
  renderSession();
}

window.addEventListener("hashchange", () => {
  render();
  document.getElementById("main").focus({ preventScroll: true });
});

async function start() {
  try {
    await loadSession();
  } catch (err) {
    toast(`Cannot reach the control plane: ${err.message}`, "error");
  }
  await render();
}

start();
