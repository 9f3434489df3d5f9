// Secrets (GET /api/secrets, PUT and DELETE /api/secret): names, times and the jobs each
// is granted to. A value goes to the server once and is never shown or kept here: the
// input is a password field, cleared as soon as the request is sent, and no route ever
// returns a value.
import { el, fill, timeEl } from "../dom.js";
import { api } from "../api.js";
import { toast, confirmDialog } from "../ui.js";

const NAME_RE = /^[A-Z_][A-Z0-9_]{0,63}$/;

/** What to do when the server has no key to encrypt secrets with (its 503). */
function keyHelp(message) {
  return el("div", { class: "alert alert-warn key-help", id: "secret-key-missing", role: "alert" },
    el("p", {}, el("b", {}, "Secrets cannot be saved: "), message),
    el("p", {}, "Give the server a key, the same on every node, then restart it:"),
    el("pre", {}, "export TRAITOR_SECRET_KEY=\"$(openssl rand -base64 32)\"\n# or: traitor --secret-key-file /etc/traitor/secret.key"),
    el("p", { class: "small" }, "Standalone mode creates <data-dir>/secret.key by itself; cluster mode needs one of these. Back the key up with the database: secrets cannot be read without it."));
}

export function secretsPage(root) {
  let disposed = false;
  let secrets = [];
  const jobNames = new Map(); // job id → name, for the grant links

  const name = el("input", {
    type: "text", id: "secret-name", name: "name", required: true, maxlength: 64, autocomplete: "off",
    spellcheck: "false", class: "mono-input", placeholder: "GITHUB_TOKEN", "aria-describedby": "secret-name-hint secret-name-error",
  });
  const value = el("input", {
    type: "password", id: "secret-value", name: "value", required: true, autocomplete: "new-password",
    spellcheck: "false", placeholder: "value", "aria-describedby": "secret-value-hint secret-value-error",
  });
  const nameError = el("div", { class: "error", id: "secret-name-error", role: "alert" });
  const valueError = el("div", { class: "error", id: "secret-value-error", role: "alert" });
  const save = el("button", { type: "submit", class: "btn btn-primary", id: "save-secret" }, "Save secret");
  const formAlert = el("div", { id: "secret-form-alert" });
  const form = el("form", { class: "panel-body", id: "secret-form", "aria-label": "Add or replace a secret", novalidate: true },
    el("div", { class: "row" },
      el("div", { class: "field" }, el("label", { for: "secret-name" }, "Name"), name,
        el("div", { class: "hint", id: "secret-name-hint" }, "Capitals, digits and _; a script reads it as secrets.NAME."), nameError),
      el("div", { class: "field" }, el("label", { for: "secret-value" }, "Value"), value,
        el("div", { class: "hint", id: "secret-value-hint" }, "Stored encrypted; never shown again, here or by the API. Saving an existing name replaces its value."), valueError)),
    el("div", { class: "form-row-actions" }, save),
    formAlert);

  const listAlert = el("div", { id: "secrets-alert", "aria-live": "polite" });
  const tbody = el("tbody");
  const count = el("div", { class: "sub", id: "secrets-count" });

  fill(root,
    el("div", { class: "page-head" },
      el("div", {}, el("h1", {}, "Secrets"), count),
      el("div", { class: "spacer" })),
    el("section", { class: "panel", "aria-labelledby": "secret-form-title", style: { marginBottom: "16px" } },
      el("div", { class: "panel-head" }, el("h2", { id: "secret-form-title" }, "Add or replace a secret")),
      form),
    listAlert,
    el("section", { class: "panel", "aria-labelledby": "secrets-title" },
      el("div", { class: "panel-head" }, el("h2", { id: "secrets-title" }, "Secrets"), el("div", { class: "spacer" }),
        el("span", { class: "muted small" }, "Grant one to a job in the job's Settings.")),
      el("div", { class: "table-wrap" }, el("table", { id: "secrets-table" },
        el("thead", {}, el("tr", {},
          el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Granted to"),
          el("th", { scope: "col" }, "Updated"), el("th", { scope: "col" }, "Created"),
          el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Actions")))),
        tbody))));
  fill(tbody, el("tr", {}, el("td", { colspan: 5, class: "empty" }, "Loading…")));

  form.addEventListener("submit", (ev) => { ev.preventDefault(); submit(); });
  name.addEventListener("input", () => { nameError.textContent = ""; name.removeAttribute("aria-invalid"); });
  load();

  async function load() {
    try {
      const list = await api.secrets();
      if (disposed) return;
      secrets = [...list].sort((a, b) => a.name.localeCompare(b.name));
      await loadJobNames();
      if (disposed) return;
      render();
    } catch (e) {
      if (disposed) return;
      fill(tbody, el("tr", {}, el("td", { colspan: 5, class: "empty" },
        e.status === 503 ? keyHelp(e.message) : el("div", { class: "alert alert-bad" }, `Could not load the secrets: ${e.message}`),
        el("button", { type: "button", class: "btn btn-sm", style: { marginTop: "10px" }, onclick: load }, "Try again"))));
    }
    root.dataset.loaded = "true";
  }

  /** Names of the granted jobs not yet known; a job that cannot be read shows its id. */
  async function loadJobNames() {
    const ids = [...new Set(secrets.flatMap((s) => s.jobs))].filter((id) => !jobNames.has(id));
    await Promise.all(ids.map(async (id) => {
      try { jobNames.set(id, (await api.job(id)).name || id); } catch { /* shown by id */ }
    }));
  }

  function jobLinks(ids) {
    if (!ids.length) return el("span", { class: "faint" }, "no job");
    return el("ul", { class: "grant-list" }, ids.map((id) => el("li", {},
      el("a", { href: `#/jobs/${encodeURIComponent(id)}/overview`, dataset: { jobId: id } }, jobNames.get(id) || id))));
  }

  function render() {
    fill(count, secrets.length ? `${secrets.length} secret${secrets.length === 1 ? "" : "s"}` : "");
    if (!secrets.length) {
      fill(tbody, el("tr", {}, el("td", { colspan: 5, class: "empty", id: "secrets-empty" },
        el("div", {}, "No secrets yet. Save one above, grant it to a job in the job's Settings, and read it in the script:"),
        el("pre", { class: "example" }, "await fetch(url, { headers: { authorization: `Bearer ${secrets.GITHUB_TOKEN}` } });"))));
      return;
    }
    fill(tbody, secrets.map((s) => {
      const replace = el("button", {
        type: "button", class: "btn btn-sm", dataset: { action: "replace" }, "aria-label": `Replace the value of ${s.name}`,
        onclick: () => { name.value = s.name; value.value = ""; value.focus(); },
      }, "Replace");
      const del = el("button", {
        type: "button", class: "btn btn-sm btn-ghost btn-danger", dataset: { action: "delete" }, "aria-label": `Delete ${s.name}`,
        onclick: () => remove(s),
      }, "Delete");
      return el("tr", { dataset: { secret: s.name } },
        el("td", {}, el("code", { class: "secret-name" }, s.name)),
        el("td", { class: "grants" }, jobLinks(s.jobs)),
        el("td", { class: "nowrap" }, timeEl(s.updatedAt)),
        el("td", { class: "nowrap" }, timeEl(s.createdAt)),
        el("td", { class: "actions" }, el("div", { class: "btn-group" }, replace, del)));
    }));
  }

  async function submit() {
    fill(formAlert);
    fill(listAlert);
    nameError.textContent = "";
    valueError.textContent = "";
    name.removeAttribute("aria-invalid");
    value.removeAttribute("aria-invalid");
    const n = name.value.trim();
    if (!NAME_RE.test(n)) {
      nameError.textContent = n ? "Use capitals, digits and _, not starting with a digit; at most 64 characters." : "Name the secret.";
      name.setAttribute("aria-invalid", "true");
      name.focus();
      return;
    }
    if (!value.value) {
      valueError.textContent = "Enter the value.";
      value.setAttribute("aria-invalid", "true");
      value.focus();
      return;
    }
    // The value leaves the page with this request and is not kept: whatever the answer,
    // the field is empty once it is sent.
    const request = api.putSecret(n, value.value);
    value.value = "";
    save.disabled = true;
    const existed = secrets.some((s) => s.name === n);
    try {
      await request;
      if (disposed) return;
      name.value = "";
      toast(existed ? `Replaced the value of ${n}` : `Saved ${n}`);
      await load();
    } catch (e) {
      if (disposed) return;
      if (e.status === 503) fill(formAlert, keyHelp(e.message));
      else if (e.field === "name") { nameError.textContent = e.message; name.setAttribute("aria-invalid", "true"); name.focus(); }
      else if (e.field === "value" || e.status === 413) { valueError.textContent = `${e.message} Enter the value again.`; value.setAttribute("aria-invalid", "true"); value.focus(); }
      else fill(formAlert, el("div", { class: "alert alert-bad", role: "alert" }, e.message));
    } finally {
      save.disabled = false;
    }
  }

  async function remove(s) {
    fill(listAlert);
    const granted = s.jobs.length
      ? ` It is granted to ${s.jobs.map((id) => jobNames.get(id) || id).join(", ")}; the server refuses while it is.`
      : " Scripts that read it get undefined from then on.";
    const yes = await confirmDialog({
      title: `Delete secret ${s.name}?`,
      message: `Its value is erased and cannot be recovered.${granted}`,
      confirm: "Delete secret", danger: true,
    });
    if (!yes || disposed) return;
    try {
      await api.deleteSecret(s.name);
      toast(`Deleted ${s.name}`);
    } catch (e) {
      if (disposed) return;
      if (e.status === 409) {
        // Granted to a job: say so where it stays visible, with the way out.
        fill(listAlert, el("div", { class: "alert alert-bad", id: "secret-delete-error", role: "alert" },
          el("p", {}, el("b", {}, `${s.name} was not deleted: `), e.message),
          s.jobs.length ? el("p", {}, "Remove the grant in the Settings of: ",
            s.jobs.map((id, i) => [i ? ", " : "", el("a", { href: `#/jobs/${encodeURIComponent(id)}` }, jobNames.get(id) || id)])) : null));
      } else toast(e.message, "bad");
    }
    await load();
  }

  return { dispose() { disposed = true; } };
}
