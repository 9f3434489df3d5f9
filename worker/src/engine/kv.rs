//! The global `kv`: the job's small key-value store, kept by the supervisor between
//! runs. `await kv.get(key)` (the value, or `undefined`), `await kv.set(key, value)`
//! (any JSON-serialisable value), `await kv.delete(key)` (whether it existed).
//!
//! Each call is a [`protocol::HostCall::Kv`]; the value travels as JSON text. Caps and
//! every other rule are the supervisor's: its refusal rejects the promise with an
//! `Error` carrying its message.
//!
//! Must not: keep anything itself; every answer comes from the supervisor.

use protocol::{HostCall, KvCall};
use rquickjs::function::Opt;
use rquickjs::{Ctx, Exception, Function, Object, Promise, Value};

use super::http::PendingCall;
use super::run_cx;

/// What a `Kv` reply resolves to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KvOp {
    Get,
    Set,
    Delete,
}

pub(crate) fn init<'js>(ctx: &Ctx<'js>, globals: &Object<'js>) -> rquickjs::Result<()> {
    let o = Object::new(ctx.clone())?;
    o.set("get", Function::new(ctx.clone(), get)?.with_name("get")?)?;
    o.set("set", Function::new(ctx.clone(), set)?.with_name("set")?)?;
    o.set(
        "delete",
        Function::new(ctx.clone(), delete)?.with_name("delete")?,
    )?;
    let freeze: Function<'js> = globals.get::<_, Object<'js>>("Object")?.get("freeze")?;
    freeze.call::<_, ()>((o.clone(),))?;
    globals.set("kv", o)?;
    Ok(())
}

fn key_of<'js>(ctx: &Ctx<'js>, key: &Value<'js>) -> rquickjs::Result<String> {
    match key.as_string() {
        Some(s) => s.to_string(),
        None => Err(Exception::throw_type(ctx, "kv: the key must be a string")),
    }
}

fn send<'js>(
    ctx: &Ctx<'js>,
    op: KvOp,
    call: rquickjs::Result<KvCall>,
) -> rquickjs::Result<Promise<'js>> {
    let (promise, resolve, reject) = ctx.promise()?;
    match call {
        Ok(call) => {
            let cx = run_cx(ctx)?;
            let call_id = cx.host.host_call(HostCall::Kv(call));
            cx.calls.borrow_mut().insert(
                call_id,
                PendingCall::Kv {
                    resolve,
                    reject,
                    op,
                },
            );
        }
        Err(e) => {
            let thrown = ctx.catch();
            let reason = if thrown.is_undefined() {
                Exception::from_message(ctx.clone(), &e.to_string())?.into_value()
            } else {
                thrown
            };
            reject.call::<_, ()>((reason,))?;
        }
    }
    Ok(promise)
}

fn get<'js>(ctx: Ctx<'js>, key: Value<'js>) -> rquickjs::Result<Promise<'js>> {
    let call = key_of(&ctx, &key).map(|key| KvCall::Get { key });
    send(&ctx, KvOp::Get, call)
}

fn set<'js>(
    ctx: Ctx<'js>,
    key: Value<'js>,
    value: Opt<Value<'js>>,
) -> rquickjs::Result<Promise<'js>> {
    let call = key_of(&ctx, &key).and_then(|key| {
        let value = value.0.unwrap_or_else(|| Value::new_undefined(ctx.clone()));
        match ctx.json_stringify(value)? {
            Some(s) => Ok(KvCall::Set {
                key,
                value_json: s.to_string()?,
            }),
            None => Err(Exception::throw_type(
                &ctx,
                "kv.set: the value is not JSON-serialisable (undefined or a function)",
            )),
        }
    });
    send(&ctx, KvOp::Set, call)
}

fn delete<'js>(ctx: Ctx<'js>, key: Value<'js>) -> rquickjs::Result<Promise<'js>> {
    let call = key_of(&ctx, &key).map(|key| KvCall::Delete { key });
    send(&ctx, KvOp::Delete, call)
}

/// Settles a kv promise with the supervisor's answer.
pub(crate) fn settle<'js>(
    ctx: &Ctx<'js>,
    resolve: Function<'js>,
    reject: Function<'js>,
    op: KvOp,
    result: Result<Option<String>, String>,
) -> rquickjs::Result<()> {
    let value = match (op, result) {
        (_, Err(message)) => {
            let e = Exception::from_message(ctx.clone(), &format!("kv: {message}"))?;
            return reject.call::<_, ()>((e,));
        }
        (KvOp::Get, Ok(Some(json))) => match ctx.json_parse(json) {
            Ok(v) => v,
            Err(_) => {
                let _ = ctx.catch();
                let e = Exception::from_message(ctx.clone(), "kv: the stored value is not JSON")?;
                return reject.call::<_, ()>((e,));
            }
        },
        (KvOp::Delete, Ok(found)) => Value::new_bool(ctx.clone(), found.as_deref() == Some("true")),
        (KvOp::Get | KvOp::Set, Ok(_)) => Value::new_undefined(ctx.clone()),
    };
    resolve.call::<_, ()>((value,))
}
