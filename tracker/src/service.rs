//! [`Service`]: starts the store, the ingest loop and the HTTP server together, and stops them together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::config::{Config, ConfigError};
use crate::db::{Store, StoreError};
use crate::ingest::consumer::{self, ConsumerError};
use crate::ingest::{Ingest, dlq::DlqProducer};
use crate::metrics::Metrics;

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The consumer could not start.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// The DLQ producer could not be created.
    #[error("DLQ producer: {0}")]
    Dlq(#[source] rdkafka::error::KafkaError),
    /// The HTTP listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running service. Dropping it without [`shutdown`](Service::shutdown) stops the tasks at the runtime's end.
#[derive(Debug)]
pub struct Service {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    ingest: JoinHandle<()>,
    http: JoinHandle<()>,
    refresh: JoinHandle<()>,
    metrics: Arc<Metrics>,
    store: Store,
}

impl Service {
    /// Validates `config`, connects and migrates the database, starts consuming and serving.
    pub async fn start(config: Config) -> Result<Service, StartError> {
        config.validate()?;
        let schemas = config.known_schemas()?;
        let api_token = config.resolved_api_token()?;
        let metrics_token = config.resolved_metrics_token()?;
        let store = Store::connect(
            &config.database_url,
            config.database_schema.as_deref(),
            config.database_max_connections,
        )
        .await?
        .with_max_events_per_saga(Some(config.max_events_per_saga).filter(|&max| max > 0));
        // day partitions for the coming week (the archive CronJob keeps them ahead; a default partition
        // catches anything outside, so a failure here loses nothing)
        if let Err(e) = crate::ops::partitions::ensure_ahead(store.pool(), 7).await {
            tracing::warn!(error = %e, "cannot create the day partitions ahead");
        }
        let metrics = Arc::new(Metrics::new(config.label_limits(), config.stall_after()));
        metrics.set_stuck_after(config.stuck_after().as_secs());
        let dlq = DlqProducer::new(
            &config.kafka_brokers,
            &config.dlq_topic,
            &config.kafka_properties,
        )
        .map_err(StartError::Dlq)?;
        let consumer = consumer::create(&config, Arc::clone(&metrics)).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop, stopped) = watch::channel(false);

        let ingest = Ingest {
            consumer,
            dlq,
            store: store.clone(),
            metrics: Arc::clone(&metrics),
            batch_size: config.batch_size,
            linger: Duration::from_millis(config.batch_linger_ms),
            schemas,
            lanes: config.ingest_lanes,
        };
        let ingest = tokio::spawn(ingest.run(stopped.clone()));

        let refresh = tokio::spawn(crate::metrics::refresh::run(
            store.clone(),
            Arc::clone(&metrics),
            config.stuck_after(),
            Duration::from_millis(config.metrics_refresh_ms),
            stopped.clone(),
        ));

        let state = AppState {
            store: store.clone(),
            metrics: Arc::clone(&metrics),
            token: api_token.as_deref().map(Arc::from),
            metrics_token: metrics_token.as_deref().map(Arc::from),
            stuck_after: config.stuck_after(),
        };
        let console = crate::console::ConsoleConfig {
            trace_url_template: config.trace_url_template.clone(),
        };
        let app = api::router(state).merge(crate::console::router(console));
        let mut http_stop = stopped;
        let http = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tracing::info!(%addr, topic = %config.topic, group = %config.group_id, schemas = %config.known_schemas()?, "saga-tracker-service started");
        Ok(Service {
            addr,
            stop,
            ingest,
            http,
            refresh,
            metrics,
            store,
        })
    }

    /// The address the HTTP server listens on (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The database store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops consuming (an unfinished batch is not committed) and serving, and waits for both.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.ingest.await {
            tracing::error!(error = %e, "ingest task failed");
        }
        if let Err(e) = self.http.await {
            tracing::error!(error = %e, "HTTP task failed");
        }
        if let Err(e) = self.refresh.await {
            tracing::error!(error = %e, "metrics refresh task failed");
        }
    }

    /// Runs until `signal` completes, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}
