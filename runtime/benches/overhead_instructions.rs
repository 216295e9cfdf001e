//! Instructions per call on the caller's thread, for `valgrind --tool=callgrind` (a figure free of the noise of a
//! shared machine): `overhead_instructions <plain|saga_step|fastrace> <calls>` runs the calls on the main thread
//! with the tracker installed globally (as a service does with `saga_tracker::init`), a sink that drops events.
//! The difference of two runs with different call counts, divided by the difference of the counts, is the
//! per-call figure (scripts/callgrind-overhead does this, counting only `measured_calls`). Run without valgrind it
//! just makes the calls.
#![allow(missing_docs)]

mod support;

use std::hint::black_box;
use std::time::Duration;

use support::*;

struct DropSpans;

impl fastrace::collector::Reporter for DropSpans {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        drop(black_box(spans));
    }
}

/// Calls between flushes: a flush every 8 192 calls keeps the lanes under the queue capacity while the worker runs
/// slowed by valgrind (otherwise the caller would spool, and encode, events itself).
const FLUSH_EVERY: u64 = 8_192;

/// The calls `from..to` of `variant`: the only function callgrind counts (`--toggle-collect=*measured_calls*`), so
/// neither the start-up (tracker, clock calibration) nor the flushes between bursts are in the figure.
#[inline(never)]
fn measured_calls(variant: &str, from: u64, to: u64) {
    match variant {
        "plain" => (from..to).for_each(|i| drop(black_box(plain(i)))),
        "saga_step" => (from..to).for_each(|i| drop(black_box(annotated(i)))),
        "saga_step_async" => {
            (from..to).for_each(|i| drop(black_box(run_ready(annotated_async(i)))))
        }
        "plain_async" => (from..to).for_each(|i| drop(black_box(run_ready(plain_async(i))))),
        "fastrace" | "fastrace_async" => {
            // one root span per burst of 1 024: its hand-off to the collector is counted, as in the bench
            let root = fastrace::Span::root("bench", fastrace::collector::SpanContext::random());
            let _parent = root.set_local_parent();
            if variant == "fastrace" {
                (from..to).for_each(|i| drop(black_box(fastraced(i))))
            } else {
                (from..to).for_each(|i| drop(black_box(run_ready(fastraced_async(i)))))
            }
        }
        other => panic!("unknown variant {other}"),
    }
}

fn main() {
    // A test runner listing the workspace's targets (`cargo nextest run --all-targets` runs `--list --format
    // terse`): this harness-less bench holds no tests.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let variant = args.next().unwrap_or_else(|| "saga_step".into());
    let calls: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1_000);
    fastrace::set_reporter(DropSpans, fastrace::collector::Config::default());
    let tracker = saga_tracker::Tracker::builder()
        .service("bench-service")
        .sink(NullSink)
        .without_spool()
        .build()
        .expect("tracker");
    let _guard = saga_tracker::init(tracker.clone()).expect("init");
    let per_burst = if variant.starts_with("fastrace") {
        1_024
    } else {
        FLUSH_EVERY
    };
    let mut done = 0;
    while done < calls {
        let to = (done + per_burst).min(calls);
        measured_calls(&variant, done, to);
        if !variant.starts_with("fastrace") {
            tracker.flush(Duration::from_secs(60)).expect("flush");
        }
        done = to;
    }
    tracker.flush(Duration::from_secs(60)).expect("flush");
}
