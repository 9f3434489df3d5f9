//! The global `job`: what the script may know about the job it runs for (`id`, `name`,
//! `scheduledAt` in Unix ms, `occurrenceId`, `attempt`). Frozen.
//!
//! Must not: expose anything else about the supervisor or the host.

use protocol::JobContext;
use rquickjs::{Ctx, Function, Object};

pub(crate) fn init<'js>(
    ctx: &Ctx<'js>,
    globals: &Object<'js>,
    job: &JobContext,
) -> rquickjs::Result<()> {
    let o = Object::new(ctx.clone())?;
    o.set("id", job.job_id.as_str())?;
    o.set("name", job.job_name.as_str())?;
    o.set("scheduledAt", job.scheduled_at_ms as f64)?;
    o.set("occurrenceId", job.occurrence_id.as_str())?;
    o.set("attempt", job.attempt)?;
    let freeze: Function<'js> = globals.get::<_, Object<'js>>("Object")?.get("freeze")?;
    freeze.call::<_, ()>((o.clone(),))?;
    globals.set("job", o)?;
    Ok(())
}
