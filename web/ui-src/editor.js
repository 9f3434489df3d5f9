// The one vendored bundle of the Traitor UI: CodeMirror 6 set up for job scripts.
// Built by build.mjs into web/ui/vendor/editor.js; see README.md.
import { EditorState, Compartment, Prec } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter,
  drawSelection, highlightSpecialChars, rectangularSelection, crosshairCursor,
  dropCursor, placeholder as placeholderExt,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  syntaxHighlighting, indentOnInput, bracketMatching, foldGutter, foldKeymap,
} from "@codemirror/language";
import { classHighlighter } from "@lezer/highlight";
import { javascript } from "@codemirror/lang-javascript";
import { linter, lintGutter, setDiagnostics, forceLinting } from "@codemirror/lint";
import { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import { closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { parse } from "acorn";

/**
 * Syntax errors of a script or shared module, as CodeMirror diagnostics, found by acorn
 * (no eval). A text with `import` or `export` is an ES module (scripts and modules may
 * be either), so it is parsed as a script and, failing that, as a module; when both
 * fail, the error of the parse that got further is the one shown.
 */
export function checkSyntax(text) {
  const attempt = (sourceType) => {
    try {
      parse(text, { ecmaVersion: "latest", sourceType, allowAwaitOutsideFunction: true, allowHashBang: true });
      return null;
    } catch (e) {
      return e;
    }
  };
  const asScript = attempt("script");
  if (!asScript) return [];
  const asModule = attempt("module");
  if (!asModule) return [];
  const e = typeof asModule.pos === "number" && !(asModule.pos <= asScript.pos) ? asModule : asScript;
  if (typeof e.pos !== "number") return [];
  const from = Math.min(e.pos, text.length);
  const to = Math.min(from + 1, text.length);
  const message = String(e.message).replace(/\s*\(\d+:\d+\)$/, "");
  return [{ from, to: Math.max(to, from), severity: "error", source: "syntax", message }];
}


/**
 * Creates an editor in `parent` holding `doc`.
 * options: onChange(text), onSave(), onDebug(), readOnly, label (aria-label).
 * Returns { view, getValue, setValue, focus, markError(line, message), clearMarks, destroy }.
 */
export function createEditor(parent, doc, options = {}) {
  const { onChange, onSave, onDebug, label = "Script" } = options;
  const editable = new Compartment();
  // Runtime errors from a debug run: shown until the text changes, and kept by the linter.
  let runtime = [];
  const scriptLinter = linter((v) => [...checkSyntax(v.state.doc.toString()), ...runtime], { delay: 300 });
  const shortcuts = Prec.highest(keymap.of([
    { key: "Mod-s", preventDefault: true, run: () => { onSave && onSave(); return true; } },
    { key: "Mod-Enter", preventDefault: true, run: () => { onDebug && onDebug(); return true; } },
  ]));
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        shortcuts,
        lineNumbers(),
        foldGutter(),
        lintGutter(),
        highlightActiveLineGutter(),
        highlightSpecialChars(),
        history(),
        drawSelection(),
        dropCursor(),
        EditorState.allowMultipleSelections.of(true),
        indentOnInput(),
        syntaxHighlighting(classHighlighter),
        bracketMatching(),
        closeBrackets(),
        rectangularSelection(),
        crosshairCursor(),
        highlightActiveLine(),
        highlightSelectionMatches(),
        placeholderExt("// console.log('hello from traitor')"),
        javascript(),
        scriptLinter,
        editable.of(EditorView.editable.of(!options.readOnly)),
        keymap.of([
          ...closeBracketsKeymap, ...defaultKeymap, ...searchKeymap, ...historyKeymap,
          ...foldKeymap, indentWithTab,
        ]),
        EditorView.contentAttributes.of({ "aria-label": label }),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) {
            runtime = [];
            if (onChange) onChange(u.state.doc.toString());
          }
        }),
      ],
    }),
  });
  return {
    view,
    getValue: () => view.state.doc.toString(),
    setValue(text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    focus: () => view.focus(),
    /** Marks a runtime error at a 1-based line (e.g. from a debug run's stack). */
    markError(line, message) {
      const doc = view.state.doc;
      if (!(line >= 1 && line <= doc.lines)) return;
      const l = doc.line(line);
      runtime = [{ from: l.from, to: l.to, severity: "error", source: "run", message }];
      view.dispatch(setDiagnostics(view.state, [...checkSyntax(doc.toString()), ...runtime]));
    },
    clearMarks() { runtime = []; forceLinting(view); },
    destroy: () => view.destroy(),
  };
}
