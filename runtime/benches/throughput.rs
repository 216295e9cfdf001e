//! throughput: annotated calls end to end, counted when Kafka acknowledges (mock cluster), against a raw rdkafka
//! producer sending pre-encoded payloads of the same size with the same producer configuration.
#![allow(missing_docs)] // criterion_group! generates undocumented items

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use saga_tracker::sink::PRODUCER_DEFAULTS;
use support::*;

fn bench(c: &mut Criterion) {
    let (kafka, tracker, topic, _spool) = kafka_tracker("bench-service");
    // One annotated call sends two events (STARTED, SUCCEEDED): size the raw payload like ours.
    saga_tracker::with_default(&tracker, || annotated(1)).expect("call");
    flush(&tracker);
    let sample = kafka
        .read_all(&topic, Duration::from_secs(30))
        .expect("read");
    let payload_len = sample
        .iter()
        .map(|m| rdkafka::Message::payload(m).map_or(0, <[u8]>::len))
        .max()
        .unwrap_or(100);
    let payload = vec![0x5a_u8; payload_len];

    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka.brokers());
    for (k, v) in PRODUCER_DEFAULTS {
        config.set(k, v);
    }
    let raw: ThreadedProducer<DefaultProducerContext> = config.create().expect("raw producer");

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
        b.iter(|| {
            for _ in 0..CHUNK {
                next += 1;
                let key = next.to_string();
                for _ in 0..2 {
                    let mut record = BaseRecord::to(&topic).key(&key).payload(&payload);
                    while let Err((_, back)) = raw.send(record) {
                        record = back;
                        raw.poll(Duration::from_millis(1));
                    }
                }
            }
            raw.flush(Duration::from_secs(60)).expect("raw flush");
        })
    });
    group.finish();
    let stats = tracker.stats();
    assert_eq!((stats.spooled, stats.lost), (0, 0), "{stats:?}");
    assert_eq!(stats.delivered, stats.recorded, "{stats:?}");
}

criterion_group!(benches, bench);
criterion_main!(benches);
