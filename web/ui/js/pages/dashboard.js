// Dashboard: everything from GET /api/stats, polled every few seconds.
import { el, fill, fmtInt, fmtMs, fmtRelative, badge, timeEl, preserveFocus } from "../dom.js";
import { api } from "../api.js";
import { runsChart, latenessChart, GROUPS } from "../charts.js";

const POLL_MS = 3000;

function sum(counts) { return Object.values(counts || {}).reduce((a, b) => a + b, 0); }
function failures(c) { return (c.failed || 0) + (c.crashed || 0); }
function limits(c) { return (c.timedOut || 0) + (c.outOfMemory || 0) + (c.outputLimit || 0); }
function quiet(c) { return (c.skipped || 0) + (c.missed || 0) + (c.cancelled || 0); }

function card(label, value, detail, id) {
  return el("section", { class: "panel card", "aria-label": label, dataset: { card: id } },
    el("div", { class: "label" }, label),
    el("div", { class: "value" }, value),
    el("div", { class: "detail" }, detail));
}

function runDetail(c) {
  return [
    el("span", { class: "nowrap" }, el("span", { class: "swatch", style: { background: "var(--c-succeeded)" } }), " ", fmtInt(c.succeeded), " ok"),
    el("span", { class: "nowrap" }, el("span", { class: "swatch", style: { background: "var(--c-failed)" } }), " ", fmtInt(failures(c)), " failed"),
    limits(c) ? el("span", { class: "nowrap" }, el("span", { class: "swatch", style: { background: "var(--c-warn)" } }), " ", fmtInt(limits(c)), " limit") : null,
    quiet(c) ? el("span", { class: "nowrap" }, el("span", { class: "swatch", style: { background: "var(--c-grey)" } }), " ", fmtInt(quiet(c)), " skipped/missed") : null,
  ];
}

function cards(s) {
  const rate = s.successRateLastHour;
  return [
    card("Jobs", fmtInt(s.jobsTotal), [el("span", {}, el("b", {}, fmtInt(s.jobsRunning)), " running"), el("span", {}, fmtInt(s.jobsStopped), " stopped")], "jobs"),
    card("Runs · last hour", fmtInt(sum(s.runsLastHour)), runDetail(s.runsLastHour), "hour"),
    card("Runs · last 24 h", fmtInt(sum(s.runsLastDay)), runDetail(s.runsLastDay), "day"),
    card("Success rate · hour", rate === null || rate === undefined ? "—" : [String((rate * 100).toFixed(rate >= 0.999 || rate === 0 ? 0 : 1)), el("span", { class: "unit" }, "%")],
      rate === null || rate === undefined ? "no finished runs yet" : `${fmtInt(s.runsLastHour.succeeded)} of ${fmtInt(sum(s.runsLastHour) - quiet(s.runsLastHour))} finished`, "rate"),
    card("Fire lateness", [fmtMs(s.latenessP50Ms)], ["p50 · p99 ", el("b", {}, fmtMs(s.latenessP99Ms))], "lateness"),
    card("Workers", [fmtInt(s.workersBusy), el("span", { class: "unit" }, ` / ${fmtInt(s.workersAlive)} busy`)],
      [el("span", {}, `${fmtInt(s.runsInFlight)} in flight`), el("span", {}, `${fmtInt(s.runsQueued)} queued`)], "workers"),
  ];
}

function upcomingTable(list) {
  if (!list.length) return el("p", { class: "muted panel-body" }, "Nothing scheduled. Start a job to see its next runs here.");
  return el("table", { class: "compact" },
    el("thead", {}, el("tr", {}, el("th", {}, "Job"), el("th", {}, "When"))),
    el("tbody", {}, list.map((u, i) => el("tr", {},
      el("td", {}, el("a", { href: `#/jobs/${encodeURIComponent(u.jobId)}/runs`, class: "job-name", dataset: { key: `up-${i}-${u.jobId}` } }, u.name || u.jobId)),
      el("td", { class: "nowrap" }, timeEl(u.at), el("span", { class: "faint small" }, ` ${fmtRelative(u.at)}`))))));
}

function failuresTable(list) {
  if (!list.length) return el("p", { class: "muted panel-body" }, "No failures recently. ");
  return el("table", { class: "compact" },
    el("thead", {}, el("tr", {}, el("th", {}, "Job"), el("th", {}, "Outcome"), el("th", {}, "When"), el("th", {}, el("span", { class: "visually-hidden" }, "Log")))),
    el("tbody", {}, list.map((f) => el("tr", {},
      el("td", {}, el("div", { class: "job-name" }, f.name || f.jobId), f.message ? el("div", { class: "job-desc" }, f.message) : null),
      el("td", {}, badge(f.outcome)),
      el("td", { class: "nowrap" }, timeEl(f.at)),
      el("td", { class: "actions" }, el("a", {
        class: "btn btn-sm", dataset: { key: `fail-${f.runId}` },
        href: `#/jobs/${encodeURIComponent(f.jobId)}/runs?run=${encodeURIComponent(f.runId)}`,
        "aria-label": `Log of ${f.name || f.jobId} at ${f.at}`,
      }, "Log"))))));
}

