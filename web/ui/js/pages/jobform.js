// Create / edit a job: POST /api/job (or /api/run to start at once), PUT /api/job.
// The cron field is checked live by the server's own parser (GET /api/cron/preview).
import { el, fill, fmtInZone, fmtRelative, debounce, toLocalInput } from "../dom.js";
import { api } from "../api.js";
import { liveJobHeader, toast, pageError, OVERLAP_LABELS, MISFIRE_LABELS } from "../ui.js";

const TEMPLATE = `// Runs on every occurrence. console output is kept with the run.
const started = new Date();
console.log("hello from traitor at", started.toISOString());
`;

const EXAMPLES = [
  ["* * * * *", "every minute"],
  ["*/10 * * * * *", "every 10 s"],
  ["0 */15 * * * *", "every 15 min"],
  ["0 8 * * MON-FRI", "08:00 on weekdays"],
  ["@daily", "daily at midnight"],
];

const COMMON_ZONES = ["UTC", "Europe/London", "Europe/Paris", "Europe/Berlin", "America/New_York",
  "America/Chicago", "America/Los_Angeles", "America/Sao_Paulo", "Asia/Shanghai", "Asia/Tokyo",
  "Asia/Kolkata", "Asia/Singapore", "Australia/Sydney"];

function zoneList() {
  let all = [];
  try { all = Intl.supportedValuesOf("timeZone"); } catch { /* older browsers */ }
  return [...new Set([...COMMON_ZONES, ...all])];
}

/** The API's messages start with the field's name; beside that field, it goes without saying. */
function withoutField(field, message) {
  const prefix = `${field}: `;
  return field && message.startsWith(prefix) ? message.slice(prefix.length) : message;
}

function browserZone() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch { return "UTC"; }
}

function field(id, label, control, hint) {
  const error = el("div", { class: "error", id: `${id}-error`, role: "alert" });
  control.setAttribute("aria-describedby", `${id}-error${hint ? ` ${id}-hint` : ""}`);
  return {
    error,
    node: el("div", { class: "field", dataset: { field: id } },
      el("label", { for: id }, label), control,
      hint ? el("div", { class: "hint", id: `${id}-hint` }, hint) : null, error),
  };
}

/** The server's defaults, shown on a new job. */
const DEFAULTS = { overlap: "skip", maxConcurrent: 1, misfire: "run_once", misfireWindowS: 60, maxCatchUp: 10,
  retries: 0, retryBackoffMs: 1000, retryMaxBackoffMs: 60000, jitterS: 0 };

