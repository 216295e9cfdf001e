//! Decode by writer version: a v2 message through the hand-written fast path vs the same event written with the
//! v1 schema (by apache-avro) and read by schema resolution into the v2 model. Results: `BENCHMARKS.md`.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use apache_avro::{Schema, to_avro_datum, to_value};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use saga_tracker_core::schema::{FINGERPRINT_V1, SCHEMA_V1_JSON, SINGLE_OBJECT_MAGIC};
use saga_tracker_core::{StepError, StepStatus, codec};

fn bench(c: &mut Criterion) {
    let started = saga_tracker_core::testing::sample_event();
    let mut failed = started.clone();
    failed.status = StepStatus::Failed;
    failed.idempotency_key = "saga-0001:charge_payment:FAILED:1".into();
    failed.step = "charge_payment".into();
    failed.order_id = Some("order-42".into());
    failed.duration_micros = Some(1532);
    failed.error = Some(StepError::new(
        "InsufficientFunds",
        "balance 10.00 < amount 25.50",
    ));
    failed
        .metadata
        .insert("traceId".into(), "4bf92f3577b34da6a3ce929d0e0e4736".into());
    let v1_schema = Schema::parse_str(SCHEMA_V1_JSON).expect("v1 schema");
    let mut group = c.benchmark_group("decode_by_writer_version");
    for (name, event) in [("started", started), ("failed_with_trace", failed)] {
        let value = to_value(&event)
            .expect("value")
            .resolve(&v1_schema)
            .expect("fits v1");
        let mut v1_message = SINGLE_OBJECT_MAGIC.to_vec();
        v1_message.extend_from_slice(&FINGERPRINT_V1);
        v1_message.extend(to_avro_datum(&v1_schema, value).expect("v1 datum"));
        let v2_message = codec::encode(&event);
        assert_eq!(codec::decode(&v1_message).expect("v1 resolves"), event);
        assert_eq!(codec::decode(&v2_message).expect("v2 decodes"), event);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::new("v2_fast_path", name),
            &v2_message,
            |b, m| b.iter(|| black_box(codec::decode(black_box(m)).expect("decode"))),
        );
        group.bench_with_input(
            BenchmarkId::new("v1_by_resolution", name),
            &v1_message,
            |b, m| b.iter(|| black_box(codec::decode(black_box(m)).expect("decode"))),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
