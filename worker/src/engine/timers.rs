//! `setTimeout`, `setInterval`, `clearTimeout`, `clearInterval`.
//!
//! Timers are entries in the run's [`Timers`] queue, ordered by (deadline, id); the
//! run's event loop fires due timers one at a time and drains microtasks between them,
//! as Node does. A delay of 0 (or less, or NaN) means "now", not 1 ms. Ids are numbers.
//!
//! Must not: call JS while the queue is borrowed (a callback may add or clear timers),
//! or sleep: waiting is the event loop's job.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rquickjs::function::{Args, Opt, Rest};
use rquickjs::{Ctx, Exception, Function, Object, Value};

use super::run_cx;

/// Delays above this fire after 1 ms, as in Node and browsers.
const TIMEOUT_MAX_MS: f64 = 2_147_483_647.0;

pub(crate) struct Timer<'js> {
    callback: Function<'js>,
    args: Vec<Value<'js>>,
    /// `Some` for `setInterval`.
    every: Option<Duration>,
}

/// The run's pending timers.
#[derive(Default)]
pub(crate) struct Timers<'js> {
    queue: BTreeMap<(Instant, u64), Timer<'js>>,
    deadline_of: HashMap<u64, Instant>,
    next_id: u64,
    /// The interval whose callback is running now, and whether it was cleared meanwhile.
    firing: Option<(u64, bool)>,
}

impl<'js> Timers<'js> {
    fn add(&mut self, at: Instant, timer: Timer<'js>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.queue.insert((at, id), timer);
        self.deadline_of.insert(id, at);
        id
    }

    fn clear(&mut self, id: u64) {
        if let Some(at) = self.deadline_of.remove(&id) {
            self.queue.remove(&(at, id));
        }
        if let Some((firing, cleared)) = &mut self.firing
            && *firing == id
        {
            *cleared = true;
        }
    }

    /// The earliest deadline, if any timer is pending.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<(u64, Timer<'js>)> {
        let (&(at, id), _) = self.queue.iter().next()?;
        if at > now {
            return None;
        }
        let timer = self.queue.remove(&(at, id))?;
        self.deadline_of.remove(&id);
        Some((id, timer))
    }
}

fn delay(ms: Option<Value<'_>>) -> Duration {
    let ms = ms.and_then(|v| v.as_number()).unwrap_or(0.0);
    if ms.is_nan() || ms <= 0.0 {
        Duration::ZERO
    } else if ms > TIMEOUT_MAX_MS {
        Duration::from_millis(1)
    } else {
        Duration::from_secs_f64(ms / 1000.0)
    }
}

fn schedule<'js>(
    ctx: Ctx<'js>,
    callback: Value<'js>,
    ms: Opt<Value<'js>>,
    args: Rest<Value<'js>>,
    repeat: bool,
) -> rquickjs::Result<f64> {
    let Some(callback) = callback.into_function() else {
        return Err(Exception::throw_type(
            &ctx,
            "The \"callback\" argument must be of type function",
        ));
    };
    let d = delay(ms.0);
    let cx = run_cx(&ctx)?;
    let mut timers = cx.timers.borrow_mut();
    let id = timers.add(
        Instant::now() + d,
        Timer {
            callback,
            args: args.0,
            every: repeat.then_some(d),
        },
    );
    Ok(id as f64)
}

fn clear<'js>(ctx: Ctx<'js>, id: Opt<Value<'js>>) -> rquickjs::Result<()> {
    let Some(id) = id.0.and_then(|v| v.as_number()) else {
        return Ok(());
    };
    if id.is_finite() && id >= 1.0 {
        run_cx(&ctx)?.timers.borrow_mut().clear(id as u64);
    }
    Ok(())
}

pub(crate) fn init<'js>(ctx: &Ctx<'js>, globals: &Object<'js>) -> rquickjs::Result<()> {
    globals.set(
        "setTimeout",
        Function::new(ctx.clone(), |ctx, cb, ms, args| {
            schedule(ctx, cb, ms, args, false)
        })?
        .with_name("setTimeout")?,
    )?;
    globals.set(
        "setInterval",
        Function::new(ctx.clone(), |ctx, cb, ms, args| {
            schedule(ctx, cb, ms, args, true)
        })?
        .with_name("setInterval")?,
    )?;
    globals.set(
        "clearTimeout",
        Function::new(ctx.clone(), clear)?.with_name("clearTimeout")?,
    )?;
    globals.set(
        "clearInterval",
        Function::new(ctx.clone(), clear)?.with_name("clearInterval")?,
    )?;
    Ok(())
}

/// Fires the earliest timer due at `now`, if any. `Ok(false)`: nothing was due.
/// An error is the callback's uncaught exception.
pub(crate) fn fire_due(ctx: &Ctx<'_>, now: Instant) -> rquickjs::Result<bool> {
    let cx = run_cx(ctx)?;
    let Some((id, timer)) = cx.timers.borrow_mut().pop_due(now) else {
        return Ok(false);
    };
    if timer.every.is_some() {
        cx.timers.borrow_mut().firing = Some((id, false));
    }
    let mut args = Args::new(ctx.clone(), timer.args.len());
    args.push_args(timer.args.iter().cloned())?;
    let result = args.apply::<()>(&timer.callback);
    if let Some(every) = timer.every {
        let mut timers = cx.timers.borrow_mut();
        let cleared = matches!(timers.firing.take(), Some((_, true)));
        if !cleared && result.is_ok() {
            let at = Instant::now() + every;
            timers.queue.insert((at, id), timer);
            timers.deadline_of.insert(id, at);
        }
    }
    result.map(|()| true)
}
