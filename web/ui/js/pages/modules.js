// Shared modules: JavaScript libraries every script can load by name, versioned like
// scripts. The list (GET /api/modules), a module's editor (GET /api/module, PUT to save
// a new version, DELETE), and its versions with their diff and rollback
// (GET /api/module/versions, POST /api/module/rollback; ../versions-view.js).
//
// Routes: #/modules, #/modules/new, #/module/<name>, #/module/<name>/versions. A module
// lives under #/module/ so that one named "new" has a page too.
import { el, fill, fmtBytes, timeEl } from "../dom.js";
import { api } from "../api.js";
import { toast, pageError, confirmDialog } from "../ui.js";
import { versionsView } from "../versions-view.js";

const isMac = /Mac|iPhone|iPad/.test(navigator.platform || "");
const MOD = isMac ? "⌘" : "Ctrl";
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._/-]*$/;

const TEMPLATE = `// A shared module. CommonJS (module.exports / exports.x) or an ES module (export …).
exports.greet = (who) => \`hello, \${who}\`;
`;

const moduleHref = (name, tab = "") => `#/module/${encodeURIComponent(name)}${tab ? `/${tab}` : ""}`;

/** How a script loads the module, for the editor's side panel and the empty list. */
function usage(name, version) {
  const id = /^[A-Za-z_$][\w$]*$/.test(name) ? name : "m";
  return el("div", { class: "usage", id: "module-usage" },
    el("h3", { class: "sub-title" }, "Use it in a script"),
    el("pre", { class: "example" },
      `const ${id} = require('${name}');\n`,
      `import ${id} from '${name}';\n`,
      `const ${id}2 = await import('${name}');`),
    el("p", { class: "small muted" }, "Every job's next run gets the current version, on every node. ",
      version ? ["Pin one with ", el("code", {}, `require('${name}@${version}')`), "."] : null),
    el("p", { class: "small muted" }, "A module with import or export is an ES module, otherwise CommonJS; either loads either way. Modules may load other modules by name."));
}

// ---- the list ------------------------------------------------------------------------

