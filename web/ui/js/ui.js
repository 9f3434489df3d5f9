// Shared widgets: toasts, the confirm dialog, outcome legends, job header and tabs.
import { el, fill, fmtTime, fmtRelative, fmtMs, fmtSeconds, badge, timeEl, toDate } from "./dom.js";
import { api } from "./api.js";

export function toast(message, tone = "") {
  const host = document.getElementById("toasts");
  const node = el("div", { class: `toast ${tone}` }, message);
  host.appendChild(node);
  setTimeout(() => node.remove(), tone === "bad" ? 7000 : 3500);
}

/** A modal confirmation; resolves true when confirmed. Escape or Cancel resolve false. */
export function confirmDialog({ title, message, confirm = "Confirm", danger = false }) {
  return new Promise((resolve) => {
    const ok = el("button", { type: "submit", class: `btn ${danger ? "btn-danger-solid" : "btn-primary"}`, value: "ok" }, confirm);
    const cancel = el("button", { type: "button", class: "btn", value: "cancel" }, "Cancel");
    const form = el("form", { method: "dialog" },
      el("div", { class: "dlg-body" }, el("h2", { id: "dlg-title" }, title), el("p", {}, message)),
      el("div", { class: "dlg-actions" }, cancel, ok));
    const dialog = el("dialog", { "aria-labelledby": "dlg-title" }, form);
    let result = false;
    cancel.addEventListener("click", () => dialog.close());
    form.addEventListener("submit", () => { result = true; });
    dialog.addEventListener("close", () => { dialog.remove(); resolve(result); });
    document.body.appendChild(dialog);
    dialog.showModal();
    ok.focus();
  });
}

/** The state switch: a button with role=switch that calls POST /api/enable. */
export function stateSwitch(job, onChanged, key) {
  const on = job.state === 1;
  const button = el("button", {
    type: "button", class: "switch", role: "switch", "aria-checked": String(on),
    title: on ? "Running — click to stop" : "Stopped — click to start",
    "aria-label": `${on ? "Stop" : "Start"} ${job.name || job.jobId}`,
    dataset: { key: key || `switch-${job.jobId}` },
  }, el("span", { class: "track", "aria-hidden": "true" }), el("span", { class: "switch-label" }, on ? "Running" : "Stopped"));
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api.enable(job.jobId, !on);
      toast(`${job.name || "Job"} ${on ? "stopped" : "started"}`);
      onChanged && onChanged();
    } catch (e) {
      toast(e.message, "bad");
      button.disabled = false;
    }
  });
  return button;
}

export function scheduleText(job) {
  if (job.execType === 0) return job.cron;
  return job.execAt ? `once at ${fmtTime(job.execAt)}` : "—";
}

/** Header shared by a job's pages: name, schedule, state, actions and the tabs. */
export function jobHeader(job, active, { onChanged, onDeleted, extra } = {}) {
  const id = job.jobId;
  const runNow = el("button", { type: "button", class: "btn" }, "Run now");
  runNow.addEventListener("click", async () => {
    runNow.disabled = true;
    try {
      await api.trigger(id);
      toast("Run started — see Runs");
      onChanged && onChanged("trigger");
    } catch (e) { toast(e.message, "bad"); }
    finally { runNow.disabled = false; }
  });
  const del = el("button", { type: "button", class: "btn btn-danger" }, "Delete");
  del.addEventListener("click", () => deleteJob(job, onDeleted));
  const tab = (name, href, label) => el("a", { href, "aria-current": active === name ? "page" : null }, label);
  return el("div", {},
    el("div", { class: "crumbs" }, el("a", { href: "#/jobs" }, "Jobs"), " / ", job.name || id),
    el("div", { class: "job-head" },
      el("div", {},
        el("h1", { class: "job-title" }, job.name || el("span", { class: "faint" }, "(unnamed)")),
        el("div", { class: "meta" },
          el("span", { class: "badge plain accent" }, job.execType === 0 ? "Timing" : "Delay"),
          el("span", { class: "sched" }, scheduleText(job)),
          job.execType === 0 ? el("span", { class: "tz" }, job.timezone) : null,
          job.nextExecTime ? el("span", {}, "Next ", timeEl(job.nextExecTime), ` (${fmtRelative(job.nextExecTime)})`) : null,
          job.lastExecTime ? el("span", {}, "Last ", timeEl(job.lastExecTime), " ", job.lastOutcome ? badge(job.lastOutcome) : null) : null,
          isPaused(job) ? el("span", { class: "badge warn", id: "paused-badge" }, "Paused until ", timeEl(job.pausedUntil)) : null,
          job.scriptVersion ? el("a", { class: "badge plain", href: `#/jobs/${encodeURIComponent(id)}/versions`, title: job.scriptNote || "Script versions" }, `script v${job.scriptVersion}`) : null,
        )),
      el("div", { class: "spacer" }),
      el("div", { class: "btn-group" }, stateSwitch(job, onChanged, `hdr-switch`), extra, runNow, del)),
    el("nav", { class: "tabs", "aria-label": "Job" },
      tab("overview", `#/jobs/${encodeURIComponent(id)}/overview`, "Overview"),
      tab("edit", `#/jobs/${encodeURIComponent(id)}`, "Settings"),
      tab("script", `#/jobs/${encodeURIComponent(id)}/script`, "Script & debug"),
      tab("versions", `#/jobs/${encodeURIComponent(id)}/versions`, "Versions"),
      tab("runs", `#/jobs/${encodeURIComponent(id)}/runs`, "Run history"),
      tab("state", `#/jobs/${encodeURIComponent(id)}/state`, "State"),
      tab("audit", `#/jobs/${encodeURIComponent(id)}/audit`, "Audit")));
}

