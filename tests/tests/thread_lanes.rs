//! Events wait in their thread's lane until the tracker's worker takes them: none is lost when the thread exits,
//! a flush from any thread delivers every thread's pending events, a panic is recorded after earlier events of its
//! thread, a burst larger than a lane segment keeps each saga's order, and an async step that ends on another
//! thread than it started on (its end cannot be paired with its start in one lane) records both events whole.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use saga_tracker::{SagaEvent, StepStatus, saga_step, with_default};
use saga_tracker_tests::{OrderSaga, Recorder, YieldOnce, start_here_finish_elsewhere};

#[derive(Debug)]
struct Declined;

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("declined")
    }
}

#[saga_step(OrderSaga, ReserveStock, saga_id = saga)]
fn reserve(saga: &str) -> Result<(), Declined> {
    Ok(())
}

#[saga_step(OrderSaga, ChargePayment, saga_id = saga)]
fn charge(saga: &str, explode: bool) -> Result<(), Declined> {
    if explode {
        panic!("card reader on fire");
    }
    Ok(())
}

/// The events of `saga`, in delivery order, as `(step, status)`.
fn of(events: &[SagaEvent], saga: &str) -> Vec<(String, StepStatus)> {
    events
        .iter()
        .filter(|e| e.saga_id == saga)
        .map(|e| (e.step.clone(), e.status))
        .collect()
}

fn reserved() -> Vec<(String, StepStatus)> {
    vec![
        ("reserve_stock".to_owned(), StepStatus::Started),
        ("reserve_stock".to_owned(), StepStatus::Succeeded),
    ]
}

#[test]
fn a_thread_that_records_and_exits_without_flush_has_its_events_delivered() {
    let recorder = Recorder::new("lanes-exit");
    let tracker = recorder.tracker.clone();
    std::thread::spawn(move || {
        with_default(&tracker, || {
            for i in 0..10 {
                reserve(&format!("exit-{i}")).expect("reserve");
            }
        })
    })
    .join()
    .expect("thread");
    // No flush: the worker finds the lane of the exited thread on its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    while recorder.sink.events().len() < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let events = recorder.sink.events();
    assert_eq!(events.len(), 20, "{events:?}");
    for i in 0..10 {
        assert_eq!(of(&events, &format!("exit-{i}")), reserved());
    }
    assert_eq!(recorder.tracker.stats().lost, 0);
}

#[test]
fn a_flush_from_another_thread_delivers_every_threads_pending_events() {
    let recorder = Recorder::new("lanes-flush");
    let threads = 4;
    // Each thread records, then waits (alive, its lane not full) until the flush is done.
    let recorded = Arc::new(Barrier::new(threads + 1));
    let flushed = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (tracker, recorded, flushed) =
                (recorder.tracker.clone(), recorded.clone(), flushed.clone());
            std::thread::spawn(move || {
                with_default(&tracker, || {
                    for i in 0..3 {
                        reserve(&format!("flush-{t}-{i}")).expect("reserve");
                    }
                });
                recorded.wait();
                flushed.wait();
            })
        })
        .collect();
    recorded.wait();
    recorder
        .tracker
        .flush(Duration::from_secs(10))
        .expect("flush");
    let events = recorder.sink.events();
    flushed.wait();
    for handle in handles {
        handle.join().expect("thread");
    }
    assert_eq!(events.len(), threads * 3 * 2, "{events:?}");
    for t in 0..threads {
        for i in 0..3 {
            assert_eq!(of(&events, &format!("flush-{t}-{i}")), reserved());
        }
    }
}

