//! `require(name)` and ES module resolution. The built-in module is `http`
//! ([`super::http`]); `require` also finds the worker's native plugins
//! ([`super::plugins`]; `require` only, not `import`). Every other name, relative path,
//! absolute path or URL fails with `Error: Cannot find module '<name>'`, for `require`,
//! static `import` and dynamic `import()` alike.
//!
//! Must not: read files, or evaluate any source but the run's own script.

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::{Declarations, Exports, ModuleDef};
use rquickjs::{Ctx, Exception, Function, Module, Object, Value};

use super::{http, plugins};

/// The name the script's own module is evaluated under (it shows in stack traces).
pub(crate) const SCRIPT_NAME: &str = "job.js";

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
    globals.set(
        "require",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, name: Value<'js>| {
            let name = name
                .get::<rquickjs::Coerced<String>>()
                .map(|c| c.0)
                .unwrap_or_default();
            match name.strip_prefix("node:").unwrap_or(&name) {
                "http" => http::module_object(&ctx),
                _ => match plugins::module_object(&ctx, &name)? {
                    Some(m) => Ok(m),
                    None => Err(not_found(&ctx, &name)),
                },
            }
        })?
        .with_name("require")?,
    )?;
    Ok(())
}

/// Resolves `http` (and `node:http`) and nothing else.
pub(crate) struct BuiltinOnly;

impl Resolver for BuiltinOnly {
    fn resolve<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        _base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        match name {
            "http" | "node:http" => Ok("http".into()),
            _ => Err(not_found(ctx, name)),
        }
    }
}

impl Loader for BuiltinOnly {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, rquickjs::module::Declared>> {
        match name {
            "http" => Module::declare_def::<HttpModule, _>(ctx.clone(), "http"),
            _ => Err(not_found(ctx, name)),
        }
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
