//! The three services and the loop that serves a service's command topic: read a command, run the annotated
//! handler under the service's tracker and the saga's trace, send the reply.

pub mod order;
pub mod payment;
pub mod product;
pub mod stored;

use std::fmt::Display;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureProducer;
use saga_tracker::{Cause, Tracker};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::DemoError;
use crate::bus::{self, Kafka, Offsets, REPLY_TOPIC};
use crate::saga::{CommandMsg, ReplyError, ReplyMsg, ServiceName};

/// A service's state, and the dispatch from a command to its handler.
#[derive(Debug, Clone)]
pub enum ServiceState {
    /// The order service.
    Order(Arc<order::Orders>),
    /// The product service.
    Product(Arc<product::Stock>),
    /// The payment service.
    Payment(Arc<payment::Wallets>),
    /// `--outbox`: a service on PostgreSQL tables, each step's events in its transaction ([`stored`]).
    Stored(ServiceName, sqlx::PgPool),
}

impl ServiceState {
    /// Fresh state for `service`.
    pub fn new(service: ServiceName) -> ServiceState {
        match service {
            ServiceName::Order => ServiceState::Order(Arc::new(order::Orders::default())),
            ServiceName::Product => ServiceState::Product(Arc::new(product::Stock::default())),
            ServiceName::Payment => ServiceState::Payment(Arc::new(payment::Wallets::default())),
        }
    }

    /// Checks at start-up that every handler `service` wires is in saga-tracker's registry.
    pub fn verify(service: ServiceName) -> Result<(), DemoError> {
        let verified = match service {
            ServiceName::Order => order::OrderService::verify(),
            ServiceName::Product => product::ProductService::verify(),
            ServiceName::Payment => payment::PaymentService::verify(),
        };
        verified.map_err(|e| DemoError::Tracker(e.to_string()))
    }

    /// Runs the handler for `cmd`.
    pub async fn handle(&self, cmd: &CommandMsg) -> Result<(), ReplyError> {
        match self {
            ServiceState::Order(orders) => order::handle(orders, cmd).await,
            ServiceState::Product(stock) => product::handle(stock, cmd).await,
            ServiceState::Payment(wallets) => payment::handle(wallets, cmd).await,
            ServiceState::Stored(service, pool) => stored::handle(*service, pool, cmd).await,
        }
    }
}

/// Runs a compensation in the scope of the failure its command names, so its events carry that failure's
/// idempotency key (`causeIdempotencyKey`) and the tracker links them to it whatever the clocks say.
pub async fn answering<F: Future>(cmd: &CommandMsg, compensation: F) -> F::Output {
    match &cmd.failure {
        Some(key) => Cause::new(key.as_str()).scope(compensation).await,
        None => compensation.await,
    }
}

/// The reply error for a handler's error: the same kind and text the tracker records.
pub fn reply_error<E: Display>(error: &E) -> ReplyError {
    ReplyError {
        kind: saga_tracker::saga::short_type_name::<E>().into_owned(),
        message: error.to_string(),
    }
}

/// The reply for a command no handler of this service knows.
pub fn unknown_command(service: ServiceName, cmd: &CommandMsg) -> ReplyError {
    ReplyError {
        kind: "UnknownCommand".into(),
        message: format!(
            "{service} has no {:?} handler for step `{}`",
            cmd.phase, cmd.step
        ),
    }
}

/// Pretends to do `step`'s work: sleeps a few milliseconds, the same for the same saga and step.
pub async fn simulate_work(saga_id: &str, step: &str, base_ms: u64) {
    let mut hasher = DefaultHasher::new();
    (saga_id, step).hash(&mut hasher);
    let jitter_us = hasher.finish() % 4_000;
    tokio::time::sleep(Duration::from_micros(base_ms * 1_000 + jitter_us)).await;
}

/// The OpenTelemetry context of a W3C `traceparent` (`00-{trace}-{span}-{flags}`); empty if it is malformed.
pub fn trace_context(traceparent: &str) -> Context {
    let mut parts = traceparent.split('-');
    let (Some("00"), Some(trace), Some(span), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Context::new();
    };
    let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
        TraceId::from_hex(trace),
        SpanId::from_hex(span),
        u8::from_str_radix(flags, 16),
    ) else {
        return Context::new();
    };
    let span = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    if !span.is_valid() {
        return Context::new();
    }
    Context::new().with_remote_span_context(span)
}