#[test]
fn a_panic_in_a_step_on_a_thread_with_pending_events_is_recorded_after_them() {
    let recorder = Recorder::new("lanes-panic");
    let tracker = recorder.tracker.clone();
    let outcome = std::thread::spawn(move || {
        with_default(&tracker, || {
            reserve("panic-1").expect("reserve");
            charge("panic-1", false).expect("charge");
            // The lane holds four events now; the panic unwinds this thread.
            charge("panic-1", true)
        })
    })
    .join();
    assert!(outcome.is_err(), "the panic reaches the thread's joiner");
    let events = recorder.events();
    let statuses: Vec<_> = of(&events, "panic-1");
    assert_eq!(
        statuses,
        vec![
            ("reserve_stock".to_owned(), StepStatus::Started),
            ("reserve_stock".to_owned(), StepStatus::Succeeded),
            ("charge_payment".to_owned(), StepStatus::Started),
            ("charge_payment".to_owned(), StepStatus::Succeeded),
            ("charge_payment".to_owned(), StepStatus::Started),
            ("charge_payment".to_owned(), StepStatus::Failed),
        ]
    );
    let failed = events.last().expect("an event");
    let error = failed.error.as_ref().expect("an error");
    assert_eq!(error.kind, "panic");
    assert!(error.message.contains("card reader on fire"), "{error:?}");

    // The same on a thread that goes on after catching the panic.
    let recorder = Recorder::new("lanes-panic-caught");
    with_default(&recorder.tracker, || {
        reserve("panic-2").expect("reserve");
        let caught = catch_unwind(AssertUnwindSafe(|| charge("panic-2", true)));
        assert!(caught.is_err());
        reserve("panic-2").expect("reserve again");
    });
    let statuses: Vec<_> = of(&recorder.events(), "panic-2")
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    use StepStatus::{Failed, Started, Succeeded};
    assert_eq!(
        statuses,
        vec![Started, Succeeded, Started, Failed, Started, Succeeded]
    );
}

