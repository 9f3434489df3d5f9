// The versions of a text that is saved version by version (a job's script, a shared
// module): a list, one version's source, a diff of any two (by default a version against
// the current one; computed here by ./diff.js), and rollback, which saves a new version.
// The page that uses it says where the versions come from.
import { el, fill, fmtBytes, fmtFull, timeEl } from "./dom.js";
import { toast, confirmDialog } from "./ui.js";
import { diffLines, diffStats, unifiedHunks, hunkHeader, sideBySide } from "./diff.js";

const CONTEXT = 3;

/**
 * options:
 * - `query`: the page's URLSearchParams (v, view, layout, against), kept in sync with the URL;
 * - `path`: the page's hash path without a query, for history.replaceState;
 * - `title`, `editHref`, `editLabel`: the list's heading and its link to the editor;
 * - `noun`: what a version holds ("script", "source"), for messages;
 * - `list()`: the versions ({version, current, note, bytes, savedAt});
 * - `source(version)`: that version's text;
 * - `rollback(version)`: makes it current again; resolves to the new version number, if known;
 * - `onRolledBack()`: called after a rollback.
 * Returns { node, reload(), current(), dispose() }.
 */
export function versionsView(options) {
  const { query, path, title, editHref, editLabel, noun } = options;
  let disposed = false;
  let versions = [];          // newest first
  const sources = new Map();  // version → text
  let selected = Number(query.get("v")) || null;
  let view = query.get("view") === "source" ? "source" : "diff";
  let layout = query.get("layout") === "split" ? "split" : "unified";
  let against = Number(query.get("against")) || null; // null: the current version

  const tbody = el("tbody");
  const listStatus = el("div", { class: "pager", id: "versions-status" });
  const detail = el("section", { class: "panel version-detail", id: "version-detail", "aria-label": "Version" });
  const node = el("div", { class: "versions-layout" },
    el("section", { class: "panel", "aria-labelledby": "versions-title" },
      el("div", { class: "panel-head" }, el("h2", { id: "versions-title" }, title), el("div", { class: "spacer" }),
        el("a", { class: "btn btn-sm", href: editHref }, editLabel)),
      el("div", { class: "table-wrap" }, el("table", { id: "versions-table", class: "compact" },
        el("thead", {}, el("tr", {},
          el("th", { scope: "col" }, "Version"), el("th", { scope: "col" }, "Saved"), el("th", { scope: "col" }, "Note"),
          el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Actions")))),
        tbody)),
      listStatus),
    detail);

  function current() { return versions.find((v) => v.current) || null; }

  function setUrl() {
    const q = new URLSearchParams();
    if (selected) q.set("v", selected);
    if (view !== "diff") q.set("view", view);
    if (layout !== "unified") q.set("layout", layout);
    if (against) q.set("against", against);
    const s = q.toString();
    history.replaceState(null, "", `${path}${s ? `?${s}` : ""}`);
  }

  async function loadList() {
    try {
      const list = await options.list();
      if (disposed) return;
      versions = [...list].sort((a, b) => b.version - a.version);
      const cur = current();
      if (!selected || !versions.some((v) => v.version === selected)) {
        // The one before the current, so that the first view shows what the last save changed.
        selected = cur && versions.length > 1 ? (versions.find((v) => v.version < cur.version) || cur).version : (cur ? cur.version : null);
      }
      if (against && !versions.some((v) => v.version === against)) against = null;
      renderList();
      await renderDetail();
    } catch (e) {
      if (disposed) return;
      fill(tbody, el("tr", {}, el("td", { colspan: 4, class: "empty" },
        el("div", { class: "alert alert-bad", id: "versions-error" }, `Could not load the versions: ${e.message}`),
        el("button", { type: "button", class: "btn btn-sm", style: { marginTop: "10px" }, onclick: loadList }, "Try again"))));
      fill(detail);
      detail.hidden = true;
    }
  }

  function renderList() {
    fill(tbody, versions.map((v) => {
      const label = `version ${v.version}`;
      const choose = (how) => { selected = v.version; view = how; setUrl(); renderList(); renderDetail(); };
      const rollback = v.current ? null : el("button", {
        type: "button", class: "btn btn-sm", dataset: { action: "rollback" }, "aria-label": `Roll back to ${label}`,
        onclick: (ev) => { ev.stopPropagation(); rollbackTo(v.version); },
      }, "Roll back");
      return el("tr", {
        class: `run-row${selected === v.version ? " selected" : ""}`,
        dataset: { version: v.version, current: String(v.current) },
        onclick: () => choose(view),
      },
        el("td", { class: "nowrap" }, el("b", {}, `v${v.version}`), " ", v.current ? el("span", { class: "badge ok", id: "current-badge" }, "current") : null),
        el("td", { class: "nowrap" }, timeEl(v.savedAt), el("div", { class: "faint small size" }, fmtBytes(v.bytes))),
        el("td", { class: "note" }, v.note || el("span", { class: "faint" }, "—")),
        el("td", { class: "actions" },
          el("button", { type: "button", class: "btn btn-sm btn-ghost", dataset: { action: "view" }, "aria-label": `View ${label}`, "aria-pressed": String(selected === v.version && view === "source"), onclick: (ev) => { ev.stopPropagation(); choose("source"); } }, "View"),
          el("button", { type: "button", class: "btn btn-sm btn-ghost", dataset: { action: "diff" }, "aria-label": `Diff ${label} with the current version`, "aria-pressed": String(selected === v.version && view === "diff"), onclick: (ev) => { ev.stopPropagation(); against = null; choose("diff"); } }, "Diff"),
          rollback));
    }));
    fill(listStatus, `${versions.length} version${versions.length === 1 ? "" : "s"}; each save and each rollback makes a new one.`);
  }

  async function source(version) {
    if (!sources.has(version)) sources.set(version, (await options.source(version)) || "");
    return sources.get(version);
  }

  function versionSelect(idAttr, label, value, onChange) {
    const select = el("select", { id: idAttr, "aria-label": label },
      versions.map((v) => el("option", { value: v.version }, `v${v.version}${v.current ? " (current)" : ""}`)));
    select.value = String(value);
    select.addEventListener("change", () => onChange(Number(select.value)));
    return select;
  }

  let detailSeq = 0;
  async function renderDetail() {
    const seq = ++detailSeq;
    const v = versions.find((x) => x.version === selected);
    const cur = current();
    if (!v || !cur) { detail.hidden = true; return; }
    detail.hidden = false;
    const other = against || cur.version;
    const tabBtn = (name, label) => el("button", {
      type: "button", role: "tab", class: "seg-btn", id: `tab-${name}`, "aria-selected": String(view === name),
      onclick: () => { view = name; setUrl(); renderList(); renderDetail(); },
    }, label);
    const head = el("div", { class: "panel-head" },
      el("h2", { id: "version-title" }, `Version ${v.version}`), v.current ? el("span", { class: "badge ok" }, "current") : null,
      el("div", { class: "spacer" }),
      el("div", { class: "seg", role: "tablist", "aria-label": "Show" }, tabBtn("diff", "Diff"), tabBtn("source", "Source")));
    const meta = el("div", { class: "version-meta muted small" },
      `Saved ${fmtFull(v.savedAt)} · ${fmtBytes(v.bytes)}`, v.note ? el("span", {}, " · ", el("q", {}, v.note)) : null);
    fill(detail, head, meta, el("p", { class: "loading" }, "Loading…"));
    try {
      if (view === "source") {
        const text = await source(v.version);
        if (disposed || seq !== detailSeq) return;
        fill(detail, head, meta, codeBlock(text, v.version));
        return;
      }
      const [oldText, newText] = await Promise.all([source(v.version), source(other)]);
      if (disposed || seq !== detailSeq) return;
      const edits = diffLines(oldText, newText);
      const stats = diffStats(edits);
      const layoutBtn = (name, label) => el("button", {
        type: "button", class: "seg-btn", "aria-pressed": String(layout === name), dataset: { layout: name },
        onclick: () => { layout = name; setUrl(); renderDetail(); },
      }, label);
      const controls = el("div", { class: "diff-bar" },
        el("label", { for: "diff-from", class: "small muted" }, "From"),
        versionSelect("diff-from", "Diff from version", v.version, (n) => { selected = n; setUrl(); renderList(); renderDetail(); }),
        el("label", { for: "diff-to", class: "small muted" }, "to"),
        versionSelect("diff-to", "Diff to version", other, (n) => { against = n === cur.version ? null : n; setUrl(); renderDetail(); }),
        el("span", { class: "diff-stats", id: "diff-stats" },
          el("span", { class: "add" }, `+${stats.added}`), " ", el("span", { class: "del" }, `−${stats.removed}`)),
        el("div", { class: "spacer" }),
        el("div", { class: "seg", role: "group", "aria-label": "Diff layout" }, layoutBtn("unified", "Unified"), layoutBtn("split", "Side by side")));
      const body = v.version === other
        ? el("div", { class: "empty-diff", id: "diff" }, "Pick two different versions to compare.")
        : !stats.added && !stats.removed
          ? el("div", { class: "empty-diff", id: "diff" }, `Versions ${v.version} and ${other} have the same ${noun}.`)
          : layout === "split" ? splitTable(edits, v.version, other) : unifiedTable(edits, v.version, other);
      fill(detail, head, meta, controls, body);
    } catch (e) {
      if (disposed || seq !== detailSeq) return;
      fill(detail, head, meta, el("div", { class: "panel-pad" }, el("div", { class: "alert alert-bad" }, e.message)));
    }
  }

  function codeBlock(text, version) {
    const lines = text.split("\n");
    if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
    return el("div", { class: "diff-wrap" }, el("table", { class: "code", id: "version-source", "aria-label": `${noun[0].toUpperCase()}${noun.slice(1)} of version ${version}` },
      el("tbody", {}, lines.map((l, i) => el("tr", {}, el("td", { class: "ln" }, String(i + 1)), el("td", { class: "tx" }, l))))));
  }

  async function rollbackTo(version) {
    const cur = current();
    const yes = await confirmDialog({
      title: `Roll back to version ${version}?`,
      message: `The ${noun} of version ${version} becomes current again, saved as a new version${cur ? ` (${cur.version + 1})` : ""}. The next run uses it; no version is deleted.`,
      confirm: "Roll back",
    });
    if (!yes) return;
    try {
      const made = await options.rollback(version);
      toast(`Rolled back to version ${version}${typeof made === "number" ? ` — now version ${made}` : ""}`);
      selected = version;
      against = null;
      view = "diff";
      setUrl();
      if (options.onRolledBack) options.onRolledBack();
      await loadList();
    } catch (e) {
      toast(e.message, "bad");
    }
  }

  return {
    node,
    reload: loadList,
    current,
    dispose() { disposed = true; },
  };
}

function unifiedTable(edits, from, to) {
  const rows = [];
  for (const h of unifiedHunks(edits, CONTEXT)) {
    rows.push(el("tr", { class: "hunk" }, el("td", { colspan: 4 }, hunkHeader(h))));
    for (const e of h.lines) {
      const cls = e.op === "+" ? "d-add" : e.op === "-" ? "d-del" : "d-eq";
      rows.push(el("tr", { class: cls },
        el("td", { class: "ln" }, e.oldNo ?? ""), el("td", { class: "ln" }, e.newNo ?? ""),
        el("td", { class: "sign", "aria-label": e.op === "+" ? "added" : e.op === "-" ? "removed" : null }, e.op),
        el("td", { class: "tx" }, e.text)));
    }
  }
  return el("div", { class: "diff-wrap" }, el("table", { class: "diff unified", id: "diff", "aria-label": `Changes from version ${from} to version ${to}` },
    el("thead", { class: "visually-hidden" }, el("tr", {}, el("th", {}, `v${from} line`), el("th", {}, `v${to} line`), el("th", {}, "Change"), el("th", {}, "Text"))),
    el("tbody", {}, rows)));
}

function splitTable(edits, from, to) {
  const rows = [];
  for (const h of unifiedHunks(edits, CONTEXT)) {
    rows.push(el("tr", { class: "hunk" }, el("td", { colspan: 4 }, hunkHeader(h))));
    for (const r of sideBySide(h.lines)) {
      const changed = r.left !== r.right;
      const side = (e, kind) => e
        ? [el("td", { class: `ln ${changed ? kind : ""}` }, kind === "d-del" ? e.oldNo : e.newNo),
           el("td", { class: `tx ${changed ? kind : ""}` }, e.text)]
        : [el("td", { class: "ln blank" }), el("td", { class: "tx blank" })];
      rows.push(el("tr", { class: changed ? "d-change" : "d-eq" }, side(r.left, "d-del"), side(r.right, "d-add")));
    }
  }
  return el("div", { class: "diff-wrap" }, el("table", { class: "diff split", id: "diff", "aria-label": `Version ${from} beside version ${to}` },
    el("thead", {}, el("tr", {}, el("th", { colspan: 2 }, `v${from}`), el("th", { colspan: 2 }, `v${to}`))),
    el("tbody", {}, rows)));
}
