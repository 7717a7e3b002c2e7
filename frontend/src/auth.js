// Sign-in on a shared server (issue 14): when GET /api/session says auth is required and nobody is signed in, or
// any call answers 401, a sign-in form (API token, or name and password) POSTs /api/session; the header shows who
// is signed in, with a sign-out. A single-user server (auth "off", or no /api/session at all) shows nothing.
import { h, clear } from "./dom.js";
import { api, setCsrf, onUnauthorized } from "./api.js";

/** The header's "who is signed in" slot; starts the session check. */
export function startAuth() {
  const slot = h("span", { class: "auth-slot", id: "auth-slot" });
  const state = { form: null };
  const show = (s) => {
    setCsrf(s && s.csrf_token);
    clear(slot);
    if (!s || s.auth !== "required") return;
    if (s.user) slot.append(signedIn(s.user, () => api.signOut().finally(() => location.reload())));
    else openForm(state);
  };
  onUnauthorized(() => openForm(state));
  api.session().then(show).catch(() => show(null));
  return slot;
}

function signedIn(user, signOut) {
  return h("span", { class: "auth-user", id: "auth-user" },
    h("span", { text: user.is_admin ? `${user.name} (admin)` : user.name, title: "Signed in" }),
    h("button", { class: "btn small", id: "sign-out", onclick: signOut, text: "Sign out" }));
}

/** The sign-in dialog (one at a time): a token, or a name and a password. Signed in, the page reloads, so that
 * everything refused before the sign-in loads as this user. */
function openForm(state) {
  if (state.form) return;
  const token = h("input", { id: "signin-token", type: "password", autocomplete: "off", "aria-label": "API token", placeholder: "API token" });
  const name = h("input", { id: "signin-name", autocomplete: "username", "aria-label": "Name", placeholder: "name" });
  const password = h("input", { id: "signin-password", type: "password", autocomplete: "current-password", "aria-label": "Password", placeholder: "password" });
  const error = h("p", { class: "error", id: "signin-error", role: "alert" });
  const form = h("form", { class: "signin-card" },
    h("h2", { text: "Sign in" }),
    h("p", { class: "muted", text: "This server is shared: sign in with your API token (from `circuitboard users add`), or your name and password." }),
    h("label", {}, "API token ", token),
    h("p", { class: "muted", text: "or" }),
    h("div", { class: "row" }, name, password),
    error,
    h("button", { class: "btn primary", id: "signin-submit", type: "submit", text: "Sign in" }));
  const overlay = h("div", { class: "signin-overlay", id: "signin" }, form);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = token.value ? { token: token.value } : { name: name.value, password: password.value };
    api.signIn(body).then(() => location.reload()).catch((e) => (error.textContent = e.message));
  });
  state.form = overlay;
  document.body.append(overlay);
  token.focus();
}
