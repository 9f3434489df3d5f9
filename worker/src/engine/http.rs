//! Network access for scripts, brokered through the supervisor (the worker itself has
//! no network: seccomp forbids new sockets).
//!
//! - `fetch(url, { method, headers, body })` → `Promise<Response>` with `status`,
//!   `statusText`, `ok`, `url`, `headers` (`get`/`has`/`forEach`/`entries`/…),
//!   `text()`, `json()`, `arrayBuffer()`. A network error rejects with
//!   `TypeError: fetch failed: <reason>`.
//! - `require('http').get(url, onOk, onErr)` as in the seed: `onOk` receives
//!   `{ Status: '200 OK', StatusCode: 200, ResponseText, headers }` plus lower-case
//!   aliases; `onErr` an `Error`. Missing callbacks are fine.
//!
//! Both send [`protocol::HostCall::Http`] and park the JS continuation in the run's
//! pending calls; the run's event loop hands the reply to [`deliver`].
//!
//! Must not: open sockets, or resolve anything without a reply from the supervisor.

use std::cell::Cell;
use std::rc::Rc;

use protocol::{HostCall, HostResponse, HttpRequest, HttpResponse};
use rquickjs::function::{Args, Opt};
use rquickjs::{
    ArrayBuffer, Coerced, Constructor, Ctx, Exception, Function, Object, Promise, Value,
};

use super::run_cx;

/// A JS continuation waiting for a host reply.
pub(crate) enum PendingCall<'js> {
    HttpGet {
        ok: Option<Function<'js>>,
        err: Option<Function<'js>>,
    },
    Fetch {
        resolve: Function<'js>,
        reject: Function<'js>,
        url: String,
    },
    /// A `kv.*` promise (see [`super::kv`]).
    Kv {
        resolve: Function<'js>,
        reject: Function<'js>,
        op: super::kv::KvOp,
    },
}

pub(crate) fn init<'js>(ctx: &Ctx<'js>, globals: &Object<'js>) -> rquickjs::Result<()> {
    globals.set(
        "fetch",
        Function::new(ctx.clone(), fetch)?.with_name("fetch")?,
    )?;
    Ok(())
}

/// `require('http')` / `import http from 'http'`: one object per run.
pub(crate) fn module_object<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    let cx = run_cx(ctx)?;
    if let Some(m) = cx.http_module.borrow().as_ref() {
        return Ok(m.clone());
    }
    let m = Object::new(ctx.clone())?;
    m.set(
        "get",
        Function::new(ctx.clone(), http_get)?.with_name("get")?,
    )?;
    *cx.http_module.borrow_mut() = Some(m.clone());
    Ok(m)
}

fn string_of<'js>(v: &Value<'js>) -> rquickjs::Result<String> {
    Ok(v.get::<Coerced<String>>()?.0)
}

fn http_get<'js>(
    ctx: Ctx<'js>,
    url: Value<'js>,
    on_ok: Opt<Value<'js>>,
    on_err: Opt<Value<'js>>,
) -> rquickjs::Result<()> {
    let url = string_of(&url)?;
    let cx = run_cx(&ctx)?;
    let call_id = cx.host.host_call(HostCall::Http(HttpRequest {
        method: "GET".into(),
        url,
        headers: Vec::new(),
        body: None,
    }));
    cx.calls.borrow_mut().insert(
        call_id,
        PendingCall::HttpGet {
            ok: on_ok.0.and_then(Value::into_function),
            err: on_err.0.and_then(Value::into_function),
        },
    );
    Ok(())
}

fn fetch<'js>(
    ctx: Ctx<'js>,
    input: Value<'js>,
    init: Opt<Value<'js>>,
) -> rquickjs::Result<Promise<'js>> {
    let (promise, resolve, reject) = ctx.promise()?;
    match request(&ctx, &input, init.0.as_ref()) {
        Ok(req) => {
            let url = req.url.clone();
            let cx = run_cx(&ctx)?;
            let call_id = cx.host.host_call(HostCall::Http(req));
            cx.calls.borrow_mut().insert(
                call_id,
                PendingCall::Fetch {
                    resolve,
                    reject,
                    url,
                },
            );
        }
        Err(e) => {
            // A bad argument rejects the promise, as in browsers and Node.
            let thrown = ctx.catch();
            let reason = if thrown.is_undefined() {
                type_error(&ctx, &e.to_string())?
            } else {
                thrown
            };
            reject.call::<_, ()>((reason,))?;
        }
    }
    Ok(promise)
}