function nodesTable(nodes) {
  return el("table", { class: "compact" },
    el("thead", {}, el("tr", {}, el("th", {}, "Node"), el("th", {}, "Heartbeat"), el("th", {}, "Jobs owned"))),
    el("tbody", {}, nodes.map((n) => el("tr", {},
      el("td", {}, el("span", { class: `dot ${n.heartbeatAgeMs < 10000 ? "ok" : "warn"}` }), " ", n.node, n.isSelf ? el("span", { class: "faint small" }, " (this node)") : null),
      el("td", { class: "num" }, n.isSelf ? "now" : `${fmtMs(n.heartbeatAgeMs)} ago`),
      el("td", { class: "num" }, fmtInt(n.jobsOwned))))));
}

export function dashboardPage(root) {
  let disposed = false;
  let timer = null;
  let controller = null;
  let last = null;

  const cardsHost = el("div", { class: "grid cards" });
  const runsHost = el("div", { class: "panel-body" });
  const latHost = el("div", { class: "panel-body" });
  const upHost = el("div", { class: "table-wrap" });
  const failHost = el("div", { class: "table-wrap" });
  const nodesHost = el("div", { class: "table-wrap" });
  const status = el("span", { class: "faint small", "aria-live": "off" });
  const errorHost = el("div");

  fill(root,
    el("div", { class: "page-head" },
      el("div", {}, el("h1", {}, "Dashboard"), el("div", { class: "sub" }, "This node's numbers, live. Counts cover the time since the node started.")),
      el("div", { class: "spacer" }), status,
      el("a", { class: "btn btn-primary", href: "#/jobs/new" }, "New job")),
    errorHost,
    cardsHost,
    el("div", { class: "grid two" },
      el("section", { class: "panel", "aria-labelledby": "runs-chart-title" },
        el("div", { class: "panel-head" }, el("h2", { id: "runs-chart-title", class: "nowrap" }, "Runs per minute"), el("div", { class: "spacer" }),
          el("div", { class: "legend" }, GROUPS.map((g) => el("span", {}, el("span", { class: `swatch`, style: { background: `var(--c-${g.key === "ok" ? "succeeded" : g.key === "bad" ? "failed" : g.key})` } }), g.label)))),
        runsHost),
      el("section", { class: "panel", "aria-labelledby": "lat-chart-title" },
        el("div", { class: "panel-head" }, el("h2", { id: "lat-chart-title" }, "Fire lateness"), el("div", { class: "spacer" }),
          el("div", { class: "legend" },
            el("span", {}, el("span", { class: "swatch", style: { background: "var(--accent)" } }), "p50"),
            el("span", {}, el("span", { class: "swatch", style: { background: "var(--c-warn)" } }), "p99"))),
        latHost)),
    el("div", { class: "grid three" },
      el("section", { class: "panel", "aria-labelledby": "up-title" },
        el("div", { class: "panel-head" }, el("h2", { id: "up-title" }, "Next runs")), upHost),
      el("section", { class: "panel", "aria-labelledby": "fail-title" },
        el("div", { class: "panel-head" }, el("h2", { id: "fail-title" }, "Recent failures")), failHost),
      el("section", { class: "panel", "aria-labelledby": "nodes-title" },
        el("div", { class: "panel-head" }, el("h2", { id: "nodes-title" }, "Nodes")), nodesHost)));

  function charts() {
    if (!last) return;
    const w = (host) => Math.max(280, Math.floor((host.clientWidth || 592) - 32));
    fill(runsHost, runsChart(last.perMinute, w(runsHost)));
    fill(latHost, latenessChart(last.perMinute, w(latHost)));
  }

  function render(s) {
    last = s;
    fill(cardsHost, cards(s));
    charts();
    preserveFocus(upHost, () => fill(upHost, upcomingTable(s.upcoming)));
    preserveFocus(failHost, () => fill(failHost, failuresTable(s.recentFailures)));
    fill(nodesHost, nodesTable(s.nodes));
    fill(status, `Updated ${new Date().toLocaleTimeString()}`);
    root.dataset.loaded = "true";
  }

  async function poll() {
    if (disposed) return;
    if (!document.hidden) {
      controller = new AbortController();
      try {
        const s = await api.stats({ signal: controller.signal });
        if (disposed) return;
        fill(errorHost);
        render(s);
      } catch (e) {
        if (disposed || e.name === "AbortError") return;
        fill(errorHost, el("div", { class: "alert alert-bad", style: { marginBottom: "16px" } }, e.message));
      }
    }
    if (!disposed) timer = setTimeout(poll, POLL_MS);
  }

  const ro = new ResizeObserver(() => charts());
  ro.observe(runsHost);
  poll();

  return {
    dispose() {
      disposed = true;
      clearTimeout(timer);
      if (controller) controller.abort();
      ro.disconnect();
    },
  };
}
