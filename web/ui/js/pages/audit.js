// The audit log (GET /api/audit): who changed which job, script, secret or module, when,
// and what changed; filterable by actor, action and target, newest first, paged with
// "Load older". On a job's Audit tab (#/jobs/<id>/audit) the target is the job.
import { el, fill, fmtBytes, timeEl, preserveFocus } from "../dom.js";
import { api } from "../api.js";
import { liveJobHeader, pageError } from "../ui.js";

const PAGE = 50;
const ACTIONS = [
  ["", "All actions"],
  ["job.", "Jobs: any"],
  ["job.create", "Job created"], ["job.update", "Job changed"], ["job.delete", "Job deleted"],
  ["job.enable", "Job started"], ["job.disable", "Job stopped"], ["job.run", "Run now"],
  ["job.pause", "Paused"], ["job.resume", "Resumed"], ["job.backfill", "Backfill"],
  ["script.update", "Script saved"], ["job.rollback", "Script rolled back"],
  ["kv.delete", "Key-value entry deleted"],
  ["secret.", "Secrets"], ["module.", "Shared modules"],
];
/** Actions whose target is a job id. */
const JOB_ACTION = /^(job|script|kv)\./;

/** A JSON value as short text: strings bare, the rest as JSON. */
function text(v) {
  if (v === null || v === undefined) return "—";
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** A script or module version summary: "v3 · 1.2 KiB · note". */
function versionText(v) {
  if (!v || typeof v !== "object") return text(v);
  const parts = [`v${v.version}`];
  if (v.bytes !== undefined) parts.push(fmtBytes(v.bytes));
  if (v.note) parts.push(v.note);
  return parts.join(" · ");
}

/** What changed, one line per field: `field: old → new`; other details as `key: value`. */
function detailNode(detail) {
  if (!detail || typeof detail !== "object") return el("span", { class: "faint" }, text(detail));
  const lines = [];
  if (detail.changes && typeof detail.changes === "object") {
    for (const [field, { old, new: now }] of Object.entries(detail.changes)) {
      const [a, b] = field === "script" ? [versionText(old), versionText(now)] : [text(old), text(now)];
      lines.push(el("li", { dataset: { field } }, el("span", { class: "audit-key" }, field), ": ",
        el("span", { class: "old" }, a), " → ", el("span", { class: "new" }, b)));
    }
    if (!lines.length) lines.push(el("li", { class: "faint" }, "no field changed"));
  }
  // Everything else on one line: `key: value · key: value`.
  const rest = Object.entries(detail).filter(([key]) => key !== "changes");
  if (rest.length) {
    lines.push(el("li", { class: "audit-facts" }, rest.map(([key, value], i) => el("span", { dataset: { field: key } },
      i ? " · " : "", el("span", { class: "audit-key" }, key), ": ", key === "script" ? versionText(value) : text(value)))));
  }
  return lines.length ? el("ul", { class: "audit-detail" }, lines) : el("span", { class: "faint" }, "—");
}

/** The target, linked to its page while it may still exist. */
function targetNode(entry) {
  const t = encodeURIComponent(entry.target);
  const href = entry.action.endsWith(".delete") && entry.action !== "kv.delete" ? null
    : JOB_ACTION.test(entry.action) ? `#/jobs/${t}/overview`
      : entry.action.startsWith("module.") ? `#/module/${t}`
        : entry.action.startsWith("secret.") ? "#/secrets" : null;
  return href ? el("a", { class: "mono", href }, entry.target) : el("span", { class: "mono" }, entry.target);
}

/**
 * The whole log (`params.id` unset) or one job's entries, with filters kept in the URL
 * (`?actor=&action=&target=`).
 */
export function auditPage(root, { id }, query) {
  const forJob = !!id;
  let disposed = false;
  let header = null;
  let entries = [];
  let nextBefore = null;
  let seq = 0;

  const actor = el("input", { type: "search", id: "audit-actor", placeholder: "Token name", "aria-label": "Filter by token name", value: query.get("actor") || "" });
  const action = el("select", { id: "audit-action", "aria-label": "Filter by action" },
    ACTIONS.map(([v, label]) => el("option", { value: v }, label)));
  const wanted = query.get("action") || "";
  if (wanted && !ACTIONS.some(([v]) => v === wanted)) action.appendChild(el("option", { value: wanted }, wanted));
  action.value = wanted;
  const target = el("input", { type: "search", id: "audit-target", placeholder: "Job id, secret or module", "aria-label": "Filter by target", value: query.get("target") || "", dataset: { search: "" } });
  const tbody = el("tbody");
  const more = el("div", { class: "pager" });
  const errorHost = el("div", { role: "alert" });
  const table = el("div", { class: "table-wrap" }, el("table", { id: "audit-table" },
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "When"), el("th", { scope: "col" }, "Who"), el("th", { scope: "col" }, "Action"),
      forJob ? null : el("th", { scope: "col" }, "Target"),
      el("th", { scope: "col" }, "What changed"), el("th", { scope: "col" }, "Node"))),
    tbody));
  const toolbar = el("form", { class: "toolbar", role: "search", "aria-label": "Filter the audit log" },
    actor, action, forJob ? null : target, el("button", { type: "submit", class: "btn btn-sm" }, "Filter"));
  const panel = el("section", { class: "panel", "aria-label": "Audit log" }, toolbar, errorHost, table, more);

  toolbar.addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });
  action.addEventListener("change", apply);

  if (forJob) {
    fill(root, el("p", { class: "loading" }, "Loading…"));
    api.job(id).then((job) => {
      if (disposed) return;
      header = liveJobHeader(job, "audit");
      fill(root, header.node, panel);
      load(true);
    }, (e) => { if (!disposed) pageError(root, e, () => location.reload()); });
  } else {
    fill(root,
      el("div", { class: "page-head" },
        el("div", {}, el("h1", {}, "Audit log"),
          el("div", { class: "sub" }, "Every change made through the API: who made it (the API token's name), when, and what changed."))),
      panel);
    load(true);
  }

  function filters() {
    const f = { actor: actor.value.trim(), action: action.value, target: forJob ? id : target.value.trim() };
    return f;
  }

  function apply() {
    const f = filters();
    const q = new URLSearchParams();
    if (f.actor) q.set("actor", f.actor);
    if (f.action) q.set("action", f.action);
    if (!forJob && f.target) q.set("target", f.target);
    const s = q.toString();
    const base = forJob ? `#/jobs/${encodeURIComponent(id)}/audit` : "#/audit";
    history.replaceState(null, "", `${base}${s ? `?${s}` : ""}`);
    load(true);
  }

  async function load(reset) {
    const mine = ++seq;
    fill(errorHost);
    try {
      const page = await api.audit({ ...filters(), before: reset ? undefined : nextBefore, limit: PAGE });
      if (disposed || mine !== seq) return;
      entries = reset ? page.items : entries.concat(page.items);
      nextBefore = page.nextBefore;
      render();
    } catch (e) {
      if (disposed || mine !== seq) return;
      fill(errorHost, el("div", { class: "alert alert-bad" }, e.message));
    }
  }

  function row(e) {
    return el("tr", { dataset: { id: e.id, action: e.action } },
      el("td", { class: "nowrap" }, timeEl(e.at)),
      el("td", {}, el("span", { class: "badge plain" }, e.actor)),
      el("td", { class: "nowrap mono" }, e.action),
      forJob ? null : el("td", {}, targetNode(e)),
      el("td", {}, detailNode(e.detail)),
      el("td", { class: "faint small" }, e.node));
  }

  function render() {
    const f = filters();
    const filtered = f.actor || f.action || (!forJob && f.target);
    preserveFocus(tbody, () => fill(tbody, entries.length ? entries.map(row)
      : el("tr", {}, el("td", { colspan: forJob ? 5 : 6, class: "empty" },
        filtered ? "No entry matches these filters." : forJob ? "No change to this job has been recorded." : "No change has been recorded yet."))));
    preserveFocus(more, () => fill(more,
      el("span", { id: "audit-count" }, `${entries.length} entr${entries.length === 1 ? "y" : "ies"} shown`),
      el("div", { class: "spacer" }),
      nextBefore ? el("button", { type: "button", class: "btn btn-sm", dataset: { key: "older" }, onclick: () => load(false) }, "Load older entries") : el("span", { class: "faint" }, "That is all.")));
    root.dataset.loaded = "true";
  }

  return {
    dispose() {
      disposed = true;
      if (header) header.dispose();
    },
  };
}
