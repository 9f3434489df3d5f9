//! `require(name)` and ES module resolution, for every kind of module a script can load,
//! in this order:
//! 1. the built-in `http` (also `node:http`, [`super::http`]);
//! 2. the worker's native plugins ([`super::plugins`]);
//! 3. the shared modules the supervisor sent with the run ([`super::shared`]).
//!
//! `require`, static `import` and dynamic `import()` all find all three. Every other
//! name, relative path, absolute path or URL fails with
//! `Error: Cannot find module '<name>'` (`code: 'MODULE_NOT_FOUND'`).
//!
//! Must not: read files, or evaluate any source but the run's own script and the shared
//! modules sent with it.

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::{Declarations, Exports, ModuleDef};
use rquickjs::{Ctx, Exception, Function, Module, Object, Value};

use super::{http, plugins, run_cx, shared};

/// The name the script's own module is evaluated under (it shows in stack traces).
pub(crate) const SCRIPT_NAME: &str = "job.js";

/// A read-only global holding the real `require`, which the ES wrappers of CommonJS
/// modules and plugins call (the script may shadow `require` itself).
pub(crate) const HIDDEN_REQUIRE: &str = "__traitor_require";

fn not_found(ctx: &Ctx<'_>, name: &str) -> rquickjs::Error {
    let e = Exception::from_message(ctx.clone(), &format!("Cannot find module '{name}'"));
    match e {
        Ok(e) => {
            let _ = e.as_object().set("code", "MODULE_NOT_FOUND");
            ctx.throw(e.into_value())
        }
        Err(err) => err,
    }
}

pub(crate) fn init<'js>(ctx: &Ctx<'js>, globals: &Object<'js>) -> rquickjs::Result<()> {
    let require = Function::new(ctx.clone(), |ctx: Ctx<'js>, name: Value<'js>| {
        let name = name
            .get::<rquickjs::Coerced<String>>()
            .map(|c| c.0)
            .unwrap_or_default();
        require(&ctx, &name)
    })?
    .with_name("require")?;
    globals.set("require", require.clone())?;
    let descriptor = Object::new(ctx.clone())?;
    descriptor.set("value", require)?;
    descriptor.set("writable", false)?;
    descriptor.set("enumerable", false)?;
    descriptor.set("configurable", false)?;
    let define: Function<'js> = globals
        .get::<_, Object<'js>>("Object")?
        .get("defineProperty")?;
    define.call::<_, ()>((globals.clone(), HIDDEN_REQUIRE, descriptor))?;
    Ok(())
}

/// `require(name)`: the module's value, or `MODULE_NOT_FOUND`.
fn require<'js>(ctx: &Ctx<'js>, name: &str) -> rquickjs::Result<Value<'js>> {
    if is_http(name) {
        return http::module_object(ctx).map(Object::into_value);
    }
    if let Some(m) = plugins::module_object(ctx, name)? {
        return Ok(m.into_value());
    }
    match shared::require(ctx, name)? {
        Some(v) => Ok(v),
        None => Err(not_found(ctx, name)),
    }
}

fn is_http(name: &str) -> bool {
    matches!(name, "http" | "node:http")
}

/// Resolves and loads what `require` would find, for `import`.
pub(crate) struct ScriptModules;

impl Resolver for ScriptModules {
    fn resolve<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        _base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        if is_http(name) {
            return Ok("http".into());
        }
        let known = run_cx(ctx)?.shared.has(name) || plugins::exists(ctx, name)?;
        if known {
            Ok(name.to_owned())
        } else {
            Err(not_found(ctx, name))
        }
    }
}

impl Loader for ScriptModules {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, rquickjs::module::Declared>> {
        if name == "http" {
            return Module::declare_def::<HttpModule, _>(ctx.clone(), "http");
        }
        // A plugin wins over a shared module of the same name, as in `require`.
        let esm_source = if plugins::exists(ctx, name)? {
            None
        } else {
            run_cx(ctx)?.shared.esm_source(name)
        };
        let source = match esm_source {
            Some(source) => source,
            None => {
                let value = require(ctx, name)?;
                shared::wrapper_source(name, &value)?
            }
        };
        Module::declare(ctx.clone(), name, source)
    }
}

/// `import http, { get } from 'http'`.
struct HttpModule;

impl ModuleDef for HttpModule {
    fn declare<'js>(decl: &Declarations<'js>) -> rquickjs::Result<()> {
        decl.declare("get")?;
        decl.declare("default")?;
        Ok(())
    }

    fn evaluate<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
        let m = http::module_object(ctx)?;
        let get: Value<'js> = m.get("get")?;
        exports.export("get", get)?;
        exports.export("default", m)?;
        Ok(())
    }
}
