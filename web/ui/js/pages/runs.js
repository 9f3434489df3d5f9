// A job's run history, live: by occurrence (GET /api/job/occurrences: one row per intended
// occurrence, expandable to its attempts) or as a flat list of runs (GET /api/job/runs,
// filterable by outcome); each run's console output (GET /api/job/run) in a side panel.
import { el, fill, fmtMs, fmtFull, badge, timeEl, fmtRelative, fmtBytes, OUTCOMES, outcomeLabel, preserveFocus } from "../dom.js";
import { api } from "../api.js";
import { liveJobHeader, pageError, logLine, errorBlock } from "../ui.js";

const POLL_MS = 2000;
const PAGE = 50;

export function runsPage(root, { id }, query) {
  let disposed = false;
  let header = null;
  let timer = null;
  let runs = [];            // newest first
  let nextBefore = null;    // for "Load older"
  let outcome = query.get("outcome") || "";
  let selected = query.get("run") || null;
  let detailFor = null;
  let mode = query.get("view") === "runs" || outcome ? "runs" : "occurrences";
  let occurrences = [];     // newest first
  let occNextBefore = null;
  const expanded = new Set(); // occurrence ids whose attempts are shown

  const tbody = el("tbody");
  const more = el("div", { class: "pager" });
  const detail = el("section", { class: "panel run-detail", id: "run-detail", "aria-label": "Run details", hidden: true });
  const layout = el("div", { class: "runs-layout" });
  const filter = el("select", { id: "outcome-filter", "aria-label": "Filter by outcome" },
    el("option", { value: "" }, "All outcomes"),
    OUTCOMES.map((o) => el("option", { value: o }, outcomeLabel(o))));
  filter.value = outcome;
  const live = el("span", { class: "faint small" });
  const occBody = el("tbody");
  const modeBtn = (name, label) => el("button", {
    type: "button", class: "seg-btn", id: `mode-${name}`, "aria-pressed": String(mode === name),
    onclick: () => setMode(name),
  }, label);
  const modeSwitch = el("div", { class: "seg", role: "group", "aria-label": "Group the history" },
    modeBtn("occurrences", "By occurrence"), modeBtn("runs", "All runs"));
  const occTable = el("div", { class: "table-wrap", id: "occurrences-wrap" }, el("table", { id: "occurrences-table" },
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Attempts shown")),
      el("th", { scope: "col" }, "Occurrence"), el("th", { scope: "col" }, "Trigger"),
      el("th", { scope: "col" }, "Outcome"), el("th", { scope: "col", class: "num" }, "Attempts"),
      el("th", { scope: "col", class: "num" }, el("abbr", { title: "Duplicates: further attempts to run the occurrence that were suppressed" }, "Dupl.")),
      el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Log")))),
    occBody));
  const runsTable = el("div", { class: "table-wrap", id: "runs-wrap" }, null);

  fill(root, el("p", { class: "loading" }, "Loading…"));
  api.job(id).then((job) => { if (!disposed) build(job); }, (e) => { if (!disposed) pageError(root, e, () => location.reload()); });

  function build(job) {
    header = liveJobHeader(job, "runs");
    fill(runsTable, el("table", { id: "runs-table" },
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Scheduled"), el("th", { scope: "col" }, "Outcome"), el("th", { scope: "col" }, "Trigger"),
        el("th", { scope: "col" }, "Attempt"),
        el("th", { scope: "col" }, "Lateness"), el("th", { scope: "col" }, "Duration"), el("th", { scope: "col" }, "Node"),
        el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Log")))),
      tbody));
    fill(layout,
      el("section", { class: "panel", "aria-label": "Runs" },
        el("div", { class: "toolbar" }, modeSwitch, filter, el("div", { class: "spacer" }), live),
        occTable, runsTable,
        more),
      detail);
    syncMode();
    fill(root, header.node, layout);
    filter.addEventListener("change", () => {
      outcome = filter.value;
      setUrl();
      runs = [];
      nextBefore = null;
      refresh(true);
    });
    refresh(true);
    if (selected) openRun(selected);
  }

  function syncMode() {
    occTable.hidden = mode !== "occurrences";
    runsTable.hidden = mode !== "runs";
    filter.hidden = mode !== "runs";
    for (const b of modeSwitch.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.id === `mode-${mode}`));
  }

  function setUrl() {
    const q = new URLSearchParams();
    if (mode === "runs") q.set("view", "runs");
    if (mode === "runs" && outcome) q.set("outcome", outcome);
    if (selected) q.set("run", selected);
    const s = q.toString();
    history.replaceState(null, "", `#/jobs/${encodeURIComponent(id)}/runs${s ? `?${s}` : ""}`);
  }

  function setMode(name) {
    if (mode === name) return;
    mode = name;
    syncMode();
    setUrl();
    refresh(true);
  }

  /** "1a2b3c4d…@1795497302852": the job id is the same on every row. */
  function shortOccurrence(occId) {
    const at = occId.lastIndexOf("@");
    return at < 0 ? occId : `…${occId.slice(at)}`;
  }

  function logButton(r, label = "Log") {
    return el("button", {
      type: "button", class: "btn btn-sm", dataset: { key: `log-${r.runId}` },
      "aria-label": `Show log of attempt ${r.attempt || 1} of the run scheduled ${fmtFull(r.scheduledAt)}`, "aria-expanded": String(selected === r.runId),
      onclick: (ev) => { ev.stopPropagation(); select(r.runId); },
    }, label);
  }

  function select(runId) {
    selected = runId;
    setUrl();
    openRun(runId);
    renderRows();
  }

  function occRows(o) {
    const open = expanded.has(o.occurrenceId);
    const attempts = o.attempts || [];
    const latest = attempts[0];
    const attemptsId = `att-${o.occurrenceId.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const toggle = () => {
      if (expanded.has(o.occurrenceId)) expanded.delete(o.occurrenceId); else expanded.add(o.occurrenceId);
      renderRows();
    };
    const expand = attempts.length ? el("button", {
      type: "button", class: "btn btn-sm btn-ghost btn-icon expand", "aria-expanded": String(open), "aria-controls": attemptsId,
      "aria-label": `${open ? "Hide" : "Show"} the ${attempts.length} attempt${attempts.length === 1 ? "" : "s"} of the occurrence scheduled ${fmtFull(o.scheduledAt)}`,
      dataset: { key: `exp-${o.occurrenceId}` },
      onclick: (ev) => { ev.stopPropagation(); toggle(); },
    }, open ? "▾" : "▸") : null;
    const rows = [el("tr", {
      class: `occ-row${open ? " open" : ""}${latest && selected === latest.runId ? " selected" : ""}`,
      dataset: { occurrenceId: o.occurrenceId, outcome: o.outcome, attempts: attempts.length, trigger: o.trigger },
      onclick: attempts.length ? toggle : null,
    },
      el("td", { class: "expand-cell" }, expand),
      el("td", { class: "nowrap" }, timeEl(o.scheduledAt), el("span", { class: "faint small" }, ` · ${fmtRelative(o.scheduledAt)}`),
        el("div", {}, el("code", { class: "occ-id", title: o.occurrenceId }, shortOccurrence(o.occurrenceId)))),
      el("td", { class: "muted" }, o.trigger),
      el("td", {}, badge(o.outcome)),
      el("td", { class: "num attempts" }, attempts.length > 1 ? el("b", {}, String(attempts.length)) : String(attempts.length)),
      el("td", { class: "num duplicates" }, o.duplicates ? el("span", { class: "badge warn plain", title: "Further attempts to run this occurrence were suppressed as duplicates" }, String(o.duplicates)) : el("span", { class: "faint" }, "0")),
      el("td", { class: "actions" }, latest ? logButton(latest) : null))];
    if (open) {
      // Oldest first reads like what happened.
      const inOrder = [...attempts].sort((a, b) => (a.attempt || 1) - (b.attempt || 1));
      rows.push(el("tr", { class: "attempts-row", id: attemptsId }, el("td", {}), el("td", { colspan: 6 },
        el("table", { class: "attempts compact", "aria-label": `Attempts of the occurrence scheduled ${fmtFull(o.scheduledAt)}` },
          el("thead", {}, el("tr", {},
            el("th", { scope: "col" }, "Attempt"), el("th", { scope: "col" }, "Started"), el("th", { scope: "col" }, "Outcome"),
            el("th", { scope: "col" }, "Duration"), el("th", { scope: "col" }, "Script"),
            el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Log")))),
          el("tbody", {}, inOrder.map((r) => el("tr", {
            class: `attempt-row run-row${selected === r.runId ? " selected" : ""}`, dataset: { runId: r.runId, attempt: r.attempt || 1, outcome: r.outcome },
            onclick: () => select(r.runId),
          },
            el("td", {}, `#${r.attempt || 1}`),
            el("td", { class: "nowrap" }, r.startedAt ? timeEl(r.startedAt) : el("span", { class: "faint" }, "—")),
            el("td", {}, badge(r.outcome), r.error ? el("div", { class: "small err-cell" }, r.error.message) : null),
            el("td", { class: "num" }, fmtMs(r.durationMs)),
            el("td", { class: "muted" }, r.scriptVersion ? `v${r.scriptVersion}` : "—"),
            el("td", { class: "actions" }, logButton(r)))))))));
    }
    return rows;
  }

  function row(r) {
    const open = () => select(r.runId);
    const btn = logButton(r);
    return el("tr", {
      class: `run-row${selected === r.runId ? " selected" : ""}`, dataset: { runId: r.runId, outcome: r.outcome },
      onclick: open,
    },
      el("td", { class: "nowrap" }, timeEl(r.scheduledAt), el("div", { class: "faint small" }, fmtRelative(r.scheduledAt))),
      el("td", {}, badge(r.outcome)),
      el("td", { class: "muted" }, r.trigger),
      el("td", { class: "num" }, r.attempt > 1 ? `#${r.attempt}` : el("span", { class: "faint" }, "#1")),
      el("td", { class: "num" }, r.latenessMs === null || r.latenessMs === undefined ? "—" : fmtMs(r.latenessMs)),
      el("td", { class: "num" }, fmtMs(r.durationMs)),
      el("td", { class: "muted small" }, r.node),
      el("td", { class: "actions" }, btn));
  }

  function renderRows() {
    if (mode === "occurrences") return renderOccurrences();
    preserveFocus(tbody, () => {
      if (!runs.length) {
        fill(tbody, el("tr", {}, el("td", { colspan: 8, class: "empty" },
          outcome ? `No ${outcomeLabel(outcome)} runs.` : "No runs yet. Start the job, or use Run now.")));
      } else fill(tbody, runs.map(row));
    });
    preserveFocus(more, () => fill(more,
      el("span", {}, `${runs.length} run${runs.length === 1 ? "" : "s"} shown`),
      el("div", { class: "spacer" }),
      nextBefore ? el("button", { type: "button", class: "btn btn-sm", dataset: { key: "older" }, onclick: loadOlder }, "Load older runs") : el("span", { class: "faint" }, "That is all.")));
    layout.classList.toggle("with-detail", !!selected);
    root.dataset.loaded = "true";
  }

  function renderOccurrences() {
    preserveFocus(occBody, () => {
      if (!occurrences.length) {
        fill(occBody, el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No occurrences yet. Start the job, or use Run now.")));
      } else fill(occBody, occurrences.flatMap(occRows));
    });
    preserveFocus(more, () => fill(more,
      el("span", {}, `${occurrences.length} occurrence${occurrences.length === 1 ? "" : "s"} shown`),
      el("div", { class: "spacer" }),
      occNextBefore ? el("button", { type: "button", class: "btn btn-sm", dataset: { key: "older" }, onclick: loadOlder }, "Load older occurrences") : el("span", { class: "faint" }, "That is all.")));
    layout.classList.toggle("with-detail", !!selected);
    root.dataset.loaded = "true";
  }

  async function refreshOccurrences(reset) {
    const page = await api.occurrences({ id, limit: PAGE });
    if (disposed || mode !== "occurrences") return;
    if (reset || !occurrences.length) {
      occurrences = page.items;
      occNextBefore = page.nextBefore;
    } else {
      const fresh = new Map(page.items.map((o) => [o.occurrenceId, o]));
      const known = new Set(occurrences.map((o) => o.occurrenceId));
      const added = page.items.filter((o) => !known.has(o.occurrenceId));
      occurrences = [...added, ...occurrences.map((o) => fresh.get(o.occurrenceId) || o)];
    }
    fill(live, `Live · updated ${new Date().toLocaleTimeString()}`);
    renderRows();
    const open = selected && occurrences.flatMap((o) => o.attempts || []).find((r) => r.runId === selected);
    if (open && detailFor && detailFor.outcome === "running" && open.outcome !== "running") openRun(selected, true);
  }

  /** Fetches the newest page and merges it into what is shown (older pages stay). */
  async function refresh(reset) {
    clearTimeout(timer);
    if (mode === "occurrences") {
      try {
        await refreshOccurrences(reset);
      } catch (e) {
        if (!disposed) fill(live, e.message);
      }
      if (!disposed) timer = setTimeout(() => refresh(false), document.hidden ? POLL_MS * 5 : POLL_MS);
      return;
    }
    try {
      const page = await api.runs({ id, outcome, limit: PAGE });
      if (disposed) return;
      if (reset || !runs.length) {
        runs = page.items;
        nextBefore = page.nextBefore;
      } else {
        const fresh = new Map(page.items.map((r) => [r.runId, r]));
        const known = new Set(runs.map((r) => r.runId));
        const added = page.items.filter((r) => !known.has(r.runId));
        runs = [...added, ...runs.map((r) => fresh.get(r.runId) || r)];
      }
      fill(live, `Live · updated ${new Date().toLocaleTimeString()}`);
      renderRows();
      // A run still going when opened: refresh its log too.
      const open = selected && runs.find((r) => r.runId === selected);
      if (open && detailFor && detailFor.outcome === "running" && open.outcome !== "running") openRun(selected, true);
    } catch (e) {
      if (disposed) return;
      fill(live, e.message);
    }
    if (!disposed) timer = setTimeout(() => refresh(false), document.hidden ? POLL_MS * 5 : POLL_MS);
  }

  async function loadOlder() {
    if (mode === "occurrences") {
      if (!occNextBefore) return;
      try {
        const page = await api.occurrences({ id, limit: PAGE, before: occNextBefore });
        if (disposed) return;
        const known = new Set(occurrences.map((o) => o.occurrenceId));
        occurrences = [...occurrences, ...page.items.filter((o) => !known.has(o.occurrenceId))];
        occNextBefore = page.nextBefore;
        renderRows();
      } catch (e) { fill(live, e.message); }
      return;
    }
    if (!nextBefore) return;
    try {
      const page = await api.runs({ id, outcome, limit: PAGE, before: nextBefore });
      if (disposed) return;
      const known = new Set(runs.map((r) => r.runId));
      runs = [...runs, ...page.items.filter((r) => !known.has(r.runId))];
      nextBefore = page.nextBefore;
      renderRows();
    } catch (e) { fill(live, e.message); }
  }

  async function openRun(runId, quiet) {
    detail.hidden = false;
    layout.classList.add("with-detail");
    if (!quiet) fill(detail, el("div", { class: "panel-head" }, el("h2", {}, "Run"), el("span", { class: "faint" }, "Loading…")));
    try {
      const r = await api.run(runId);
      if (disposed || selected !== runId) return;
      detailFor = r;
      const started = r.startedAt ? new Date(r.startedAt).getTime() : null;
      const closeBtn = el("button", { type: "button", class: "btn btn-sm btn-ghost", "aria-label": "Close run details", onclick: () => {
        selected = null; detailFor = null; detail.hidden = true; setUrl(); renderRows();
      } }, "✕");
      const logEl = el("div", { class: "console", id: "run-log", role: "log", tabindex: "0", "aria-label": "Console output of this run" },
        r.log.length ? r.log.map((l) => logLine(l, started)) : el("div", { class: "console-empty" },
          r.outcome === "skipped" || r.outcome === "missed" ? "This occurrence did not run, so it has no output." : "No console output."),
        r.logTruncated ? el("div", { class: "console-note", id: "log-truncated" }, "The output was longer than the stored limit and was cut here.") : null,
        r.error ? el("div", { class: "console-end" }, el("div", { class: "head" }, el("b", {}, "Error"), badge(r.outcome)), errorBlock(r.error)) : null);
      fill(detail,
        el("div", { class: "panel-head" }, el("h2", {}, "Run "), badge(r.outcome), el("div", { class: "spacer" }), closeBtn),
        el("dl", { class: "kv" },
          el("dt", {}, "Scheduled"), el("dd", {}, fmtFull(r.scheduledAt)),
          el("dt", {}, "Started"), el("dd", {}, r.startedAt ? fmtFull(r.startedAt) : "—"),
          el("dt", {}, "Lateness"), el("dd", {}, fmtMs(r.latenessMs)),
          el("dt", {}, "Duration"), el("dd", {}, fmtMs(r.durationMs)),
          el("dt", {}, "Trigger"), el("dd", {}, r.trigger),
          el("dt", {}, "Attempt"), el("dd", { id: "run-attempt" }, String(r.attempt || 1)),
          r.occurrenceId ? [el("dt", {}, "Occurrence"), el("dd", { class: "mono small" }, r.occurrenceId)] : null,
          r.scriptVersion ? [el("dt", {}, "Script"), el("dd", {}, el("a", { href: `#/jobs/${encodeURIComponent(id)}/versions?v=${r.scriptVersion}&view=source` }, `version ${r.scriptVersion}`))] : null,
          r.duplicates ? [el("dt", {}, "Duplicates"), el("dd", {}, `${r.duplicates} suppressed`)] : null,
          el("dt", {}, "Node"), el("dd", {}, r.node),
          r.cpuTimeUs !== null && r.cpuTimeUs !== undefined ? [el("dt", {}, "CPU"), el("dd", {}, fmtMs(r.cpuTimeUs / 1000))] : null,
          r.peakMemoryBytes ? [el("dt", {}, "Peak memory"), el("dd", {}, fmtBytes(r.peakMemoryBytes))] : null,
          el("dt", {}, "Run id"), el("dd", { class: "mono small" }, r.runId)),
        logEl);
      if (!quiet && window.matchMedia("(max-width: 1100px)").matches) detail.scrollIntoView({ block: "start" });
    } catch (e) {
      if (disposed) return;
      fill(detail, el("div", { class: "panel-pad" }, el("div", { class: "alert alert-bad" }, e.message)));
    }
  }

  return {
    dispose() {
      disposed = true;
      clearTimeout(timer);
      if (header) header.dispose();
    },
  };
}
