//! Turning what a script threw (or a promise rejected with) into a
//! [`protocol::ScriptError`]: `Error: boom` plus the error's `.stack` for errors,
//! `Uncaught <inspected value>` for anything else (`Uncaught 'a string'`).
//!
//! Must not: let a hostile `toString`/getter escape as an exception (failures fall back
//! to plain text).

use protocol::ScriptError;
use rquickjs::{Ctx, Value};

use super::inspect::{DEFAULT_DEPTH, Inspector};

/// How much of a thrown non-error value is kept in the message.
const MAX_MESSAGE: usize = 4096;

/// What a failed call into JS left behind.
pub(crate) enum Thrown<'js> {
    /// A JS value was thrown.
    Value(Value<'js>),
    /// rquickjs failed on the Rust side (conversion, allocation, …).
    Rust(String),
}

/// Takes the pending exception after `err` came back from a call into JS.
pub(crate) fn caught<'js>(ctx: &Ctx<'js>, err: rquickjs::Error) -> Thrown<'js> {
    if err.is_exception() {
        Thrown::Value(ctx.catch())
    } else {
        Thrown::Rust(err.to_string())
    }
}

/// Whether a thrown value is QuickJS's uncatchable error (interrupt / out of memory),
/// which only means "the run was stopped": its own text says nothing useful.
pub(crate) fn is_uncatchable(thrown: &Thrown<'_>) -> bool {
    matches!(thrown, Thrown::Value(v) if v.is_uncatchable_error())
}

pub(crate) fn script_error<'js>(ctx: &Ctx<'js>, thrown: &Thrown<'js>) -> ScriptError {
    match thrown {
        Thrown::Rust(message) => ScriptError {
            message: message.clone(),
            stack: None,
        },
        Thrown::Value(v) => from_value(ctx, v),
    }
}

pub(crate) fn from_value<'js>(ctx: &Ctx<'js>, v: &Value<'js>) -> ScriptError {
    let inspector = Inspector::new(ctx.clone(), MAX_MESSAGE);
    if v.is_error() {
        let message = inspector.error_header(v);
        let stack = v
            .as_object()
            .and_then(|o| o.get::<_, Option<String>>("stack").ok().flatten())
            .filter(|s| !s.trim().is_empty());
        if stack.is_none() {
            ctx.catch();
        }
        return ScriptError { message, stack };
    }
    let mut inspector = inspector;
    let mut shown = inspector.inspect(v, DEFAULT_DEPTH);
    if shown.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    ScriptError {
        message: format!("Uncaught {shown}"),
        stack: None,
    }
}
