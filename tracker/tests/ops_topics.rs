//! `topics ensure`. The MockCluster implements neither CreateTopics, DescribeConfigs, AlterConfigs nor
//! CreatePartitions: on it, the test covers the drift report of existing (mock-created) topics and the
//! refusal to change them; creation and config changes run only against a real broker
//! (`SAGA_TRACKER_TEST_BROKERS`).

mod common;

use std::time::Duration;

use common::TestKafka;
use saga_tracker_service::ops::topics::{self, TopicsOptions};

fn options(kafka: &TestKafka, partitions: i32) -> TopicsOptions {
    TopicsOptions {
        brokers: kafka.brokers.clone(),
        kafka_properties: Vec::new(),
        topic: (kafka.topic.clone(), partitions),
        dlq_topic: (kafka.dlq_topic.clone(), 1),
        replication_factor: -1,
        retention_days: 30,
        apply: false,
        // the mock does not answer the admin requests it lacks: do not wait long for it
        timeout: Duration::from_secs(if kafka.is_mock() { 2 } else { 15 }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_topics_get_a_drift_report_and_are_not_changed() {
    let kafka = TestKafka::new().await;
    let reports = topics::ensure(&options(&kafka, 6)).await.expect("ensure");
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| !r.created));
    let main = &reports[0];
    assert_eq!(main.topic, kafka.topic);
    let partitions = main
        .drift
        .iter()
        .find(|d| d.setting == "partitions")
        .expect("partition drift");
    assert_eq!(
        (
            partitions.expected.as_str(),
            partitions.actual.as_str(),
            partitions.applied
        ),
        ("6", "3", false)
    );
    assert!(
        reports[1].drift.iter().all(|d| d.setting != "partitions"),
        "the DLQ has its 1 partition: {reports:?}"
    );
    if kafka.is_mock() {
        // the mock cannot describe configs: reported as unknown, never as fine
        for r in &reports {
            for key in ["retention.ms", "cleanup.policy"] {
                let d = r
                    .drift
                    .iter()
                    .find(|d| d.setting == key)
                    .expect("config drift");
                assert!(d.actual.starts_with("unknown"), "{d:?}");
                assert!(!d.applied);
            }
        }
        // changing needs the admin API the mock lacks: a clear error, nothing pretended
        let mut apply = options(&kafka, 6);
        apply.apply = true;
        let err = topics::ensure(&apply)
            .await
            .expect_err("mock cannot add partitions");
        assert!(err.to_string().contains(&kafka.topic), "{err}");
    } else {
        // a real broker: the test topics were created without the policy
        let retention = main
            .drift
            .iter()
            .find(|d| d.setting == "retention.ms")
            .expect("retention drift");
        assert_eq!(retention.expected, "2592000000");
        let mut apply = options(&kafka, 6);
        apply.apply = true;
        let applied = topics::ensure(&apply).await.expect("apply");
        assert!(applied.iter().all(|r| r.drift.iter().all(|d| d.applied)));
        let again = topics::ensure(&options(&kafka, 6)).await.expect("ensure");
        assert!(again.iter().all(|r| r.drift.is_empty()), "{again:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_topics_are_created_with_the_policy_or_fail_clearly() {
    let kafka = TestKafka::new().await;
    let mut o = options(&kafka, 4);
    o.topic.0 = format!("{}.new", kafka.topic);
    o.dlq_topic.0 = format!("{}.new", kafka.dlq_topic);
    let result = topics::ensure(&o).await;
    if kafka.is_mock() {
        // CreateTopics is not implemented by the mock
        let err = result.expect_err("mock cannot create topics");
        assert!(err.to_string().contains("create topic"), "{err}");
        assert_eq!(err.exit_code(), 2);
        return;
    }
    let created = result.expect("created");
    assert!(created.iter().all(|r| r.created));
    let again = topics::ensure(&o).await.expect("ensure");
    assert!(
        again.iter().all(|r| !r.created && r.drift.is_empty()),
        "{again:?}"
    );
    let mut bad = o.clone();
    bad.topic.1 = 0;
    assert_eq!(topics::ensure(&bad).await.expect_err("0").exit_code(), 2);
}
