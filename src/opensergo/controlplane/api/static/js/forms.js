// Form views of the fault-tolerance kinds. A form edits a copy of the object and hands it back;
// fields the form does not know are kept as they are.

import { h } from "./dom.js";

const DURATION_HINT = "a duration: 500ms, 1s, 2m";

export const SCHEMAS = {
  RateLimitStrategy: [
    { path: ["spec", "threshold"], label: "Threshold", type: "int", hint: "requests allowed per window" },
    { path: ["spec", "statDuration"], label: "Window (statDuration)", type: "text", hint: DURATION_HINT },
    { path: ["spec", "limitMode"], label: "Limit mode", type: "select", options: ["Local", "Global", "GlobalToLocal"], hint: "GlobalToLocal divides the threshold by the live instances" },
  ],
  ThrottlingStrategy: [
    { path: ["spec", "minIntervalOfRequests"], label: "Minimum interval between requests", type: "text", hint: DURATION_HINT },
    { path: ["spec", "queueTimeout"], label: "Queue timeout", type: "text", hint: DURATION_HINT },
  ],
  ConcurrencyLimitStrategy: [
    { path: ["spec", "maxConcurrency"], label: "Maximum concurrency", type: "int", hint: "requests in flight" },
    { path: ["spec", "limitMode"], label: "Limit mode", type: "select", options: ["Local", "Global"] },
  ],
  CircuitBreakerStrategy: [
    { path: ["spec", "strategy"], label: "Strategy", type: "select", options: ["SlowRequestRatio", "ErrorRequestRatio"] },
    { path: ["spec", "triggerRatio"], label: "Trigger ratio", type: "text", hint: "e.g. 60% or 0.6" },
    { path: ["spec", "statDuration"], label: "Statistics window", type: "text", hint: DURATION_HINT },
    { path: ["spec", "recoveryTimeout"], label: "Recovery timeout", type: "text", hint: DURATION_HINT },
    { path: ["spec", "minRequestAmount"], label: "Minimum requests", type: "int", hint: "before the ratio counts" },
    { path: ["spec", "slowConditions", "maxAllowedRt"], label: "Slow request threshold (maxAllowedRt)", type: "text", hint: `${DURATION_HINT}; SlowRequestRatio only` },
  ],
  AdaptiveOverloadProtectionStrategy: [
    { path: ["spec", "metricType"], label: "Metric", type: "select", options: ["CpuPercentage", "SystemLoad"] },
    { path: ["spec", "triggerThreshold"], label: "Trigger threshold", type: "text", hint: "70% for CPU, a load average for SystemLoad" },
    { path: ["spec", "adaptiveStrategy"], label: "Adaptive strategy", type: "select", options: ["NONE", "BBR"] },
  ],
  HotParamRateLimitStrategy: [
    { path: ["spec", "param", "source"], label: "Parameter source", type: "select", options: ["query", "header", "path", "clientIP", "grpcMetadata", "argument"], hint: "where each request's value is read from" },
    { path: ["spec", "param", "name"], label: "Parameter name", type: "text", hint: "query/path parameter, header, metadata key or function argument; empty for clientIP" },
    { path: ["spec", "threshold"], label: "Threshold per value", type: "int", hint: "requests each value may make per window; 0 blocks every value" },
    { path: ["spec", "statDuration"], label: "Window (statDuration)", type: "text", hint: "whole seconds: 1s, 10s, 1m" },
    { path: ["spec", "burst"], label: "Burst", type: "int", hint: "extra requests a value may make at once (Reject only)" },
    { path: ["spec", "behavior"], label: "Behavior", type: "select", options: ["Reject", "Throttling"], hint: "Throttling paces each value's requests instead of refusing" },
    { path: ["spec", "queueTimeout"], label: "Queue timeout", type: "text", hint: `${DURATION_HINT}; Throttling only` },
    { path: ["spec", "exceptionItems"], label: "Exception items", type: "items", hint: "one per line: value=threshold (e.g. vip-42=100)" },
    { path: ["spec", "maxTrackedValues"], label: "Tracked values (LRU)", type: "int", hint: "default 4000 per second of window, at most 200000" },
  ],
  HttpRequestFallbackAction: [
    { path: ["spec", "behaviorDesc", "responseStatusCode"], label: "Response status code", type: "int", hint: "100-599" },
    { path: ["spec", "behaviorDesc", "responseContentBody"], label: "Response body", type: "textarea" },
  ],
  CachePolicy: [
    { path: ["spec", "cacheNames"], label: "Cache names", type: "lines", hint: "one per line: the name given to opensergo.cache.governed(client, name=...)" },
    { path: ["spec", "hotKey", "threshold"], label: "Hot-key threshold (requests/s per key)", type: "number", hint: "a key this busy on one instance is hot" },
    { path: ["spec", "hotKey", "window"], label: "Detection window", type: "text", hint: DURATION_HINT },
    { path: ["spec", "hotKey", "capacity"], label: "Top-k capacity (counters per window slice)", type: "int", hint: "bounded memory; keys rarer than 1/capacity of requests may be missed" },
    { path: ["spec", "nearCache", "maxEntries"], label: "Near-cache entries", type: "int", hint: "hot keys kept in process memory" },
    { path: ["spec", "nearCache", "ttl"], label: "Near-cache TTL", type: "text", hint: DURATION_HINT },
    { path: ["spec", "nearCache", "invalidation"], label: "Invalidation", type: "select", options: ["Tracking", "TtlOnly"], hint: "Tracking: Redis CLIENT TRACKING evicts on writes" },
    { path: ["spec", "sourceProtection", "maxLoadsPerSecond"], label: "Loads per second per key", type: "int", hint: "get_or_load: Sentinel token bucket per key" },
    { path: ["spec", "sourceProtection", "maxConcurrentLoads"], label: "Concurrent loads per key", type: "int" },
    { path: ["spec", "breaker", "errorRatio"], label: "Breaker error ratio", type: "text", hint: "e.g. 50%" },
    { path: ["spec", "breaker", "recoveryTimeout"], label: "Breaker recovery timeout", type: "text", hint: DURATION_HINT },
    { path: ["spec", "breaker", "staleIfError"], label: "Stale if error", type: "text", hint: `${DURATION_HINT}; serve near-cache values this long past freshness while the cache fails` },
    { path: ["spec", "breaker", "whenOpen"], label: "When open and no stale value", type: "select", options: ["Error", "Miss"] },
    { path: ["spec", "bigValue", "warnAbove"], label: "Warn above (bytes or 512KiB)", type: "text" },
    { path: ["spec", "bigValue", "refuseAbove"], label: "Refuse above (bytes or 8MiB)", type: "text" },
  ],
  FaultToleranceRule: [
    { path: ["spec", "targets"], label: "Target resources", type: "targets", hint: "one resource per line, e.g. GET:/foo or /pkg.Service/Method" },
    { path: ["spec", "strategies"], label: "Strategies", type: "strategies" },
    { path: ["spec", "fallbackAction", "name"], label: "Fallback action (HttpRequestFallbackAction name)", type: "text", hint: "optional" },
  ],
};

