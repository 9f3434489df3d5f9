//! Shared modules: the JavaScript libraries users upload (`/api/module`), which the
//! supervisor sends with each run ([`protocol::SharedModule`]), loadable with
//! `require('name')`, `import … from 'name'` and `import('name')`.
//!
//! A module is an ES module if it has an `import` or `export` statement
//! ([`is_es_module`]), otherwise CommonJS: its source runs once per run inside
//! `function (exports, require, module)` and `module.exports` is what `require`
//! returns. Either kind loads either way:
//! - `require` of an ES module returns its namespace (a module that awaits at top level
//!   cannot be required: use `import`);
//! - `import` of a CommonJS module (or of a plugin) gets `module.exports` as its default
//!   export and each of its identifier-named properties as a named export.
//!
//! Every module is evaluated once per run: later `require`s and `import`s share it.
//!
//! Must not: evaluate any source the supervisor did not send for this run.

use std::cell::RefCell;
use std::collections::HashMap;

use protocol::SharedModule;
use rquickjs::context::EvalOptions;
use rquickjs::promise::PromiseState;
use rquickjs::{Ctx, Exception, Function, Module, Object, Value};

use super::run_cx;

/// The run's shared modules (part of its `RunCx`).
#[derive(Default)]
pub(crate) struct State<'js> {
    /// What the supervisor sent, by specifier.
    sources: HashMap<String, Source>,
    /// CommonJS `module` objects evaluated (or being evaluated) so far.
    cjs: RefCell<HashMap<String, Object<'js>>>,
}

struct Source {
    version: u64,
    text: String,
    esm: bool,
}

impl State<'_> {
    pub(crate) fn new(modules: &[SharedModule]) -> Self {
        let sources = modules
            .iter()
            .map(|m| {
                let source = Source {
                    version: m.version,
                    text: m.source.clone(),
                    esm: is_es_module(&m.source),
                };
                (m.specifier.clone(), source)
            })
            .collect();
        Self {
            sources,
            cjs: RefCell::default(),
        }
    }

    /// Whether the run has a shared module under `specifier`.
    pub(crate) fn has(&self, specifier: &str) -> bool {
        self.sources.contains_key(specifier)
    }

    /// The source of a shared ES module, to declare it.
    pub(crate) fn esm_source(&self, specifier: &str) -> Option<String> {
        self.sources
            .get(specifier)
            .filter(|s| s.esm)
            .map(|s| s.text.clone())
    }
}

/// `require(specifier)` of a shared module: `Ok(None)` if the run has none by that name.
pub(crate) fn require<'js>(
    ctx: &Ctx<'js>,
    specifier: &str,
) -> rquickjs::Result<Option<Value<'js>>> {
    let (esm, source, version) = {
        let cx = run_cx(ctx)?;
        if let Some(module) = cx.shared.cjs.borrow().get(specifier) {
            return module.get("exports").map(Some);
        }
        match cx.shared.sources.get(specifier) {
            None => return Ok(None),
            Some(s) if s.esm => (true, String::new(), s.version),
            Some(s) => (false, s.text.clone(), s.version),
        }
    };
    if esm {
        return require_es_module(ctx, specifier).map(Some);
    }
    let module = Object::new(ctx.clone())?;
    module.set("exports", Object::new(ctx.clone())?)?;
    module.set("id", specifier)?;
    module.set("version", version)?;
    // Cached before it runs, so that a cycle sees the partial exports (as Node does).
    run_cx(ctx)?
        .shared
        .cjs
        .borrow_mut()
        .insert(specifier.to_owned(), module.clone());
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = false;
    options.filename = Some(specifier.to_owned());
    // One line, so the module's own line numbers stay right in stack traces.
    let wrapped = format!("(function (exports, require, module) {{{source}\n}})");
    let run = ctx
        .eval_with_options::<Function<'js>, _>(wrapped, options)
        .and_then(|f| {
            let exports: Value<'js> = module.get("exports")?;
            let require: Value<'js> = ctx.globals().get(super::modules::HIDDEN_REQUIRE)?;
            f.call::<_, ()>((exports, require, module.clone()))
        });
    if let Err(e) = run {
        // A module that threw is not cached: requiring it again runs it again.
        run_cx(ctx)?.shared.cjs.borrow_mut().remove(specifier);
        return Err(e);
    }
    module.get("exports").map(Some)
}

