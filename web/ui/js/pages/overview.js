// A job's overview: its policies, its pause (POST /api/job/pause, /api/job/resume), the
// plan of what it would fire and what a restart would catch up (GET /api/job/plan), and
// backfill of a past range (POST /api/job/backfill).
import { el, fill, fmtFull, fmtRelative, timeEl, toLocalInput, fromLocalInput } from "../dom.js";
import { api } from "../api.js";
import { liveJobHeader, pageError, toast, policyRows, isPaused } from "../ui.js";

const SHOWN_FIRES = 20;
const HOUR = 3600e3;

/** A labelled control with its own error line, like the job form's. */
function field(id, label, control) {
  const error = el("div", { class: "error", id: `${id}-error`, role: "alert" });
  control.setAttribute("aria-describedby", `${id}-error`);
  return { error, node: el("div", { class: "field" }, el("label", { for: id }, label), control, error) };
}

/** A list of instants, the first `max` of them, with how many more there are. */
function instants(list, id, max = SHOWN_FIRES, more = 0) {
  if (!list.length) return el("div", { class: "faint small", id }, "None.");
  const extra = list.length - max;
  return el("ol", { class: "instants", id },
    list.slice(0, max).map((t) => el("li", {}, el("time", { datetime: t, title: t }, fmtFull(t)), el("span", { class: "faint" }, ` · ${fmtRelative(t)}`))),
    extra > 0 || more ? el("li", { class: "faint more" }, `… and ${extra > 0 ? extra : "more"}${more ? "+" : ""} more`) : null);
}

