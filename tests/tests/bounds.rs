//! The contract's bounds at record time: ids and names over their bound are refused with an error and counted;
//! free text (error kind and message, metadata) is cut with a marker and counted; what is recorded always passes
//! the tracker's check.

use std::collections::BTreeMap;

use saga_tracker::bounds::{self, Field, TRUNCATION_MARKER};
use saga_tracker::{
    BuildError, MemorySink, RecordError, StepError, StepStatus, Tracker, Transition, saga_step,
    with_default,
};
use saga_tracker_tests::{OrderSaga, Recorder};

/// A step error whose message is `len` bytes.
#[derive(Debug)]
pub struct LongError(usize);

impl std::fmt::Display for LongError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&"é".repeat(self.0 / 2))
    }
}

/// A step that fails with a long message.
#[saga_step(OrderSaga, ChargePayment, saga_id = saga_id)]
pub fn charge(saga_id: &str, message_len: usize) -> Result<(), LongError> {
    Err(LongError(message_len))
}

#[test]
fn an_over_long_saga_id_is_refused_at_record_time_and_counted() {
    let rec = Recorder::new("svc");
    let long = "s".repeat(bounds::SAGA_ID + 1);
    let err = rec
        .tracker
        .record(Transition::new(
            "OrderSaga",
            "reserve_stock",
            long.as_str(),
            StepStatus::Started,
        ))
        .expect_err("refused");
    assert!(
        matches!(&err, RecordError::TooLarge(t) if t.field == Field::SagaId && t.len == 257),
        "{err}"
    );
    assert!(err.to_string().contains("over its bound of 256"), "{err}");
    for (t, field) in [
        (
            Transition::new("t".repeat(129), "s", "id", StepStatus::Started),
            Field::SagaType,
        ),
        (
            Transition::new("T", "s".repeat(129), "id", StepStatus::Started),
            Field::Step,
        ),
        (
            Transition::new("T", "s", "id", StepStatus::Started).order_id("o".repeat(257)),
            Field::OrderId,
        ),
    ] {
        let err = rec.tracker.record(t).expect_err("refused");
        assert!(
            matches!(&err, RecordError::TooLarge(t) if t.field == field),
            "{err}"
        );
    }
    // the step guard's path: refused (logged), counted, and the handler still runs
    with_default(&rec.tracker, || {
        assert!(charge(&long, 10).is_err());
    });
    let at_bound = "s".repeat(bounds::SAGA_ID);
    rec.tracker
        .record(Transition::new(
            "OrderSaga",
            "reserve_stock",
            at_bound.as_str(),
            StepStatus::Started,
        ))
        .expect("at the bound is fine");
    let events = rec.events();
    assert_eq!(events.len(), 1, "only the event at the bound is recorded");
    let stats = rec.tracker.stats();
    assert_eq!(
        stats.rejected,
        4 + 2,
        "4 transitions, STARTED and FAILED of the step"
    );
    assert_eq!(stats.recorded, 1);
}

#[test]
fn over_long_free_text_is_cut_with_a_marker_and_counted() {
    let rec = Recorder::new("svc");
    let mut t = Transition::new("OrderSaga", "charge_payment", "saga-1", StepStatus::Failed)
        .error(StepError::new("K".repeat(300), "m".repeat(20_000)))
        .metadata("long-value", "v".repeat(5000))
        .metadata("k".repeat(129), "key over its bound")
        .metadata("tenant", "acme");
    for i in 0..50 {
        t = t.metadata(format!("z-extra-{i:03}"), "x".repeat(400));
    }
    rec.tracker.record(t).expect("recorded");
    with_default(&rec.tracker, || {
        assert!(charge("saga-2", 30_000).is_err());
    });
    let events = rec.events();
    assert_eq!(events.len(), 3);
    for e in &events {
        assert_eq!(bounds::check(e), Ok(()), "{}", e.step);
    }
    let error = events[0].error.as_ref().expect("error");
    assert!(error.kind.len() <= bounds::ERROR_KIND && error.kind.ends_with(TRUNCATION_MARKER));
    assert!(error.message.len() <= bounds::ERROR_MESSAGE);
    assert!(error.message.ends_with(TRUNCATION_MARKER));
    assert!(error.message.starts_with("mmmm"));
    let md: &BTreeMap<String, String> = &events[0].metadata;
    assert!(md["long-value"].ends_with(TRUNCATION_MARKER));
    assert_eq!(md["long-value"].len(), bounds::METADATA_VALUE);
    assert!(!md.keys().any(|k| k.len() > bounds::METADATA_KEY));
    let dropped: usize = md["sagaTracker.droppedEntries"].parse().expect("a count");
    // 53 entries: the key over its bound is dropped, the others kept in key order while they fit the total
    assert_eq!(md.len() - 1 + dropped, 53);
    assert!(dropped > 1);
    assert_eq!(md["tenant"], "acme");
    // the step's panic-free FAILED event: a 30 KB message, cut at a character boundary
    let failed = &events[2];
    let message = &failed.error.as_ref().expect("error").message;
    assert!(message.len() <= bounds::ERROR_MESSAGE && message.ends_with(TRUNCATION_MARKER));
    assert!(message.starts_with('é'));
    assert_eq!(rec.tracker.stats().truncated, 2);
    assert_eq!(rec.tracker.stats().rejected, 0);
}

#[test]
fn an_over_long_service_name_does_not_build() {
    let err = Tracker::builder()
        .service("s".repeat(bounds::SERVICE + 1))
        .sink(MemorySink::new())
        .without_spool()
        .build()
        .expect_err("refused");
    assert!(matches!(err, BuildError::ServiceTooLong(_)), "{err}");
}