/// `require` of an ES module: a dynamic import settled on the spot.
fn require_es_module<'js>(ctx: &Ctx<'js>, specifier: &str) -> rquickjs::Result<Value<'js>> {
    let promise = Module::import(ctx, specifier)?;
    // Its failure is thrown from `require`, so the promise itself is handled.
    let noop = Function::new(ctx.clone(), || ())?;
    promise
        .catch()?
        .call::<_, Value<'js>>((rquickjs::function::This(promise.clone()), noop))?;
    while promise.state() == PromiseState::Pending && ctx.execute_pending_job() {
        if run_cx(ctx)?.host.stop_reason().is_some() {
            break; // a limit ends the run; the caller's next step sees it
        }
    }
    match promise.state() {
        PromiseState::Resolved => promise.result::<Value<'js>>().unwrap_or_else(|| {
            Err(Exception::throw_internal(
                ctx,
                "a settled import has no value",
            ))
        }),
        PromiseState::Rejected => match promise.result::<Value<'js>>() {
            Some(Err(e)) => Err(e),
            _ => Err(Exception::throw_internal(
                ctx,
                "a rejected import has no reason",
            )),
        },
        PromiseState::Pending => Err(Exception::throw_message(
            ctx,
            &format!(
                "require('{specifier}'): the ES module awaits at top level, so it cannot be \
                 required; use `import` or `await import('{specifier}')`"
            ),
        )),
    }
}

/// Words that cannot name a `const` binding, so a CommonJS property named so is reached
/// through the default export only.
const RESERVED: &[&str] = &[
    "arguments",
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "eval",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "implements",
    "import",
    "in",
    "instanceof",
    "interface",
    "let",
    "new",
    "null",
    "package",
    "private",
    "protected",
    "public",
    "return",
    "static",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
];

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !RESERVED.contains(&name)
}

/// The ES module that `import` sees for a CommonJS value (a CommonJS shared module or a
/// plugin): `value` as the default export and its identifier-named own properties as
/// named exports. `value` has been produced by `require(specifier)` already.
pub(crate) fn wrapper_source<'js>(specifier: &str, value: &Value<'js>) -> rquickjs::Result<String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(obj) = value.as_object() {
        for key in obj.keys::<String>() {
            let key = key?;
            if is_identifier(&key) {
                names.push(key);
            }
        }
    }
    let quoted = serde_json::to_string(specifier).unwrap_or_else(|_| "\"\"".into());
    let mut src = format!(
        "const m = globalThis.{}({quoted});\nexport default m;\n",
        super::modules::HIDDEN_REQUIRE
    );
    if !names.is_empty() {
        src.push_str(&format!("export const {{ {} }} = m;\n", names.join(", ")));
    }
    Ok(src)
}

/// Whether a module's source is an ES module: some line starts with an `export`
/// statement, or an `import` statement (not `import(` or `import.meta`). Lines inside
/// block comments are skipped; strings that span lines can fool it, which only makes a
/// module fail to load, with QuickJS's syntax error naming the line.
pub(crate) fn is_es_module(source: &str) -> bool {
    let mut in_comment = false;
    for line in source.lines() {
        let mut rest = line.trim_start();
        if in_comment {
            match rest.find("*/") {
                Some(end) => {
                    rest = rest[end + 2..].trim_start();
                    in_comment = false;
                }
                None => continue,
            }
        }
        while let Some(after) = rest.strip_prefix("/*") {
            match after.find("*/") {
                Some(end) => rest = after[end + 2..].trim_start(),
                None => {
                    in_comment = true;
                    rest = "";
                }
            }
        }
        if statement_after(rest, "export").is_some_and(|c| c != '(' && c != '.' && c != ':') {
            return true;
        }
        if statement_after(rest, "import").is_some_and(|c| c != '(' && c != '.' && c != ':') {
            return true;
        }
    }
    false
}

/// If `line` starts with the keyword `word` (not a longer identifier), the first
/// character after it and its spaces.
fn statement_after(line: &str, word: &str) -> Option<char> {
    let rest = line.strip_prefix(word)?;
    let first = rest.chars().next()?;
    if first.is_ascii_alphanumeric() || first == '_' || first == '$' {
        return None;
    }
    rest.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::is_es_module;

    #[test]
    fn export_and_import_statements_make_an_es_module() {
        assert!(is_es_module("export const a = 1;"));
        assert!(is_es_module("const a = 1;\nexport default a;"));
        assert!(is_es_module("export { a as b };"));
        assert!(is_es_module("export * from 'x';"));
        assert!(is_es_module("import x from 'x';\nx();"));
        assert!(is_es_module("import { y } from 'x';"));
        assert!(is_es_module("import * as z from 'x';"));
        assert!(is_es_module("import 'side-effect';"));
        assert!(is_es_module("  /* lib */ export function f() {}"));
    }

    #[test]
    fn commonjs_and_dynamic_imports_do_not() {
        assert!(!is_es_module("module.exports = { a: 1 };"));
        assert!(!is_es_module("exports.f = () => 1;"));
        assert!(!is_es_module("const m = await import('x');"));
        assert!(!is_es_module("import('x').then(m => m);"));
        assert!(!is_es_module(
            "const exported = 1; module.exports = exported;"
        ));
        assert!(!is_es_module("const importer = 1;\nimporter;"));
        assert!(!is_es_module("// export const a = 1\nmodule.exports = 1;"));
        assert!(!is_es_module(
            "/*\nexport const a = 1;\n*/\nmodule.exports = 2;"
        ));
        assert!(!is_es_module("const o = {\n  import: 1,\n  export: 2 };"));
    }
}
