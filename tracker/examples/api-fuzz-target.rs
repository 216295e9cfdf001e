//! A tracker service with data behind a token, for API fuzzing (`scripts/api-fuzz`): a librdkafka MockCluster
//! in this process, the service on a PostgreSQL schema of its own, and a few sagas (succeeded, compensated,
//! compensation failed, running) ingested before it says `READY <base URL>` on stdout. It serves until its
//! standard input closes (or Ctrl-C), then stops and drops the schema.
//!
//! `cargo run -p saga-tracker-service --example api-fuzz-target -- --database-url URL --token T`

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_tracker_core::{SagaEvent, StepError, StepStatus};
use saga_tracker_service::{Assignment, Config, Service};

/// The flags.
#[derive(Debug, Parser)]
struct Args {
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// The bearer token of the API.
    #[arg(long)]
    token: String,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

const TOPIC: &str = "saga.tracker";

fn sagas() -> Vec<SagaEvent> {
    use StepStatus::*;
    let plans: [(&str, &[(&str, StepStatus)]); 4] = [
        (
            "fuzz-ok",
            &[("reserve_stock", Started), ("reserve_stock", Succeeded)],
        ),
        (
            "fuzz-compensated",
            &[
                ("reserve_stock", Started),
                ("reserve_stock", Succeeded),
                ("charge_payment", Started),
                ("charge_payment", Failed),
                ("reserve_stock", CompensationStarted),
                ("reserve_stock", Compensated),
            ],
        ),
        (
            "fuzz-compensation-failed",
            &[
                ("reserve_stock", Started),
                ("reserve_stock", Succeeded),
                ("charge_payment", Failed),
                ("reserve_stock", CompensationFailed),
            ],
        ),
        ("fuzz-running", &[("reserve_stock", Started)]),
    ];
    let mut t = 1_732_406_400_000_000;
    let mut out = Vec::new();
    for (saga_id, steps) in plans {
        for (step, status) in steps {
            t += 1_000;
            let failed = matches!(status, Failed | CompensationFailed);
            out.push(SagaEvent {
                event_id: uuid::Uuid::now_v7(),
                idempotency_key: SagaEvent::idempotency_key_for(saga_id, step, *status, 1),
                saga_id: saga_id.to_owned(),
                saga_type: "OrderSaga".to_owned(),
                step: (*step).to_owned(),
                status: *status,
                attempt: 1,
                order_id: Some(format!("order-{saga_id}")),
                service: "order-service".to_owned(),
                recorded_at: t,
                duration_micros: status.is_terminal().then_some(1_500),
                error: failed.then(|| StepError::new("Declined", "card declined")),
                metadata: BTreeMap::from([(
                    "traceId".to_owned(),
                    "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
                )]),
                step_index: None,
                step_count: None,
                compensable: None,
                cause_idempotency_key: None,
            });
        }
    }
    out
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-fuzz-target: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(TOPIC, 3, 1)?;
    cluster.create_topic("saga.tracker.dlq", 1, 1)?;
    let brokers = cluster.bootstrap_servers();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.timeout.ms", "10000")
        .create()?;
    let events = sagas();
    for e in &events {
        producer
            .send(
                FutureRecord::to(TOPIC)
                    .key(&e.saga_id)
                    .payload(&saga_tracker_core::codec::encode(e)),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    let schema = format!("api_fuzz_{}", uuid::Uuid::now_v7().simple());
    let mut config = Config::new(&args.database_url, &brokers);
    config.database_schema = Some(schema);
    config.database_max_connections = 4;
    config.assignment = Assignment::AssignAll;
    config.listen = args.listen;
    config.api_token = Some(args.token);
    config.batch_linger_ms = 20;
    config.metrics_refresh_ms = 200;
    config.kafka_properties = vec![("log_level".to_owned(), "3".to_owned())];
    let service = Service::start(config).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while service.store().event_count().await? < events.len() as i64 {
        if tokio::time::Instant::now() > deadline {
            return Err("the sagas were not ingested within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("READY http://{}", service.addr());

    // Until standard input closes (the script holds it open) or Ctrl-C.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
    });
    tokio::select! {
        _ = stdin_closed => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let store = service.store().clone();
    service.shutdown().await;
    store.drop_schema().await?;
    Ok(())
}
