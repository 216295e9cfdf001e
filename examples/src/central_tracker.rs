//! `--with-tracker`: the central tracker service (`saga-tracker-service`) running in-process beside the demo's
//! services, on the same Kafka, consuming this run's part of `saga.tracker` into a PostgreSQL schema of its own
//! (`saga_demo_<run id>`), and serving its HTTP API on an ephemeral port.
//!
//! After the sagas, the demo waits until the service has stored every event of the run, asks the API for the
//! failed saga's summary and timeline, reads a few `/metrics` lines, shuts the service down and drops the schema
//! (unless `--keep-tracker-data`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Deserialize;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use uuid::Uuid;

use saga_tracker_service::{Assignment, Config, Service, StartError, StoreError};

use crate::DemoError;
use crate::bus::{Kafka, Offsets, TRACKER_TOPIC};
use crate::report::summary::ms;
use crate::report::table::Table;

/// The database when neither `--database-url` nor `DATABASE_URL` is given.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// How long connecting to PostgreSQL may take before it counts as unreachable.
pub const DATABASE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the service gets to store every event of the run once the demo has read them back.
pub const INGEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one API request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// `--with-tracker` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerOptions {
    /// PostgreSQL URL (`--database-url` / `DATABASE_URL`).
    pub database_url: String,
    /// Keep the run's schema instead of dropping it at the end (`--keep-tracker-data`).
    pub keep_data: bool,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        TrackerOptions {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            keep_data: false,
        }
    }
}

/// The URL with its password (if any) replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The tracker service of this run.
#[derive(Debug)]
pub struct InProcessTracker {
    service: Service,
    schema: String,
    base_url: String,
    client: reqwest::Client,
}