const STRATEGY_KINDS = ["RateLimitStrategy", "ThrottlingStrategy", "ConcurrencyLimitStrategy", "CircuitBreakerStrategy", "AdaptiveOverloadProtectionStrategy", "HotParamRateLimitStrategy"];

export const TEMPLATES = {
  RateLimitStrategy: { threshold: 10, statDuration: "1s" },
  ThrottlingStrategy: { minIntervalOfRequests: "100ms", queueTimeout: "500ms" },
  ConcurrencyLimitStrategy: { maxConcurrency: 8 },
  CircuitBreakerStrategy: { strategy: "ErrorRequestRatio", triggerRatio: "50%", statDuration: "10s", recoveryTimeout: "5s", minRequestAmount: 10 },
  AdaptiveOverloadProtectionStrategy: { metricType: "CpuPercentage", triggerThreshold: "80%", adaptiveStrategy: "BBR" },
  HotParamRateLimitStrategy: { param: { source: "query", name: "user_id" }, threshold: 10, statDuration: "1s" },
  HttpRequestFallbackAction: { behavior: "ReturnProvidedResponse", behaviorDesc: { responseStatusCode: 429, responseContentBody: "Too many requests" } },
  CachePolicy: { cacheNames: ["product-cache"], hotKey: { threshold: 100, window: "10s" }, nearCache: { maxEntries: 1000, ttl: "30s" } },
  FaultToleranceRule: { targets: [{ targetResourceName: "GET:/hello" }], strategies: [{ name: "my-rate-limit", kind: "RateLimitStrategy" }] },
};

export function hasForm(kind) {
  return Object.prototype.hasOwnProperty.call(SCHEMAS, kind);
}