export function overviewPage(root, { id }) {
  let disposed = false;
  let header = null;
  let job = null;

  const policies = el("dl", { class: "kv", id: "policies-view" });
  const pauseState = el("div", { id: "pause-state", "aria-live": "polite" });
  const pauseUntil = el("input", { type: "datetime-local", id: "pause-until", name: "until", step: 1 });
  const fPause = field("pause-until", "Pause until", pauseUntil);
  const pauseBtn = el("button", { type: "submit", class: "btn", id: "pause" }, "Pause");
  const presets = el("div", { class: "btn-group presets" }, [["1 h", HOUR], ["8 h", 8 * HOUR], ["1 day", 24 * HOUR], ["1 week", 168 * HOUR]].map(([label, ms]) =>
    el("button", { type: "button", class: "btn btn-sm btn-ghost", "aria-label": `Set the pause end to ${label} from now`, onclick: () => { pauseUntil.value = toLocalInput(Date.now() + ms); } }, `+${label}`)));
  const pauseForm = el("form", { class: "inline-form", id: "pause-form", "aria-label": "Pause the job", novalidate: true },
    fPause.node, el("div", { class: "field" }, el("span", { class: "label", "aria-hidden": "true" }, " "), el("div", { class: "btn-group" }, pauseBtn)));

  const planFrom = el("input", { type: "datetime-local", id: "plan-from", step: 1 });
  const planTo = el("input", { type: "datetime-local", id: "plan-to", step: 1 });
  const fPlanFrom = field("plan-from", "From", planFrom);
  const fPlanTo = field("plan-to", "To", planTo);
  const planBody = el("div", { id: "plan", "aria-live": "polite" }, el("p", { class: "loading" }, "Loading…"));
  const planForm = el("form", { class: "inline-form", "aria-label": "Plan window", novalidate: true },
    fPlanFrom.node, fPlanTo.node,
    el("div", { class: "field" }, el("span", { class: "label", "aria-hidden": "true" }, " "), el("button", { type: "submit", class: "btn", id: "plan-show" }, "Show")));

  const bfFrom = el("input", { type: "datetime-local", id: "backfill-from", step: 1 });
  const bfTo = el("input", { type: "datetime-local", id: "backfill-to", step: 1 });
  const fBfFrom = field("backfill-from", "From", bfFrom);
  const fBfTo = field("backfill-to", "To", bfTo);
  const bfBtn = el("button", { type: "submit", class: "btn", id: "backfill" }, "Backfill");
  const bfResult = el("div", { id: "backfill-result", "aria-live": "polite" });
  const bfForm = el("form", { class: "inline-form", id: "backfill-form", "aria-label": "Backfill a range", novalidate: true },
    fBfFrom.node, fBfTo.node,
    el("div", { class: "field" }, el("span", { class: "label", "aria-hidden": "true" }, " "), bfBtn));

  fill(root, el("p", { class: "loading" }, "Loading…"));
  api.job(id).then((j) => { if (!disposed) build(j); }, (e) => { if (!disposed) pageError(root, e, () => location.reload()); });

  function build(j) {
    job = j;
    header = liveJobHeader(j, "overview", { onJob: (fresh) => { job = fresh; renderJob(); loadPlan(); } });
    const now = Date.now();
    pauseUntil.value = toLocalInput(now + HOUR);
    planFrom.value = toLocalInput(now);
    planTo.value = toLocalInput(now + 24 * HOUR);
    bfFrom.value = toLocalInput(now - 24 * HOUR);
    bfTo.value = toLocalInput(now);
    fill(root, header.node,
      el("div", { class: "overview" },
        el("div", { class: "overview-col" },
          el("section", { class: "panel", "aria-labelledby": "policies-title" },
            el("div", { class: "panel-head" }, el("h2", { id: "policies-title" }, "Policies"), el("div", { class: "spacer" }),
              el("a", { class: "btn btn-sm", href: `#/jobs/${encodeURIComponent(id)}`, "aria-label": "Edit the policies" }, "Edit")),
            policies),
          el("section", { class: "panel", "aria-labelledby": "pause-title", id: "pause-panel" },
            el("div", { class: "panel-head" }, el("h2", { id: "pause-title" }, "Pause")),
            el("div", { class: "panel-body" }, pauseState, pauseForm, presets)),
          el("section", { class: "panel", "aria-labelledby": "backfill-title", id: "backfill-panel" },
            el("div", { class: "panel-head" }, el("h2", { id: "backfill-title" }, "Backfill")),
            el("div", { class: "panel-body" },
              el("p", { class: "muted small" }, "Runs the occurrences of a past range that have not run, oldest first, under the overlap policy. Occurrences that already ran are suppressed."),
              bfForm, bfResult))),
        el("section", { class: "panel", "aria-labelledby": "plan-title", id: "plan-panel" },
          el("div", { class: "panel-head" }, el("h2", { id: "plan-title" }, "Plan")),
          el("div", { class: "panel-body" }, planForm, planBody))));
    pauseForm.addEventListener("submit", (ev) => { ev.preventDefault(); pause(); });
    planForm.addEventListener("submit", (ev) => { ev.preventDefault(); loadPlan(); });
    bfForm.addEventListener("submit", (ev) => { ev.preventDefault(); backfill(); });
    renderJob();
    loadPlan();
    root.dataset.loaded = "true";
  }

  function renderJob() {
    fill(policies, policyRows(job).map(([key, label, text]) => [el("dt", {}, label), el("dd", { dataset: { policy: key } }, text)]),
      el("dt", {}, "Script"), el("dd", { dataset: { policy: "script" } },
        el("a", { href: `#/jobs/${encodeURIComponent(id)}/versions` }, `version ${job.scriptVersion}`),
        job.scriptNote ? el("span", { class: "muted" }, ` — ${job.scriptNote}`) : null));
    if (isPaused(job)) {
      const resume = el("button", { type: "button", class: "btn btn-primary btn-sm", id: "resume" }, "Resume now");
      resume.addEventListener("click", () => doResume(resume));
      fill(pauseState, el("div", { class: "alert alert-warn pause-alert" },
        el("div", {}, el("b", {}, "Paused until "), timeEl(job.pausedUntil), el("span", {}, ` (${fmtRelative(job.pausedUntil)}). `),
          "Occurrences before then are recorded as skipped."),
        resume));
      pauseBtn.textContent = "Change pause";
    } else {
      fill(pauseState, el("p", { class: "muted small" }, "Not paused: occurrences run as scheduled. A pause skips them (each is recorded as skipped) until the time you pick."));
      pauseBtn.textContent = "Pause";
    }
  }

  async function afterChange() {
    if (header) await header.refresh(); // calls onJob, which redraws and reloads the plan
  }

  async function pause() {
    fPause.error.textContent = "";
    pauseUntil.removeAttribute("aria-invalid");
    const until = fromLocalInput(pauseUntil.value);
    if (!until) {
      fPause.error.textContent = "Pick the date and time the pause ends.";
      pauseUntil.setAttribute("aria-invalid", "true");
      pauseUntil.focus();
      return;
    }
    pauseBtn.disabled = true;
    try {
      await api.pause(id, until.toISOString());
      toast(`Paused until ${fmtFull(until)}`);
      await afterChange();
    } catch (e) {
      fPause.error.textContent = e.message;
      pauseUntil.setAttribute("aria-invalid", "true");
    } finally { pauseBtn.disabled = false; }
  }

  async function doResume(button) {
    button.disabled = true;
    try {
      await api.resume(id);
      toast("Resumed");
      await afterChange();
      const again = document.getElementById("pause-until");
      if (again) again.focus();
    } catch (e) {
      toast(e.message, "bad");
      button.disabled = false;
    }
  }

  let planSeq = 0;
  async function loadPlan() {
    const seq = ++planSeq;
    for (const [f, input] of [[fPlanFrom, planFrom], [fPlanTo, planTo]]) { f.error.textContent = ""; input.removeAttribute("aria-invalid"); }
    const from = fromLocalInput(planFrom.value);
    const to = fromLocalInput(planTo.value);
    try {
      const plan = await api.plan(id, from ? from.toISOString() : undefined, to ? to.toISOString() : undefined);
      if (disposed || seq !== planSeq) return;
      renderPlan(plan);
    } catch (e) {
      if (disposed || seq !== planSeq) return;
      const f = e.field === "from" ? [fPlanFrom, planFrom] : e.field === "to" ? [fPlanTo, planTo] : null;
      if (f) { f[0].error.textContent = e.message; f[1].setAttribute("aria-invalid", "true"); fill(planBody); }
      else fill(planBody, el("div", { class: "alert alert-bad" }, e.message));
    }
  }

  function renderPlan(plan) {
    const c = plan.catchUp;
    const stopped = plan.state !== 1;
    fill(planBody,
      stopped ? el("div", { class: "alert alert-info small" }, "The job is stopped: nothing fires until it is started. The plan shows what it would fire.") : null,
      el("h3", { class: "sub-title" }, `Fires in the window (${plan.fires.length}${plan.truncated ? "+" : ""})`),
      plan.pausedFires ? el("div", { class: "small warn-text", id: "plan-paused" }, `${plan.pausedFires} of them fall in the pause and would be skipped.`) : null,
      instants(plan.fires, "plan-fires", SHOWN_FIRES, plan.truncated),
      el("h3", { class: "sub-title" }, "A restart now would catch up"),
      el("p", { class: "small muted", id: "plan-catchup-policy" },
        `Misfire policy ${c.policy.replace(/_/g, " ")}, window ${c.windowS} s; occurrences after `, timeEl(c.since), " count as not handled."),
      el("div", { class: "catchup", id: "plan-catchup" },
        el("div", {}, el("b", {}, `Would run (${c.run.length})`), instants(c.run, "plan-catchup-run", 10)),
        el("div", {}, el("b", {}, `Would be recorded as missed (${c.missed.length}${c.moreMissed ? "+" : ""})`), instants(c.missed, "plan-catchup-missed", 10, c.moreMissed))));
  }

  async function backfill() {
    for (const [f, input] of [[fBfFrom, bfFrom], [fBfTo, bfTo]]) { f.error.textContent = ""; input.removeAttribute("aria-invalid"); }
    const from = fromLocalInput(bfFrom.value);
    const to = fromLocalInput(bfTo.value);
    if (!from) { fBfFrom.error.textContent = "Pick the start of the range."; bfFrom.setAttribute("aria-invalid", "true"); return; }
    if (!to) { fBfTo.error.textContent = "Pick the end of the range."; bfTo.setAttribute("aria-invalid", "true"); return; }
    bfBtn.disabled = true;
    fill(bfResult, el("span", { class: "faint small" }, "Backfilling…"));
    try {
      const r = await api.backfill(id, from.toISOString(), to.toISOString());
      if (disposed) return;
      fill(bfResult, el("div", { class: "backfill-result" },
        el("div", { dataset: { count: r.queued.length }, id: "backfill-queued" }, el("b", {}, `Queued ${r.queued.length}`), instants(r.queued, "backfill-queued-list", 10)),
        el("div", { dataset: { count: r.suppressed.length }, id: "backfill-suppressed" }, el("b", {}, `Suppressed ${r.suppressed.length}`),
          el("div", { class: "faint small" }, "already ran"), instants(r.suppressed, "backfill-suppressed-list", 10)),
        r.truncated ? el("div", { class: "small warn-text" }, "The range held more than 1000 occurrences; only the first 1000 were considered.") : null,
        r.queued.length ? el("a", { href: `#/jobs/${encodeURIComponent(id)}/runs`, class: "small" }, "See them in the run history") : null));
      toast(`Backfill: ${r.queued.length} queued, ${r.suppressed.length} suppressed`);
    } catch (e) {
      if (disposed) return;
      fill(bfResult);
      const f = e.field === "from" ? [fBfFrom, bfFrom] : e.field === "to" ? [fBfTo, bfTo] : null;
      if (f) { f[0].error.textContent = e.message; f[1].setAttribute("aria-invalid", "true"); }
      else fill(bfResult, el("div", { class: "alert alert-bad" }, e.message));
    } finally { bfBtn.disabled = false; }
  }

  return {
    dispose() {
      disposed = true;
      if (header) header.dispose();
    },
  };
}
