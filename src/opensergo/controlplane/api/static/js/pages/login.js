import { api, session } from "../api.js";
import { h } from "../dom.js";
import { refreshSession } from "../main.js";

export async function render(root, { params, go }) {
  const next = params.get("next") || "#/";
  if (!session.authEnabled) {
    root.append(h("h1", {}, "Sign in"), h("div", { class: "alert info" }, "Authentication is off on this control plane (it listens on loopback only)."),
      h("a", { href: next }, "Continue"));
    return;
  }
  const error = h("div", { class: "alert error", role: "alert", hidden: true });
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true, "aria-describedby": "token-hint" });
  const form = h("form", { class: "login panel", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in to OpenSergo"),
    h("div", { class: "field" },
      h("label", { for: "token" }, "Access token"),
      input,
      h("div", { id: "token-hint", class: "hint" }, "The token your administrator gave you (the CLI reads the same token from OPENSERGO_TOKEN).")),
    error,
    h("button", { class: "primary", type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.hidden = true;
    try {
      const me = await api("/api/v1/login", { method: "POST", json: { token: input.value } });
      Object.assign(session, { authenticated: true, user: me.user, csrfToken: me.csrfToken });
      refreshSession();
      go(next.startsWith("#") && !next.startsWith("#/login") ? next : "#/");
    } catch (err) {
      error.textContent = err.status === 401 ? "That token is not valid." : `Sign-in failed: ${err.message}`;
      error.hidden = false;
      input.focus();
      input.select();
    }
  });
  root.append(form);
  setTimeout(() => input.focus(), 0);
}
