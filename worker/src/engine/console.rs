//! The global `console`: `log`, `info`, `warn`, `error`, `debug`, `trace`, `dir` and
//! `assert`, each formatted in Rust ([`super::inspect`]) and streamed to the supervisor
//! as one [`protocol::ConsoleLine`] per call.
//!
//! Must not: write to stdout or stderr (stdout is /dev/null, stderr is the worker's own
//! log), or send more than the run's output allowance: a call that would exceed it stops
//! the run with `OutputLimit` and throws.

use protocol::ConsoleLevel;
use rquickjs::function::{Opt, Rest};
use rquickjs::{Ctx, Exception, Function, Object, Value};

use super::inspect::{DEFAULT_DEPTH, Inspector};
use super::run_cx;

/// Formatting stops this far past the remaining allowance (the line is refused anyway).
const SLACK: usize = 64;

fn emit(ctx: &Ctx<'_>, level: ConsoleLevel, text: String) -> rquickjs::Result<()> {
    let cx = run_cx(ctx)?;
    if cx.host.console(level, text) {
        Ok(())
    } else {
        Err(Exception::throw_range(ctx, "console output limit exceeded"))
    }
}

fn budget(ctx: &Ctx<'_>) -> rquickjs::Result<usize> {
    Ok(run_cx(ctx)?.host.output_left().saturating_add(SLACK))
}

fn log_at<'js>(ctx: Ctx<'js>, level: ConsoleLevel, args: &[Value<'js>]) -> rquickjs::Result<()> {
    let text = Inspector::new(ctx.clone(), budget(&ctx)?).format(args);
    emit(&ctx, level, text)
}

fn method<'js>(ctx: &Ctx<'js>, name: &str, level: ConsoleLevel) -> rquickjs::Result<Function<'js>> {
    Function::new(ctx.clone(), move |ctx: Ctx<'js>, args: Rest<Value<'js>>| {
        log_at(ctx, level, &args.0)
    })?
    .with_name(name)
}

pub(crate) fn init<'js>(ctx: &Ctx<'js>, globals: &Object<'js>) -> rquickjs::Result<()> {
    let console = Object::new(ctx.clone())?;
    console.set("log", method(ctx, "log", ConsoleLevel::Log)?)?;
    console.set("info", method(ctx, "info", ConsoleLevel::Info)?)?;
    console.set("warn", method(ctx, "warn", ConsoleLevel::Warn)?)?;
    console.set("error", method(ctx, "error", ConsoleLevel::Error)?)?;
    console.set("debug", method(ctx, "debug", ConsoleLevel::Debug)?)?;
    console.set(
        "trace",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, args: Rest<Value<'js>>| {
            let text = Inspector::new(ctx.clone(), budget(&ctx)?).format(&args.0);
            let text = if text.is_empty() {
                "Trace".to_string()
            } else {
                format!("Trace: {text}")
            };
            emit(&ctx, ConsoleLevel::Debug, text)
        })?
        .with_name("trace")?,
    )?;
    console.set(
        "dir",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, v: Opt<Value<'js>>| {
            let v = v.0.unwrap_or_else(|| Value::new_undefined(ctx.clone()));
            let text = Inspector::new(ctx.clone(), budget(&ctx)?).inspect(&v, DEFAULT_DEPTH);
            emit(&ctx, ConsoleLevel::Log, text)
        })?
        .with_name("dir")?,
    )?;
    console.set(
        "assert",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, cond: Opt<Value<'js>>, args: Rest<Value<'js>>| {
                let truthy = cond.0.is_some_and(|v| {
                    v.get::<rquickjs::Coerced<bool>>()
                        .map(|c| c.0)
                        .unwrap_or(true)
                });
                if truthy {
                    return Ok(());
                }
                let text = Inspector::new(ctx.clone(), budget(&ctx)?).format(&args.0);
                let text = if text.is_empty() {
                    "Assertion failed".to_string()
                } else {
                    format!("Assertion failed: {text}")
                };
                emit(&ctx, ConsoleLevel::Error, text)
            },
        )?
        .with_name("assert")?,
    )?;
    globals.set("console", console)?;
    Ok(())
}