#[test]
fn a_burst_over_many_segments_keeps_each_sagas_order_and_loses_nothing() {
    let recorder = Recorder::new("lanes-burst");
    let threads = 3;
    let calls = 5_000; // 10 000 events per thread: about 20 segments each
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let tracker = recorder.tracker.clone();
            std::thread::spawn(move || {
                with_default(&tracker, || {
                    for i in 0..calls {
                        let saga = format!("burst-{t}-{}", i % 7);
                        if i % 2 == 0 {
                            reserve(&saga).expect("reserve");
                        } else {
                            charge(&saga, false).expect("charge");
                        }
                    }
                })
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread");
    }
    let events = recorder.events();
    assert_eq!(events.len(), threads * calls * 2);
    assert_eq!(recorder.tracker.stats().spooled, 0);
    for t in 0..threads {
        for s in 0..7 {
            let steps = of(&events, &format!("burst-{t}-{s}"));
            // Started/Succeeded pairs, alternating steps in call order.
            let expected: Vec<_> = (0..calls)
                .filter(|i| i % 7 == s)
                .flat_map(|i| {
                    let step = if i % 2 == 0 {
                        "reserve_stock"
                    } else {
                        "charge_payment"
                    };
                    [
                        (step.to_owned(), StepStatus::Started),
                        (step.to_owned(), StepStatus::Succeeded),
                    ]
                })
                .collect();
            assert_eq!(steps, expected, "saga burst-{t}-{s}");
        }
    }
}

#[saga_step(OrderSaga, ConfirmOrder, saga_id = saga, order_id = order, metadata(tenant = tenant))]
async fn ship(saga: String, order: String, tenant: u32, fail: bool) -> Result<(), Declined> {
    YieldOnce(false).await;
    if fail { Err(Declined) } else { Ok(()) }
}

#[test]
fn an_async_step_that_ends_on_another_thread_records_its_ids_on_both_events() {
    let recorder = Recorder::new("lanes-moved");
    // The start is paired with nothing on the other thread: its end goes whole, with the call's ids and extras.
    for (i, fail) in [(0, false), (1, true)] {
        let out = start_here_finish_elsewhere(
            &recorder.tracker,
            ship(format!("moved-{i}"), format!("order-{i}"), 7, fail),
        );
        assert_eq!(out.is_err(), fail);
    }
    // Calls that start and end on this thread still pair in between.
    with_default(&recorder.tracker, || reserve("moved-0")).expect("reserve");
    let events = recorder.events();
    for (i, terminal) in [(0, StepStatus::Succeeded), (1, StepStatus::Failed)] {
        let saga = format!("moved-{i}");
        let ship: Vec<_> = events
            .iter()
            .filter(|e| e.saga_id == saga && e.step == "confirm")
            .collect();
        assert_eq!(
            ship.iter().map(|e| e.status).collect::<Vec<_>>(),
            [StepStatus::Started, terminal],
            "{events:?}"
        );
        for e in &ship {
            assert_eq!(e.order_id.as_deref(), Some(format!("order-{i}").as_str()));
            assert_eq!(
                e.metadata.get("tenant").map(String::as_str),
                Some("7"),
                "{e:?}"
            );
        }
        assert!(ship[1].duration_micros.is_some());
        if terminal == StepStatus::Failed {
            assert_eq!(
                ship[1].error.as_ref().map(|e| e.message.as_str()),
                Some("declined")
            );
        }
    }
    assert_eq!(of(&events, "moved-0").len(), 4, "{events:?}");
    let stats = recorder.tracker.stats();
    assert_eq!((stats.recorded, stats.lost), (6, 0), "{stats:?}");
}

/// A sink whose `send` waits while the test holds its gate (the worker is stuck in it), then takes `delay` per
/// event (as librdkafka's full queue makes the worker wait).
struct Gate {
    gate: std::sync::Mutex<()>,
    delay: Duration,
    sink: saga_tracker::MemorySink,
}

impl saga_tracker::Sink for Gate {
    fn send(
        &self,
        envelope: saga_tracker::sink::Envelope<'_>,
        delivery: saga_tracker::sink::Delivery,
    ) {
        drop(
            self.gate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        std::thread::sleep(self.delay);
        self.sink.send(envelope, delivery);
    }
    fn flush(&self, timeout: Duration) -> Result<(), saga_tracker::sink::SinkError> {
        self.sink.flush(timeout)
    }
    fn describe(&self) -> String {
        "gate".into()
    }
}

/// A tracker with a queue capacity of `capacity` events, sending to `gate`, spooling into `spool`.
fn gated(gate: &Arc<Gate>, spool: &tempfile::TempDir, capacity: usize) -> saga_tracker::Tracker {
    saga_tracker::Tracker::builder()
        .service("lanes-bound")
        .sink(gate.clone())
        .spool_dir(spool.path())
        .spool_fsync(false)
        .queue_capacity(capacity)
        .build()
        .expect("build")
}

/// Records `calls` step calls on this thread.
fn record_calls(tracker: &saga_tracker::Tracker, calls: usize) {
    with_default(tracker, || {
        for i in 0..calls {
            reserve(&format!("bound-{i}")).expect("reserve");
        }
    });
}

/// After a flush, every event was delivered or spooled, none lost.
fn assert_all_kept(tracker: &saga_tracker::Tracker, events: u64) {
    tracker.flush(Duration::from_secs(60)).expect("flush");
    let stats = tracker.stats();
    assert_eq!(stats.delivered + stats.spooled, events, "{stats:?}");
    assert_eq!(stats.lost, 0, "{stats:?}");
}

#[test]
fn step_calls_past_the_queue_capacity_spool_on_the_caller_while_the_worker_is_stuck() {
    let gate = Arc::new(Gate {
        gate: std::sync::Mutex::new(()),
        delay: Duration::ZERO,
        sink: saga_tracker::MemorySink::new(),
    });
    let spool = tempfile::tempdir().expect("tempdir");
    let capacity = 2_048;
    let tracker = gated(&gate, &spool, capacity);
    let calls = 10_000;
    let held = gate.gate.lock().expect("lock");
    record_calls(&tracker, calls);
    // The worker is stuck in the sink: what the lanes and the worker hold together stays within the capacity
    // (plus one segment per thread and one event the worker is sending), the rest is in the spool already.
    let spooled = tracker.stats().spooled;
    let events = 2 * calls as u64;
    assert!(
        spooled >= events - capacity as u64 - 2 * 512 - 1,
        "only {spooled} of {events} events spooled while the worker was stuck: the lanes went past their capacity"
    );
    drop(held);
    assert_all_kept(&tracker, events);
}

#[test]
fn step_calls_past_the_queue_capacity_spool_on_the_caller_while_the_worker_is_slow() {
    let gate = Arc::new(Gate {
        gate: std::sync::Mutex::new(()),
        delay: Duration::from_micros(50),
        sink: saga_tracker::MemorySink::new(),
    });
    let spool = tempfile::tempdir().expect("tempdir");
    let capacity = 2_048;
    let tracker = gated(&gate, &spool, capacity);
    let calls = 10_000;
    record_calls(&tracker, calls);
    // Whatever the worker has not delivered or spooled yet is in memory: within the capacity, plus one segment
    // per thread and one being sent.
    let stats = tracker.stats();
    let events = 2 * calls as u64;
    let in_memory = events - stats.spooled - stats.delivered;
    assert!(
        in_memory <= capacity as u64 + 2 * 512 + 1,
        "{in_memory} events held in memory with a queue capacity of {capacity}: {stats:?}"
    );
    assert_all_kept(&tracker, events);
}