export function modulesPage(root) {
  let disposed = false;
  const tbody = el("tbody");
  const count = el("div", { class: "sub", id: "modules-count" });
  fill(root,
    el("div", { class: "page-head" },
      el("div", {}, el("h1", {}, "Modules"), count),
      el("div", { class: "spacer" }),
      el("a", { class: "btn btn-primary", href: "#/modules/new", id: "new-module" }, "New module")),
    el("section", { class: "panel" },
      el("div", { class: "table-wrap" }, el("table", { id: "modules-table" },
        el("thead", {}, el("tr", {},
          el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Version"), el("th", { scope: "col" }, "Note"),
          el("th", { scope: "col" }, "Size"), el("th", { scope: "col" }, "Updated"),
          el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Actions")))),
        tbody))));
  fill(tbody, el("tr", {}, el("td", { colspan: 6, class: "empty" }, "Loading…")));
  load();

  async function load() {
    try {
      const list = await api.modules();
      if (disposed) return;
      render([...list].sort((a, b) => a.name.localeCompare(b.name)));
    } catch (e) {
      if (disposed) return;
      fill(tbody, el("tr", {}, el("td", { colspan: 6, class: "empty" },
        el("div", { class: "alert alert-bad", id: "modules-error" }, `Could not load the modules: ${e.message}`),
        el("button", { type: "button", class: "btn btn-sm", style: { marginTop: "10px" }, onclick: load }, "Try again"))));
    }
    root.dataset.loaded = "true";
  }

  function render(mods) {
    fill(count, mods.length ? `${mods.length} module${mods.length === 1 ? "" : "s"}` : "JavaScript libraries that every job's script can load by name");
    if (!mods.length) {
      fill(tbody, el("tr", {}, el("td", { colspan: 6, class: "empty", id: "modules-empty" },
        el("div", {}, "No modules yet. A module is saved once and loaded by any script:"),
        el("pre", { class: "example" }, "const slack = require('slack');\nawait slack.post('backup done');"),
        el("a", { class: "btn btn-primary", href: "#/modules/new", style: { marginTop: "10px" } }, "Create the first module"))));
      return;
    }
    fill(tbody, mods.map((m) => {
      const del = el("button", {
        type: "button", class: "btn btn-sm btn-ghost btn-danger", dataset: { action: "delete" }, "aria-label": `Delete ${m.name}`,
        onclick: async () => { if (await deleteModule(m.name)) load(); },
      }, "Delete");
      return el("tr", { dataset: { module: m.name } },
        el("td", { class: "name-cell" }, el("a", { class: "job-name module-name", href: moduleHref(m.name) }, m.name)),
        el("td", {}, el("a", { class: "badge plain", href: moduleHref(m.name, "versions"), "aria-label": `Versions of ${m.name}` }, `v${m.version}`)),
        el("td", { class: "note" }, m.note || el("span", { class: "faint" }, "—")),
        el("td", { class: "nowrap num" }, fmtBytes(m.bytes)),
        el("td", { class: "nowrap" }, timeEl(m.updatedAt)),
        el("td", { class: "actions" }, el("div", { class: "btn-group" },
          el("a", { class: "btn btn-sm", href: moduleHref(m.name), "aria-label": `Edit ${m.name}` }, "Edit"),
          el("a", { class: "btn btn-sm", href: moduleHref(m.name, "versions"), "aria-label": `Versions of ${m.name}` }, "Versions"),
          del)));
    }));
  }

  return { dispose() { disposed = true; } };
}

async function deleteModule(name) {
  const yes = await confirmDialog({
    title: `Delete module ${name}?`,
    message: `“${name}” and every version of it are removed. Scripts that load it fail with MODULE_NOT_FOUND from their next run. This cannot be undone.`,
    confirm: "Delete module", danger: true,
  });
  if (!yes) return false;
  try {
    await api.deleteModule(name);
    toast(`Deleted ${name}`);
    return true;
  } catch (e) {
    toast(e.message, "bad");
    return false;
  }
}

/** A module's name, current version and tabs, shared by its editor and its versions. */
function moduleHeader(mod, active) {
  const del = el("button", { type: "button", class: "btn btn-danger", id: "delete-module" }, "Delete");
  del.addEventListener("click", async () => { if (await deleteModule(mod.name)) location.hash = "#/modules"; });
  const tab = (name, href, label) => el("a", { href, "aria-current": active === name ? "page" : null }, label);
  return el("div", {},
    el("div", { class: "crumbs" }, el("a", { href: "#/modules" }, "Modules"), " / ", mod.name),
    el("div", { class: "job-head" },
      el("div", {},
        el("h1", { class: "job-title module-title", id: "module-title" }, mod.name),
        el("div", { class: "meta" },
          el("a", { class: "badge plain accent", id: "module-version", href: moduleHref(mod.name, "versions"), title: mod.note || "Versions" }, `v${mod.version}`),
          el("span", {}, "Updated ", timeEl(mod.updatedAt)),
          el("span", {}, fmtBytes(mod.bytes)),
          mod.note ? el("span", { class: "muted" }, el("q", {}, mod.note)) : null)),
      el("div", { class: "spacer" }),
      el("div", { class: "btn-group" }, del)),
    el("nav", { class: "tabs", "aria-label": "Module" },
      tab("source", moduleHref(mod.name), "Source"),
      tab("versions", moduleHref(mod.name, "versions"), "Versions")));
}

// ---- the editor ----------------------------------------------------------------------

/** `name` null: a new module. */
export function moduleEditPage(root, { name }) {
  const isNew = name === null;
  let disposed = false;
  let editor = null;
  let saved = isNew ? TEMPLATE : "";
  let mod = null;

  const headerHost = el("div");
  const dirtyNote = el("span", { class: "saved", id: "dirty-state", "aria-live": "polite" }, "Saved");
  const nameInput = el("input", {
    type: "text", id: "module-name", name: "name", maxlength: 100, autocomplete: "off", spellcheck: "false",
    class: "mono-input", placeholder: "utils/date", "aria-describedby": "module-name-hint module-name-error",
  });
  const nameError = el("div", { class: "error", id: "module-name-error", role: "alert" });
  const noteInput = el("input", {
    type: "text", id: "module-note", name: "note", maxlength: 500, autocomplete: "off", class: "note-input",
    placeholder: "Note for this version (optional)", "aria-label": "Note for the saved version",
  });
  const saveBtn = el("button", { type: "button", class: "btn btn-primary btn-sm", id: "save-module", title: `Save (${MOD}+S)` },
    isNew ? "Create" : "Save", el("kbd", {}, `${MOD}+S`));
  const editorHost = el("div", { class: "editor-host", id: "editor" });
  const side = el("div", { class: "panel-body" }, usage(name || "name", null));

  fill(root, el("p", { class: "loading" }, "Loading…"));
  Promise.all([isNew ? null : api.module(name), import("../../vendor/editor.js")]).then(
    ([m, editorModule]) => { if (!disposed) build(m, editorModule); },
    (e) => { if (!disposed) pageError(root, e, () => location.reload()); });

  function isDirty() { return !!editor && (editor.getValue() !== saved || (isNew && nameInput.value.trim() !== "")); }

  function updateDirty() {
    const dirty = editor && editor.getValue() !== saved;
    dirtyNote.className = dirty ? "dirty" : "saved";
    dirtyNote.textContent = dirty ? "● Unsaved changes" : isNew ? "Not created yet" : "Saved";
  }

  function drawHeader() {
    if (isNew) {
      fill(headerHost, el("div", { class: "page-head" }, el("div", {},
        el("div", { class: "crumbs" }, el("a", { href: "#/modules" }, "Modules"), " / new"),
        el("h1", {}, "New module"),
        el("div", { class: "sub" }, "Saved as version 1; every later save is a new version."))));
    } else fill(headerHost, moduleHeader(mod, "source"));
  }

  function build(m, editorModule) {
    mod = m;
    if (m) saved = m.source || "";
    drawHeader();
    const nameField = isNew ? el("div", { class: "field module-name-field" },
      el("label", { for: "module-name" }, "Name"), nameInput,
      el("div", { class: "hint", id: "module-name-hint" }, "Letters, digits and . _ / -, at most 100 characters; scripts load it by this name."),
      nameError) : null;
    fill(root, headerHost, nameField,
      el("div", { class: "ide module-ide" },
        el("section", { class: "panel", "aria-label": "Module source" },
          el("div", { class: "ide-bar" }, el("span", { class: "title", id: "module-file" }, `${name || "module"}.js`), dirtyNote,
            el("div", { class: "spacer" }), noteInput, saveBtn),
          editorHost),
        el("section", { class: "panel", "aria-label": "Using the module" }, side)));
    if (!isNew) fill(side, usage(name, m.version));
    editor = editorModule.createEditor(editorHost, saved, { label: "Module source", onChange: updateDirty, onSave: save });
    saveBtn.addEventListener("click", save);
    noteInput.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); save(); } });
    if (isNew) {
      nameInput.addEventListener("input", () => {
        nameError.textContent = "";
        nameInput.removeAttribute("aria-invalid");
        const n = nameInput.value.trim();
        fill(side, usage(n || "name", null));
        document.getElementById("module-file").textContent = `${n || "module"}.js`;
      });
    }
    window.addEventListener("beforeunload", onBeforeUnload);
    updateDirty();
    root.dataset.loaded = "true";
    if (isNew) nameInput.focus(); else editor.focus();
  }

  function nameProblem(n) {
    if (!n) return "Name the module.";
    if (n.length > 100) return "At most 100 characters.";
    if (!NAME_RE.test(n)) return "Use letters, digits and . _ / -, starting with a letter, digit or _.";
    return null;
  }

  function showNameError(message) {
    nameError.textContent = message;
    nameInput.setAttribute("aria-invalid", "true");
    nameInput.focus();
  }

  async function save() {
    if (!editor || saveBtn.disabled) return;
    const text = editor.getValue();
    const target = isNew ? nameInput.value.trim() : name;
    if (isNew) {
      const problem = nameProblem(target);
      if (problem) return showNameError(problem);
    }
    saveBtn.disabled = true;
    try {
      if (isNew) {
        // A save under an existing name would silently become its next version.
        const exists = await api.module(target).then(() => true, (e) => { if (e.status === 404) return false; throw e; });
        if (exists) {
          showNameError("");
          fill(nameError, "A module with this name exists: ", el("a", { href: moduleHref(target) }, "open it"), " to change it.");
          return;
        }
      }
      const made = await api.saveModule(target, text, noteInput.value.trim());
      if (disposed) return;
      saved = text;
      noteInput.value = "";
      noteInput.removeAttribute("aria-invalid");
      updateDirty();
      if (isNew) {
        toast(`Created ${target}`);
        nameInput.value = "";
        location.hash = moduleHref(target);
        return;
      }
      toast(`Saved version ${made.version} — every job's next run uses it`);
      mod = { ...mod, ...made };
      drawHeader();
      fill(side, usage(name, mod.version));
    } catch (e) {
      if (disposed) return;
      if (e.field === "name" && isNew) showNameError(e.message);
      else if (e.field === "note") { noteInput.setAttribute("aria-invalid", "true"); noteInput.focus(); toast(e.message, "bad"); }
      else toast(e.message, "bad");
    } finally {
      saveBtn.disabled = false;
    }
  }

  function onBeforeUnload(ev) { if (isDirty()) { ev.preventDefault(); ev.returnValue = ""; } }

  return {
    async canLeave() {
      if (!isDirty()) return true;
      return confirmDialog({ title: "Discard unsaved changes?", message: "The module has changes that are not saved.", confirm: "Discard", danger: true });
    },
    dispose() {
      disposed = true;
      window.removeEventListener("beforeunload", onBeforeUnload);
      if (editor) editor.destroy();
    },
  };
}