fn request<'js>(
    ctx: &Ctx<'js>,
    input: &Value<'js>,
    init: Option<&Value<'js>>,
) -> rquickjs::Result<HttpRequest> {
    let url = match input.as_object() {
        Some(o) if !input.is_function() => match o.get::<_, Option<String>>("url")? {
            Some(u) => u,
            None => string_of(input)?,
        },
        _ => string_of(input)?,
    };
    let init = init.and_then(|v| v.as_object());
    let mut method = "GET".to_string();
    let mut headers = Vec::new();
    let mut body = None;
    if let Some(init) = init {
        if let Some(m) = init.get::<_, Option<Coerced<String>>>("method")? {
            method = m.0.to_ascii_uppercase();
        }
        let h: Value<'js> = init.get("headers")?;
        headers = header_pairs(ctx, &h)?;
        let b: Value<'js> = init.get("body")?;
        body = body_bytes(&b)?;
    }
    Ok(HttpRequest {
        method,
        url,
        headers,
        body,
    })
}

fn header_pairs<'js>(ctx: &Ctx<'js>, h: &Value<'js>) -> rquickjs::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let Some(obj) = h.as_object() else {
        return Ok(out);
    };
    if let Some(arr) = h.as_array() {
        for pair in arr.iter::<Value<'js>>() {
            let pair = pair?;
            if let Some(p) = pair.as_array() {
                let k: Value<'js> = p.get(0)?;
                let v: Value<'js> = p.get(1)?;
                out.push((string_of(&k)?, string_of(&v)?));
            }
        }
        return Ok(out);
    }
    if let Some(for_each) = obj.get::<_, Option<Function<'js>>>("forEach")? {
        // A Headers-like object: collect through its forEach(value, key).
        let collected = Rc::new(std::cell::RefCell::new(Vec::new()));
        let sink = collected.clone();
        let cb = Function::new(
            ctx.clone(),
            move |v: Coerced<String>, k: Coerced<String>| {
                sink.borrow_mut().push((k.0, v.0));
            },
        )?;
        let mut args = Args::new(ctx.clone(), 1);
        args.this(obj.clone())?;
        args.push_arg(cb)?;
        args.apply::<()>(&for_each)?;
        return Ok(collected.take());
    }
    for key in obj.keys::<String>() {
        let key = key?;
        let v: Value<'js> = obj.get(key.as_str())?;
        out.push((key, string_of(&v)?));
    }
    Ok(out)
}

fn body_bytes(b: &Value<'_>) -> rquickjs::Result<Option<Vec<u8>>> {
    if b.is_undefined() || b.is_null() {
        return Ok(None);
    }
    if let Some(s) = b.as_string() {
        return Ok(Some(s.to_string()?.into_bytes()));
    }
    if let Some(o) = b.as_object() {
        if let Some(ab) = ArrayBuffer::from_object(o.clone()) {
            // SAFETY: the bytes are copied at once, before any JS can run and detach
            // or resize the buffer.
            if let Some(bytes) = unsafe { ab.as_bytes() } {
                return Ok(Some(bytes.to_vec()));
            }
        }
        if let Ok(ta) = rquickjs::TypedArray::<u8>::from_object(o.clone()) {
            // SAFETY: as above, copied before any JS runs.
            if let Some(bytes) = unsafe { ta.as_bytes() } {
                return Ok(Some(bytes.to_vec()));
            }
        }
    }
    Ok(Some(string_of(b)?.into_bytes()))
}

fn type_error<'js>(ctx: &Ctx<'js>, message: &str) -> rquickjs::Result<Value<'js>> {
    let ctor: Constructor<'js> = ctx.globals().get("TypeError")?;
    ctor.construct((message,))
}