function get(obj, path) {
  let v = obj;
  for (const p of path) { if (v === null || typeof v !== "object") return undefined; v = v[p]; }
  return v;
}

function set(obj, path, value) {
  let v = obj;
  for (let i = 0; i < path.length - 1; i++) {
    if (v[path[i]] === null || typeof v[path[i]] !== "object") v[path[i]] = {};
    v = v[path[i]];
  }
  const last = path[path.length - 1];
  if (value === undefined) delete v[last];
  else v[last] = value;
  // Drop parents left empty (e.g. slowConditions without maxAllowedRt).
  for (let n = path.length - 1; n > 1; n--) {
    const parent = get(obj, path.slice(0, n));
    if (parent && typeof parent === "object" && !Array.isArray(parent) && Object.keys(parent).length === 0) {
      delete get(obj, path.slice(0, n - 1))[path[n - 1]];
    } else break;
  }
}

function parseScalar(type, raw) {
  const text = raw.trim();
  if (text === "") return undefined;
  if (type === "int") return /^-?\d+$/.test(text) ? Number(text) : text;
  if (type === "number") return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
  return text;
}

let seq = 0;

// Returns {el, setErrors(errors)}; onChange(object) on every edit.
export function buildForm(object, onChange, { readOnly = false, lockName = false } = {}) {
  const obj = JSON.parse(JSON.stringify(object || {}));
  const kind = obj.kind;
  const fields = new Map();
  const emit = () => onChange(JSON.parse(JSON.stringify(obj)));
  const form = h("form", { class: "panel", "aria-label": `${kind} form`, onsubmit: (e) => e.preventDefault() });

  function addField(path, label, control, hint) {
    const id = control.id;
    const err = h("div", { class: "alert error", id: `${id}-err`, hidden: true, style: "margin:.3rem 0 0;padding:.2rem .5rem" });
    const hintEl = hint ? h("div", { class: "hint", id: `${id}-hint` }, hint) : null;
    if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
    const box = h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl, err);
    fields.set(path.join("."), { control, err, hint: hintEl });
    form.append(box);
  }

  const nameInput = h("input", { id: `f${++seq}-name`, value: get(obj, ["metadata", "name"]) || "", disabled: lockName || readOnly, autocomplete: "off" });
  nameInput.addEventListener("input", () => { set(obj, ["metadata", "name"], parseScalar("text", nameInput.value)); emit(); });
  addField(["metadata", "name"], "Name", nameInput, "lowercase letters, digits, '-' and '.'");
  const appInput = h("input", { id: `f${seq}-app`, value: get(obj, ["metadata", "labels", "app"]) || "", disabled: readOnly, autocomplete: "off" });
  appInput.addEventListener("input", () => { set(obj, ["metadata", "labels", "app"], parseScalar("text", appInput.value)); emit(); });
  addField(["metadata", "labels", "app"], "App", appInput, "the app whose data planes receive it (metadata.labels.app)");

  for (const f of SCHEMAS[kind] || []) {
    const id = `f${seq}-${f.path.join("-")}`;
    if (f.type === "select") {
      const current = get(obj, f.path);
      const control = h("select", { id, disabled: readOnly },
        h("option", { value: "" }, "(default)"),
        f.options.map((o) => h("option", { value: o, selected: String(current || "").toLowerCase() === o.toLowerCase() }, o)));
      control.addEventListener("change", () => { set(obj, f.path, parseScalar("text", control.value)); emit(); });
      addField(f.path, f.label, control, f.hint);
    } else if (f.type === "textarea") {
      const control = h("textarea", { id, rows: "3", disabled: readOnly, style: "width:100%" });
      control.value = get(obj, f.path) ?? "";
      control.addEventListener("input", () => { set(obj, f.path, control.value === "" ? undefined : control.value); emit(); });
      addField(f.path, f.label, control, f.hint);
    } else if (f.type === "items") {
      // value=threshold per line; a value may itself contain '=' (the last one splits).
      const control = h("textarea", { id, rows: "3", disabled: readOnly, style: "width:100%", class: "mono" });
      control.value = (get(obj, f.path) || []).map((it) => `${it.value}=${it.threshold}`).join("\n");
      control.addEventListener("input", () => {
        const items = control.value.split("\n").filter((l) => l.trim() !== "").map((line) => {
          const at = line.lastIndexOf("=");
          if (at < 0) return { value: line.trim(), threshold: undefined };
          return { value: line.slice(0, at).trim(), threshold: parseScalar("int", line.slice(at + 1)) };
        });
        set(obj, f.path, items.length ? items : undefined);
        emit();
      });
      addField(f.path, f.label, control, f.hint);
    } else if (f.type === "lines") {
      const control = h("textarea", { id, rows: "2", disabled: readOnly, style: "width:100%", class: "mono" });
      control.value = (get(obj, f.path) || []).join("\n");
      control.addEventListener("input", () => {
        const lines = control.value.split("\n").map((l) => l.trim()).filter(Boolean);
        set(obj, f.path, lines.length ? lines : undefined);
        emit();
      });
      addField(f.path, f.label, control, f.hint);
    } else if (f.type === "targets") {
      const control = h("textarea", { id, rows: "3", disabled: readOnly, style: "width:100%", class: "mono" });
      control.value = (get(obj, f.path) || []).map((t) => (t && t.targetResourceName) || "").join("\n");
      control.addEventListener("input", () => {
        const lines = control.value.split("\n").map((l) => l.trim()).filter(Boolean);
        set(obj, f.path, lines.map((l) => ({ targetResourceName: l })));
        emit();
      });
      addField(f.path, f.label, control, f.hint);
    } else if (f.type === "strategies") {
      const rows = h("div");
      const control = h("fieldset", { id, style: "border:1px solid var(--line);border-radius:6px;padding:.5rem" },
        h("legend", { class: "visually-hidden" }, f.label), rows);
      const draw = () => {
        const items = get(obj, f.path) || [];
        rows.replaceChildren(...items.map((s, i) => {
          const name = h("input", { id: `${id}-${i}-name`, value: s.name || "", disabled: readOnly, "aria-label": `Strategy ${i + 1} name` });
          const kindSel = h("select", { id: `${id}-${i}-kind`, disabled: readOnly, "aria-label": `Strategy ${i + 1} kind` },
            h("option", { value: "" }, "(any kind)"),
            STRATEGY_KINDS.map((k) => h("option", { value: k, selected: s.kind === k }, k)));
          const update = () => {
            const list = get(obj, f.path) || [];
            list[i] = { name: name.value.trim() };
            if (kindSel.value) list[i].kind = kindSel.value;
            set(obj, f.path, list);
            emit();
          };
          name.addEventListener("input", update);
          kindSel.addEventListener("change", update);
          return h("div", { class: "actions", style: "margin-bottom:.4rem" }, name, kindSel,
            readOnly ? null : h("button", { type: "button", "aria-label": `Remove strategy ${i + 1}`, onclick: () => {
              const list = get(obj, f.path) || [];
              list.splice(i, 1);
              set(obj, f.path, list);
              draw();
              emit();
            } }, "Remove"));
        }));
        if (!readOnly) rows.append(h("button", { type: "button", onclick: () => {
          const list = get(obj, f.path) || [];
          list.push({ name: "", kind: "RateLimitStrategy" });
          set(obj, f.path, list);
          draw();
          emit();
        } }, "Add strategy"));
      };
      draw();
      addField(f.path, f.label, control, f.hint);
    } else {
      const control = h("input", { id, value: get(obj, f.path) ?? "", disabled: readOnly, autocomplete: "off", inputmode: f.type === "int" ? "numeric" : null });
      control.addEventListener("input", () => { set(obj, f.path, parseScalar(f.type, control.value)); emit(); });
      addField(f.path, f.label, control, f.hint);
    }
  }

  function setErrors(errors) {
    for (const { control, err, hint } of fields.values()) {
      err.hidden = true;
      control.removeAttribute("aria-invalid");
      if (hint) control.setAttribute("aria-describedby", hint.id);
      else control.removeAttribute("aria-describedby");
    }
    for (const e of errors || []) {
      const path = String(e.field || "").replace(/\[\d+\].*$/, "");
      let target = fields.get(path);
      if (!target) {
        for (const [key, value] of fields) if (path.startsWith(key) || key.startsWith(path)) { target = value; break; }
      }
      if (!target) continue;
      target.err.textContent = e.message;
      target.err.hidden = false;
      target.control.setAttribute("aria-invalid", "true");
      target.control.setAttribute("aria-describedby", [target.err.id, target.hint && target.hint.id].filter(Boolean).join(" "));
    }
  }

  return { el: form, setErrors };
}