// ---- the versions --------------------------------------------------------------------

export function moduleVersionsPage(root, { name }, query) {
  let disposed = false;
  let versions = null;
  const headerHost = el("div");

  fill(root, el("p", { class: "loading" }, "Loading…"));
  api.module(name).then((m) => { if (!disposed) build(m); }, (e) => { if (!disposed) pageError(root, e, () => location.reload()); });

  async function refreshHeader() {
    try {
      const m = await api.module(name);
      if (!disposed) fill(headerHost, moduleHeader(m, "versions"));
    } catch { /* the list reports its own errors */ }
  }

  function build(m) {
    fill(headerHost, moduleHeader(m, "versions"));
    versions = versionsView({
      query,
      path: moduleHref(name, "versions"),
      title: "Versions",
      editHref: moduleHref(name),
      editLabel: "Edit source",
      noun: "source",
      list: async () => (await api.moduleVersions(name)).map((v) => ({ ...v, savedAt: v.updatedAt || v.createdAt })),
      source: async (version) => (await api.module(name, version)).source,
      rollback: async (version) => (await api.rollbackModule(name, version)).version,
      onRolledBack: refreshHeader,
    });
    fill(root, headerHost, versions.node);
    versions.reload().then(() => { root.dataset.loaded = "true"; });
  }

  return {
    dispose() {
      disposed = true;
      if (versions) versions.dispose();
    },
  };
}
