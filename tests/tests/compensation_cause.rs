//! `#[saga_compensation]` events carry the failure they answer (schema v2 `causeIdempotencyKey`): from the
//! context argument, from a `Cause` scope, or from the saga's last failure recorded in this process.

use std::fmt;

use saga_tracker::{
    Cause, SagaContext, SagaEvent, StepStatus, saga_compensation, saga_step, with_default,
    with_default_async,
};
use saga_tracker_tests::{OrderSaga, Recorder};

/// Why a step failed.
#[derive(Debug)]
pub struct Declined;

impl fmt::Display for Declined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("declined")
    }
}

#[saga_step(OrderSaga, ChargePayment, saga_id = saga_id, attempt = attempt)]
fn charge(saga_id: &str, attempt: u32) -> Result<(), Declined> {
    Err(Declined)
}

#[saga_compensation(OrderSaga, ReserveStock)]
fn release(#[saga_id] saga_id: &str) -> Result<(), Declined> {
    let _ = saga_id;
    Ok(())
}

#[saga_compensation(OrderSaga, ReserveStock, saga_id = saga_id)]
async fn release_async(saga_id: String) -> Result<(), Declined> {
    let _ = saga_id;
    Ok(())
}

/// A compensation command that carries the failure it answers.
pub struct CompensateCmd {
    /// The saga.
    pub saga_id: String,
    /// The `FAILED` event's idempotency key.
    pub failure: String,
}

impl SagaContext for CompensateCmd {
    fn saga_id(&self) -> &str {
        &self.saga_id
    }
    fn cause(&self) -> Option<&str> {
        Some(&self.failure)
    }
}

#[saga_compensation(OrderSaga, ReserveStock)]
fn release_by_command(cmd: &CompensateCmd) -> Result<(), Declined> {
    let _ = cmd;
    Ok(())
}

fn causes(events: &[SagaEvent]) -> Vec<(StepStatus, Option<&str>)> {
    events
        .iter()
        .map(|e| (e.status, e.cause_idempotency_key.as_deref()))
        .collect()
}

#[test]
fn a_compensation_after_a_failure_in_this_process_names_that_failure() {
    let rec = Recorder::new("svc");
    with_default(&rec.tracker, || {
        let _ = charge("cause-local", 2);
        release("cause-local")
    })
    .expect("released");
    let events = rec.events();
    assert_eq!(
        causes(&events),
        vec![
            (StepStatus::Started, None),
            (StepStatus::Failed, None),
            (
                StepStatus::CompensationStarted,
                Some("cause-local:charge_payment:FAILED:2")
            ),
            (
                StepStatus::Compensated,
                Some("cause-local:charge_payment:FAILED:2")
            ),
        ]
    );
    assert_eq!(
        events[1].idempotency_key,
        "cause-local:charge_payment:FAILED:2"
    );
}

#[test]
fn a_cause_scope_or_the_context_names_a_failure_recorded_elsewhere() {
    let rec = Recorder::new("svc");
    // the failure happened in another service: the orchestrator passes it with the compensation command
    let cause = Cause::failure("cause-remote", "charge_payment", 1);
    with_default(&rec.tracker, || cause.run(|| release("cause-remote"))).expect("released");
    futures::executor::block_on(with_default_async(
        &rec.tracker,
        cause.clone().scope(release_async("cause-remote".into())),
    ))
    .expect("released");
    let cmd = CompensateCmd {
        saga_id: "cause-remote".into(),
        failure: "cause-remote:charge_payment:FAILED:3".into(),
    };
    // the context wins over the scope
    with_default(&rec.tracker, || cause.run(|| release_by_command(&cmd))).expect("released");
    let events = rec.events();
    let keys: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.cause_idempotency_key.as_deref())
        .collect();
    let scoped = Some("cause-remote:charge_payment:FAILED:1");
    let from_context = Some("cause-remote:charge_payment:FAILED:3");
    assert_eq!(
        keys,
        vec![scoped, scoped, scoped, scoped, from_context, from_context]
    );
    // without any of them, no cause: the tracker links by time order
    let rec = Recorder::new("svc");
    with_default(&rec.tracker, || release("cause-none")).expect("released");
    assert!(
        rec.events()
            .iter()
            .all(|e| e.cause_idempotency_key.is_none())
    );
}
