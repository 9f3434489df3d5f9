//! `require(name)` for native plugins ([`crate::plugin`]): a frozen object with one
//! function per method the plugin declares.
//!
//! - a sync method, `p.add({ a: 1, b: 2 })`, returns the plugin's parsed JSON result
//!   or throws;
//! - an async method, `await p.delay({ ms: 10 })`, returns a Promise, settled by the
//!   run's event loop when the plugin completes the call (from any thread, through
//!   the run's [`Inbox`]).
//!
//! The argument is `JSON.stringify`'d (`undefined` → `null`). A plugin error (a
//! non-zero status) becomes an `Error` whose message is `NAME.METHOD: <message>`, with
//! `plugin`, `method`, `status` and `detail` (the plugin's parsed error JSON).
//!
//! Must not: hold a JS value outside the run's [`RunCx`](super::RunCx), or let a
//! plugin's thread touch anything but the [`Inbox`].

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rquickjs::function::Opt;
use rquickjs::{Ctx, Exception, Function, Object, Promise, Value};
use tokio::sync::Notify;

use super::run_cx;
use crate::plugin::{Kind, Lookup, Plugins, Reply};

/// Completed async calls, pushed from the plugin's threads, taken by the run's loop.
pub(crate) struct Inbox {
    done: Mutex<VecDeque<(u32, Reply)>>,
    wake: Arc<Notify>,
}

impl Inbox {
    pub(crate) fn new(wake: Arc<Notify>) -> Arc<Self> {
        Arc::new(Self {
            done: Mutex::new(VecDeque::new()),
            wake,
        })
    }

    fn push(&self, id: u32, reply: Reply) {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((id, reply));
        self.wake.notify_one();
    }

    pub(crate) fn pop(&self) -> Option<(u32, Reply)> {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

/// An async call waiting for its plugin.
struct Pending<'js> {
    resolve: Function<'js>,
    reject: Function<'js>,
    plugin: String,
    method: String,
}

/// The run's plugin state (part of its `RunCx`).
#[derive(Default)]
pub(crate) struct State<'js> {
    modules: RefCell<HashMap<String, Object<'js>>>,
    pending: RefCell<HashMap<u32, Pending<'js>>>,
    next_id: Cell<u32>,
}

/// Whether the worker has a plugin called `name` (loaded or failed to load).
pub(crate) fn exists(ctx: &Ctx<'_>, name: &str) -> rquickjs::Result<bool> {
    let cx = run_cx(ctx)?;
    Ok(!matches!(cx.host.plugins.lookup(name), Lookup::Missing))
}

/// `require(name)` for a plugin: `Ok(None)` if no plugin has that name.
pub(crate) fn module_object<'js>(
    ctx: &Ctx<'js>,
    name: &str,
) -> rquickjs::Result<Option<Object<'js>>> {
    let plugins = {
        let cx = run_cx(ctx)?;
        if let Some(m) = cx.plugins.modules.borrow().get(name) {
            return Ok(Some(m.clone()));
        }
        cx.host.plugins.clone()
    };
    let index = match plugins.lookup(name) {
        Lookup::Missing => return Ok(None),
        Lookup::Failed(reason) => {
            let e = Exception::from_message(
                ctx.clone(),
                &format!("plugin {name} failed to load: {reason}"),
            )?;
            e.as_object().set("code", "PLUGIN_LOAD_FAILED")?;
            return Err(ctx.throw(e.into_value()));
        }
        Lookup::Loaded(index) => index,
    };
    let m = Object::new(ctx.clone())?;
    let Some(plugin) = plugins.get(index) else {
        return Ok(None);
    };
    for (mi, method) in plugin.methods.iter().enumerate() {
        let p = plugins.clone();
        let f = match method.kind {
            Kind::Sync => {
                Function::new(ctx.clone(), move |ctx: Ctx<'js>, arg: Opt<Value<'js>>| {
                    call_sync(&ctx, &p, index, mi, arg.0)
                })?
            }
            Kind::Async => {
                Function::new(ctx.clone(), move |ctx: Ctx<'js>, arg: Opt<Value<'js>>| {
                    call_async(&ctx, &p, index, mi, arg.0)
                })?
            }
        };
        m.set(method.name.as_str(), f.with_name(method.name.as_str())?)?;
    }
    let freeze: Function<'js> = ctx
        .globals()
        .get::<_, Object<'js>>("Object")?
        .get("freeze")?;
    freeze.call::<_, ()>((m.clone(),))?;
    run_cx(ctx)?
        .plugins
        .modules
        .borrow_mut()
        .insert(name.to_string(), m.clone());
    Ok(Some(m))
}

/// The JSON text of a method's argument.
fn json_in<'js>(ctx: &Ctx<'js>, arg: Option<Value<'js>>) -> rquickjs::Result<String> {
    let arg = arg.unwrap_or_else(|| Value::new_undefined(ctx.clone()));
    match ctx.json_stringify(arg)? {
        Some(s) => s.to_string(),
        None => Ok("null".into()),
    }
}