impl InProcessTracker {
    /// Checks the database answers, points a fresh consumer group at `start` (where this run's part of
    /// `saga.tracker` begins), and starts the service on `kafka`, storing into schema `saga_demo_<run_id>`.
    pub async fn start(
        options: &TrackerOptions,
        kafka: &Kafka,
        run_id: &str,
        start: &Offsets,
    ) -> Result<InProcessTracker, DemoError> {
        check_database(&options.database_url).await?;
        let schema = format!("saga_demo_{run_id}");
        let group = format!("order-saga-demo-tracker-{run_id}");
        commit_start_offsets(kafka.brokers(), &group, start)?;
        let mut config = Config::new(&options.database_url, kafka.brokers());
        config.database_schema = Some(schema.clone());
        config.database_max_connections = 4;
        config.topic = TRACKER_TOPIC.to_owned();
        config.group_id = group;
        config.assignment = Assignment::AssignAll;
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.batch_linger_ms = 20;
        config.stats_interval_ms = 1000;
        config.kafka_properties = vec![("log_level".to_owned(), "3".to_owned())];
        let service = Service::start(config).await.map_err(|e| match e {
            StartError::Store(StoreError::Url(_) | StoreError::Connect(_)) => {
                DemoError::TrackerDatabase {
                    url: redact_url(&options.database_url),
                    reason: e.to_string(),
                }
            }
            other => DemoError::TrackerService(format!("cannot start: {other}")),
        })?;
        let base_url = format!("http://{}", service.addr());
        let client = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| DemoError::TrackerService(format!("HTTP client: {e}")))?;
        Ok(InProcessTracker {
            service,
            schema,
            base_url,
            client,
        })
    }

    /// The API's base URL, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The PostgreSQL schema holding this run's data.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Waits until the service has stored every event in `event_ids` (the run's events as read back from
    /// Kafka), for up to `timeout`.
    pub async fn wait_for_events(
        &self,
        event_ids: &HashSet<Uuid>,
        timeout: Duration,
    ) -> Result<Duration, DemoError> {
        let ids: Vec<Uuid> = event_ids.iter().copied().collect();
        let started = Instant::now();
        loop {
            let stored: i64 =
                sqlx::query_scalar("SELECT count(*) FROM saga_events WHERE event_id = ANY($1)")
                    .bind(&ids)
                    .fetch_one(self.service.store().pool())
                    .await
                    .map_err(|e| {
                        DemoError::TrackerService(format!("counting stored events: {e}"))
                    })?;
            if stored >= ids.len() as i64 {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= timeout {
                return Err(DemoError::TrackerService(format!(
                    "stored only {stored} of the run's {} events within {timeout:?} (ingest errors so far: database {}, kafka {})",
                    ids.len(),
                    self.service.metrics().errors_total("database"),
                    self.service.metrics().errors_total("kafka"),
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get(&self, path: &str) -> Result<String, DemoError> {
        let url = format!("{}{path}", self.base_url);
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| DemoError::TrackerService(format!("GET {url}: {e}")))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| DemoError::TrackerService(format!("GET {url}: {e}")))?;
        if !status.is_success() {
            return Err(DemoError::TrackerService(format!(
                "GET {url}: {status}: {body}"
            )));
        }
        Ok(body)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, DemoError> {
        let body = self.get(path).await?;
        serde_json::from_str(&body).map_err(|e| {
            DemoError::TrackerService(format!(
                "GET {}{path}: unexpected JSON ({e})",
                self.base_url
            ))
        })
    }

    /// Asks the API for `saga_id`'s summary and timeline, and reads the headline `/metrics` lines.
    pub async fn fetch(
        &self,
        saga_id: &str,
        ingest_wait: Duration,
        run_events: usize,
    ) -> Result<TrackerReport, DemoError> {
        let saga: ApiSaga = self.get_json(&format!("/api/v1/sagas/{saga_id}")).await?;
        let timeline: ApiTimeline = self
            .get_json(&format!("/api/v1/sagas/{saga_id}/timeline"))
            .await?;
        let metrics = self.get("/metrics").await?;
        Ok(TrackerReport {
            api_url: self.base_url.clone(),
            schema: self.schema.clone(),
            run_events,
            ingest_wait,
            saga,
            timeline: timeline.events,
            metrics_lines: headline_metrics(&metrics),
            kept: false,
        })
    }

    /// Stops consuming and serving, then drops the schema unless `keep_data`. Returns whether it was kept.
    pub async fn stop(self, keep_data: bool) -> Result<bool, DemoError> {
        let store = self.service.store().clone();
        self.service.shutdown().await;
        let result = if keep_data {
            Ok(true)
        } else {
            sqlx::query(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .execute(store.pool())
            .await
            .map(|_| false)
            .map_err(|e| {
                DemoError::TrackerService(format!("cannot drop schema {}: {e}", self.schema))
            })
        };
        store.pool().close().await;
        result
    }
}

/// Connects once, so an unreachable or misconfigured database is reported before any saga runs.
async fn check_database(url: &str) -> Result<(), DemoError> {
    let error = |reason: String| DemoError::TrackerDatabase {
        url: redact_url(url),
        reason,
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(error(
            "invalid URL: expected postgres://user@host:port/database".into(),
        ));
    }
    let options =
        PgConnectOptions::from_str(url).map_err(|e| error(format!("invalid URL: {e}")))?;
    let connection = tokio::time::timeout(
        DATABASE_CONNECT_TIMEOUT,
        PgConnection::connect_with(&options),
    )
    .await
    .map_err(|_| error(format!("no answer within {DATABASE_CONNECT_TIMEOUT:?}")))?
    .map_err(|e| error(e.to_string()))?;
    let _ = connection.close().await;
    Ok(())
}

/// Commits `start` as the offsets of `group`, so the service (which resumes from its group's committed offsets)
/// reads only what this run records, also on a shared broker with older events.
fn commit_start_offsets(brokers: &str, group: &str, start: &Offsets) -> Result<(), DemoError> {
    let error = |e: rdkafka::error::KafkaError| {
        DemoError::Kafka(format!(
            "cannot set the tracker service's start offsets: {e}"
        ))
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Error)
        .create()
        .map_err(error)?;
    let mut offsets = TopicPartitionList::new();
    for (&partition, &offset) in start {
        offsets
            .add_partition_offset(TRACKER_TOPIC, partition, Offset::Offset(offset))
            .map_err(error)?;
    }
    consumer.commit(&offsets, CommitMode::Sync).map_err(error)
}

/// The `/metrics` lines a person looks at first: events ingested (and their total) and sagas per state.
fn headline_metrics(text: &str) -> Vec<String> {
    use saga_tracker_service::metrics::{EVENTS_INGESTED, SAGAS};
    let value = |line: &str| {
        line.rsplit_once(' ')
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
    };
    let ingested: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{EVENTS_INGESTED}{{")))
        .collect();
    let total: f64 = ingested.iter().filter_map(|l| value(l)).sum();
    let mut lines: Vec<String> = ingested.iter().take(2).map(|l| (*l).to_owned()).collect();
    if ingested.len() > 2 {
        lines.push(format!(
            "... {} more {EVENTS_INGESTED} series ({total} events in all)",
            ingested.len() - 2
        ));
    }
    lines.extend(
        text.lines()
            .filter(|l| l.starts_with(&format!("{SAGAS}{{")))
            .filter(|l| value(l).is_some_and(|v| v > 0.0))
            .map(str::to_owned),
    );
    lines
}

/// A saga as `GET /api/v1/sagas/{id}` serves it (the fields the demo shows).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ApiSaga {
    /// The saga instance.
    pub saga_id: String,
    /// The saga type.
    pub saga_type: String,
    /// The derived state, e.g. `COMPENSATED`.
    pub status: String,
    /// The business order id.
    pub order_id: Option<String>,
    /// The step whose failure made the saga fail.
    pub failed_step: Option<String>,
    /// Compensations started and not finished.
    pub pending_compensations: Vec<String>,
    /// Every service that recorded an event.
    pub services: Vec<String>,
    /// How many events the saga has.
    pub event_count: i64,
}

#[derive(Debug, Deserialize)]
struct ApiTimeline {
    events: Vec<ApiEvent>,
}

/// One entry of `GET /api/v1/sagas/{id}/timeline`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ApiEvent {
    /// The event id (the one the producer recorded).
    pub event_id: Uuid,
    /// The step.
    pub step: String,
    /// The status, e.g. `FAILED`.
    pub status: String,
    /// Which attempt.
    pub attempt: i32,
    /// The recording service.
    pub service: String,
    /// When it happened (producer clock).
    pub recorded_at: DateTime<Utc>,
    /// How long the handler ran.
    pub duration_micros: Option<i64>,
    /// The error kind, on failures.
    pub error_kind: Option<String>,
    /// The error message, on failures.
    pub error_message: Option<String>,
    /// On a compensation: the failure that triggered it.
    #[serde(default)]
    pub triggered_by: Option<Uuid>,
    /// On a failure: the compensations it triggered.
    #[serde(default)]
    pub triggered_compensations: Vec<Uuid>,
}

/// What the tracker service said about the run.
#[derive(Debug, Clone)]
pub struct TrackerReport {
    /// The API's base URL (gone once the demo ends).
    pub api_url: String,
    /// The PostgreSQL schema the service stored into.
    pub schema: String,
    /// Events of this run the service stored.
    pub run_events: usize,
    /// How long the demo waited for the service to store them after reading them back.
    pub ingest_wait: Duration,
    /// `GET /api/v1/sagas/{id}` of the shown saga.
    pub saga: ApiSaga,
    /// `GET /api/v1/sagas/{id}/timeline` of the shown saga.
    pub timeline: Vec<ApiEvent>,
    /// Headline `/metrics` lines.
    pub metrics_lines: Vec<String>,
    /// Whether the schema was kept (`--keep-tracker-data`) rather than dropped.
    pub kept: bool,
}

impl TrackerReport {
    /// The tracker section of the printed report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.saga;
        let _ = writeln!(
            out,
            "Tracker service (in-process saga-tracker-service, API {}, schema {}): stored all {} events of this run ({:.2} s after read-back)",
            self.api_url,
            self.schema,
            self.run_events,
            self.ingest_wait.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "Timeline of {} as served by GET {}/api/v1/sagas/{}/timeline",
            s.saga_id, self.api_url, s.saga_id
        );
        let _ = writeln!(
            out,
            "  derived state {} (failed step {}, pending compensations {}), {} events from {}",
            s.status,
            s.failed_step.as_deref().unwrap_or("-"),
            if s.pending_compensations.is_empty() {
                "none".to_owned()
            } else {
                s.pending_compensations.join(", ")
            },
            s.event_count,
            s.services.join(", ")
        );
        let first = self.timeline.first().map(|e| e.recorded_at);
        let index_of = |id: &Uuid| {
            self.timeline
                .iter()
                .position(|e| e.event_id == *id)
                .map_or_else(|| "?".to_owned(), |i| format!("#{}", i + 1))
        };
        let mut table = Table::new(&[
            "#", "offset", "service", "step", "status", "duration", "error", "link",
        ])
        .right(0)
        .right(1)
        .right(5);
        for (i, e) in self.timeline.iter().enumerate() {
            let offset = first
                .and_then(|f| (e.recorded_at - f).num_microseconds())
                .unwrap_or(0);
            let error = match (&e.error_kind, &e.error_message) {
                (Some(kind), Some(message)) => format!("{kind}: {message}"),
                (Some(text), None) | (None, Some(text)) => text.clone(),
                (None, None) => "-".to_owned(),
            };
            let link = if !e.triggered_compensations.is_empty() {
                format!(
                    "triggered {}",
                    e.triggered_compensations
                        .iter()
                        .map(index_of)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else if let Some(by) = &e.triggered_by {
                format!("compensates failure {}", index_of(by))
            } else {
                "-".to_owned()
            };
            table.row(vec![
                format!("{}", i + 1),
                format!("+{}", ms(offset)),
                e.service.clone(),
                e.step.clone(),
                e.status.clone(),
                e.duration_micros.map_or_else(|| "-".to_owned(), ms),
                error,
                link,
            ]);
        }
        out.push_str(&table.render(2));
        let _ = writeln!(out, "Metrics (GET {}/metrics, excerpt):", self.api_url);
        for line in &self.metrics_lines {
            let _ = writeln!(out, "  {line}");
        }
        if self.kept {
            let _ = writeln!(
                out,
                "Tracker data kept in schema {} (--keep-tracker-data); the service has stopped.",
                self.schema
            );
        } else {
            let _ = writeln!(
                out,
                "Tracker service stopped; schema {} dropped.",
                self.schema
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn headline_metrics_pick_ingested_and_non_zero_saga_states() {
        let text = "# HELP x\n\
            saga_tracker_events_ingested_total{saga_type=\"OrderSaga\",step=\"a\",status=\"STARTED\"} 3\n\
            saga_tracker_events_ingested_total{saga_type=\"OrderSaga\",step=\"a\",status=\"SUCCEEDED\"} 2\n\
            saga_tracker_events_ingested_total{saga_type=\"OrderSaga\",step=\"b\",status=\"STARTED\"} 1\n\
            saga_tracker_sagas{status=\"RUNNING\"} 0\n\
            saga_tracker_sagas{status=\"COMPENSATED\"} 4\n";
        let lines = headline_metrics(text);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[2].contains("1 more") && lines[2].contains("(6 events in all)"));
        assert_eq!(lines[3], "saga_tracker_sagas{status=\"COMPENSATED\"} 4");
    }
}
