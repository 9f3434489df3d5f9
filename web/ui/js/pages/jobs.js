// Jobs: search, filters, sort and paging over GET /api/jobs; per-row actions.
import { el, fill, badge, timeEl, fmtRelative, fmtInt, debounce, preserveFocus } from "../dom.js";
import { api } from "../api.js";
import { stateSwitch, deleteJob, toast, scheduleText } from "../ui.js";

const REFRESH_MS = 5000;
// Kept across visits, so coming back to the list finds it as it was left.
const view = { search: "", type: "", state: "", sort: "createdAt", order: "desc", page: 0, limit: 50 };

const SORTS = { name: "Name", nextExecTime: "Next run", lastExecTime: "Last run" };

export function jobsPage(root) {
  let disposed = false;
  let timer = null;
  let controller = null;
  let lastPage = null;

  const search = el("input", {
    type: "search", placeholder: "Search name, description or id", value: view.search,
    "aria-label": "Search jobs", dataset: { search: "" }, id: "job-search",
  });
  const typeSel = el("select", { "aria-label": "Filter by type", id: "filter-type" },
    el("option", { value: "" }, "All types"), el("option", { value: "timing" }, "Timing"), el("option", { value: "delay" }, "Delay"));
  const stateSel = el("select", { "aria-label": "Filter by state", id: "filter-state" },
    el("option", { value: "" }, "Any state"), el("option", { value: "running" }, "Running"), el("option", { value: "stopped" }, "Stopped"));
  const sortSel = el("select", { "aria-label": "Sort by", id: "sort-by" },
    [["createdAt:desc", "Newest first"], ["createdAt:asc", "Oldest first"], ["updatedAt:desc", "Recently changed"],
      ["name:asc", "Name A–Z"], ["nextExecTime:asc", "Next run soonest"], ["lastExecTime:desc", "Last run latest"]]
      .map(([v, label]) => el("option", { value: v }, label)));
  const sizeSel = el("select", { "aria-label": "Jobs per page" },
    [25, 50, 100, 200].map((n) => el("option", { value: String(n) }, `${n} per page`)));
  typeSel.value = view.type;
  stateSel.value = view.state;
  sizeSel.value = String(view.limit);

  const tbody = el("tbody");
  const thead = el("thead");
  const pager = el("div", { class: "pager" });
  const errorHost = el("div");
  const table = el("table", { id: "jobs-table" }, thead, tbody);

  fill(root,
    el("div", { class: "page-head" },
      el("div", {}, el("h1", {}, "Jobs"), el("div", { class: "sub", id: "jobs-count" }, "")),
      el("div", { class: "spacer" }),
      el("a", { class: "btn btn-primary", href: "#/jobs/new" }, "New job")),
    errorHost,
    el("section", { class: "panel" },
      el("div", { class: "toolbar", role: "search" }, search, typeSel, stateSel, el("div", { class: "spacer" }), sortSel, sizeSel),
      el("div", { class: "table-wrap" }, table),
      pager));

  function syncSort() {
    const v = `${view.sort}:${view.order}`;
    if (![...sortSel.options].some((o) => o.value === v)) sortSel.appendChild(el("option", { value: v }, `${view.sort} ${view.order}`));
    sortSel.value = v;
  }

  function header() {
    syncSort();
    const th = (key, label) => {
      if (!SORTS[key]) return el("th", { scope: "col" }, label);
      const active = view.sort === key;
      const dir = active ? (view.order === "asc" ? "ascending" : "descending") : "none";
      const button = el("button", {
        type: "button", class: `th-sort${active ? " active" : ""}`, dataset: { key: `sort-${key}` },
        onclick: () => {
          if (view.sort === key) view.order = view.order === "asc" ? "desc" : "asc";
          else { view.sort = key; view.order = key === "name" || key === "nextExecTime" ? "asc" : "desc"; }
          view.page = 0;
          load();
        },
      }, label, el("span", { class: "sort-ind", "aria-hidden": "true" }, active ? (view.order === "asc" ? "▲" : "▼") : "↕"));
      return el("th", { scope: "col", "aria-sort": dir }, button);
    };
    preserveFocus(thead, () => fill(thead, el("tr", {},
      th("name", "Name"), th("type", "Type"), th("sched", "Schedule"), th("state", "State"),
      th("nextExecTime", "Next run"), th("lastExecTime", "Last run"),
      el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Actions")))));
  }

  function row(job) {
    const id = encodeURIComponent(job.jobId);
    const name = job.name || job.jobId;
    const runNow = el("button", {
      type: "button", class: "btn btn-sm", dataset: { key: `run-${job.jobId}` }, "aria-label": `Run ${name} now`,
    }, "Run now");
    runNow.addEventListener("click", async () => {
      runNow.disabled = true;
      try { await api.trigger(job.jobId); toast(`Started a run of ${name}`); setTimeout(load, 800); }
      catch (e) { toast(e.message, "bad"); }
      finally { runNow.disabled = false; }
    });
    const del = el("button", {
      type: "button", class: "btn btn-sm btn-ghost btn-danger", dataset: { key: `del-${job.jobId}` }, "aria-label": `Delete ${name}`,
    }, "Delete");
    del.addEventListener("click", () => deleteJob(job, load));
    return el("tr", { dataset: { jobId: job.jobId } },
      el("td", { class: "name-cell" },
        el("a", { class: "job-name", href: `#/jobs/${id}/overview`, dataset: { key: `name-${job.jobId}` } }, job.name || el("span", { class: "faint" }, "(unnamed)")),
        job.description ? el("div", { class: "job-desc" }, job.description) : null),
      el("td", {}, el("span", { class: "badge plain accent" }, job.execType === 0 ? "Timing" : "Delay")),
      el("td", {}, el("div", { class: "sched" }, scheduleText(job)), job.execType === 0 ? el("div", { class: "tz" }, job.timezone) : null),
      el("td", {}, stateSwitch(job, load)),
      el("td", { class: "nowrap" }, job.nextExecTime
        ? [timeEl(job.nextExecTime), el("div", { class: "faint small" }, fmtRelative(job.nextExecTime))]
        : el("span", { class: "faint" }, "—")),
      el("td", { class: "nowrap" }, job.lastExecTime
        ? [timeEl(job.lastExecTime), el("div", {}, job.lastOutcome ? badge(job.lastOutcome) : null)]
        : el("span", { class: "faint" }, "never")),
      el("td", { class: "actions" }, el("div", { class: "btn-group" },
        runNow,
        el("a", { class: "btn btn-sm", href: `#/jobs/${id}/script?debug=1`, dataset: { key: `debug-${job.jobId}` }, "aria-label": `Debug ${name}` }, "Debug"),
        el("a", { class: "btn btn-sm", href: `#/jobs/${id}/runs`, dataset: { key: `runs-${job.jobId}` }, "aria-label": `Run history of ${name}` }, "Runs"),
        el("a", { class: "btn btn-sm", href: `#/jobs/${id}`, dataset: { key: `edit-${job.jobId}` }, "aria-label": `Edit ${name}` }, "Edit"),
        del)));
  }

  function render(page) {
    lastPage = page;
    header();
    const filtered = view.search || view.type || view.state;
    preserveFocus(tbody, () => {
      if (!page.items.length) {
        fill(tbody, el("tr", {}, el("td", { colspan: 7, class: "empty" },
          filtered ? "No job matches these filters." : [
            el("div", {}, "No jobs yet."),
            el("a", { class: "btn btn-primary", href: "#/jobs/new", style: { marginTop: "10px" } }, "Create the first job")])));
      } else fill(tbody, page.items.map(row));
    });
    const from = page.total ? page.offset + 1 : 0;
    const to = page.offset + page.items.length;
    const pages = Math.max(1, Math.ceil(page.total / view.limit));
    const prev = el("button", { type: "button", class: "btn btn-sm", disabled: view.page === 0, dataset: { key: "prev" },
      onclick: () => { view.page -= 1; load(); } }, "← Previous");
    const next = el("button", { type: "button", class: "btn btn-sm", disabled: to >= page.total, dataset: { key: "next" },
      onclick: () => { view.page += 1; load(); } }, "Next →");
    preserveFocus(pager, () => fill(pager,
      el("span", { class: "num" }, `${fmtInt(from)}–${fmtInt(to)} of ${fmtInt(page.total)}`),
      el("div", { class: "spacer" }),
      el("span", { class: "num" }, `Page ${fmtInt(view.page + 1)} of ${fmtInt(pages)}`), prev, next));
    fill(document.getElementById("jobs-count") || el("div"), `${fmtInt(page.total)} ${filtered ? "matching" : "in total"}`);
    root.dataset.loaded = "true";
  }

  async function load() {
    if (disposed) return;
    clearTimeout(timer);
    if (controller) controller.abort();
    controller = new AbortController();
    try {
      const page = await api.jobs({
        search: view.search, type: view.type, state: view.state, sort: view.sort, order: view.order,
        offset: view.page * view.limit, limit: view.limit,
      }, { signal: controller.signal });
      if (disposed) return;
      if (!page.items.length && view.page > 0 && page.total > 0) {
        view.page = Math.max(0, Math.ceil(page.total / view.limit) - 1);
        return load();
      }
      fill(errorHost);
      render(page);
    } catch (e) {
      if (disposed || e.name === "AbortError") return;
      fill(errorHost, el("div", { class: "alert alert-bad", style: { marginBottom: "16px" } }, e.message));
    }
    if (!disposed) timer = setTimeout(refresh, REFRESH_MS);
  }

  function refresh() {
    if (disposed) return;
    // Not while hidden or while a confirmation is open (the row would be redrawn under it).
    if (document.hidden || document.querySelector("dialog[open]")) timer = setTimeout(refresh, REFRESH_MS);
    else load();
  }

  const onSearch = debounce(() => { view.search = search.value.trim(); view.page = 0; load(); }, 250);
  search.addEventListener("input", onSearch);
  search.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { onSearch.cancel(); view.search = search.value.trim(); view.page = 0; load(); } });
  typeSel.addEventListener("change", () => { view.type = typeSel.value; view.page = 0; load(); });
  stateSel.addEventListener("change", () => { view.state = stateSel.value; view.page = 0; load(); });
  sortSel.addEventListener("change", () => { [view.sort, view.order] = sortSel.value.split(":"); view.page = 0; load(); });
  sizeSel.addEventListener("change", () => { view.limit = Number(sizeSel.value); view.page = 0; load(); });

  header();
  fill(tbody, el("tr", {}, el("td", { colspan: 7, class: "empty" }, "Loading…")));
  load();

  return {
    dispose() {
      disposed = true;
      clearTimeout(timer);
      onSearch.cancel();
      if (controller) controller.abort();
    },
  };
}
