// Fetch wrapper: JSON in and out, the CSRF token on writes, 401 -> login page.

export const session = { authEnabled: false, authenticated: false, user: null, csrfToken: null };

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, { method = "GET", json, text, contentType, signal, params } = {}) {
  const headers = { Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (text !== undefined) {
    headers["Content-Type"] = contentType || "application/yaml";
    body = text;
  }
  if (method !== "GET" && session.csrfToken) headers["X-CSRF-Token"] = session.csrfToken;
  let url = path;
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const response = await fetch(url, { method, headers, body, signal, credentials: "same-origin" });
  let data = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) data = await response.json();
  else data = { message: await response.text() };
  if (response.status === 401 && !path.endsWith("/login")) {
    session.authenticated = false;
    const here = location.hash || "#/";
    if (!here.startsWith("#/login")) location.hash = `#/login?next=${encodeURIComponent(here)}`;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export async function loadSession() {
  const me = await api("/api/v1/whoami");
  Object.assign(session, { authEnabled: me.authEnabled, authenticated: me.authenticated, user: me.user || null });
  if (me.csrfToken) session.csrfToken = me.csrfToken;
  return session;
}

export function canEdit(namespace) {
  if (!session.authEnabled) return true;
  const roles = (session.user && session.user.roles) || {};
  const role = roles[namespace] || roles["*"];
  return role === "editor" || role === "admin";
}

export function resourcePath(kind, namespace, name) {
  let p = `/apis/${kind.group}/${kind.version}/namespaces/${encodeURIComponent(namespace)}/${kind.plural}`;
  if (name) p += `/${encodeURIComponent(name)}`;
  return p;
}
