// A job's run history (GET /api/job/runs), live, with each run's console output
// (GET /api/job/run) in a side panel.
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

  const tbody = el("tbody");
  const more = el("div", { class: "pager" });
  const detail = el("section", { class: "panel run-detail", id: "run-detail", "aria-label": "Run details", hidden: true });
  const layout = el("div", { class: "runs-layout" });
  const filter = el("select", { id: "outcome-filter", "aria-label": "Filter by outcome" },
    el("option", { value: "" }, "All outcomes"),
    OUTCOMES.map((o) => el("option", { value: o }, outcomeLabel(o))));
  filter.value = outcome;
  const live = el("span", { class: "faint small" });

  fill(root, el("p", { class: "loading" }, "Loading…"));
  api.job(id).then((job) => { if (!disposed) build(job); }, (e) => { if (!disposed) pageError(root, e, () => location.reload()); });

  function build(job) {
    header = liveJobHeader(job, "runs");
    fill(layout,
      el("section", { class: "panel", "aria-label": "Runs" },
        el("div", { class: "toolbar" }, filter, el("div", { class: "spacer" }), live),
        el("div", { class: "table-wrap" }, el("table", { id: "runs-table" },
          el("thead", {}, el("tr", {},
            el("th", { scope: "col" }, "Scheduled"), el("th", { scope: "col" }, "Outcome"), el("th", { scope: "col" }, "Trigger"),
            el("th", { scope: "col" }, "Lateness"), el("th", { scope: "col" }, "Duration"), el("th", { scope: "col" }, "Node"),
            el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Log")))),
          tbody)),
        more),
      detail);
    fill(root, header.node, layout);
    filter.addEventListener("change", () => {
      outcome = filter.value;
      runs = [];
      nextBefore = null;
      refresh(true);
    });
    refresh(true);
    if (selected) openRun(selected);
  }

  function row(r) {
    const open = () => { selected = r.runId; openRun(r.runId); renderRows(); };
    const btn = el("button", {
      type: "button", class: "btn btn-sm", dataset: { key: `log-${r.runId}` },
      "aria-label": `Show log of the run scheduled ${fmtFull(r.scheduledAt)}`, "aria-expanded": String(selected === r.runId),
      onclick: (ev) => { ev.stopPropagation(); open(); },
    }, "Log");
    return el("tr", {
      class: `run-row${selected === r.runId ? " selected" : ""}`, dataset: { runId: r.runId, outcome: r.outcome },
      onclick: open,
    },
      el("td", { class: "nowrap" }, timeEl(r.scheduledAt), el("div", { class: "faint small" }, fmtRelative(r.scheduledAt))),
      el("td", {}, badge(r.outcome)),
      el("td", { class: "muted" }, r.trigger),
      el("td", { class: "num" }, r.latenessMs === null || r.latenessMs === undefined ? "—" : fmtMs(r.latenessMs)),
      el("td", { class: "num" }, fmtMs(r.durationMs)),
      el("td", { class: "muted small" }, r.node),
      el("td", { class: "actions" }, btn));
  }

  function renderRows() {
    preserveFocus(tbody, () => {
      if (!runs.length) {
        fill(tbody, el("tr", {}, el("td", { colspan: 7, class: "empty" },
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

  /** Fetches the newest page and merges it into what is shown (older pages stay). */
  async function refresh(reset) {
    clearTimeout(timer);
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
        selected = null; detailFor = null; detail.hidden = true; renderRows();
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
