//! Integer and UUID saga ids travel unformatted from the caller to the tracker's worker, which writes them out: the
//! events must say exactly what they said when the caller formatted the id (the same sagaId, message key and
//! idempotency keys as the same step given the id as text), on every path — paired in a lane, a failure (which the
//! caller remembers for compensations), a panic, and an async step that ends on another thread (its terminal event
//! goes whole).

use std::panic::{AssertUnwindSafe, catch_unwind};

use saga_tracker::sink::RecordedMessage;
use saga_tracker::{SagaEvent, StepStatus, saga_step, with_default};
use saga_tracker_tests::{OrderSaga, Recorder, YieldOnce, start_here_finish_elsewhere};

#[derive(Debug)]
struct Declined;

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("declined")
    }
}

/// What a step does: succeed, fail or panic.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Fail,
    Panic,
}

fn run(outcome: Outcome) -> Result<(), Declined> {
    match outcome {
        Outcome::Ok => Ok(()),
        Outcome::Fail => Err(Declined),
        Outcome::Panic => panic!("boom"),
    }
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn by_text(id: &str, outcome: Outcome) -> Result<(), Declined> {
    run(outcome)
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn by_u64(id: u64, outcome: Outcome) -> Result<(), Declined> {
    run(outcome)
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn by_i64(id: i64, outcome: Outcome) -> Result<(), Declined> {
    run(outcome)
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn by_u8(id: u8, outcome: Outcome) -> Result<(), Declined> {
    run(outcome)
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn by_u128(id: u128, outcome: Outcome) -> Result<(), Declined> {
    run(outcome)
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn by_i128(id: i128, outcome: Outcome) -> Result<(), Declined> {
    run(outcome)
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn by_usize(id: usize, outcome: Outcome) -> Result<(), Declined> {
    run(outcome)
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn by_uuid(id: uuid::Uuid, outcome: Outcome) -> Result<(), Declined> {
    run(outcome)
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn by_option(id: Option<&u32>, outcome: Outcome) -> Result<(), Declined> {
    run(outcome)
}

#[saga_step(OrderSaga, ChargePayment, saga_id = id)]
async fn charge_by_text(id: String, fail: bool) -> Result<(), Declined> {
    YieldOnce(false).await;
    if fail { Err(Declined) } else { Ok(()) }
}

#[saga_step(OrderSaga, ChargePayment, saga_id = id)]
async fn charge_by_i64(id: i64, fail: bool) -> Result<(), Declined> {
    YieldOnce(false).await;
    if fail { Err(Declined) } else { Ok(()) }
}

/// A step call with its outcome given.
type Record = Box<dyn Fn(Outcome) -> Result<(), Declined>>;

/// The messages of a recording, comparable: `(key, event)`.
type Comparable = Vec<(String, SagaEvent)>;

/// A message with what differs between two recordings of the same transition cleared: the event id and the times.
fn comparable(message: &RecordedMessage) -> (String, SagaEvent) {
    let mut event = message.event.clone();
    event.event_id = uuid::Uuid::nil();
    event.recorded_at = 0;
    event.duration_micros = event.duration_micros.map(|_| 0);
    (message.key.clone(), event)
}

/// Records the steps `record` makes with its id, and the same steps given `text`, each in a tracker of its own;
/// returns both, comparable.
fn both(text: &str, record: impl Fn(Outcome) -> Result<(), Declined>) -> (Comparable, Comparable) {
    let calls = |record: &dyn Fn(Outcome) -> Result<(), Declined>| {
        let recorder = Recorder::new("raw-ids");
        with_default(&recorder.tracker, || {
            assert!(record(Outcome::Ok).is_ok());
            assert!(record(Outcome::Fail).is_err());
            let panicked = catch_unwind(AssertUnwindSafe(|| record(Outcome::Panic)));
            assert!(panicked.is_err());
        });
        recorder.events();
        let messages: Vec<_> = recorder.sink.messages().iter().map(comparable).collect();
        let stats = recorder.tracker.stats();
        assert_eq!((stats.recorded, stats.lost), (6, 0), "{stats:?}");
        messages
    };
    (calls(&record), calls(&|outcome| by_text(text, outcome)))
}

#[test]
fn integer_and_uuid_saga_ids_are_written_out_as_the_same_text_as_before() {
    let uuid = uuid::Uuid::from_u128(0x0190c3e2_5d4f_7c1a_9b2e_1234567890ab);
    let cases: Vec<(&str, Record)> = vec![
        ("0", Box::new(|o| by_u64(0, o))),
        ("18446744073709551615", Box::new(|o| by_u64(u64::MAX, o))),
        ("42", Box::new(|o| by_i64(42, o))),
        ("-7", Box::new(|o| by_i64(-7, o))),
        ("-9223372036854775808", Box::new(|o| by_i64(i64::MIN, o))),
        ("255", Box::new(|o| by_u8(255, o))),
        (
            "340282366920938463463374607431768211455",
            Box::new(|o| by_u128(u128::MAX, o)),
        ),
        (
            // 40 bytes: over the inline limit, shared
            "-170141183460469231731687303715884105728",
            Box::new(|o| by_i128(i128::MIN, o)),
        ),
        ("123456789", Box::new(|o| by_usize(123_456_789, o))),
        (
            "0190c3e2-5d4f-7c1a-9b2e-1234567890ab",
            Box::new(move |o| by_uuid(uuid, o)),
        ),
        ("17", Box::new(|o| by_option(Some(&17), o))),
        ("saga-text-1", Box::new(|o| by_text("saga-text-1", o))),
    ];
    for (text, record) in cases {
        let (raw, formatted) = both(text, record);
        assert_eq!(raw.len(), 6, "{text}: {raw:?}");
        assert_eq!(raw, formatted, "{text}");
        for (key, event) in &raw {
            assert_eq!((key.as_str(), event.saga_id.as_str()), (text, text));
            assert!(event.idempotency_key.starts_with(&format!("{text}:")));
        }
        let statuses: Vec<_> = raw.iter().map(|(_, e)| e.status).collect();
        use StepStatus::*;
        assert_eq!(
            statuses,
            [Started, Succeeded, Started, Failed, Started, Failed],
            "{text}"
        );
    }
}

#[test]
fn an_integer_saga_id_of_an_async_step_that_ends_on_another_thread_is_written_out_on_both_events() {
    let record = |fail: bool, by_text: bool| {
        let recorder = Recorder::new("raw-ids-moved");
        let out = if by_text {
            start_here_finish_elsewhere(&recorder.tracker, charge_by_text("-12".into(), fail))
        } else {
            start_here_finish_elsewhere(&recorder.tracker, charge_by_i64(-12, fail))
        };
        assert_eq!(out.is_err(), fail);
        recorder.events();
        recorder
            .sink
            .messages()
            .iter()
            .map(comparable)
            .collect::<Vec<_>>()
    };
    for fail in [false, true] {
        let raw = record(fail, false);
        assert_eq!(raw.len(), 2, "{raw:?}");
        assert_eq!(raw, record(fail, true));
        for (key, event) in &raw {
            assert_eq!((key.as_str(), event.saga_id.as_str()), ("-12", "-12"));
        }
    }
}
