//! throughput: annotated calls end to end, counted when Kafka acknowledges (mock cluster), against a raw rdkafka
//! producer sending pre-encoded payloads of the same size with the same producer configuration.
#![allow(missing_docs)] // criterion_group! generates undocumented items

mod support;

use std::hint::black_box;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use support::*;

fn bench(c: &mut Criterion) {
    let (kafka, tracker, topic, _spool) = kafka_tracker("bench-service");
    // One annotated call sends two events (STARTED, SUCCEEDED): size the raw payload like ours.
    saga_tracker::with_default(&tracker, || annotated(1)).expect("call");
    flush(&tracker);
    let payload = vec![0x5a_u8; largest_payload(&kafka, &topic)];
    let raw = raw_producer(&kafka);

    // One iteration is a chunk of CHUNK calls (2 events each) followed by a flush that waits for every
    // acknowledgement: long iterations, so the flush's latency (linger, round trip) is amortised and what is
    // measured is sustained throughput.
    let mut group = c.benchmark_group("throughput");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(2 * CHUNK));
    let mut next = 0u64;
    group.bench_function("saga_step_chunk", |b| {
        saga_tracker::with_default(&tracker, || {
            b.iter(|| {
                for _ in 0..CHUNK {
                    next += 1;
                    black_box(annotated(next)).expect("ok");
                }
                flush(&tracker);
            })
        })
    });
    group.bench_function("raw_rdkafka_chunk", |b| {
        b.iter(|| raw_calls(&raw, &topic, &payload, &mut next, CHUNK))
    });
    group.finish();
    let stats = tracker.stats();
    assert_eq!((stats.spooled, stats.lost), (0, 0), "{stats:?}");
    assert_eq!(stats.delivered, stats.recorded, "{stats:?}");
}

criterion_group!(benches, bench);
criterion_main!(benches);
