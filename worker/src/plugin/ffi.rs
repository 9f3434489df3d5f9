//! Every `unsafe` line of the plugin support: opening a library, looking its symbols
//! up, and calling through the C ABI of `docs/plugins.md`. The rest of the worker sees
//! only [`Lib`], whose methods are safe because they uphold the ABI's rules here.
//!
//! A library, once opened, is never closed: a plugin may have started threads, or
//! still hold an async completion, that run code from it. The handle is leaked on
//! purpose (also when the library is refused), so its code stays mapped for the life
//! of the process.
//!
//! Must not: call into a library whose ABI version is not [`ABI_VERSION`] (beyond
//! `traitor_plugin_abi_version` itself), keep a pointer the plugin handed out past the
//! call that handed it out, or unwind across the C boundary.

use std::ffi::{CStr, c_char, c_void};
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};

/// The ABI this worker speaks. A plugin reporting another version is refused.
pub(crate) const ABI_VERSION: u32 = 1;

/// Largest result (or error) a plugin may hand back, bytes.
pub(crate) const MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// A byte buffer the plugin allocated; handed back to `traitor_plugin_free`.
#[repr(C)]
struct TraitorBuf {
    ptr: *mut u8,
    len: usize,
}

/// `void done(void *ctx, int32_t status, const uint8_t *ptr, size_t len)`.
type Completion = extern "C" fn(*mut c_void, i32, *const u8, usize);

type AbiVersionFn = unsafe extern "C" fn() -> u32;
type StrFn = unsafe extern "C" fn() -> *const c_char;
type InitFn = unsafe extern "C" fn() -> i32;
type CallFn = unsafe extern "C" fn(*const c_char, *const u8, usize, *mut TraitorBuf) -> i32;
type FreeFn = unsafe extern "C" fn(TraitorBuf);
type CallAsyncFn =
    unsafe extern "C" fn(*const c_char, *const u8, usize, Completion, *mut c_void) -> i32;

/// What a call produced: the plugin's status (0 = success) and the JSON bytes it
/// returned, or why the worker could not take them.
pub(crate) type Reply = Result<(i32, Vec<u8>), String>;

/// What an async call runs when the plugin completes it (on any thread).
pub(crate) type Done = Box<dyn FnOnce(Reply) + Send>;

/// An opened plugin library whose ABI version matched.
#[derive(Clone, Copy)]
pub(crate) struct Lib {
    name: StrFn,
    methods: StrFn,
    init: Option<InitFn>,
    call: Option<CallFn>,
    free: Option<FreeFn>,
    call_async: Option<CallAsyncFn>,
}

/// The effective user id of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Opens `path` (all symbols bound now), checks its ABI version, and looks up the
/// functions of the ABI. Nothing but `traitor_plugin_abi_version` is called.
pub(crate) fn open(path: &Path) -> anyhow::Result<Lib> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading runs the library's initialisers. The plugin directory holds
    // libraries the operator installed (ownership and modes are checked before this),
    // which are trusted as much as the worker binary itself.
    let lib =
        unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| anyhow!("{e}"))?;
    // Never closed; see the module header.
    let lib: &'static Library = Box::leak(Box::new(lib));

    // SAFETY: the symbol's type is the ABI's `uint32_t traitor_plugin_abi_version(void)`
    // in every version of the ABI; calling it has no preconditions.
    let version = unsafe {
        let f = lib
            .get::<AbiVersionFn>(b"traitor_plugin_abi_version\0")
            .map_err(|_| anyhow!("not a traitor plugin: no traitor_plugin_abi_version symbol"))?;
        f()
    };
    if version != ABI_VERSION {
        bail!("it speaks plugin ABI version {version}, this worker speaks version {ABI_VERSION}");
    }
    // SAFETY (all lookups below): the version matched, so each symbol, when present,
    // has the type `docs/plugins.md` gives it for ABI version 1. Function pointers are
    // copied out; they stay valid because the library is never closed.
    let required = |sym: &str| -> anyhow::Result<StrFn> {
        let bytes = format!("{sym}\0");
        // SAFETY: see above.
        unsafe { lib.get::<StrFn>(bytes.as_bytes()) }
            .map(|s| *s)
            .map_err(|_| anyhow!("missing symbol {sym}"))
    };
    let name = required("traitor_plugin_name")?;
    let methods = required("traitor_plugin_methods")?;
    // SAFETY: see above.
    let (init, call, free, call_async) = unsafe {
        (
            lib.get::<InitFn>(b"traitor_plugin_init\0").ok().map(|s| *s),
            lib.get::<CallFn>(b"traitor_plugin_call\0").ok().map(|s| *s),
            lib.get::<FreeFn>(b"traitor_plugin_free\0").ok().map(|s| *s),
            lib.get::<CallAsyncFn>(b"traitor_plugin_call_async\0")
                .ok()
                .map(|s| *s),
        )
    };
    Ok(Lib {
        name,
        methods,
        init,
        call,
        free,
        call_async,
    })
}

