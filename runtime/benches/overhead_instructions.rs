//! Instructions per call on the caller's thread, for `valgrind --tool=callgrind` (a figure free of the noise of a
//! shared machine): `overhead_instructions <plain|saga_step|fastrace> <calls>` runs the calls on the main thread
//! with the tracker installed globally (as a service does with `saga_tracker::init`), a sink that drops events.
//! The difference of two runs with different call counts, divided by the difference of the counts, is the
//! per-call figure (scripts/callgrind-overhead does this). Run without valgrind it just makes the calls.
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

/// A flush every 8 192 calls keeps the lanes under the queue capacity while the worker runs slowed by valgrind
/// (otherwise the caller would spool, and encode, events itself).
fn flush_every(tracker: &saga_tracker::Tracker, i: u64) {
    if (i + 1).is_multiple_of(8_192) {
        tracker.flush(Duration::from_secs(60)).expect("flush");
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
    match variant.as_str() {
        "plain" => (0..calls).for_each(|i| drop(black_box(plain(i)))),
        "saga_step" => (0..calls).for_each(|i| {
            drop(black_box(annotated(i)));
            flush_every(&tracker, i)
        }),
        "saga_step_async" => (0..calls).for_each(|i| {
            drop(black_box(run_ready(annotated_async(i))));
            flush_every(&tracker, i)
        }),
        "plain_async" => (0..calls).for_each(|i| drop(black_box(run_ready(plain_async(i))))),
        "fastrace" | "fastrace_async" => {
            for chunk in 0..calls.div_ceil(1_024) {
                let root =
                    fastrace::Span::root("bench", fastrace::collector::SpanContext::random());
                let _parent = root.set_local_parent();
                for i in chunk * 1_024..((chunk + 1) * 1_024).min(calls) {
                    if variant == "fastrace" {
                        drop(black_box(fastraced(i)));
                    } else {
                        drop(black_box(run_ready(fastraced_async(i))));
                    }
                }
            }
        }
        other => panic!("unknown variant {other}"),
    }
    tracker.flush(Duration::from_secs(60)).expect("flush");
}
