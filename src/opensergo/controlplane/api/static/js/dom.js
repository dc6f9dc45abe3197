// Tiny DOM helpers. Data is only ever inserted as text (textContent / attributes), never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "style") el.style.cssText = value; // CSSOM: allowed by the CSP, unlike style=""
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value") el.value = value;
    else if (key === "checked" || key === "disabled" || key === "selected" || key === "hidden") el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function svg(tag, attrs = {}) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  return el;
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

export function announce(message) {
  const el = document.getElementById("announcer");
  if (!el) return;
  el.textContent = "";
  setTimeout(() => { el.textContent = message; }, 30);
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast ${kind === "error" ? "error" : ""}`, role: kind === "error" ? "alert" : "status" }, message);
  box.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

export function fmtNum(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en-US");
  return Number(value).toFixed(digits).replace(/\.0+$/, "").replace(/(\.\d*?)0+$/, "$1");
}

export function fmtTime(seconds) {
  if (!seconds) return "–";
  return new Date(seconds * 1000).toLocaleString("en-GB", { hour12: false });
}

export function fmtAgo(seconds) {
  if (!seconds) return "–";
  const d = Math.max(0, Date.now() / 1000 - seconds);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return `${Math.round(d / 86400)} d ago`;
}

export function badge(text, kind = "plain", label) {
  return h("span", { class: `badge ${kind}`, "aria-label": label }, text);
}

export const STATE_BADGE = { acked: "ok", nacked: "bad", rejected: "bad", outdated: "warn", pending: "warn" };

export function shortKind(fullName) {
  return String(fullName || "").split("/").pop();
}

// A table with a header row; rows are arrays of cells (Node or text). Numbers align right.
export function table(columns, rows, { caption, className, empty = "Nothing to show." } = {}) {
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label ?? c)));
  const body = h("tbody");
  for (const row of rows) {
    body.append(h("tr", {}, row.map((cell, i) => h("td", { class: columns[i] && columns[i].num ? "num" : null }, cell))));
  }
  const t = h("table", { class: className }, caption ? h("caption", { class: "visually-hidden" }, caption) : null, h("thead", {}, head), body);
  const wrap = h("div", { class: "table-wrap" }, t);
  if (!rows.length) wrap.append(h("div", { class: "empty" }, empty));
  return wrap;
}

// Tabs following the WAI-ARIA tabs pattern (arrow keys move between tabs).
export function tabs(items, selected, onSelect, label) {
  const list = h("div", { class: "tabs", role: "tablist", "aria-label": label });
  const buttons = items.map((item) =>
    h("button", {
      role: "tab", id: `tab-${item.id}`, "aria-selected": String(item.id === selected),
      "aria-controls": "tabpanel", tabindex: item.id === selected ? "0" : "-1",
      onclick: () => onSelect(item.id),
    }, item.label));
  list.addEventListener("keydown", (e) => {
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (e.key === "ArrowRight") j = (i + 1) % buttons.length;
    if (e.key === "ArrowLeft") j = (i - 1 + buttons.length) % buttons.length;
    if (j !== null) { e.preventDefault(); buttons[j].focus(); onSelect(items[j].id); }
  });
  list.append(...buttons);
  return list;
}

export function pager(total, offset, limit, go) {
  const page = Math.floor(offset / limit) + 1;
  const pages = Math.max(1, Math.ceil(total / limit));
  return h("nav", { class: "pager", "aria-label": "Pages" },
    h("button", { disabled: page <= 1, onclick: () => go(Math.max(0, offset - limit)) }, "‹ Previous"),
    h("span", {}, `Page ${page} of ${pages} (${total.toLocaleString("en-US")} total)`),
    h("button", { disabled: page >= pages, onclick: () => go(offset + limit) }, "Next ›"));
}

export function confirmDialog({ title, body, confirm = "Confirm", danger = false }) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { "aria-labelledby": "dlg-title" });
    const done = (value) => { dialog.close(); dialog.remove(); resolve(value); };
    dialog.append(
      h("h2", { id: "dlg-title" }, title),
      body,
      h("div", { class: "actions", style: "margin-top:1rem" },
        h("button", { class: danger ? "danger" : "primary", onclick: () => done(true), "data-confirm": "" }, confirm),
        h("button", { onclick: () => done(false) }, "Cancel")));
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector("button:last-child").focus();
  });
}

export function diffView(lines) {
  const box = h("div", { class: "diff", role: "region", "aria-label": "Changes", tabindex: "0" });
  if (!lines || !lines.length) {
    box.append(h("div", {}, "No changes."));
    return box;
  }
  for (const line of lines) {
    let cls = "";
    if (line.startsWith("+++") || line.startsWith("---")) cls = "hunk";
    else if (line.startsWith("@@")) cls = "hunk";
    else if (line.startsWith("+")) cls = "add";
    else if (line.startsWith("-")) cls = "del";
    box.append(h("div", { class: cls }, line || " "));
  }
  return box;
}

// replaceChildren that skips null/false and flattens arrays, like h().
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}