/// Reads a NUL-terminated UTF-8 string the plugin returned.
fn plugin_str(f: StrFn, what: &str) -> anyhow::Result<String> {
    // SAFETY: the ABI says these functions take nothing and return a NUL-terminated
    // string that stays valid for the life of the library (or NULL).
    let p = unsafe { f() };
    if p.is_null() {
        bail!("{what} returned NULL");
    }
    // SAFETY: non-NULL and NUL-terminated per the ABI; copied out at once.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{what} is not UTF-8"))
}

/// Copies `len` bytes at `ptr` (NULL or empty: nothing), refusing more than
/// [`MAX_OUTPUT`].
///
/// # Safety
/// `ptr` must be NULL or point to `len` readable bytes for the duration of the call.
unsafe fn copy_out(ptr: *const u8, len: usize) -> Result<Vec<u8>, String> {
    if ptr.is_null() || len == 0 {
        return Ok(Vec::new());
    }
    if len > MAX_OUTPUT {
        return Err(format!(
            "returned {len} bytes, more than the {} MiB a plugin may return",
            MAX_OUTPUT >> 20
        ));
    }
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
}

impl Lib {
    /// `traitor_plugin_name()`.
    pub(crate) fn name(&self) -> anyhow::Result<String> {
        plugin_str(self.name, "traitor_plugin_name")
    }

    /// `traitor_plugin_methods()`: a JSON object, method name → `"sync"` | `"async"`.
    pub(crate) fn methods(&self) -> anyhow::Result<String> {
        plugin_str(self.methods, "traitor_plugin_methods")
    }

    pub(crate) fn has_call(&self) -> bool {
        self.call.is_some() && self.free.is_some()
    }

    pub(crate) fn has_call_async(&self) -> bool {
        self.call_async.is_some()
    }

    /// `traitor_plugin_init()`, if the plugin has one: called once, before the sandbox.
    pub(crate) fn init(&self) -> anyhow::Result<()> {
        let Some(init) = self.init else {
            return Ok(());
        };
        // SAFETY: the ABI's `int32_t traitor_plugin_init(void)`, called once.
        let status = unsafe { init() };
        if status != 0 {
            bail!("traitor_plugin_init returned {status}");
        }
        Ok(())
    }

    /// A sync call: blocks the calling thread until the plugin returns.
    pub(crate) fn call(&self, method: &CStr, input: &[u8]) -> Reply {
        let (Some(call), Some(free)) = (self.call, self.free) else {
            return Err("the plugin has no traitor_plugin_call".into());
        };
        let mut out = TraitorBuf {
            ptr: std::ptr::null_mut(),
            len: 0,
        };
        // SAFETY: `method` is NUL-terminated, `input` is valid for its length, and
        // `out` is a writable TraitorBuf; all outlive the call.
        let status = unsafe { call(method.as_ptr(), input.as_ptr(), input.len(), &mut out) };
        // SAFETY: per the ABI, `out` is now NULL/empty or a buffer the plugin owns.
        let bytes = unsafe { copy_out(out.ptr, out.len) };
        if !out.ptr.is_null() {
            // SAFETY: the buffer goes back, unchanged and once, to the allocator that
            // made it; nothing points into it any more (it was copied).
            unsafe { free(out) };
        }
        bytes.map(|b| (status, b))
    }

    /// An async call. `done` runs exactly once: from the plugin's completion (on
    /// whatever thread the plugin completes on, perhaps before this returns), or here
    /// if the plugin refuses the call.
    pub(crate) fn call_async(&self, method: &CStr, input: &[u8], done: Done) {
        let Some(call_async) = self.call_async else {
            done(Err("the plugin has no traitor_plugin_call_async".into()));
            return;
        };
        let ctx = Box::into_raw(Box::new(done)).cast::<c_void>();
        // SAFETY: as for `call`; `ctx` is ours until the plugin completes the call, and
        // `complete` is a valid completion for as long as the process lives.
        let status =
            unsafe { call_async(method.as_ptr(), input.as_ptr(), input.len(), complete, ctx) };
        if status != 0 {
            // The ABI: a non-zero return means `done` was not and will not be called,
            // so the context is still ours.
            // SAFETY: `ctx` came from Box::into_raw above and was not consumed.
            let done = unsafe { Box::from_raw(ctx.cast::<Done>()) };
            done(Err(format!(
                "the plugin refused the call (status {status})"
            )));
        }
    }
}

/// The completion handed to `traitor_plugin_call_async`. Copies the result and hands
/// it to the call's `done`; never unwinds (a panic here aborts, as across any C ABI).
extern "C" fn complete(ctx: *mut c_void, status: i32, ptr: *const u8, len: usize) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: `ctx` is the Box::into_raw of `call_async`; the ABI promises exactly one
    // completion per accepted call, so this is its only reconstruction.
    let done = unsafe { Box::from_raw(ctx.cast::<Done>()) };
    // SAFETY: the ABI: `ptr` is NULL or `len` readable bytes until this returns.
    let bytes = unsafe { copy_out(ptr, len) };
    done(bytes.map(|b| (status, b)));
}
