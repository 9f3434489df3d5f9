// Entry point: auth check, routes, the header's node status.
import { el, fill } from "./dom.js";
import { api, onUnauthorized, getToken, setToken, ApiError } from "./api.js";
import { createRouter } from "./router.js";
import { dashboardPage } from "./pages/dashboard.js";
import { jobsPage } from "./pages/jobs.js";
import { jobFormPage } from "./pages/jobform.js";
import { scriptPage } from "./pages/script.js";
import { runsPage } from "./pages/runs.js";
import { overviewPage } from "./pages/overview.js";
import { versionsPage } from "./pages/versions.js";
import { statePage } from "./pages/state.js";
import { secretsPage } from "./pages/secrets.js";
import { modulesPage, moduleEditPage, moduleVersionsPage } from "./pages/modules.js";
import { auditPage } from "./pages/audit.js";

const root = document.getElementById("app");

let loginShown = false;

const routes = [
  { name: "dashboard", match: (p) => (p.length === 0 ? {} : null), page: dashboardPage },
  { name: "jobs", match: (p) => (p.length === 1 && p[0] === "jobs" ? {} : null), page: jobsPage },
  { name: "new", match: (p) => (p.length === 2 && p[0] === "jobs" && p[1] === "new" ? { id: null } : null), page: jobFormPage },
  { name: "jobs", match: (p) => (p.length === 2 && p[0] === "jobs" ? { id: p[1] } : null), page: jobFormPage },
  { name: "jobs", match: (p) => (p.length === 3 && p[0] === "jobs" && p[2] === "script" ? { id: p[1] } : null), page: scriptPage },
  { name: "jobs", match: (p) => (p.length === 3 && p[0] === "jobs" && p[2] === "runs" ? { id: p[1] } : null), page: runsPage },
  { name: "jobs", match: (p) => (p.length === 3 && p[0] === "jobs" && p[2] === "overview" ? { id: p[1] } : null), page: overviewPage },
  { name: "jobs", match: (p) => (p.length === 3 && p[0] === "jobs" && p[2] === "versions" ? { id: p[1] } : null), page: versionsPage },
  { name: "jobs", match: (p) => (p.length === 3 && p[0] === "jobs" && p[2] === "state" ? { id: p[1] } : null), page: statePage },
  { name: "modules", match: (p) => (p.length === 1 && p[0] === "modules" ? {} : null), page: modulesPage },
  { name: "modules", match: (p) => (p.length === 2 && p[0] === "modules" && p[1] === "new" ? { name: null } : null), page: moduleEditPage },
  { name: "modules", match: (p) => (p.length === 2 && p[0] === "module" ? { name: p[1] } : null), page: moduleEditPage },
  { name: "modules", match: (p) => (p.length === 3 && p[0] === "module" && p[2] === "versions" ? { name: p[1] } : null), page: moduleVersionsPage },
  { name: "secrets", match: (p) => (p.length === 1 && p[0] === "secrets" ? {} : null), page: secretsPage },
  { name: "jobs", match: (p) => (p.length === 3 && p[0] === "jobs" && p[2] === "audit" ? { id: p[1] } : null), page: auditPage },
  { name: "audit", match: (p) => (p.length === 1 && p[0] === "audit" ? {} : null), page: auditPage },
];

function highlightNav(name) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

const router = createRouter(root, routes, {
  isBlocked: () => loginShown,
  onRoute(name) {
    highlightNav(name);
    window.scrollTo(0, 0);
  },
});

function showLogin(message) {
  if (loginShown) return;
  loginShown = true;
  router.suspend();
  const input = el("input", {
    type: "password", id: "token", name: "token", autocomplete: "current-password", required: true,
    "aria-describedby": "token-error", placeholder: "TRAITOR_AUTH_TOKEN",
  });
  const error = el("div", { id: "token-error", class: "field error", role: "alert" }, message || "");
  const submit = el("button", { type: "submit", class: "btn btn-primary" }, "Continue");
  const form = el("form", { class: "panel login", "aria-labelledby": "login-title" },
    el("h1", { id: "login-title" }, "Sign in to Traitor"),
    el("p", {}, "This server is protected by an access token (TRAITOR_AUTH_TOKEN or --auth-token). Enter it once; this browser keeps it."),
    el("div", { class: "field" }, el("label", { for: "token" }, "Access token"), input),
    error, submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    setToken(input.value.trim());
    try {
      await api.stats();
      loginShown = false;
      updateTokenButton();
      router.reload();
    } catch (e) {
      setToken("");
      error.textContent = e.status === 401 ? "That token was not accepted." : e.message;
      submit.disabled = false;
      input.focus();
      input.select();
    }
  });
  highlightNav(null);
  fill(root, form);
  input.focus();
}

onUnauthorized((e) => {
  const hadToken = !!getToken();
  if (hadToken) setToken("");
  updateTokenButton();
  showLogin(hadToken ? "The saved token is no longer accepted." : "");
});

function updateTokenButton() {
  document.getElementById("forget-token").hidden = !getToken();
}

document.getElementById("forget-token").addEventListener("click", () => {
  setToken("");
  updateTokenButton();
  showLogin("");
});

document.getElementById("skip-link").addEventListener("click", () => root.focus());

// Header: which node this is and whether it is healthy (/healthz needs no token).
async function nodeStatus() {
  const host = document.getElementById("node-status");
  try {
    const h = await api.health();
    const tone = h.status === "ok" ? "ok" : "warn";
    fill(host, el("span", { class: `dot ${tone}`, "aria-hidden": "true" }),
      `${h.node} · ${h.mode === "std" ? "standalone" : h.mode} · v${h.version}`,
      h.status === "ok" ? "" : ` · ${h.problems.join("; ")}`);
    host.title = `${h.workersAlive}/${h.workersConfigured} workers alive`;
  } catch {
    fill(host, el("span", { class: "dot bad", "aria-hidden": "true" }), "server unreachable");
  }
}
nodeStatus();
setInterval(() => { if (!document.hidden) nodeStatus(); }, 10000);

// Global shortcut: "/" focuses the page's search box when there is one.
document.addEventListener("keydown", (ev) => {
  if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
  const search = document.querySelector("[data-search]");
  if (search) { ev.preventDefault(); search.focus(); }
});

(async () => {
  updateTokenButton();
  try {
    await api.stats();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return; // onUnauthorized shows the form.
  }
  router.start();
})();
