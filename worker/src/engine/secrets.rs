//! The global `secrets`: the values of the secrets granted to the job, by name, as the
//! supervisor sent them for this run (none for drafts). Frozen.
//!
//! Must not: keep a value beyond its run, or print one anywhere (the supervisor masks
//! console output that contains one, but the worker adds nothing of its own).

use protocol::SecretValues;
use rquickjs::{Ctx, Function, Object};

pub(crate) fn init<'js>(
    ctx: &Ctx<'js>,
    globals: &Object<'js>,
    secrets: &SecretValues,
) -> rquickjs::Result<()> {
    let o = Object::new(ctx.clone())?;
    for (name, value) in &secrets.0 {
        o.set(name.as_str(), value.as_str())?;
    }
    let freeze: Function<'js> = globals.get::<_, Object<'js>>("Object")?.get("freeze")?;
    freeze.call::<_, ()>((o.clone(),))?;
    globals.set("secrets", o)?;
    Ok(())
}
