//! The allocator behind each run's QuickJS runtime: plain libc `malloc`, plus the
//! accounting that enforces the run's memory limit and records its peak.
//!
//! QuickJS's own `set_memory_limit` only works with its default allocator and cannot
//! tell us afterwards whether the limit was hit (gradual growth ends with the script
//! seeing `null` thrown). Counting here gives an exact peak and an exact "an allocation
//! was refused" flag, which is how out-of-memory is recognised.
//!
//! It is also a second place where a stopped run is noticed: QuickJS polls its interrupt
//! handler only every 10,000 bytecode ticks, so a loop around an expensive builtin
//! (`for (;;) JSON.stringify(big)`) overshoots its deadline by seconds. Builtins like
//! that allocate all the time, so once the run must stop (deadline passed, cancelled,
//! output limit) allocations are refused and the script unwinds at once.
//!
//! Must not: allocate through Rust's global allocator (a refused Rust allocation aborts
//! the process), or panic (it runs inside C code).

use std::cell::Cell;
use std::rc::Rc;

use rquickjs::allocator::Allocator;

use crate::engine::RunHost;

/// How many allocations go by between two looks at the clock.
const CHECK_EVERY: u32 = 256;

/// Memory accounting of one runtime, shared with the run that owns it.
#[derive(Debug)]
pub(crate) struct MemStats {
    /// Bytes currently allocated (usable sizes, as glibc reports them).
    used: Cell<usize>,
    /// The largest `used` ever seen.
    peak: Cell<usize>,
    /// The run's `limits.memory_bytes`.
    limit: usize,
    /// Set when an allocation was refused because of the limit (or failed in libc).
    refused: Cell<bool>,
}

impl MemStats {
    pub(crate) fn new(limit: usize) -> Rc<Self> {
        Rc::new(Self {
            used: Cell::new(0),
            peak: Cell::new(0),
            limit,
            refused: Cell::new(false),
        })
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak.get()
    }

    /// Whether the runtime ran out of memory at least once.
    pub(crate) fn exhausted(&self) -> bool {
        self.refused.get()
    }

    /// Whether growing by `extra` bytes (after releasing `released`) stays in the limit.
    fn fits(&self, released: usize, extra: usize) -> bool {
        let after = self
            .used
            .get()
            .saturating_sub(released)
            .saturating_add(extra);
        if after > self.limit {
            self.refused.set(true);
            false
        } else {
            true
        }
    }

    fn add(&self, n: usize) {
        let used = self.used.get().saturating_add(n);
        self.used.set(used);
        if used > self.peak.get() {
            self.peak.set(used);
        }
    }

    fn sub(&self, n: usize) {
        self.used.set(self.used.get().saturating_sub(n));
    }
}

/// Counts every allocation of one runtime against its [`MemStats`], and refuses them
/// once the run it belongs to must stop.
pub(crate) struct CountingAllocator {
    stats: Rc<MemStats>,
    host: Option<std::sync::Arc<RunHost>>,
    countdown: u32,
    stopping: bool,
}

impl CountingAllocator {
    pub(crate) fn new(stats: Rc<MemStats>, host: Option<std::sync::Arc<RunHost>>) -> Self {
        Self {
            stats,
            host,
            countdown: CHECK_EVERY,
            stopping: false,
        }
    }

    /// Whether the run must stop (checked on every `CHECK_EVERY`th allocation).
    fn stopping(&mut self) -> bool {
        if self.stopping {
            return true;
        }
        self.countdown -= 1;
        if self.countdown == 0 {
            self.countdown = CHECK_EVERY;
            if let Some(host) = &self.host {
                self.stopping = host.must_stop();
            }
        }
        self.stopping
    }
}

fn usable(ptr: *mut u8) -> usize {
    if ptr.is_null() {
        return 0;
    }
    // SAFETY: `ptr` is non-null and was returned by libc malloc/calloc/realloc (every
    // pointer this allocator hands out comes from them), so glibc can read its header.
    unsafe { libc::malloc_usable_size(ptr.cast()) }
}

// SAFETY: every pointer returned comes straight from libc malloc/calloc/realloc, which
// align to at least 16 bytes on x86_64/aarch64 glibc and give at least the size asked
// for; `usable_size` asks glibc about exactly those pointers.
unsafe impl Allocator for CountingAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if self.stopping() || !self.stats.fits(0, size) {
            return std::ptr::null_mut();
        }
        // SAFETY: plain libc malloc; a null result is handed back to QuickJS, which
        // turns it into an out-of-memory exception.
        let ptr: *mut u8 = unsafe { libc::malloc(size.max(1)) }.cast();
        if ptr.is_null() {
            self.stats.refused.set(true);
        } else {
            self.stats.add(usable(ptr));
        }
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let Some(total) = count.checked_mul(size) else {
            self.stats.refused.set(true);
            return std::ptr::null_mut();
        };
        if self.stopping() || !self.stats.fits(0, total) {
            return std::ptr::null_mut();
        }
        // SAFETY: plain libc calloc (it checks the multiplication itself too).
        let ptr: *mut u8 = unsafe { libc::calloc(count.max(1), size.max(1)) }.cast();
        if ptr.is_null() {
            self.stats.refused.set(true);
        } else {
            self.stats.add(usable(ptr));
        }
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        self.stats.sub(usable(ptr));
        // SAFETY: the caller guarantees `ptr` came from this allocator, i.e. from libc.
        unsafe { libc::free(ptr.cast()) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.alloc(new_size);
        }
        if new_size == 0 {
            // SAFETY: as `dealloc`; QuickJS treats realloc to zero as free.
            unsafe { self.dealloc(ptr) };
            return std::ptr::null_mut();
        }
        let old = usable(ptr);
        if new_size > old && (self.stopping() || !self.stats.fits(old, new_size)) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller guarantees `ptr` came from this allocator (libc). On failure
        // libc leaves the old block untouched, and so does our accounting.
        let new: *mut u8 = unsafe { libc::realloc(ptr.cast(), new_size) }.cast();
        if new.is_null() {
            self.stats.refused.set(true);
            return new;
        }
        self.stats.sub(old);
        self.stats.add(usable(new));
        new
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        usable(ptr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_limit_and_tracks_the_peak() {
        let stats = MemStats::new(4096);
        let mut a = CountingAllocator::new(stats.clone(), None);
        let p = a.alloc(1000);
        assert!(!p.is_null());
        assert!(stats.peak() >= 1000);
        assert!(a.alloc(10_000).is_null());
        assert!(stats.exhausted());
        // SAFETY: `p` came from `a`.
        let q = unsafe { a.realloc(p, 2000) };
        assert!(!q.is_null());
        // SAFETY: `q` came from `a`.
        unsafe { a.dealloc(q) };
        assert_eq!(stats.used.get(), 0);
    }
}