/// Hands a host reply to the JS continuation waiting for it. An error is an exception
/// thrown by a script callback (`onOk`/`onErr`), which fails the run.
pub(crate) fn deliver<'js>(
    ctx: &Ctx<'js>,
    call_id: u32,
    result: Result<HostResponse, String>,
) -> rquickjs::Result<()> {
    let pending = run_cx(ctx)?.calls.borrow_mut().remove(&call_id);
    let Some(pending) = pending else {
        return Ok(());
    };
    match (pending, result) {
        (PendingCall::HttpGet { ok, .. }, Ok(HostResponse::Http(resp))) => {
            if let Some(ok) = ok {
                ok.call::<_, ()>((seed_response(ctx, &resp)?,))?;
            }
        }
        (PendingCall::HttpGet { err, .. }, Err(message)) => {
            if let Some(err) = err {
                let e = Exception::from_message(ctx.clone(), &message)?;
                err.call::<_, ()>((e,))?;
            }
        }
        (PendingCall::Fetch { resolve, url, .. }, Ok(HostResponse::Http(resp))) => {
            resolve.call::<_, ()>((response(ctx, resp, url)?,))?;
        }
        (PendingCall::Fetch { reject, .. }, Err(message)) => {
            reject.call::<_, ()>((type_error(ctx, &format!("fetch failed: {message}"))?,))?;
        }
        (
            PendingCall::Kv {
                resolve,
                reject,
                op,
            },
            Ok(HostResponse::Kv(v)),
        ) => {
            super::kv::settle(ctx, resolve, reject, op, Ok(v))?;
        }
        (
            PendingCall::Kv {
                resolve,
                reject,
                op,
            },
            Err(message),
        ) => {
            super::kv::settle(ctx, resolve, reject, op, Err(message))?;
        }
        (
            PendingCall::Kv {
                resolve,
                reject,
                op,
            },
            Ok(HostResponse::Http(_)),
        ) => {
            let wrong = Err("the supervisor answered with the wrong kind of reply".to_owned());
            super::kv::settle(ctx, resolve, reject, op, wrong)?;
        }
        (PendingCall::HttpGet { err, .. }, Ok(HostResponse::Kv(_))) => {
            if let Some(err) = err {
                let e = Exception::from_message(ctx.clone(), "wrong kind of host reply")?;
                err.call::<_, ()>((e,))?;
            }
        }
        (PendingCall::Fetch { reject, .. }, Ok(HostResponse::Kv(_))) => {
            reject.call::<_, ()>((type_error(ctx, "fetch failed: wrong kind of host reply")?,))?;
        }
    }
    Ok(())
}

/// Whether the run still waits for any host reply.
pub(crate) fn has_pending(ctx: &Ctx<'_>) -> bool {
    run_cx(ctx)
        .map(|cx| !cx.calls.borrow().is_empty())
        .unwrap_or(false)
}

fn lower_headers(resp: &HttpResponse) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    h.sort_by(|a, b| a.0.cmp(&b.0));
    h
}

/// The seed's response shape for `http.get`.
fn seed_response<'js>(ctx: &Ctx<'js>, resp: &HttpResponse) -> rquickjs::Result<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    let text = String::from_utf8_lossy(&resp.body);
    o.set("Status", resp.status_text.as_str())?;
    o.set("StatusCode", resp.status)?;
    o.set("ResponseText", text.as_ref())?;
    o.set("status", resp.status_text.as_str())?;
    o.set("statusCode", resp.status)?;
    o.set("responseText", text.as_ref())?;
    let headers = Object::new(ctx.clone())?;
    for (k, v) in lower_headers(resp) {
        headers.set(k, v)?;
    }
    o.set("headers", headers)?;
    Ok(o)
}

/// `Promise.resolve(v)` / `Promise.reject(v)` without touching user-visible globals.
fn settled<'js>(
    ctx: &Ctx<'js>,
    result: Result<Value<'js>, Value<'js>>,
) -> rquickjs::Result<Promise<'js>> {
    let (promise, resolve, reject) = ctx.promise()?;
    match result {
        Ok(v) => resolve.call::<_, ()>((v,))?,
        Err(e) => reject.call::<_, ()>((e,))?,
    }
    Ok(promise)
}