/// Which commands belong to "this run". A consumer's start offset is only an optimisation (a broker may report a
/// high watermark below the true end, see [`bus::end_offsets`]): commands of earlier runs can be read, and are
/// skipped and counted, never handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandScope {
    /// The sagas of one run: saga ids starting with [`crate::saga::saga_id_prefix`] of the run id (roles `all`
    /// and `order`, which plan the sagas themselves).
    Run(String),
    /// A service serving another process's sagas (roles `product` and `payment`): commands produced at or after
    /// this Kafka timestamp (milliseconds since the epoch), i.e. sent after the service started.
    Since(i64),
}

impl CommandScope {
    /// The scope of the run `run_id`.
    pub fn run(run_id: &str) -> CommandScope {
        CommandScope::Run(crate::saga::saga_id_prefix(run_id))
    }

    /// Commands sent from now on.
    pub fn from_now() -> CommandScope {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        CommandScope::Since(now)
    }

    /// Whether `cmd`, read with Kafka timestamp `timestamp_ms`, belongs to this scope.
    pub fn contains(&self, cmd: &CommandMsg, timestamp_ms: Option<i64>) -> bool {
        match self {
            CommandScope::Run(prefix) => cmd.saga_id.starts_with(prefix.as_str()),
            CommandScope::Since(since) => timestamp_ms.is_some_and(|t| t >= *since),
        }
    }
}

/// A running service.
#[derive(Debug)]
pub struct RunningService {
    /// Which service.
    pub name: ServiceName,
    /// Its tracker (flush it before reading `saga.tracker` back).
    pub tracker: Tracker,
    /// Commands handled so far.
    pub handled: Arc<AtomicU64>,
    /// Commands read but skipped because they belong to another run ([`CommandScope`]).
    pub other_runs: Arc<AtomicU64>,
    task: JoinHandle<Result<(), DemoError>>,
}

/// The services running in this process. Stopping them waits for in-flight commands.
///
/// Components that run beside the services in one process (the tracker service of `--with-tracker`, see
/// [`crate::central_tracker`]) start with the same [`Kafka`] and stop when the run ends.
#[derive(Debug)]
pub struct ServiceSet {
    /// The services.
    pub services: Vec<RunningService>,
    shutdown: watch::Sender<bool>,
}

impl ServiceSet {
    /// Starts `services`, each with its tracker, consuming its command topic from `start` (offsets noted when
    /// the run began; an earlier offset is harmless) and handling only the commands in `scope`.
    pub fn start(
        kafka: &Kafka,
        services: Vec<(ServiceName, Tracker)>,
        start: &std::collections::BTreeMap<ServiceName, Offsets>,
        scope: &CommandScope,
    ) -> Result<ServiceSet, DemoError> {
        ServiceSet::start_with(kafka, services, start, scope, ServiceState::new)
    }

    /// [`start`](ServiceSet::start) with each service's state from `state`.
    pub fn start_with(
        kafka: &Kafka,
        services: Vec<(ServiceName, Tracker)>,
        start: &std::collections::BTreeMap<ServiceName, Offsets>,
        scope: &CommandScope,
        state: impl Fn(ServiceName) -> ServiceState,
    ) -> Result<ServiceSet, DemoError> {
        let (shutdown, _) = watch::channel(false);
        let mut running = Vec::new();
        for (name, tracker) in services {
            ServiceState::verify(name)?;
            let offsets = start.get(&name).cloned().unwrap_or_default();
            let consumer = kafka.consumer_from(bus::command_topic(name), &offsets)?;
            let producer = kafka.producer()?;
            let handled = Arc::new(AtomicU64::new(0));
            let other_runs = Arc::new(AtomicU64::new(0));
            let task = tokio::spawn(serve(
                name,
                state(name),
                consumer,
                producer,
                tracker.clone(),
                Counters {
                    handled: handled.clone(),
                    other_runs: other_runs.clone(),
                    scope: scope.clone(),
                },
                shutdown.subscribe(),
            ));
            running.push(RunningService {
                name,
                tracker,
                handled,
                other_runs,
                task,
            });
        }
        Ok(ServiceSet {
            services: running,
            shutdown,
        })
    }

