// One rule: edit (YAML or form) with validation before saving, diff before apply, delete,
// version history with rollback, and the rollout of the current version to its clients.

import { api, canEdit, resourcePath, ApiError } from "../api.js";
import { h, fill, table, tabs, badge, toast, announce, debounce, confirmDialog, diffView, fmtAgo, STATE_BADGE } from "../dom.js";
import { dump } from "../yaml.js";
import { YamlEditor } from "../editor.js";
import { buildForm, hasForm, TEMPLATES } from "../forms.js";
import { allKinds, byPlural, INSTANCE_KIND, CONTRACT_KIND } from "../kinds.js";

function editable(obj) {
  const meta = obj.metadata || {};
  const m = { name: meta.name, namespace: meta.namespace };
  if (meta.labels && Object.keys(meta.labels).length) m.labels = meta.labels;
  if (meta.annotations && Object.keys(meta.annotations).length) m.annotations = meta.annotations;
  if (meta.resourceVersion) m.resourceVersion = meta.resourceVersion;
  const out = { apiVersion: obj.apiVersion, kind: obj.kind, metadata: m };
  if (obj.spec !== undefined) out.spec = obj.spec;
  return out;
}

// A rule name from a resource: "GET:/users/{id}" -> "protect-get-users-id".
function protectName(target) {
  const slug = target.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 50).replace(/-+$/, "");
  return `protect-${slug || "endpoint"}`;
}

function template(kind, namespace, app, target) {
  const name = target && kind.kind === "FaultToleranceRule"
    ? protectName(target)
    : `my-${kind.kind.replace(/Strategy$|Action$/, "").replace(/([a-z])([A-Z])/g, "$1-$2").toLowerCase()}`;
  const spec = JSON.parse(JSON.stringify(TEMPLATES[kind.kind] || {}));
  if (target && kind.kind === "FaultToleranceRule") spec.targets = [{ targetResourceName: target }];
  return {
    apiVersion: `${kind.group}/${kind.version}`,
    kind: kind.kind,
    metadata: { name, namespace, labels: { app: app || "my-app" } },
    spec,
  };
}

