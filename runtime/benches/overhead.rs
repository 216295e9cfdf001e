//! caller_overhead: time added per call by #[saga_step] (Kafka sink on the mock cluster) and, as the baseline, by
//! #[tracing::instrument] with a fmt layer writing to io::sink(), over the same function unannotated.
#![allow(missing_docs)] // criterion_group! generates undocumented items

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use support::*;

/// Runs `iters` calls in chunks, timing only the calls; `between` runs untimed after each chunk.
fn chunked(iters: u64, mut call: impl FnMut(u64), mut between: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = BURST.min(iters - done);
        let start = Instant::now();
        for i in done..done + n {
            call(i);
        }
        total += start.elapsed();
        between();
        done += n;
    }
    total
}

fn bench(c: &mut Criterion) {
    let (_kafka, tracker, _topic, _spool) = kafka_tracker("bench-service");
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);

    let mut sync = c.benchmark_group("caller_overhead_sync");
    sync.bench_function("plain", |b| {
        b.iter_custom(|n| chunked(n, |i| drop(black_box(plain(i))), || ()))
    });
    sync.bench_function("saga_step", |b| {
        saga_tracker::with_default(&tracker, || {
            b.iter_custom(|n| chunked(n, |i| drop(black_box(annotated(i))), || flush(&tracker)))
        })
    });
    sync.bench_function("tracing_instrument", |b| {
        tracing::dispatcher::with_default(&dispatch, || {
            b.iter_custom(|n| chunked(n, |i| drop(black_box(instrumented(i))), || ()))
        })
    });
    sync.finish();

    let mut asynch = c.benchmark_group("caller_overhead_async");
    asynch.bench_function("plain", |b| {
        b.iter_custom(|n| chunked(n, |i| drop(black_box(run_ready(plain_async(i)))), || ()))
    });
    asynch.bench_function("saga_step", |b| {
        saga_tracker::with_default(&tracker, || {
            b.iter_custom(|n| {
                chunked(
                    n,
                    |i| drop(black_box(run_ready(annotated_async(i)))),
                    || flush(&tracker),
                )
            })
        })
    });
    asynch.bench_function("tracing_instrument", |b| {
        tracing::dispatcher::with_default(&dispatch, || {
            b.iter_custom(|n| {
                chunked(
                    n,
                    |i| drop(black_box(run_ready(instrumented_async(i)))),
                    || (),
                )
            })
        })
    });
    asynch.finish();
    assert_eq!(tracker.stats().lost, 0);
    assert_eq!(
        tracker.stats().spooled,
        0,
        "the bench must not overflow the queue"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
