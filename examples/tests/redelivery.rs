//! Kafka delivers at least once: a service handles a redelivered command once, and its step records one
//! STARTED and one SUCCEEDED.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use saga_tracker::testing::TestKafka;
use saga_tracker::{MemorySink, StepStatus, Tracker};
use saga_tracker_examples::BrokerChoice;
use saga_tracker_examples::bus::{self, Kafka};
use saga_tracker_examples::saga::{CommandMsg, OrderLine, Phase, REGULAR_SKUS, ServiceName};
use saga_tracker_examples::services::{CommandScope, ServiceSet};

fn reserve(saga_id: &str) -> CommandMsg {
    CommandMsg {
        saga_id: saga_id.to_owned(),
        order_id: format!("order-of-{saga_id}"),
        step: "reserve_stock".to_owned(),
        phase: Phase::Execute,
        line: OrderLine {
            customer: "alice".to_owned(),
            sku: REGULAR_SKUS[0].to_owned(),
            qty: 1,
            amount_cents: 100,
        },
        traceparent: String::new(),
        failure: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_command_is_handled_once() {
    let test_kafka = TestKafka::start().expect("kafka");
    for topic in bus::all_topics() {
        test_kafka.create_topic(topic, 3).expect("topic");
    }
    let kafka =
        Kafka::connect(&BrokerChoice::External(test_kafka.brokers().to_owned())).expect("connect");
    let topic = bus::command_topic(ServiceName::Product);
    let start = BTreeMap::from([(
        ServiceName::Product,
        kafka.end_offsets(topic).expect("offsets"),
    )]);
    let sink = MemorySink::new();
    let tracker = Tracker::builder()
        .service("product-service")
        .sink(sink.clone())
        .without_spool()
        .build()
        .expect("tracker");
    let services = ServiceSet::start(
        &kafka,
        vec![(ServiceName::Product, tracker)],
        &start,
        &CommandScope::Run("saga-".into()),
    )
    .expect("start");
    // One key, so one partition, read in order: the first command, its redelivery, then another command.
    let producer = kafka.producer().expect("producer");
    let first = reserve("saga-redelivered");
    for command in [&first, &first, &reserve("saga-next")] {
        bus::send_json(&producer, topic, "one-partition", command)
            .await
            .expect("send");
    }
    let handled = services.services[0].handled.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while handled.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    services.stop(Duration::from_secs(10)).await.expect("stop");
    assert_eq!(
        handled.load(Ordering::Relaxed),
        2,
        "the redelivered command, read before the next one, was skipped"
    );
    let statuses: Vec<StepStatus> = sink
        .events_of("saga-redelivered")
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, [StepStatus::Started, StepStatus::Succeeded]);
    assert_eq!(sink.events_of("saga-next").len(), 2);
}