// The Definition tab: editor/form, live validation, review (diff) and apply.
function definition({ kind, namespace, object, isNew, writable, onApplied }) {
  const original = dump(object);
  let lastCheck = null;
  let view = "yaml";
  let form = null;
  let seq = 0;
  const status = h("div", { class: "status-line", role: "status", "aria-live": "polite" });
  const editor = new YamlEditor({ value: original, readOnly: !writable, label: "YAML definition", onChange: () => changed() });
  const formHolder = h("div", { hidden: true });
  const review = h("section", { class: "panel", hidden: true, "aria-labelledby": "review-title" });
  const reviewBtn = h("button", { class: "primary", id: "review", disabled: true, onclick: () => showReview() }, isNew ? "Review and create" : "Review changes");
  const resetBtn = h("button", { onclick: () => { editor.value = original; changed(); } }, "Reset");

  const viewTabs = hasForm(kind.kind)
    ? h("div", { class: "actions", role: "group", "aria-label": "Editor view" },
        h("button", { id: "view-yaml", "aria-pressed": "true", onclick: () => switchView("yaml") }, "YAML"),
        h("button", { id: "view-form", "aria-pressed": "false", onclick: () => switchView("form") }, "Form"))
    : null;

  function switchView(next) {
    if (next === "form") {
      const obj = lastCheck && lastCheck.object;
      if (!obj) {
        toast("Fix the YAML so it parses before switching to the form.", "error");
        return;
      }
      form = buildForm(obj, (o) => { editor.value = dump(o); changed(); }, { readOnly: !writable, lockName: !isNew });
      form.setErrors(lastCheck.errors);
      formHolder.replaceChildren(form.el);
    }
    view = next;
    editor.el.hidden = next !== "yaml";
    formHolder.hidden = next !== "form";
    if (viewTabs) {
      viewTabs.querySelector("#view-yaml").setAttribute("aria-pressed", String(next === "yaml"));
      viewTabs.querySelector("#view-form").setAttribute("aria-pressed", String(next === "form"));
    }
  }

  const check = async () => {
    const id = ++seq;
    try {
      const result = await api("/api/v1/validate", { method: "POST", json: { yaml: editor.value, namespace } });
      if (id !== seq) return;
      lastCheck = result;
      editor.setErrors(result.errors);
      if (form) form.setErrors(result.errors);
      const dirty = editor.value !== original;
      if (!result.valid) {
        status.replaceChildren(badge(`${result.errors.length} problem${result.errors.length === 1 ? "" : "s"}`, "bad"), " Fix them before saving.");
      } else if (result.unchanged || !dirty) {
        status.replaceChildren(badge("valid", "ok"), isNew ? " Ready to review." : " No changes.");
      } else {
        status.replaceChildren(badge("valid", "ok"), result.exists && isNew ? " An object with this name exists: creating will fail." : " Ready to review.");
      }
      const canSave = writable && result.valid && (isNew || (dirty && !result.unchanged)) && (result.canWrite !== false);
      reviewBtn.disabled = !canSave;
      document.getElementById("main").dataset.validated = String(Date.now());
    } catch (err) {
      if (id === seq) status.replaceChildren(badge("error", "bad"), ` Validation failed: ${err.message}`);
    }
  };
  const validate = debounce(check, 250);

  function changed(now = false) {
    review.hidden = true;
    reviewBtn.disabled = true;
    status.replaceChildren(h("span", { class: "muted" }, "Checking…"));
    if (now) check();
    else validate();
  }

  async function showReview() {
    const result = lastCheck;
    if (!result || !result.valid) return;
    const applyBtn = h("button", { class: "primary", id: "apply" }, isNew ? "Create" : "Apply");
    const error = h("div", { class: "alert error", role: "alert", hidden: true });
    applyBtn.addEventListener("click", async () => {
      applyBtn.disabled = true;
      error.hidden = true;
      try {
        const path = resourcePath(kind, result.namespace, isNew ? null : result.name);
        const saved = await api(path, { method: isNew ? "POST" : "PUT", text: editor.value });
        toast(`${kind.kind} ${saved.metadata.name} saved: version ${saved.metadata.resourceVersion}`);
        announce("Saved");
        onApplied(saved);
      } catch (err) {
        error.textContent = err instanceof ApiError && err.status === 409
          ? `${err.message}. Someone changed it meanwhile: reload the page to edit the newest version.`
          : `Not saved: ${err.message}`;
        error.hidden = false;
        applyBtn.disabled = false;
      }
    });
    review.replaceChildren(
      h("h2", { id: "review-title", style: "margin-top:0" }, isNew ? "Create" : "Changes to apply"),
      h("p", { class: "muted" }, `${kind.kind} ${result.namespace}/${result.name}${result.exists ? ` (stored version ${result.resourceVersion})` : " (new)"}`),
      diffView(result.diff),
      error,
      h("div", { class: "actions", style: "margin-top:.75rem" }, applyBtn, h("button", { onclick: () => { review.hidden = true; reviewBtn.focus(); } }, "Back to editing")));
    review.hidden = false;
    applyBtn.focus();
  }

  const el = h("div", {},
    writable ? null : h("div", { class: "alert info" }, `Read-only: your role in namespace ${namespace} cannot change rules.`),
    h("div", { class: "toolbar" }, viewTabs, h("div", { class: "grow" }), resetBtn, reviewBtn),
    editor.el, formHolder, status, review);
  changed(true);
  return { el, stop: () => validate.cancel() };
}