/** True while the job's occurrences are skipped by a pause. */
export function isPaused(job, now = Date.now()) {
  const until = toDate(job.pausedUntil);
  return !!until && until.getTime() > now;
}

export const OVERLAP_LABELS = {
  skip: "Skip — a due occurrence is skipped while a run goes",
  allow: "Allow — runs may overlap, up to a cap",
  queue_one: "Queue one — at most one waits for the running one",
  replace: "Replace — the running one is cancelled",
};
export const MISFIRE_LABELS = {
  run_once: "Run once — the most recent missed occurrence, if within the window",
  run_all: "Run all — every missed occurrence within the window, up to a count",
  skip: "Skip — missed occurrences are recorded as missed",
};

/** The job's scheduling policies as [label, text] pairs, for the overview. */
export function policyRows(job) {
  const overlap = job.overlap === "allow"
    ? `allow, up to ${job.maxConcurrent} at once`
    : String(job.overlap || "skip").replace(/_/g, " ");
  const misfire = job.misfire === "run_all"
    ? `run all, within ${fmtSeconds(job.misfireWindowS)}, at most ${job.maxCatchUp}`
    : job.misfire === "skip" ? "skip" : `run once, within ${fmtSeconds(job.misfireWindowS)}`;
  const retries = job.retries
    ? `${job.retries} ${job.retries === 1 ? "retry" : "retries"}, after ${fmtMs(job.retryBackoffMs)} doubling up to ${fmtMs(job.retryMaxBackoffMs)}`
    : "none";
  const rows = [
    ["overlap", "Overlap", overlap],
    ["misfire", "Misfire", misfire],
    ["retries", "Retries", retries],
  ];
  if (job.execType === 0) rows.push(["jitter", "Jitter", job.jitterS ? `up to ${fmtSeconds(job.jitterS)}` : "none"]);
  rows.push(["limits", "Limits", `${fmtMs(job.timeLimitMs)} · ${job.memoryLimitMb} MiB`]);
  return rows;
}

export async function deleteJob(job, onDeleted) {
  const yes = await confirmDialog({
    title: "Delete this job?",
    message: `“${job.name || job.jobId}” and its schedule will be removed. This cannot be undone.`,
    confirm: "Delete job", danger: true,
  });
  if (!yes) return false;
  try {
    await api.deleteJob(job.jobId);
    toast(`Deleted ${job.name || job.jobId}`);
    onDeleted && onDeleted();
    return true;
  } catch (e) {
    toast(e.message, "bad");
    return false;
  }
}

/** Renders console lines (from a debug run or a stored run) into `host`. */
export function logLine(line, startedAt) {
  const at = line.at ? new Date(line.at).getTime() : null;
  const offset = at !== null && startedAt ? `+${Math.max(0, at - startedAt)}ms` : "";
  const level = String(line.level || "log").toLowerCase();
  return el("div", { class: `line lv-${level}`, dataset: { seq: line.seq } },
    el("span", { class: "t", title: line.at || "" }, offset),
    el("span", { class: "lv" }, level),
    el("span", { class: "tx" }, line.text));
}

export function errorBlock(error) {
  if (!error) return null;
  const text = error.stack ? `${error.message}\n${error.stack}` : error.message;
  return el("pre", { class: "err" }, text);
}

export function pageError(root, e, retry) {
  fill(root, el("div", { class: "panel empty-state" },
    el("h2", {}, e.status === 404 ? "Not found" : "Something went wrong"),
    el("p", {}, e.message),
    retry ? el("button", { type: "button", class: "btn", onclick: retry }, "Try again") : null,
    el("p", {}, el("a", { href: "#/jobs" }, "Back to jobs"))));
}

/**
 * A job header in its own host that redraws itself (only itself) after a toggle or a
 * run-now, so a page's unsaved edits are never lost. `onJob(job)` sees every fresh copy.
 */
export function liveJobHeader(job, active, { onJob, extra } = {}) {
  const host = el("div", { class: "job-header-host" });
  let current = job;
  let alive = true;
  const draw = () => {
    const focused = document.activeElement && host.contains(document.activeElement) ? document.activeElement.dataset.key : null;
    fill(host, jobHeader(current, active, {
      onChanged: refresh,
      onDeleted: () => { location.hash = "#/jobs"; },
      extra: extra ? extra() : null,
    }));
    if (focused) { const again = host.querySelector(`[data-key="${focused}"]`); if (again) again.focus(); }
  };
  async function refresh() {
    try {
      const fresh = await api.job(current.jobId);
      if (!alive) return;
      current = fresh;
      draw();
      onJob && onJob(fresh);
    } catch { /* the page reports its own errors */ }
  }
  draw();
  return { node: host, refresh, dispose() { alive = false; } };
}
