//! An example traitor plugin (`docs/plugins.md`, ABI version 1), built as
//! `libexample.so`. Copy it into the plugin directory and a script can write
//! `const ex = require('example')`.
//!
//! Methods:
//! - `add({a, b})` (sync) → `a + b`; an error unless both are numbers;
//! - `echo(x)` (sync) → `x`;
//! - `sha256(text)` (sync) → the hex SHA-256 of the UTF-8 text;
//! - `crash()` (sync) → aborts the process (to show that a crash takes one worker);
//! - `delay({ms, value})` (async) → `value`, after `ms` (at most 10 s) on a thread of
//!   its own.
//!
//! Every entry point catches panics: unwinding across `extern "C"` aborts.

use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// `struct TraitorBuf { uint8_t *ptr; size_t len; }`.
#[repr(C)]
pub struct TraitorBuf {
    ptr: *mut u8,
    len: usize,
}

/// `void done(void *ctx, int32_t status, const uint8_t *ptr, size_t len)`.
pub type Completion = extern "C" fn(*mut c_void, i32, *const u8, usize);

/// A call's answer: `Ok` JSON (status 0) or `Err` JSON (status 1).
type Answer = Result<Value, Value>;

fn error(message: impl Into<String>) -> Value {
    json!({ "message": message.into() })
}

#[unsafe(no_mangle)]
pub extern "C" fn traitor_plugin_abi_version() -> u32 {
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn traitor_plugin_name() -> *const c_char {
    c"example".as_ptr()
}

#[unsafe(no_mangle)]
pub extern "C" fn traitor_plugin_methods() -> *const c_char {
    cr#"{"add":"sync","echo":"sync","sha256":"sync","crash":"sync","delay":"async"}"#.as_ptr()
}

/// Reads the method name and the JSON argument.
///
/// # Safety
/// `method` is NUL-terminated and `input` points to `len` readable bytes (the ABI).
unsafe fn args<'a>(
    method: *const c_char,
    input: *const u8,
    len: usize,
) -> Result<(&'a str, Value), Value> {
    // SAFETY: guaranteed by the caller.
    let method = unsafe { CStr::from_ptr(method) }
        .to_str()
        .map_err(|_| error("method name is not UTF-8"))?;
    let bytes = if input.is_null() || len == 0 {
        &[][..]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(input, len) }
    };
    let arg = serde_json::from_slice(bytes).map_err(|e| error(format!("bad JSON: {e}")))?;
    Ok((method, arg))
}

fn call_sync(method: &str, arg: Value) -> Answer {
    match method {
        "add" => match (arg["a"].as_f64(), arg["b"].as_f64()) {
            (Some(a), Some(b)) => Ok(json!(a + b)),
            _ => Err(error("add expects {a: number, b: number}")),
        },
        "echo" => Ok(arg),
        "sha256" => match arg.as_str() {
            Some(text) => {
                let digest = Sha256::digest(text.as_bytes());
                Ok(json!(
                    digest
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ))
            }
            None => Err(error("sha256 expects a string")),
        },
        "crash" => std::process::abort(),
        other => Err(error(format!("no sync method {other}"))),
    }
}

/// Moves `answer` into a buffer that [`traitor_plugin_free`] releases.
fn into_buf(answer: Answer, out: &mut TraitorBuf) -> i32 {
    let (status, value) = match answer {
        Ok(v) => (0, v),
        Err(e) => (1, e),
    };
    let bytes = serde_json::to_vec(&value)
        .unwrap_or_default()
        .into_boxed_slice();
    out.len = bytes.len();
    out.ptr = Box::into_raw(bytes).cast::<u8>();
    status
}

/// # Safety
/// The ABI's rules for `traitor_plugin_call` (`docs/plugins.md`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn traitor_plugin_call(
    method: *const c_char,
    input: *const u8,
    len: usize,
    out: *mut TraitorBuf,
) -> i32 {
    let answer = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the worker passes valid arguments (the ABI).
        let (method, arg) = unsafe { args(method, input, len) }?;
        call_sync(method, arg)
    }))
    .unwrap_or_else(|_| Err(error("the plugin panicked")));
    // SAFETY: `out` is a valid, writable TraitorBuf (the ABI).
    into_buf(answer, unsafe { &mut *out })
}

/// # Safety
/// `buf` came from [`traitor_plugin_call`] and is freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn traitor_plugin_free(buf: TraitorBuf) {
    if buf.ptr.is_null() {
        return;
    }
    // SAFETY: `into_buf` made this pointer from a boxed slice of exactly `len` bytes.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(buf.ptr, buf.len)) });
}

/// The worker's completion context; a raw pointer the worker keeps valid until `done`.
struct Ctx(*mut c_void);

// SAFETY: the ABI allows completing a call from any thread; the worker's context is
// only handed back to the worker's completion, never dereferenced here.
unsafe impl Send for Ctx {}

fn complete(done: Completion, ctx: Ctx, answer: Answer) {
    let (status, value) = match answer {
        Ok(v) => (0, v),
        Err(e) => (1, e),
    };
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    // The buffer is ours: the worker copies it before `done` returns.
    done(ctx.0, status, bytes.as_ptr(), bytes.len());
}

/// # Safety
/// The ABI's rules for `traitor_plugin_call_async` (`docs/plugins.md`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn traitor_plugin_call_async(
    method: *const c_char,
    input: *const u8,
    len: usize,
    done: Completion,
    ctx: *mut c_void,
) -> i32 {
    let ctx = Ctx(ctx);
    // SAFETY: the worker passes valid arguments (the ABI).
    let (method, arg) = match unsafe { args(method, input, len) } {
        Ok(a) => a,
        Err(e) => {
            complete(done, ctx, Err(e));
            return 0;
        }
    };
    if method != "delay" {
        complete(done, ctx, Err(error(format!("no async method {method}"))));
        return 0;
    }
    let ms = match arg["ms"].as_u64() {
        Some(ms) if ms <= 10_000 => ms,
        _ => {
            complete(done, ctx, Err(error("delay expects {ms: 0..10000, value}")));
            return 0;
        }
    };
    let value = arg["value"].clone();
    // The thread owns `ctx` and completes the call; if it cannot start, the closure
    // (and `ctx`) is dropped unused and the worker is told so by the non-zero return.
    let spawned = std::thread::Builder::new().spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        complete(done, ctx, Ok(value));
    });
    match spawned {
        Ok(_) => 0,
        Err(_) => 1,
    }
}