function rolloutView(kind, namespace, name) {
  const holder = h("div", { "aria-live": "polite" });
  let timer = null;
  async function load() {
    if (document.hidden) return;
    try {
      const r = await api(`${resourcePath(kind, namespace, name)}/rollout`);
      const s = r.summary;
      fill(holder,
        h("p", {}, `Version ${r.version}${r.app ? ` of app ${r.app}` : ""}: `,
          badge(`${s.acked} ACKed`, "ok"), " ", badge(`${s.nacked + s.rejected} NACKed`, s.nacked + s.rejected ? "bad" : "plain"), " ",
          badge(`${s.pending + s.outdated} pending`, s.pending + s.outdated ? "warn" : "plain")),
        r.note ? h("div", { class: "alert info" }, r.note) : null,
        table([{ label: "Client" }, { label: "Peer" }, { label: "State" }, { label: "ACKed version", num: true }, { label: "Message" }, { label: "Answered" }],
          r.clients.map((c) => [
            h("span", { class: "mono" }, c.identifier || c.id),
            h("span", { class: "mono" }, c.peer || "–"),
            badge(c.state, STATE_BADGE[c.state] || "plain"),
            c.ackedVersion ?? "–",
            c.message || (c.nacks.length ? h("span", { class: "muted" }, `earlier NACK: ${c.nacks[c.nacks.length - 1].message}`) : ""),
            c.ackedAt ? fmtAgo(c.ackedAt) : "–",
          ]),
          { caption: "Clients subscribed to this rule's app and kind", className: "rollout", empty: "No client subscribes to this rule's app and kind." }));
    } catch (err) {
      holder.replaceChildren(h("div", { class: "alert error" }, `Cannot load the rollout: ${err.message}`));
    }
  }
  load();
  timer = setInterval(load, 1000);
  return { el: h("div", {}, h("p", { class: "muted" }, "Which data planes applied the current version; refreshes every second."), holder), stop: () => clearInterval(timer) };
}

function historyView(kind, namespace, name, writable, reload) {
  const holder = h("div");
  const preview = h("div");
  async function load() {
    const data = await api(`${resourcePath(kind, namespace, name)}/history`);
    holder.replaceChildren(table(
      [{ label: "Revision", num: true }, { label: "Change" }, { label: "Generation", num: true }, { label: "" }],
      data.items.map((item) => [
        String(item.revision),
        [item.type.toLowerCase(), item.current ? [" ", badge("current", "info")] : null],
        item.generation ?? "–",
        h("span", { class: "actions" },
          h("button", { onclick: () => {
            preview.replaceChildren(h("h3", {}, `Revision ${item.revision}`), h("pre", { class: "yaml", tabindex: "0" }, dump(editable(item.object))));
          } }, "View"),
          writable && !item.current && item.type !== "DELETED"
            ? h("button", { "data-rollback": String(item.revision), onclick: () => rollback(item.revision) }, "Roll back to this…")
            : null),
      ]),
      { caption: "Version history", className: "history" }));
  }
  async function rollback(revision) {
    const path = `${resourcePath(kind, namespace, name)}/rollback`;
    try {
      const preview = await api(path, { method: "POST", json: { revision }, params: { dryRun: "All" } });
      const ok = await confirmDialog({
        title: `Roll back ${name} to revision ${revision}?`,
        body: h("div", {}, h("p", {}, "This stores the old content as a new version and pushes it to the subscribed data planes."), diffView(preview.diff)),
        confirm: "Roll back",
      });
      if (!ok) return;
      const done = await api(path, { method: "POST", json: { revision } });
      toast(`Rolled back to revision ${revision}: now version ${done.object.metadata.resourceVersion}`);
      announce("Rolled back");
      reload();
    } catch (err) {
      toast(`Rollback failed: ${err.message}`, "error");
    }
  }
  load().catch((err) => holder.replaceChildren(h("div", { class: "alert error" }, err.message)));
  return { el: h("div", {}, holder, preview), stop: () => {} };
}

