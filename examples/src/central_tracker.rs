//! `--with-tracker`: the central tracker service (`saga-tracker-service`) running in-process beside the demo's
//! services, on the same Kafka, consuming this run's part of `saga.tracker` into a PostgreSQL schema of its own
//! (`saga_demo_<run id>`), and serving its HTTP API on an ephemeral port.
//!
//! After the sagas, the demo waits until the service has stored every event of the run, asks the API for the
//! failed saga's summary and timeline, reads a few `/metrics` lines, shuts the service down and drops the schema
//! (unless `--keep-tracker-data`).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use uuid::Uuid;

use saga_tracker_service::api::model::{SagaRow, SagaState, Stats, Timeline};
use saga_tracker_service::{Assignment, Config, Service, StartError, StoreError};

use crate::DemoError;
use crate::bus::{Kafka, Offsets, TRACKER_TOPIC};
use crate::report::tracker::TrackerReport;

/// The database when neither `--database-url` nor `DATABASE_URL` is given.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// How long connecting to PostgreSQL may take before it counts as unreachable.
pub const DATABASE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the service gets to store every event of the run once the demo has read them back.
pub const INGEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the demo waits for `/metrics` to show the sagas the API shows (the gauges refresh every 200 ms).
const METRICS_REFRESH_WAIT: Duration = Duration::from_secs(10);
/// How long one API request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the service listens without `--serve` and `--listen`: an ephemeral port.
pub const EPHEMERAL_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
/// Where the service listens with `--serve` and without `--listen`: a fixed port, so the printed URLs can be
/// bookmarked.
pub const SERVE_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// `--with-tracker` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerOptions {
    /// PostgreSQL URL (`--database-url` / `DATABASE_URL`).
    pub database_url: String,
    /// Keep the run's schema instead of dropping it at the end (`--keep-tracker-data`).
    pub keep_data: bool,
    /// The service's `--stuck-after-minutes` (0: every saga not terminal counts as stuck at once).
    pub stuck_after_minutes: u32,
    /// Where the service's HTTP API listens (`--listen`).
    pub listen: SocketAddr,
    /// Keep the service up after the report until Ctrl-C (`--serve`).
    pub serve: bool,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        TrackerOptions {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            keep_data: false,
            stuck_after_minutes: 15,
            listen: EPHEMERAL_LISTEN,
            serve: false,
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
        config.listen = options.listen;
        config.batch_linger_ms = 20;
        config.stats_interval_ms = 1000;
        config.metrics_refresh_ms = 200;
        config.stuck_after_minutes = options.stuck_after_minutes;
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
            let stored =
                self.service.store().count_stored(&ids).await.map_err(|e| {
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

    /// Asks the API for `saga_id`'s summary and timeline and the stats, counts the stats again over the sagas
    /// whose ids start with `run_prefix` (this run's), and reads the headline `/metrics` lines.
    pub async fn fetch(
        &self,
        saga_id: &str,
        run_prefix: &str,
        ingest_wait: Duration,
        run_events: usize,
    ) -> Result<TrackerReport, DemoError> {
        let saga: SagaRow = self.get_json(&format!("/api/v1/sagas/{saga_id}")).await?;
        let timeline: Timeline = self
            .get_json(&format!("/api/v1/sagas/{saga_id}/timeline"))
            .await?;
        // The service refreshes its database-backed gauges in the background: wait until they count every
        // saga the API counts, so the excerpt agrees with the timeline above it.
        let stats: Stats = self.get_json("/api/v1/stats").await?;
        let deadline = Instant::now() + METRICS_REFRESH_WAIT;
        let metrics = loop {
            let metrics = self.get("/metrics").await?;
            let settled = sagas_in(&metrics) == stats.sagas_total
                && stuck_in(&metrics) == Some(stats.stuck_sagas);
            if settled || Instant::now() >= deadline {
                break metrics;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Ok(TrackerReport {
            api_url: self.base_url.clone(),
            schema: self.schema.clone(),
            run_events,
            ingest_wait,
            saga,
            timeline: timeline.events,
            run_stats: self.run_stats(&stats, run_prefix).await?,
            run_prefix: run_prefix.to_owned(),
            stats,
            metrics_lines: headline_metrics(&metrics),
            kept: false,
            serving: false,
        })
    }

    /// `stats` with its saga, event and stuck counts taken over this run's sagas only (ids starting with
    /// `run_prefix`): a start offset too early lets the service store earlier runs' sagas too, and those must not
    /// count.
    async fn run_stats(&self, stats: &Stats, run_prefix: &str) -> Result<Stats, DemoError> {
        let error =
            |e: sqlx::Error| DemoError::TrackerService(format!("counting this run's sagas: {e}"));
        let pool = self.service.store().pool();
        let by_state: Vec<(SagaState, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM sagas WHERE left(saga_id, length($1)) = $1 GROUP BY status",
        )
        .bind(run_prefix)
        .fetch_all(pool)
        .await
        .map_err(error)?;
        let by_state: std::collections::BTreeMap<SagaState, i64> = by_state.into_iter().collect();
        let terminal: Vec<&str> = SagaState::terminal().map(SagaState::as_str).collect();
        let stuck: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sagas WHERE left(saga_id, length($1)) = $1 AND status <> ALL($2) \
             AND updated_at < now() - make_interval(secs => $3)",
        )
        .bind(run_prefix)
        .bind(terminal)
        .bind(stats.stuck_after_seconds as f64)
        .fetch_one(pool)
        .await
        .map_err(error)?;
        let events: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM saga_events WHERE left(saga_id, length($1)) = $1",
        )
        .bind(run_prefix)
        .fetch_one(pool)
        .await
        .map_err(error)?;
        Ok(Stats {
            sagas_total: by_state.values().sum(),
            sagas_by_status: SagaState::ALL
                .into_iter()
                .map(|s| (s, by_state.get(&s).copied().unwrap_or(0)))
                .collect(),
            events_total: events,
            stuck_sagas: stuck,
            ..stats.clone()
        })
    }

    /// What `--serve` prints: where the console, the REST API, GraphQL and the metrics are.
    pub fn urls(&self) -> Vec<(&'static str, String)> {
        let base = &self.base_url;
        vec![
            ("console", format!("{base}/ui")),
            ("REST", format!("{base}/api/v1/sagas")),
            (
                "GraphQL",
                format!("{base}{}", saga_tracker_service::graphql::PATH),
            ),
            ("metrics", format!("{base}/metrics")),
        ]
    }

    /// `--serve`: prints [`urls`](Self::urls) to stdout and waits for SIGINT (Ctrl-C) or SIGTERM. The signal
    /// handlers are installed before the URLs are printed, so a signal sent on reading them stops the demo
    /// cleanly.
    pub async fn serve_until_signal(&self) -> Result<(), DemoError> {
        let stop = signal::Stop::install()
            .map_err(|e| DemoError::Internal(format!("cannot listen for Ctrl-C: {e}")))?;
        println!(
            "Tracker service serving until Ctrl-C (schema {}):",
            self.schema
        );
        for (name, url) in self.urls() {
            println!("  {name:<8} {url}");
        }
        stop.wait().await;
        Ok(())
    }

    /// Stops consuming and serving, then drops the schema unless `keep_data`. Returns whether it was kept.
    pub async fn stop(self, keep_data: bool) -> Result<bool, DemoError> {
        let store = self.service.store().clone();
        self.service.shutdown().await;
        if keep_data {
            store.pool().close().await;
            return Ok(true);
        }
        store.drop_schema().await.map(|_| false).map_err(|e| {
            DemoError::TrackerService(format!("cannot drop schema {}: {e}", self.schema))
        })
    }
}

mod signal {
    //! SIGINT or SIGTERM, listened for from the moment [`Stop::install`] returns.

    /// Installed signal listeners.
    pub struct Stop {
        #[cfg(unix)]
        interrupt: tokio::signal::unix::Signal,
        #[cfg(unix)]
        terminate: tokio::signal::unix::Signal,
    }

    impl Stop {
        /// Installs the listeners.
        pub fn install() -> std::io::Result<Stop> {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                Ok(Stop {
                    interrupt: signal(SignalKind::interrupt())?,
                    terminate: signal(SignalKind::terminate())?,
                })
            }
            #[cfg(not(unix))]
            Ok(Stop {})
        }

        /// Waits for either signal.
        pub async fn wait(mut self) {
            #[cfg(unix)]
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
            #[cfg(not(unix))]
            {
                let _ = &mut self;
                let _ = tokio::signal::ctrl_c().await;
            }
        }
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

/// The sum of the `saga_tracker_sagas` gauges.
fn sagas_in(text: &str) -> i64 {
    use saga_tracker_service::metrics::SAGAS;
    text.lines()
        .filter(|l| l.starts_with(&format!("{SAGAS}{{")))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<i64>().ok())
        .sum()
}

/// The `saga_tracker_stuck_sagas` gauge.
fn stuck_in(text: &str) -> Option<i64> {
    use saga_tracker_service::metrics::STUCK_SAGAS;
    text.lines()
        .find_map(|l| l.strip_prefix(STUCK_SAGAS)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

/// The `/metrics` lines a person looks at first: events ingested (and their total), sagas per state, stuck sagas.
fn headline_metrics(text: &str) -> Vec<String> {
    use saga_tracker_service::metrics::{EVENTS_INGESTED, SAGAS, STUCK_SAGAS};
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
    lines.extend(
        text.lines()
            .filter(|l| {
                l.strip_prefix(STUCK_SAGAS)
                    .is_some_and(|rest| rest.starts_with(' '))
            })
            .map(str::to_owned),
    );
    lines
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