    /// Stops every service, waits for their in-flight commands, and flushes their trackers.
    pub async fn stop(self, flush_timeout: Duration) -> Result<(), DemoError> {
        let _ = self.shutdown.send(true);
        let mut first_error = None;
        for service in self.services {
            let result = match service.task.await {
                Ok(result) => result,
                Err(e) => Err(DemoError::Internal(format!(
                    "{} stopped abnormally: {e}",
                    service.name
                ))),
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
            let tracker = service.tracker.clone();
            let flushed = tokio::task::spawn_blocking(move || tracker.flush(flush_timeout))
                .await
                .map_err(|e| DemoError::Internal(format!("flush task: {e}")))?;
            if let Err(e) = flushed {
                first_error.get_or_insert(DemoError::Tracker(format!("{}: {e}", service.name)));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// What [`serve`] counts, and the scope it handles.
struct Counters {
    handled: Arc<AtomicU64>,
    other_runs: Arc<AtomicU64>,
    scope: CommandScope,
}

/// Serves one service's command topic until `shutdown` turns true.
///
/// Kafka delivers at least once: a consumer that restarts, or whose position a broker reports as out of range,
/// reads commands again. Each command (saga, step, phase) is handled once; a redelivered one is skipped, its reply
/// having gone out the first time.
async fn serve(
    name: ServiceName,
    state: ServiceState,
    consumer: StreamConsumer,
    producer: FutureProducer,
    tracker: Tracker,
    counters: Counters,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DemoError> {
    let Counters {
        handled,
        other_runs,
        scope,
    } = counters;
    let mut in_flight = tokio::task::JoinSet::new();
    let mut handled_commands = std::collections::HashSet::new();
    loop {
        let message = tokio::select! {
            _ = shutdown.changed() => break,
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                done.map_err(|e| DemoError::Internal(format!("{name} handler task: {e}")))??;
                continue;
            }
            message = consumer.recv() => message,
        };
        let message =
            message.map_err(|e| DemoError::Kafka(format!("{name}: reading commands: {e}")))?;
        let cmd: CommandMsg = match message.payload().map(serde_json::from_slice) {
            Some(Ok(cmd)) => cmd,
            Some(Err(e)) => {
                tracing::warn!(service = %name, offset = message.offset(), %e, "skipping a malformed command");
                continue;
            }
            None => continue,
        };
        if !scope.contains(&cmd, message.timestamp().to_millis()) {
            other_runs.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(service = %name, saga_id = %cmd.saga_id, offset = message.offset(), "skipping a command of another run");
            continue;
        }
        if !handled_commands.insert((cmd.saga_id.clone(), cmd.step.clone(), cmd.phase)) {
            tracing::debug!(service = %name, saga_id = %cmd.saga_id, step = %cmd.step, offset = message.offset(), "skipping a redelivered command");
            continue;
        }
        let (state, producer, tracker, handled) = (
            state.clone(),
            producer.clone(),
            tracker.clone(),
            handled.clone(),
        );
        in_flight.spawn(async move {
            let otel = trace_context(&cmd.traceparent);
            let result =
                saga_tracker::with_default_async(&tracker, state.handle(&cmd).with_context(otel))
                    .await;
            handled.fetch_add(1, Ordering::Relaxed);
            let reply = ReplyMsg {
                saga_id: cmd.saga_id.clone(),
                step: cmd.step.clone(),
                phase: cmd.phase,
                service: name,
                error: result.err(),
            };
            bus::send_json(&producer, REPLY_TOPIC, &cmd.saga_id, &reply).await
        });
    }
    while let Some(done) = in_flight.join_next().await {
        done.map_err(|e| DemoError::Internal(format!("{name} handler task: {e}")))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_into_the_context() {
        let cx = trace_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let span = cx.span();
        assert_eq!(
            span.span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(!trace_context("garbage").span().span_context().is_valid());
        assert!(
            !trace_context("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
                .span()
                .span_context()
                .is_valid()
        );
    }
}
