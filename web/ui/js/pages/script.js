// Script editor (CodeMirror 6, vendored) with a live debug console over the debug
// WebSocket: /api/debug?id=…&format=json, plus &draft=1 and a first frame
// {"script": …} to run the unsaved draft.
import { el, fill, fmtMs, badge } from "../dom.js";
import { api, debugUrl } from "../api.js";
import { liveJobHeader, toast, pageError, confirmDialog, logLine, errorBlock } from "../ui.js";

const isMac = /Mac|iPhone|iPad/.test(navigator.platform || "");
const MOD = isMac ? "⌘" : "Ctrl";

export function scriptPage(root, { id }, query) {
  let disposed = false;
  let editor = null;
  let saved = "";
  let ws = null;
  let header = null;
  let run = null; // { started, ended, ranDraft, script }
  const autoDebug = query.get("debug") === "1";

  fill(root, el("p", { class: "loading" }, "Loading…"));
  Promise.all([api.job(id), api.script(id), import("../../vendor/editor.js")]).then(
    ([job, script, mod]) => { if (!disposed) build(job, script.script, mod); },
    (e) => { if (!disposed) pageError(root, e, () => location.reload()); });

  const dirtyNote = el("span", { class: "saved", id: "dirty-state", "aria-live": "polite" }, "Saved");
  const noteInput = el("input", {
    type: "text", id: "script-note", name: "note", maxlength: 500, autocomplete: "off", class: "note-input",
    placeholder: "Note for this version (optional)", "aria-label": "Note for the saved version",
  });
  const saveBtn = el("button", { type: "button", class: "btn btn-primary btn-sm", id: "save-script", title: `Save (${MOD}+S)` }, "Save", el("kbd", {}, `${MOD}+S`));
  const debugBtn = el("button", { type: "button", class: "btn btn-sm", id: "debug-run", title: `Run now in a debug worker (${MOD}+Enter)` }, "▶ Debug", el("kbd", {}, `${MOD}+↵`));
  const stopBtn = el("button", { type: "button", class: "btn btn-sm btn-danger", id: "debug-stop", hidden: true }, "■ Stop");
  const clearBtn = el("button", { type: "button", class: "btn btn-sm btn-ghost", id: "debug-clear" }, "Clear");
  const runState = el("span", { id: "debug-state", "aria-live": "polite" });
  const consoleEl = el("div", { class: "console", id: "console", role: "log", "aria-label": "Debug console", tabindex: "0" },
    emptyConsole());
  const editorHost = el("div", { class: "editor-host", id: "editor" });

  function emptyConsole() {
    return el("div", { class: "console-empty" },
      "Debug runs the script now in a sandboxed worker and streams its console here. ",
      "It runs what is in the editor — the unsaved draft included — and does not change the job's state or history.");
  }

  function isDirty() { return editor && editor.getValue() !== saved; }

  function updateDirty() {
    const dirty = isDirty();
    dirtyNote.className = dirty ? "dirty" : "saved";
    dirtyNote.textContent = dirty ? "● Unsaved changes" : "Saved";
    debugBtn.firstChild.textContent = dirty ? "▶ Debug draft" : "▶ Debug";
  }

  async function save() {
    if (!editor) return;
    const text = editor.getValue();
    saveBtn.disabled = true;
    try {
      await api.saveScript(id, text, noteInput.value.trim());
      saved = text;
      noteInput.value = "";
      noteInput.removeAttribute("aria-invalid");
      updateDirty();
      toast("Script saved — it is used from the next run");
      if (header) header.refresh();
    } catch (e) {
      if (e.field === "note" || e.field === "scriptNote") { noteInput.setAttribute("aria-invalid", "true"); noteInput.focus(); }
      toast(e.message, "bad");
    } finally {
      saveBtn.disabled = false;
    }
  }

  function atBottom() { return consoleEl.scrollHeight - consoleEl.scrollTop - consoleEl.clientHeight < 40; }
  function push(node) {
    const stick = atBottom();
    consoleEl.appendChild(node);
    if (stick) consoleEl.scrollTop = consoleEl.scrollHeight;
  }

  function setRunning(on) {
    debugBtn.disabled = on;
    stopBtn.hidden = !on;
    if (on) fill(runState, badge("running"));
  }

  function finish(outcome, error, durationMs) {
    run.ended = true;
    setRunning(false);
    fill(runState, badge(outcome), el("span", { class: "faint small" }, ` ${fmtMs(durationMs)}`));
    push(el("div", { class: "console-end", id: "debug-end", dataset: { outcome } },
      el("div", { class: "head" }, el("b", {}, "Run ended"), badge(outcome), el("span", { class: "muted" }, fmtMs(durationMs))),
      errorBlock(error)));
    const m = error && error.stack && /job\.js:(\d+)/.exec(error.stack);
    if (m && editor && editor.getValue() === run.script) editor.markError(Number(m[1]), error.message);
  }

  function debug() {
    if (!editor || (ws && !run.ended)) return;
    const script = editor.getValue();
    const draft = script !== saved;
    fill(consoleEl);
    run = { started: Date.now(), ended: false, script, ranDraft: draft };
    push(el("div", { class: "console-note" }, `Debug run of the ${draft ? "unsaved draft" : "saved script"} · ${new Date().toLocaleTimeString()}`));
    setRunning(true);
    const socket = new WebSocket(debugUrl(draft ? { id, draft: 1 } : { id }));
    ws = socket;
    const mine = run;
    socket.addEventListener("open", () => { if (draft) socket.send(JSON.stringify({ script })); });
    socket.addEventListener("message", (ev) => {
      if (mine !== run) return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch { push(logLine({ level: "log", text: String(ev.data) }, null)); return; }
      if (msg.type === "log") {
        const first = consoleEl.querySelector(".line");
        if (!first && msg.at) mine.started = Math.min(mine.started, new Date(msg.at).getTime());
        push(logLine(msg, mine.started));
      } else if (msg.type === "end") {
        finish(msg.outcome, msg.error, msg.durationMs);
      } else if (msg.type === "error") {
        mine.ended = true;
        setRunning(false);
        fill(runState, badge("failed", null));
        push(el("div", { class: "console-end", id: "debug-end", dataset: { outcome: "error" } },
          el("div", { class: "head" }, el("b", {}, "Could not run"), el("span", { class: "badge bad" }, msg.code || "error")),
          el("pre", {}, msg.error)));
      }
    });
    socket.addEventListener("close", (ev) => {
      if (mine !== run) return;
      if (!mine.ended) {
        mine.ended = true;
        setRunning(false);
        fill(runState, el("span", { class: "badge" }, "stopped"));
        push(el("div", { class: "console-note" }, mine.stopped ? "Stopped: the run was cancelled." : `Connection closed (${ev.code}) before the run ended.`));
      }
    });
  }

  function stop() {
    if (ws && run && !run.ended) { run.stopped = true; ws.close(1000, "stopped"); }
  }

  function onKey(ev) {
    if (ev.defaultPrevented || !(ev.ctrlKey || ev.metaKey)) return;
    if (ev.key === "s" || ev.key === "S") { ev.preventDefault(); save(); }
    else if (ev.key === "Enter") { ev.preventDefault(); debug(); }
  }

  function onBeforeUnload(ev) { if (isDirty()) { ev.preventDefault(); ev.returnValue = ""; } }

  function build(job, script, mod) {
    saved = script;
    header = liveJobHeader(job, "script");
    fill(root, header.node,
      el("div", { class: "ide" },
        el("section", { class: "panel", "aria-label": "Script editor" },
          el("div", { class: "ide-bar" }, el("span", { class: "title" }, "script.js"), dirtyNote, el("div", { class: "spacer" }), noteInput, saveBtn),
          editorHost),
        el("section", { class: "panel", "aria-label": "Debug console" },
          el("div", { class: "ide-bar" }, el("span", { class: "title" }, "Console"), runState, el("div", { class: "spacer" }), clearBtn, stopBtn, debugBtn),
          consoleEl)));
    editor = mod.createEditor(editorHost, script, {
      label: "Job script", onChange: updateDirty, onSave: save, onDebug: debug,
    });
    saveBtn.addEventListener("click", save);
    noteInput.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); save(); } });
    debugBtn.addEventListener("click", debug);
    stopBtn.addEventListener("click", stop);
    clearBtn.addEventListener("click", () => { if (!ws || !run || run.ended) { fill(consoleEl, emptyConsole()); fill(runState); } });
    document.addEventListener("keydown", onKey);
    window.addEventListener("beforeunload", onBeforeUnload);
    updateDirty();
    root.dataset.loaded = "true";
    if (autoDebug) debug(); else editor.focus();
  }

  return {
    async canLeave() {
      if (!isDirty()) return true;
      return confirmDialog({ title: "Discard unsaved changes?", message: "The script has changes that are not saved.", confirm: "Discard", danger: true });
    },
    dispose() {
      disposed = true;
      document.removeEventListener("keydown", onKey);
      window.removeEventListener("beforeunload", onBeforeUnload);
      if (ws) { try { ws.close(1000); } catch { /* already closed */ } }
      if (header) header.dispose();
      if (editor) editor.destroy();
    },
  };
}
