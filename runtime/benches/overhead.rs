//! caller_overhead: time added per call by #[saga_step] (Kafka sink on the mock cluster, the tracker installed
//! globally as a service does) and, as the baseline, by
//! #[tracing::instrument] with a fmt layer writing to io::sink(), over the same function unannotated; and, as the
//! second baseline, by #[fastrace::trace] under a root span of 1,024 spans, its reporter dropping every span on
//! fastrace's background thread (the set-up fastrace's docs give for production).
#![allow(missing_docs)] // criterion_group! generates undocumented items

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use support::*;

/// A clock for one timed burst.
trait Clock {
    type Start;
    fn start() -> Self::Start;
    fn elapsed(start: &Self::Start) -> Duration;
}

/// Wall-clock time: what the caller waits, including time its core spends on other threads.
struct Wall;
impl Clock for Wall {
    type Start = Instant;
    fn start() -> Instant {
        Instant::now()
    }
    fn elapsed(start: &Instant) -> Duration {
        start.elapsed()
    }
}

/// The calling thread's own CPU time: what the recording costs the caller, without time lost to being
/// preempted by the tracker's worker, librdkafka and the in-process mock brokers on this two-core machine.
struct ThreadCpu;
impl Clock for ThreadCpu {
    type Start = cpu_time::ThreadTime;
    fn start() -> cpu_time::ThreadTime {
        cpu_time::ThreadTime::now()
    }
    fn elapsed(start: &cpu_time::ThreadTime) -> Duration {
        start.elapsed()
    }
}

thread_local! {
    /// Calls since the last flush, across criterion's invocations of a routine.
    static PENDING: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Runs `iters` calls, timing only the calls; after every [`BURST`] calls (counted across invocations, so a
/// flush is amortised over many calls however small criterion makes a sample) `between` runs untimed.
fn chunked<C: Clock>(iters: u64, mut call: impl FnMut(u64), mut between: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let pending = PENDING.with(std::cell::Cell::get);
        let n = (BURST - pending).min(iters - done);
        let start = C::start();
        for i in done..done + n {
            call(i);
        }
        total += C::elapsed(&start);
        done += n;
        if pending + n >= BURST {
            between();
            PENDING.with(|p| p.set(0));
        } else {
            PENDING.with(|p| p.set(pending + n));
        }
    }
    total
}

/// fastrace's reporter for the bench: drops every span, on fastrace's collector thread.
struct DropSpans;

impl fastrace::collector::Reporter for DropSpans {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        drop(black_box(spans));
    }
}

/// Spans per fastrace root span: the root (and its hand-off to the collector) is replaced every this many calls,
/// inside the timed region.
const SPANS_PER_ROOT: u64 = 1_024;

thread_local! {
    /// The current fastrace root span and its local-parent guard (the guard drops first).
    static ROOT: std::cell::RefCell<Option<(fastrace::local::LocalParentGuard, fastrace::Span)>> =
        const { std::cell::RefCell::new(None) };
}

/// Before call `i`: a fresh root every [`SPANS_PER_ROOT`] calls (dropping the old one submits its spans).
#[inline]
fn fastrace_root(i: u64) {
    if i.is_multiple_of(SPANS_PER_ROOT) {
        ROOT.with(|root| {
            root.borrow_mut().take();
            let span = fastrace::Span::root("bench", fastrace::collector::SpanContext::random());
            let guard = span.set_local_parent();
            *root.borrow_mut() = Some((guard, span));
        });
    }
}

/// Ends the current root span (its spans go to the collector).
fn fastrace_end_root() {
    ROOT.with(|root| root.borrow_mut().take());
}

fn bench(c: &mut Criterion) {
    fastrace::set_reporter(
        DropSpans,
        fastrace::collector::Config::default().report_interval(Duration::from_millis(10)),
    );
    let (_kafka, tracker, _topic, _spool) = kafka_tracker("bench-service");
    // The Kafka tracker is the process's global one (`init`), as in a service; the saga_step rows use it.
    let _flush_on_exit = saga_tracker::init(tracker.clone()).expect("init");
    // The same recording with a sink that acknowledges at once, installed as a scoped override (`with_default`,
    // which costs a reference-count increment and decrement per call): the caller's own cost, without the mock
    // brokers and librdkafka threads competing for this machine's two cores (information, not a target).
    let null = saga_tracker::Tracker::builder()
        .service("bench-service")
        .sink(NullSink)
        .without_spool()
        .build()
        .expect("null tracker");
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);

    for (clock, cpu) in [("", false), ("_cpu", true)] {
        let run = |n: u64, call: &dyn Fn(u64), between: &dyn Fn()| {
            if cpu {
                chunked::<ThreadCpu>(n, call, between)
            } else {
                chunked::<Wall>(n, call, between)
            }
        };
        let mut sync = c.benchmark_group(format!("caller_overhead_sync{clock}"));
        sync.bench_function("plain", |b| {
            b.iter_custom(|n| run(n, &|i| drop(black_box(plain(i))), &|| ()))
        });
        // The global tracker, as a service installs it (`saga_tracker::init`): the production path.
        sync.bench_function("saga_step", |b| {
            b.iter_custom(|n| {
                run(n, &|i| drop(black_box(annotated(i))), &|| {
                    flush_elsewhere(&tracker)
                })
            })
        });
        sync.bench_function("saga_step_null_sink", |b| {
            saga_tracker::with_default(&null, || {
                b.iter_custom(|n| {
                    run(n, &|i| drop(black_box(annotated(i))), &|| {
                        flush_elsewhere(&null)
                    })
                })
            })
        });
        sync.bench_function("tracing_instrument", |b| {
            tracing::dispatcher::with_default(&dispatch, || {
                b.iter_custom(|n| run(n, &|i| drop(black_box(instrumented(i))), &|| ()))
            })
        });
        sync.bench_function("fastrace_trace", |b| {
            b.iter_custom(|n| {
                let took = run(
                    n,
                    &|i| {
                        fastrace_root(i);
                        drop(black_box(fastraced(i)))
                    },
                    &|| (),
                );
                fastrace_end_root();
                took
            })
        });
        sync.finish();

        let mut asynch = c.benchmark_group(format!("caller_overhead_async{clock}"));
        asynch.bench_function("plain", |b| {
            b.iter_custom(|n| run(n, &|i| drop(black_box(run_ready(plain_async(i)))), &|| ()))
        });
        asynch.bench_function("saga_step", |b| {
            b.iter_custom(|n| {
                run(
                    n,
                    &|i| drop(black_box(run_ready(annotated_async(i)))),
                    &|| flush_elsewhere(&tracker),
                )
            })
        });
        asynch.bench_function("tracing_instrument", |b| {
            tracing::dispatcher::with_default(&dispatch, || {
                b.iter_custom(|n| {
                    run(
                        n,
                        &|i| drop(black_box(run_ready(instrumented_async(i)))),
                        &|| (),
                    )
                })
            })
        });
        asynch.bench_function("fastrace_trace", |b| {
            b.iter_custom(|n| {
                let took = run(
                    n,
                    &|i| {
                        fastrace_root(i);
                        drop(black_box(run_ready(fastraced_async(i))))
                    },
                    &|| (),
                );
                fastrace_end_root();
                took
            })
        });
        asynch.finish();
    }
    assert_eq!(tracker.stats().lost, 0);
    assert_eq!(
        tracker.stats().spooled,
        0,
        "the bench must not overflow the queue"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