fn call_sync<'js>(
    ctx: &Ctx<'js>,
    plugins: &Plugins,
    index: usize,
    mi: usize,
    arg: Option<Value<'js>>,
) -> rquickjs::Result<Value<'js>> {
    let Some((plugin, method)) = plugins
        .get(index)
        .and_then(|p| Some((p, p.methods.get(mi)?)))
    else {
        return Err(Exception::throw_internal(
            ctx,
            "traitor: no such plugin method",
        ));
    };
    let input = json_in(ctx, arg)?;
    let reply = plugin.call(method, input.as_bytes());
    match settle(ctx, &plugin.name, &method.name, reply)? {
        Ok(v) => Ok(v),
        Err(e) => Err(ctx.throw(e)),
    }
}

fn call_async<'js>(
    ctx: &Ctx<'js>,
    plugins: &Plugins,
    index: usize,
    mi: usize,
    arg: Option<Value<'js>>,
) -> rquickjs::Result<Promise<'js>> {
    let Some((plugin, method)) = plugins
        .get(index)
        .and_then(|p| Some((p, p.methods.get(mi)?)))
    else {
        return Err(Exception::throw_internal(
            ctx,
            "traitor: no such plugin method",
        ));
    };
    let (promise, resolve, reject) = ctx.promise()?;
    let input = match json_in(ctx, arg) {
        Ok(s) => s,
        Err(e) if e.is_exception() => {
            // A bad argument (a cycle, a BigInt) rejects, as `fetch` does.
            let thrown = ctx.catch();
            if thrown.is_uncatchable_error() {
                return Err(ctx.throw(thrown));
            }
            reject.call::<_, ()>((thrown,))?;
            return Ok(promise);
        }
        Err(e) => return Err(e),
    };
    let (id, inbox) = {
        let cx = run_cx(ctx)?;
        let id = cx.plugins.next_id.get();
        cx.plugins.next_id.set(id.wrapping_add(1));
        cx.plugins.pending.borrow_mut().insert(
            id,
            Pending {
                resolve,
                reject,
                plugin: plugin.name.clone(),
                method: method.name.clone(),
            },
        );
        (id, cx.host.plugin_inbox.clone())
    };
    plugin.call_async(
        method,
        input.as_bytes(),
        Box::new(move |reply| inbox.push(id, reply)),
    );
    Ok(promise)
}

/// Settles an async call whose plugin completed it. An error is an exception thrown
/// while settling (out of memory, interrupted), which ends the run.
pub(crate) fn deliver<'js>(ctx: &Ctx<'js>, id: u32, reply: Reply) -> rquickjs::Result<()> {
    let pending = run_cx(ctx)?.plugins.pending.borrow_mut().remove(&id);
    let Some(p) = pending else {
        return Ok(());
    };
    match settle(ctx, &p.plugin, &p.method, reply)? {
        Ok(v) => p.resolve.call::<_, ()>((v,)),
        Err(e) => p.reject.call::<_, ()>((e,)),
    }
}

/// Whether the run still waits for a plugin to complete an async call.
pub(crate) fn has_pending(ctx: &Ctx<'_>) -> bool {
    run_cx(ctx)
        .map(|cx| !cx.plugins.pending.borrow().is_empty())
        .unwrap_or(false)
}

/// Parses JSON from a plugin; `Ok(Err(message))` if it is not JSON.
fn parse<'js>(ctx: &Ctx<'js>, bytes: Vec<u8>) -> rquickjs::Result<Result<Value<'js>, String>> {
    match ctx.json_parse(bytes) {
        Ok(v) => Ok(Ok(v)),
        Err(e) if e.is_exception() => {
            let thrown = ctx.catch();
            if thrown.is_uncatchable_error() {
                return Err(ctx.throw(thrown));
            }
            let why = thrown
                .as_object()
                .and_then(|o| o.get::<_, Option<String>>("message").ok().flatten())
                .unwrap_or_default();
            Ok(Err(why))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// A plugin's reply as the value to return (`Ok`) or the error to throw (`Err`).
fn settle<'js>(
    ctx: &Ctx<'js>,
    plugin: &str,
    method: &str,
    reply: Reply,
) -> rquickjs::Result<Result<Value<'js>, Value<'js>>> {
    let error = |message: &str, status: Option<i32>, detail: Option<Value<'js>>| {
        let e = Exception::from_message(ctx.clone(), &format!("{plugin}.{method}: {message}"))?;
        let o = e.as_object();
        o.set("plugin", plugin)?;
        o.set("method", method)?;
        if let Some(s) = status {
            o.set("status", s)?;
        }
        if let Some(d) = detail {
            o.set("detail", d)?;
        }
        rquickjs::Result::Ok(Err(e.into_value()))
    };
    match reply {
        Err(why) => error(&why, None, None),
        Ok((0, bytes)) if bytes.is_empty() => Ok(Ok(Value::new_undefined(ctx.clone()))),
        Ok((0, bytes)) => match parse(ctx, bytes)? {
            Ok(v) => Ok(Ok(v)),
            Err(why) => error(&format!("returned invalid JSON: {why}"), None, None),
        },
        Ok((status, bytes)) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let detail = if bytes.is_empty() {
                None
            } else {
                parse(ctx, bytes)?.ok()
            };
            let message = match &detail {
                Some(d) if d.is_string() => d.get::<String>().ok(),
                Some(d) => d
                    .as_object()
                    .and_then(|o| o.get::<_, Option<String>>("message").ok().flatten()),
                None => None,
            }
            .unwrap_or_else(|| {
                if text.is_empty() {
                    format!("failed with status {status}")
                } else {
                    text
                }
            });
            error(&message, Some(status), detail)
        }
    }
}