export async function render(root, { match, params, go, setParams }) {
  const isNew = match.length === 0;
  let kind;
  let object;
  let namespace;
  if (isNew) {
    const kinds = (await allKinds()).filter((k) => k.kind !== INSTANCE_KIND && k.kind !== CONTRACT_KIND);
    kind = kinds.find((k) => k.plural === params.get("kind")) || kinds.find((k) => k.kind === "RateLimitStrategy");
    namespace = params.get("ns") || "default";
    object = template(kind, namespace, params.get("app"), params.get("target"));
    const kindSelect = h("select", { id: "new-kind" }, kinds.map((k) => h("option", { value: k.plural, selected: k.plural === kind.plural }, `${k.kind} (${k.group})`)));
    kindSelect.addEventListener("change", () => {
      const q = new URLSearchParams(params);
      q.set("kind", kindSelect.value);
      go(`#/rules/new?${q}`);
    });
    const def = definition({
      kind, namespace, object, isNew: true, writable: canEdit(namespace),
      onApplied: (saved) => go(`#/rules/${encodeURIComponent(saved.metadata.namespace)}/${kind.plural}/${encodeURIComponent(saved.metadata.name)}?tab=rollout`),
    });
    root.append(
      h("p", { class: "muted", style: "margin:0" }, h("a", { href: "#/rules" }, "Rules"), " / new"),
      h("h1", {}, "New rule"),
      h("div", { class: "toolbar" }, h("div", { class: "field" }, h("label", { for: "new-kind" }, "Kind"), kindSelect),
        h("p", { class: "muted", style: "margin:0" }, "The server checks the object as you type; nothing is saved before you review the change.")),
      def.el);
    return () => def.stop();
  }

  const [ns, plural, name] = match;
  namespace = ns;
  kind = await byPlural(plural);
  object = await api(resourcePath(kind, namespace, name));
  const writable = canEdit(namespace) && kind.kind !== INSTANCE_KIND && kind.kind !== CONTRACT_KIND;
  const TABS = [
    { id: "definition", label: "Definition" },
    { id: "rollout", label: "Rollout" },
    { id: "history", label: "History" },
  ];
  let current = params.get("tab") || "definition";
  let active = null;
  const panel = h("div", { id: "tabpanel", role: "tabpanel", tabindex: "0" });
  const tabHolder = h("div");
  const reload = () => go(`#/rules/${encodeURIComponent(namespace)}/${plural}/${encodeURIComponent(name)}?tab=${current}&t=${Date.now()}`);

  function select(id, focus = true) {
    current = id;
    setParams({ tab: id === "definition" ? null : id, t: null });
    if (active) active.stop();
    tabHolder.replaceChildren(tabs(TABS, current, select, "Rule sections"));
    if (focus) tabHolder.querySelector(`#tab-${id}`)?.focus({ preventScroll: true });
    panel.setAttribute("aria-labelledby", `tab-${id}`);
    if (id === "definition") {
      active = definition({
        kind, namespace, object: editable(object), isNew: false, writable,
        onApplied: () => go(`#/rules/${encodeURIComponent(namespace)}/${plural}/${encodeURIComponent(name)}?tab=rollout&t=${Date.now()}`),
      });
    } else if (id === "rollout") active = rolloutView(kind, namespace, name);
    else active = historyView(kind, namespace, name, writable, reload);
    panel.replaceChildren(active.el);
  }

  const deleteBtn = writable ? h("button", { class: "danger", id: "delete", onclick: async () => {
    const app = (object.metadata.labels || {}).app;
    const ok = await confirmDialog({
      title: `Delete ${kind.kind} ${name}?`,
      body: h("p", {}, `This removes ${name} from namespace ${namespace}${app ? `; the data planes of app ${app} stop applying it` : ""}. Its history stays, but there is no undo from this page.`),
      confirm: "Delete", danger: true,
    });
    if (!ok) return;
    try {
      await api(resourcePath(kind, namespace, name), { method: "DELETE" });
      toast(`${kind.kind} ${name} deleted`);
      go(`#/rules?ns=${encodeURIComponent(namespace)}`);
    } catch (err) {
      toast(`Delete failed: ${err.message}`, "error");
    }
  } }, "Delete…") : null;

  const app = (object.metadata.labels || {}).app || ((object.spec || {}).selector || {}).app;
  root.append(
    h("p", { class: "muted", style: "margin:0" }, h("a", { href: `#/rules?ns=${encodeURIComponent(namespace)}` }, "Rules"), ` / ${namespace} / ${kind.kind}`),
    h("div", { class: "toolbar" }, h("h1", { class: "grow", style: "margin:0" }, name), deleteBtn),
    h("dl", { class: "meta" },
      h("dt", {}, "Kind"), h("dd", {}, `${kind.kind} (${kind.group}/${kind.version})`),
      h("dt", {}, "Namespace"), h("dd", {}, namespace),
      h("dt", {}, "App"), h("dd", {}, app ? h("a", { href: `#/apps/${encodeURIComponent(namespace)}/${encodeURIComponent(app)}` }, app) : "–"),
      h("dt", {}, "Version"), h("dd", { id: "rule-version" }, `${object.metadata.resourceVersion} (generation ${object.metadata.generation ?? "–"})`)),
    tabHolder, panel);
  select(current, false);
  return () => { if (active) active.stop(); };
}
