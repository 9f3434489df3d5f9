// A job's state: the key-value store its scripts keep between runs with kv.set
// (GET /api/job/kv), each value as pretty-printed JSON, and deletion of a key
// (DELETE /api/job/kv). Refreshed every few seconds, since runs change it.
import { el, fill, fmtBytes } from "../dom.js";
import { api } from "../api.js";
import { liveJobHeader, pageError, toast, confirmDialog } from "../ui.js";

const REFRESH_MS = 3000;

const EXAMPLE = `const n = (await kv.get('count')) ?? 0;   // undefined when absent
await kv.set('count', n + 1);             // any JSON value
await kv.delete('old');`;

export function statePage(root, { id }) {
  let disposed = false;
  let header = null;
  let timer = null;
  let shown = null; // the JSON of what is on screen, to redraw only on a change

  const body = el("div", { id: "kv-body" }, el("p", { class: "loading" }, "Loading…"));
  const status = el("div", { class: "pager", id: "kv-status", "aria-live": "polite" });

  fill(root, el("p", { class: "loading" }, "Loading…"));
  api.job(id).then((job) => { if (!disposed) build(job); }, (e) => { if (!disposed) pageError(root, e, () => location.reload()); });

  function build(job) {
    header = liveJobHeader(job, "state", { onJob: () => load() });
    const refresh = el("button", { type: "button", class: "btn btn-sm", id: "kv-refresh", onclick: () => load() }, "Refresh");
    fill(root, header.node,
      el("section", { class: "panel", "aria-labelledby": "kv-title" },
        el("div", { class: "panel-head" }, el("h2", { id: "kv-title" }, "State"),
          el("span", { class: "muted small" }, "What this job's scripts keep between runs with kv."),
          el("div", { class: "spacer" }), refresh),
        body, status));
    load();
  }

  function schedule() {
    clearTimeout(timer);
    if (!disposed) timer = setTimeout(() => {
      // Not while hidden or while a confirmation is open (the row would be redrawn under it).
      if (document.hidden || document.querySelector("dialog[open]")) schedule();
      else load();
    }, REFRESH_MS);
  }

  async function load() {
    clearTimeout(timer);
    try {
      const entries = await api.kv(id);
      if (disposed) return;
      const json = JSON.stringify(entries);
      if (json !== shown) { shown = json; render(entries); }
    } catch (e) {
      if (disposed) return;
      shown = null;
      fill(body, el("div", { class: "panel-pad" }, el("div", { class: "alert alert-bad", id: "kv-error" }, `Could not load the state: ${e.message}`)));
    }
    root.dataset.loaded = "true";
    schedule();
  }

  function render(entries) {
    const sorted = [...entries].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    if (!sorted.length) {
      fill(body, el("div", { class: "empty-state", id: "kv-empty" },
        el("h2", {}, "No state yet"),
        el("p", {}, "A script keeps values between runs of this job with kv:"),
        el("pre", { class: "example" }, EXAMPLE)));
      fill(status);
      return;
    }
    let bytes = 0;
    fill(body, el("div", { class: "table-wrap" }, el("table", { id: "kv-table" },
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Key"), el("th", { scope: "col" }, "Value"),
        el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Actions")))),
      el("tbody", {}, sorted.map((e) => {
        const text = JSON.stringify(e.value, null, 2);
        bytes += new TextEncoder().encode(e.key + JSON.stringify(e.value)).length;
        return el("tr", { dataset: { kvKey: e.key } },
          el("td", { class: "kv-key" }, el("code", {}, e.key)),
          el("td", { class: "kv-value" }, el("pre", {}, text)),
          el("td", { class: "actions" }, el("button", {
            type: "button", class: "btn btn-sm btn-ghost btn-danger", dataset: { action: "delete" },
            "aria-label": `Delete key ${e.key}`, onclick: () => remove(e.key),
          }, "Delete")));
      })))));
    fill(status, `${sorted.length} key${sorted.length === 1 ? "" : "s"} · ${fmtBytes(bytes)} of keys and values (at most 1000 keys and 1 MiB per job)`);
  }

  async function remove(key) {
    const yes = await confirmDialog({
      title: "Delete this key?",
      message: `“${key}” is removed from this job's state; the next run's kv.get('${key}') gets undefined.`,
      confirm: "Delete key", danger: true,
    });
    if (!yes || disposed) return;
    try {
      await api.kvDelete(id, key);
      toast(`Deleted ${key}`);
    } catch (e) {
      toast(e.message, "bad");
    }
    await load();
  }

  return {
    dispose() {
      disposed = true;
      clearTimeout(timer);
      if (header) header.dispose();
    },
  };
}