export function jobFormPage(root, { id }) {
  let disposed = false;
  let previewCtl = null;
  let header = null;
  const isNew = !id;

  function load() {
    api.job(id).then((job) => { if (!disposed) build(job); }, (e) => { if (!disposed) pageError(root, e, load); });
  }
  if (isNew) build(null);
  else {
    fill(root, el("p", { class: "loading" }, "Loading…"));
    load();
  }

  function build(job) {
    if (header) { header.dispose(); header = null; }
    const name = el("input", { type: "text", id: "name", name: "name", required: true, maxlength: 200, autocomplete: "off", value: job ? job.name : "", placeholder: "nightly-report" });
    const description = el("textarea", { id: "description", name: "description", rows: 1, placeholder: "What it does, who owns it" });
    description.value = job ? job.description : "";
    const typeTiming = el("input", { type: "radio", name: "type", value: "timing", id: "type-timing", checked: !job || job.execType === 0 });
    const typeDelay = el("input", { type: "radio", name: "type", value: "delay", id: "type-delay", checked: !!job && job.execType === 1 });
    const typeError = el("div", { class: "error", id: "type-error", role: "alert" });
    const cron = el("input", { type: "text", id: "cron", name: "cron", class: "mono-input", autocomplete: "off", spellcheck: "false", value: job && job.execType === 0 ? job.cron : (job ? "" : "*/10 * * * * *") });
    const tz = el("input", { type: "text", id: "timezone", name: "timezone", list: "tz-list", autocomplete: "off", spellcheck: "false", value: job ? job.timezone : "UTC" });
    const tzList = el("datalist", { id: "tz-list" }, zoneList().map((z) => el("option", { value: z })));
    const execAt = el("input", { type: "datetime-local", id: "execAt", name: "execAt", step: 1 });
    execAt.value = toLocalInput(job && job.execAt ? job.execAt : Math.ceil((Date.now() + 10 * 60e3) / 60e3) * 60e3);
    const timeLimit = el("input", { type: "number", id: "timeLimitMs", name: "timeLimitMs", min: 10, step: 1, placeholder: "server default", value: job ? job.timeLimitMs : "" });
    const memLimit = el("input", { type: "number", id: "memoryLimitMb", name: "memoryLimitMb", min: 1, step: 1, placeholder: "server default", value: job ? job.memoryLimitMb : "" });
    const startNow = el("input", { type: "checkbox", id: "start", name: "start" });
    // Scheduling policies; a new job shows the server's defaults.
    const p = job || DEFAULTS;
    const num = (id, min, max, value, placeholder) => el("input", { type: "number", id, name: id, min, max, step: 1, value, placeholder, inputmode: "numeric" });
    const overlap = el("select", { id: "overlap", name: "overlap" },
      Object.entries(OVERLAP_LABELS).map(([v, label]) => el("option", { value: v, selected: p.overlap === v }, label)));
    overlap.value = p.overlap;
    const maxConcurrent = num("maxConcurrent", 1, 100, p.maxConcurrent);
    const misfire = el("select", { id: "misfire", name: "misfire" },
      Object.entries(MISFIRE_LABELS).map(([v, label]) => el("option", { value: v, selected: p.misfire === v }, label)));
    misfire.value = p.misfire;
    const misfireWindow = num("misfireWindowS", 0, 604800, p.misfireWindowS);
    const maxCatchUp = num("maxCatchUp", 1, 1000, p.maxCatchUp);
    const retries = num("retries", 0, 20, p.retries);
    const backoff = num("retryBackoffMs", 100, 86400000, p.retryBackoffMs);
    const maxBackoff = num("retryMaxBackoffMs", 100, 86400000, p.retryMaxBackoffMs);
    const jitter = num("jitterS", 0, 3600, p.jitterS);

    const fName = field("name", "Name", name);
    const fDesc = field("description", "Description", description);
    const fCron = field("cron", "Cron expression", cron, "5 fields (min hour day month weekday), 6 with seconds first, 7 with a year; or @hourly, @daily, @every 10s.");
    const fTz = field("timezone", "Time zone", tz, "IANA name; the cron is evaluated in it.");
    const fExec = field("execAt", "Run at", execAt, `In your browser's time zone (${browserZone()}); at least 5 s from now.`);
    const fTime = field("timeLimitMs", "Time limit (ms)", timeLimit, "Wall-clock limit of one run.");
    const fMem = field("memoryLimitMb", "Memory limit (MiB)", memLimit, "Heap limit of one run.");
    const fOverlap = field("overlap", "Overlap", overlap, "When an occurrence comes due while a run of this job still goes.");
    const fMaxConc = field("maxConcurrent", "Max concurrent runs", maxConcurrent, "1 to 100.");
    const fMisfire = field("misfire", "Misfire", misfire, "Occurrences missed while the service was down or no node owned the job.");
    const fWindow = field("misfireWindowS", "Catch-up window (s)", misfireWindow, "How old a missed occurrence may be and still run; 0 to 604800.");
    const fCatchUp = field("maxCatchUp", "Max catch-up runs", maxCatchUp, "1 to 1000.");
    const fRetries = field("retries", "Retries", retries, "Of a failed, timed-out or crashed run; 0 to 20.");
    const fBackoff = field("retryBackoffMs", "Retry backoff (ms)", backoff, "Wait before the first retry, doubled each time, with jitter; at least 100.");
    const fMaxBackoff = field("retryMaxBackoffMs", "Backoff cap (ms)", maxBackoff, "Longest wait between retries; not below the backoff.");
    const fJitter = field("jitterS", "Jitter (s)", jitter, "Each occurrence starts this job's stable offset within this many seconds after its instant; 0 to 3600.");
    const policyFields = { overlap: fOverlap, maxConcurrent: fMaxConc, misfire: fMisfire, misfireWindowS: fWindow, maxCatchUp: fCatchUp,
      retries: fRetries, retryBackoffMs: fBackoff, retryMaxBackoffMs: fMaxBackoff, jitterS: fJitter };
    const policyControls = { overlap, maxConcurrent, misfire, misfireWindowS: misfireWindow, maxCatchUp,
      retries, retryBackoffMs: backoff, retryMaxBackoffMs: maxBackoff, jitterS: jitter };
    const errors = { name: fName.error, description: fDesc.error, cron: fCron.error, timezone: fTz.error, execAt: fExec.error,
      timeLimitMs: fTime.error, memoryLimitMb: fMem.error, execType: typeError, type: typeError };
    const controls = { name, description, cron, timezone: tz, execAt, timeLimitMs: timeLimit, memoryLimitMb: memLimit, execType: typeTiming, type: typeTiming };
    for (const [k, f] of Object.entries(policyFields)) { errors[k] = f.error; controls[k] = policyControls[k]; }

    // Secret grants: a checkbox per existing secret. Sent only once the list has loaded,
    // so that a failed load never drops the job's grants.
    const grantsError = el("div", { class: "error", id: "secrets-error", role: "alert" });
    const grantsBox = el("div", { class: "grants", id: "secret-grants", role: "group", "aria-labelledby": "secrets-title", "aria-describedby": "secrets-hint secrets-error", tabindex: "-1" },
      el("span", { class: "faint small" }, "Loading the secrets…"));
    let grantChecks = null; // name → checkbox, once loaded
    errors.secrets = grantsError;
    controls.secrets = grantsBox;
    api.secrets().then((list) => {
      if (disposed) return;
      const granted = new Set(job ? job.secrets || [] : []);
      const names = [...new Set([...list.map((x) => x.name), ...granted])].sort();
      grantChecks = new Map();
      if (!names.length) {
        fill(grantsBox, el("span", { class: "muted small", id: "no-secrets" }, "There are no secrets yet. ",
          el("a", { href: "#/secrets" }, "Create one"), ", then grant it here."));
        return;
      }
      fill(grantsBox, names.map((n) => {
        const box = el("input", { type: "checkbox", name: "secrets", value: n, id: `grant-${n}`, checked: granted.has(n) });
        grantChecks.set(n, box);
        return el("label", { class: "checkbox grant", for: `grant-${n}` }, box, el("code", {}, n));
      }));
    }, (e) => {
      if (disposed) return;
      fill(grantsBox, el("div", { class: "alert alert-bad small" }, `Could not load the secrets (${e.message}); the job's grants stay as they are.`));
    });

    const preview = el("div", { class: "preview", id: "cron-preview", "aria-live": "polite" });
    const execRel = el("div", { class: "small muted", id: "execAt-relative", "aria-live": "polite" });
    const examples = el("div", { class: "examples" }, el("span", { class: "faint small" }, "Examples"),
      EXAMPLES.map(([expr, label]) => el("button", {
        type: "button", class: "btn btn-sm btn-ghost", title: label,
        onclick: () => { cron.value = expr; cron.dispatchEvent(new Event("input")); cron.focus(); },
      }, el("code", {}, expr), el("span", { class: "faint" }, ` ${label}`))));
    const myZone = browserZone();
    const useMyZone = myZone !== "UTC" ? el("button", { type: "button", class: "btn btn-sm btn-ghost", onclick: () => { tz.value = myZone; tz.dispatchEvent(new Event("input")); } }, `Use ${myZone}`) : null;

    const timingSection = el("div", { id: "timing-fields" },
      el("div", { class: "row" },
        el("div", {}, fCron.node, examples),
        el("div", {}, fTz.node, useMyZone, preview)));
    const delaySection = el("div", { id: "delay-fields" }, el("div", { class: "row" }, el("div", {}, fExec.node, execRel), el("div")));

    const formError = el("div", { class: "alert alert-bad form-error", role: "alert", hidden: true });
    const submit = el("button", { type: "submit", class: "btn btn-primary", id: "save-job" }, isNew ? "Create job" : "Save changes");
    const form = el("form", { class: "panel form", id: "job-form", novalidate: true, "aria-label": isNew ? "New job" : "Job settings" },
      formError,
      el("div", { class: "form-section" },
        el("h2", {}, "Job"),
        el("div", { class: "row" }, fName.node,
          el("div", { class: "field" },
            el("span", { class: "label", id: "type-label" }, "Type"),
            el("div", { class: "seg", role: "radiogroup", "aria-labelledby": "type-label" },
              el("label", { for: "type-timing" }, typeTiming, "Timing (cron)"),
              el("label", { for: "type-delay" }, typeDelay, "Delay (once)")),
            typeError)),
        fDesc.node),
      el("div", { class: "form-section" },
        el("h2", {}, "Schedule"),
        timingSection, delaySection, tzList),
      el("div", { class: "form-section", id: "policies", role: "group", "aria-labelledby": "policies-title" },
        el("h2", { id: "policies-title" }, "Policies"),
        el("div", { class: "row" }, fOverlap.node, fMaxConc.node),
        el("div", { class: "row" }, fMisfire.node, el("div", { class: "row" }, fWindow.node, fCatchUp.node)),
        el("div", { class: "row3" }, fRetries.node, fBackoff.node, fMaxBackoff.node),
        el("div", { class: "row" }, fJitter.node, el("div"))),
      el("div", { class: "form-section" },
        el("h2", {}, "Limits"),
        el("div", { class: "row" }, el("div", { class: "row" }, fTime.node, fMem.node), el("div"))),
      el("div", { class: "form-section", id: "secrets-section" },
        el("h2", { id: "secrets-title" }, "Secrets"),
        el("div", { class: "field" },
          el("div", { class: "hint", id: "secrets-hint" }, "The secrets this job's scripts may read, as secrets.NAME. Values are managed on the ",
            el("a", { href: "#/secrets" }, "Secrets"), " page."),
          grantsBox, grantsError)),
      el("div", { class: "form-actions" },
        submit,
        isNew ? el("label", { class: "checkbox" }, startNow, "Start it right away") : null,
        el("div", { style: { flex: 1 } }),
        el("a", { class: "btn btn-ghost", href: "#/jobs" }, "Cancel")));

    const head = isNew
      ? el("div", { class: "page-head" }, el("div", {},
          el("div", { class: "crumbs" }, el("a", { href: "#/jobs" }, "Jobs"), " / new"),
          el("h1", {}, "New job"),
          el("div", { class: "sub" }, "It is created stopped unless you start it; you write its script next.")))
      : (header = liveJobHeader(job, "edit")).node;
    fill(root, head, form);

    function reload() { load(); }

    function syncPolicies() {
      fMaxConc.node.hidden = overlap.value !== "allow";
      fWindow.node.hidden = misfire.value === "skip";
      fCatchUp.node.hidden = misfire.value !== "run_all";
      fJitter.node.hidden = !typeTiming.checked;
      const n = Number(retries.value);
      fBackoff.node.classList.toggle("inactive", retries.value !== "" && n === 0);
      fMaxBackoff.node.classList.toggle("inactive", retries.value !== "" && n === 0);
    }

    function syncType() {
      const timing = typeTiming.checked;
      timingSection.hidden = !timing;
      delaySection.hidden = timing;
      syncPolicies();
      if (timing) updatePreview(); else updateRel();
    }

    function clearErrors() {
      formError.hidden = true;
      for (const [k, e] of Object.entries(errors)) {
        e.textContent = "";
        if (controls[k]) controls[k].removeAttribute("aria-invalid");
      }
    }

    function showError(fieldName, message) {
      const target = errors[fieldName];
      message = withoutField(fieldName, message);
      if (target) {
        target.textContent = message;
        const c = controls[fieldName];
        if (c) { c.setAttribute("aria-invalid", "true"); c.focus(); }
      } else {
        formError.textContent = message;
        formError.hidden = false;
        formError.scrollIntoView({ block: "nearest" });
      }
    }

    const updatePreview = debounce(async () => {
      if (disposed || !typeTiming.checked) return;
      const expr = cron.value.trim();
      if (previewCtl) previewCtl.abort();
      if (!expr) {
        fCron.error.textContent = "";
        cron.removeAttribute("aria-invalid");
        fill(preview, el("span", { class: "faint" }, "Type a cron expression to see its next runs."));
        return;
      }
      previewCtl = new AbortController();
      const zone = tz.value.trim() || "UTC";
      try {
        const times = await api.cronPreview({ cron: expr, timezone: zone, count: 5 }, { signal: previewCtl.signal });
        if (disposed) return;
        fCron.error.textContent = "";
        fTz.error.textContent = "";
        cron.removeAttribute("aria-invalid");
        tz.removeAttribute("aria-invalid");
        preview.dataset.cron = expr;
        preview.dataset.timezone = zone;
        fill(preview, el("div", {}, "Next runs ", el("span", { class: "tzname" }, `(${zone})`)),
          times.length
            ? el("ol", { id: "cron-preview-list" }, times.map((t) => el("li", { title: t }, fmtInZone(t, zone), el("span", { class: "faint" }, ` · ${fmtRelative(t)}`))))
            : el("div", { class: "faint" }, "This expression never fires again."));
      } catch (e) {
        if (disposed || e.name === "AbortError") return;
        const target = e.field === "timezone" ? "timezone" : "cron";
        const input = target === "timezone" ? tz : cron;
        (target === "timezone" ? fTz : fCron).error.textContent = withoutField(target, e.message);
        input.setAttribute("aria-invalid", "true");
        delete preview.dataset.cron;
        fill(preview, el("span", { class: "faint" }, "No preview until the expression is valid."));
      }
    }, 300);

    function updateRel() {
      const ms = execAt.value ? new Date(execAt.value).getTime() : NaN;
      execRel.textContent = Number.isNaN(ms) ? "" : `${fmtRelative(ms)} · ${new Date(ms).toISOString()}`;
    }

    cron.addEventListener("input", updatePreview);
    tz.addEventListener("input", updatePreview);
    execAt.addEventListener("input", updateRel);
    overlap.addEventListener("change", syncPolicies);
    misfire.addEventListener("change", syncPolicies);
    retries.addEventListener("input", syncPolicies);
    typeTiming.addEventListener("change", syncType);
    typeDelay.addEventListener("change", syncType);
    syncType();

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors();
      const timing = typeTiming.checked;
      if (!name.value.trim()) return showError("name", "Give the job a name.");
      const body = {
        name: name.value.trim(),
        description: description.value,
        execType: timing ? 0 : 1,
      };
      if (timing) {
        if (!cron.value.trim()) return showError("cron", "A timing job needs a cron expression.");
        body.cron = cron.value.trim();
        body.timezone = tz.value.trim() || "UTC";
      } else {
        const ms = execAt.value ? new Date(execAt.value).getTime() : NaN;
        if (Number.isNaN(ms)) return showError("execAt", "Pick the date and time to run at.");
        body.execAt = ms;
      }
      if (timeLimit.value !== "") body.timeLimitMs = Number(timeLimit.value);
      if (memLimit.value !== "") body.memoryLimitMb = Number(memLimit.value);
      // Policies: what is shown is sent; the server checks every value and names the field.
      body.overlap = overlap.value;
      body.misfire = misfire.value;
      const numbers = [[maxConcurrent, fMaxConc], [misfireWindow, fWindow], [maxCatchUp, fCatchUp],
        [retries, fRetries], [backoff, fBackoff], [maxBackoff, fMaxBackoff], [jitter, fJitter]];
      for (const [input, f] of numbers) {
        if (f.node.hidden) continue;
        if (input.validity && input.validity.badInput) return showError(input.id, "Enter a whole number.");
        if (input.value !== "") body[input.id] = Number(input.value);
      }
      if (!timing && job && job.jitterS) body.jitterS = 0;
      if (grantChecks) body.secrets = [...grantChecks].filter(([, box]) => box.checked).map(([n]) => n);
      submit.disabled = true;
      try {
        if (isNew) {
          body.script = TEMPLATE;
          const created = await api.createJob(timing ? "timing" : "delay", body, startNow.checked);
          const newId = typeof created === "string" ? created : created.id;
          toast(`Created ${body.name}${startNow.checked ? " and started it" : ""}`);
          location.hash = `#/jobs/${encodeURIComponent(newId)}/script`;
        } else {
          await api.updateJob(id, body);
          toast("Saved");
          reload();
        }
      } catch (e) {
        submit.disabled = false;
        showError(e.field, e.message);
      }
    });

    if (isNew) name.focus();
    root.dataset.loaded = "true";
  }

  return {
    dispose() {
      disposed = true;
      if (header) header.dispose();
      if (previewCtl) previewCtl.abort();
    },
  };
}