/// The WHATWG-style `Response` handed to `fetch` callers.
fn response<'js>(ctx: &Ctx<'js>, resp: HttpResponse, url: String) -> rquickjs::Result<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    let reason = resp
        .status_text
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start()
        .to_string();
    o.set("status", resp.status)?;
    o.set("statusText", reason)?;
    o.set("ok", (200..300).contains(&resp.status))?;
    o.set("url", url)?;
    o.set("redirected", false)?;
    o.set("type", "basic")?;
    o.set("headers", headers_object(ctx, lower_headers(&resp))?)?;
    let body = Rc::new(resp.body);
    let used = Rc::new(Cell::new(false));

    let take = {
        let used = used.clone();
        move |ctx: &Ctx<'js>| -> rquickjs::Result<Result<(), Value<'js>>> {
            if used.replace(true) {
                return Ok(Err(type_error(
                    ctx,
                    "Body is unusable: Body has already been read",
                )?));
            }
            Ok(Ok(()))
        }
    };
    let (b, t) = (body.clone(), take.clone());
    o.set(
        "text",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            let r = match t(&ctx)? {
                Ok(()) => Ok(rquickjs::String::from_str(
                    ctx.clone(),
                    &String::from_utf8_lossy(&b),
                )?
                .into_value()),
                Err(e) => Err(e),
            };
            settled(&ctx, r)
        })?
        .with_name("text")?,
    )?;
    let (b, t) = (body.clone(), take.clone());
    o.set(
        "json",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            let r = match t(&ctx)? {
                Ok(()) => match ctx.json_parse(String::from_utf8_lossy(&b).into_owned()) {
                    Ok(v) => Ok(v),
                    Err(_) => Err(ctx.catch()),
                },
                Err(e) => Err(e),
            };
            settled(&ctx, r)
        })?
        .with_name("json")?,
    )?;
    let (b, t) = (body, take);
    o.set(
        "arrayBuffer",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            let r = match t(&ctx)? {
                Ok(()) => Ok(ArrayBuffer::new_copy(ctx.clone(), b.as_slice())?.into_value()),
                Err(e) => Err(e),
            };
            settled(&ctx, r)
        })?
        .with_name("arrayBuffer")?,
    )?;
    Ok(o)
}

/// A read-only `Headers`: case-insensitive `get`/`has`, `forEach`, iteration.
fn headers_object<'js>(
    ctx: &Ctx<'js>,
    pairs: Vec<(String, String)>,
) -> rquickjs::Result<Object<'js>> {
    let pairs = Rc::new(pairs);
    let o = Object::new(ctx.clone())?;
    let p = pairs.clone();
    o.set(
        "get",
        Function::new(
            ctx.clone(),
            move |name: Coerced<String>| -> Option<String> {
                let name = name.0.to_ascii_lowercase();
                let values: Vec<&str> = p
                    .iter()
                    .filter(|(k, _)| *k == name)
                    .map(|(_, v)| v.as_str())
                    .collect();
                (!values.is_empty()).then(|| values.join(", "))
            },
        )?
        .with_name("get")?,
    )?;
    let p = pairs.clone();
    o.set(
        "has",
        Function::new(ctx.clone(), move |name: Coerced<String>| {
            let name = name.0.to_ascii_lowercase();
            p.iter().any(|(k, _)| *k == name)
        })?
        .with_name("has")?,
    )?;
    let p = pairs.clone();
    o.set(
        "forEach",
        Function::new(
            ctx.clone(),
            move |this: rquickjs::function::This<Value<'js>>, cb: Function<'js>| {
                for (k, v) in p.iter() {
                    cb.call::<_, ()>((v.as_str(), k.as_str(), this.0.clone()))?;
                }
                rquickjs::Result::Ok(())
            },
        )?
        .with_name("forEach")?,
    )?;
    for (name, pick) in [("entries", 0u8), ("keys", 1), ("values", 2)] {
        let p = pairs.clone();
        let f = Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            let arr = rquickjs::Array::new(ctx.clone())?;
            for (i, (k, v)) in p.iter().enumerate() {
                let item = match pick {
                    0 => {
                        let pair = rquickjs::Array::new(ctx.clone())?;
                        pair.set(0, k.as_str())?;
                        pair.set(1, v.as_str())?;
                        pair.into_value()
                    }
                    1 => rquickjs::String::from_str(ctx.clone(), k)?.into_value(),
                    _ => rquickjs::String::from_str(ctx.clone(), v)?.into_value(),
                };
                arr.set(i, item)?;
            }
            let values: Function<'js> = arr.as_object().get("values")?;
            let mut args = Args::new(ctx.clone(), 0);
            args.this(arr)?;
            args.apply::<Value<'js>>(&values)
        })?
        .with_name(name)?;
        if name == "entries" {
            let iter_sym = rquickjs::Symbol::iterator(ctx.clone());
            o.set(iter_sym, f.clone())?;
        }
        o.set(name, f)?;
    }
    Ok(o)
}
