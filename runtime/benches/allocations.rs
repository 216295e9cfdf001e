//! allocations_per_call: heap allocations on the caller's thread per annotated call (STARTED + SUCCEEDED
//! recorded), counted by a global allocator that counts only while the measuring thread asks it to.
//! Prints `allocations_per_call sync=<n> async=<n> plain=<n>`.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use support::*;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CALLS: u64 = 10_000;

fn per_call(mut call: impl FnMut(u64)) -> f64 {
    for i in 0..1_000 {
        call(i); // warm up: thread-locals, lazily built state
    }
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    for i in 0..CALLS {
        call(i);
    }
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) as f64 / CALLS as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` compatibility
    }
    let (_kafka, tracker, _topic, _spool) = kafka_tracker("bench-service");
    let plain_allocs = per_call(|i| drop(plain(i)));
    let sync = saga_tracker::with_default(&tracker, || per_call(|i| drop(annotated(i))));
    flush(&tracker);
    let asynch = saga_tracker::with_default(&tracker, || {
        per_call(|i| drop(run_ready(annotated_async(i))))
    });
    flush(&tracker);
    let stats = tracker.stats();
    assert_eq!((stats.spooled, stats.lost), (0, 0), "{stats:?}");
    assert_eq!(stats.delivered, stats.recorded);
    println!("allocations_per_call sync={sync:.3} async={asynch:.3} plain={plain_allocs:.3}");
}
