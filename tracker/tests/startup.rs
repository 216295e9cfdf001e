//! Start-up failures are reported as errors, not panics.

mod common;

use common::{TestDb, TestKafka};
use saga_tracker_service::{ConfigError, Service, StartError, StoreError};

#[tokio::test(flavor = "multi_thread")]
async fn invalid_configuration_is_refused() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let mut config = kafka.config(&db, "startup-test");
    config.dlq_topic = config.topic.clone();
    let err = Service::start(config).await.expect_err("refused");
    assert!(
        matches!(err, StartError::Config(ConfigError::DlqIsSource(_))),
        "{err}"
    );
    // a trace link template that is not an http(s) URL with {traceId} (the console would link to it)
    for template in [
        "javascript:alert(1)//{traceId}",
        "https://tempo.example/trace/",
    ] {
        let mut config = kafka.config(&db, "startup-test");
        config.trace_url_template = Some(template.into());
        let err = Service::start(config).await.expect_err("refused");
        assert!(
            matches!(err, StartError::Config(ConfigError::TraceTemplate(_))),
            "{template}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_database_url_is_reported() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let mut config = kafka.config(&db, "startup-test");
    config.database_url = "postgres://postgres@127.0.0.1:notaport/test".into();
    let err = Service::start(config).await.expect_err("refused");
    assert!(
        matches!(err, StartError::Store(StoreError::Url(_))),
        "{err}"
    );

    let mut config = kafka.config(&db, "startup-test");
    config.database_url = "postgres://postgres@127.0.0.1:1/test".into();
    let err = Service::start(config).await.expect_err("refused");
    assert!(
        matches!(err, StartError::Store(StoreError::Connect(_))),
        "{err}"
    );
    assert!(
        err.to_string().contains("cannot connect to PostgreSQL"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_idempotent_across_restarts() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    for _ in 0..2 {
        let service = Service::start(kafka.config(&db, "startup-test"))
            .await
            .expect("service starts");
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(service.store().pool())
                .await
                .expect("migrations table in the test schema");
        assert_eq!(
            applied,
            saga_tracker_service::db::MIGRATOR.iter().count() as i64
        );
        service.shutdown().await;
    }
}
