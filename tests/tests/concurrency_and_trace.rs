//! Many concurrent sagas on a multi-threaded runtime, and the OpenTelemetry trace id in the events.

use std::collections::HashMap;

use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
use saga_tracker::{StepStatus, saga_step, with_default, with_default_async};
use saga_tracker_tests::{OrderSaga, Recorder};

/// A failure.
#[derive(Debug)]
pub struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

#[saga_step(OrderSaga, ReserveStock, saga_id = saga)]
async fn reserve(saga: String, n: u32) -> Result<u32, Refused> {
    tokio::task::yield_now().await;
    Ok(n)
}

#[saga_step(OrderSaga, ChargePayment, saga_id = saga)]
async fn charge(saga: String, n: u32) -> Result<u32, Refused> {
    tokio::task::yield_now().await;
    if n.is_multiple_of(7) {
        Err(Refused)
    } else {
        Ok(n)
    }
}

#[saga_step(OrderSaga, ConfirmOrder, saga_id = saga)]
fn confirm(saga: &str) -> Result<(), Refused> {
    Ok(())
}

#[test]
fn concurrent_sagas_keep_their_order() {
    let rec = Recorder::new("svc");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .expect("runtime");
    const SAGAS: u32 = 200;
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..SAGAS {
            let tracker = rec.tracker.clone();
            tasks.push(tokio::spawn(with_default_async(&tracker, async move {
                let saga = format!("saga-{n}");
                reserve(saga.clone(), n).await?;
                charge(saga.clone(), n).await?;
                confirm(&saga)
            })));
        }
        for task in tasks {
            let _ = task.await.expect("task ran");
        }
    });
    let mut by_saga: HashMap<String, Vec<(String, StepStatus)>> = HashMap::new();
    for e in rec.events() {
        by_saga
            .entry(e.saga_id)
            .or_default()
            .push((e.step, e.status));
    }
    assert_eq!(by_saga.len(), SAGAS as usize);
    for n in 0..SAGAS {
        let got = &by_saga[&format!("saga-{n}")];
        let mut want = vec![
            ("reserve_stock".to_owned(), StepStatus::Started),
            ("reserve_stock".to_owned(), StepStatus::Succeeded),
            ("charge_payment".to_owned(), StepStatus::Started),
        ];
        if n.is_multiple_of(7) {
            want.push(("charge_payment".to_owned(), StepStatus::Failed));
        } else {
            want.push(("charge_payment".to_owned(), StepStatus::Succeeded));
            want.push(("confirm".to_owned(), StepStatus::Started));
            want.push(("confirm".to_owned(), StepStatus::Succeeded));
        }
        assert_eq!(got, &want, "saga-{n}");
    }
}

#[test]
fn trace_id_of_the_surrounding_span_is_in_the_events() {
    let rec = Recorder::new("svc");
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("saga-tracker-tests");
    let trace_id = with_default(&rec.tracker, || {
        tracer.in_span("handle-order", |cx| {
            confirm("traced-1").expect("confirm succeeds");
            cx.span().span_context().trace_id().to_string()
        })
    });
    with_default(&rec.tracker, || {
        confirm("untraced-1").expect("confirm succeeds")
    });
    let events = rec.events();
    assert_eq!(events.len(), 4);
    assert_eq!(trace_id.len(), 32);
    for e in &events[..2] {
        assert_eq!(e.trace_id(), Some(trace_id.as_str()));
    }
    for e in &events[2..] {
        assert_eq!(e.trace_id(), None);
    }
}
