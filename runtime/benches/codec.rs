//! encode/decode: our codec against apache-avro's schema-aware serde writer and its reader, on the same events.
//! Bytes are asserted equal before anything is timed.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use apache_avro::{Schema, from_avro_datum, from_value, write_avro_datum_ref};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use saga_tracker::{SagaEvent, StepError, StepStatus, codec, schema::SCHEMA_JSON};

fn events() -> Vec<(&'static str, SagaEvent)> {
    // Schema v2 events with every v2 field present: apache-avro's serde writer cannot write an event whose
    // optional v2 fields are skipped (`skip_serializing_if`), and the baseline must write the same bytes.
    let mut started = saga_tracker::testing::sample_event();
    started.step_index = Some(0);
    started.step_count = Some(4);
    started.compensable = Some(true);
    started.cause_idempotency_key = Some("saga-0001:charge_payment:FAILED:1".into());
    let mut failed = started.clone();
    failed.step_index = Some(2);
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
    vec![("started", started), ("failed_with_trace", failed)]
}

fn apache_datum(schema: &Schema, event: &SagaEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_avro_datum_ref(schema, event, &mut out).expect("apache-avro writes the event");
    out
}

fn bench(c: &mut Criterion) {
    let schema = Schema::parse_str(SCHEMA_JSON).expect("schema");
    let mut encode = c.benchmark_group("encode");
    for (name, event) in events() {
        let mut ours = Vec::new();
        codec::write_datum(&event, &mut ours);
        assert_eq!(apache_datum(&schema, &event), ours, "same bytes for {name}");
        encode.throughput(Throughput::Elements(1));
        encode.bench_with_input(BenchmarkId::new("ours", name), &event, |b, e| {
            let mut buf = Vec::with_capacity(256);
            b.iter(|| {
                buf.clear();
                codec::write_datum(black_box(e), &mut buf);
                black_box(buf.len())
            })
        });
        encode.bench_with_input(BenchmarkId::new("apache_avro", name), &event, |b, e| {
            let mut buf = Vec::with_capacity(256);
            b.iter(|| {
                buf.clear();
                write_avro_datum_ref(&schema, black_box(e), &mut buf).expect("write");
                black_box(buf.len())
            })
        });
    }
    encode.finish();

    let mut decode = c.benchmark_group("decode");
    for (name, event) in events() {
        let mut datum = Vec::new();
        codec::write_datum(&event, &mut datum);
        let theirs: SagaEvent =
            from_value(&from_avro_datum(&schema, &mut &datum[..], None).expect("read"))
                .expect("from value");
        assert_eq!(theirs, event);
        decode.throughput(Throughput::Elements(1));
        decode.bench_with_input(BenchmarkId::new("ours", name), &datum, |b, d| {
            b.iter(|| black_box(codec::decode_datum(black_box(d)).expect("decode")))
        });
        decode.bench_with_input(BenchmarkId::new("apache_avro", name), &datum, |b, d| {
            b.iter(|| {
                let value = from_avro_datum(&schema, &mut &black_box(d)[..], None).expect("read");
                black_box(from_value::<SagaEvent>(&value).expect("from value"))
            })
        });
    }
    decode.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
