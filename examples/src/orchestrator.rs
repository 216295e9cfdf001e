//! The saga orchestrator, run by the order service: sends each step's command to the service that owns it,
//! waits for the reply, and on a failure sends the compensations of the steps that succeeded, newest first.
//!
//! Which sagas fail is decided up front from `--seed` ([`plan`]) and carried only in the order's data: a
//! failing saga is paid by a customer with an empty wallet; a saga whose compensation fails also buys a product
//! from the warehouse whose ledger rejects stock releases. The services know nothing about the plan.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use rdkafka::Message as _;
use rdkafka::producer::FutureProducer;
use saga_tracker::Cause;
use saga_tracker::Saga as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::DemoError;
use crate::bus::{self, Kafka, Offsets, REPLY_TOPIC};
use crate::cli::DemoConfig;
use crate::report::consistency::FinalState;
use crate::saga::{
    BROKE_CUSTOMER, CommandMsg, LEGACY_SKU, OrderLine, OrderSaga, PAYING_CUSTOMERS, Phase,
    REGULAR_SKUS, ReplyError, ReplyMsg,
};

/// What the seed decided for one saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fate {
    /// Every step succeeds.
    Complete,
    /// The payment fails; the compensations succeed.
    FailAtPayment,
    /// The payment fails and releasing the stock fails too.
    FailAtPaymentAndRelease,
    /// `--hang-sagas`: the stock is reserved and the saga goes no further (it stops between two steps).
    HangAfterReserve,
}

impl Fate {
    /// The final state a correct run records for this fate.
    pub fn expected_state(self) -> FinalState {
        match self {
            Fate::Complete => FinalState::Completed,
            Fate::FailAtPayment => FinalState::Compensated,
            Fate::FailAtPaymentAndRelease => FinalState::CompensationFailed,
            Fate::HangAfterReserve => FinalState::Incomplete,
        }
    }
}

/// One saga to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaPlan {
    /// The saga id (unique to the run).
    pub saga_id: String,
    /// The order id.
    pub order_id: String,
    /// What is ordered, by whom.
    pub line: OrderLine,
    /// What the seed decided.
    pub fate: Fate,
    /// The saga's trace id (32 hex digits).
    pub trace_id: String,
}

/// The step after which a `--hang-sagas` saga stops.
pub const HANG_AFTER: OrderSaga = OrderSaga::ReserveStock;

/// The sagas of a run: `round(sagas × failure_rate)` fail at payment, and `round(failing ×
/// compensation_failure_rate)` of those fail to release their stock; `hang_sagas` of the others stop after
/// [`HANG_AFTER`]; which ones is decided by the seed.
pub fn plan(config: &DemoConfig, run_id: &str) -> Vec<SagaPlan> {
    let n = config.sagas as usize;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let failing = config.failing_sagas();
    let compensation_failing =
        ((failing as f64) * config.compensation_failure_rate).round() as usize;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut fates = vec![Fate::Complete; n];
    for (rank, &i) in order.iter().take(failing.min(n)).enumerate() {
        fates[i] = if rank < compensation_failing {
            Fate::FailAtPaymentAndRelease
        } else {
            Fate::FailAtPayment
        };
    }
    for &i in order.iter().skip(failing).take(config.hang_sagas as usize) {
        fates[i] = Fate::HangAfterReserve;
    }
    let mut trace_rng = rand::thread_rng();
    fates
        .into_iter()
        .enumerate()
        .map(|(i, fate)| {
            let customer = match fate {
                Fate::Complete | Fate::HangAfterReserve => {
                    PAYING_CUSTOMERS[rng.gen_range(0..PAYING_CUSTOMERS.len())]
                }
                Fate::FailAtPayment | Fate::FailAtPaymentAndRelease => BROKE_CUSTOMER,
            };
            let sku = match fate {
                Fate::FailAtPaymentAndRelease => LEGACY_SKU,
                _ => REGULAR_SKUS[rng.gen_range(0..REGULAR_SKUS.len())],
            };
            let qty = rng.gen_range(1..=3);
            let amount_cents = i64::from(qty) * rng.gen_range(999..=19_999);
            let trace_id: u128 = trace_rng.r#gen::<u128>() | 1;
            SagaPlan {
                saga_id: format!("{}{:04}", crate::saga::saga_id_prefix(run_id), i + 1),
                order_id: format!("order-{run_id}-{:04}", i + 1),
                line: OrderLine {
                    customer: customer.to_owned(),
                    sku: sku.to_owned(),
                    qty,
                    amount_cents,
                },
                fate,
                trace_id: format!("{trace_id:032x}"),
            }
        })
        .collect()
}

/// How one saga ended, as the orchestrator saw it (the report uses the recorded events instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaRun {
    /// The saga.
    pub saga_id: String,
    /// Its end.
    pub state: FinalState,
    /// The step that failed and why.
    pub failure: Option<(String, ReplyError)>,
}

type ReplyKey = (String, String, Phase);
type Pending = Arc<Mutex<HashMap<ReplyKey, oneshot::Sender<ReplyMsg>>>>;

/// Sends commands and matches replies to them.
pub struct Orchestrator {
    producer: FutureProducer,
    pending: Pending,
    reply_timeout: Duration,
    pump: JoinHandle<()>,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator")
            .field("reply_timeout", &self.reply_timeout)
            .finish_non_exhaustive()
    }
}

impl Orchestrator {
    /// Starts reading the reply topic at `reply_start`.
    pub fn start(
        kafka: &Kafka,
        reply_start: &Offsets,
        reply_timeout: Duration,
    ) -> Result<Orchestrator, DemoError> {
        let consumer = kafka.consumer_from(REPLY_TOPIC, reply_start)?;
        let pending: Pending = Arc::default();
        let pump = {
            let pending = pending.clone();
            tokio::spawn(async move {
                loop {
                    let message = match consumer.recv().await {
                        Ok(message) => message,
                        Err(e) => {
                            tracing::warn!(%e, "reading replies");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Some(Ok(reply)) = message.payload().map(serde_json::from_slice::<ReplyMsg>)
                    else {
                        continue;
                    };
                    let key = (reply.saga_id.clone(), reply.step.clone(), reply.phase);
                    let waiter = pending.lock().ok().and_then(|mut p| p.remove(&key));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(reply);
                    }
                }
            })
        };
        Ok(Orchestrator {
            producer: kafka.producer()?,
            pending,
            reply_timeout,
            pump,
        })
    }

    /// Sends one command and waits for its reply.
    async fn call(
        &self,
        plan: &SagaPlan,
        step: OrderSaga,
        phase: Phase,
        failure: Option<&Cause>,
    ) -> Result<ReplyMsg, DemoError> {
        let (tx, rx) = oneshot::channel();
        let key = (plan.saga_id.clone(), step.wire_name().to_owned(), phase);
        self.pending
            .lock()
            .map_err(|_| DemoError::Internal("reply table poisoned".into()))?
            .insert(key.clone(), tx);
        let span_id: u64 = rand::random::<u64>() | 1;
        let command = CommandMsg {
            saga_id: plan.saga_id.clone(),
            order_id: plan.order_id.clone(),
            step: step.wire_name().to_owned(),
            phase,
            line: plan.line.clone(),
            traceparent: format!("00-{}-{span_id:016x}-01", plan.trace_id),
            failure: failure.map(|c| c.idempotency_key().to_owned()),
        };
        let service = step.service();
        bus::send_json(
            &self.producer,
            bus::command_topic(service),
            &plan.saga_id,
            &command,
        )
        .await?;
        match tokio::time::timeout(self.reply_timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            _ => {
                if let Ok(mut pending) = self.pending.lock() {
                    pending.remove(&key);
                }
                Err(DemoError::NoReply {
                    service: service.recorded_name(),
                    topic: bus::command_topic(service),
                    saga_id: plan.saga_id.clone(),
                    step: step.wire_name(),
                    timeout: self.reply_timeout,
                })
            }
        }
    }

    /// Runs one saga to its end.
    pub async fn run_saga(&self, plan: &SagaPlan) -> Result<SagaRun, DemoError> {
        let mut succeeded = Vec::new();
        let mut failure = None;
        for step in OrderSaga::ALL {
            let reply = self.call(plan, step, Phase::Execute, None).await?;
            match reply.error {
                None => succeeded.push(step),
                Some(error) => {
                    failure = Some((step.wire_name().to_owned(), error));
                    break;
                }
            }
            if plan.fate == Fate::HangAfterReserve && step == HANG_AFTER {
                return Ok(SagaRun {
                    saga_id: plan.saga_id.clone(),
                    state: FinalState::Incomplete,
                    failure,
                });
            }
        }
        if failure.is_none() {
            return Ok(SagaRun {
                saga_id: plan.saga_id.clone(),
                state: FinalState::Completed,
                failure,
            });
        }
        // Compensate what succeeded, newest first; a failed compensation does not stop the others. Each
        // compensation command names the failure it answers (the step's first and only attempt).
        let cause = failure
            .as_ref()
            .map(|(step, _)| Cause::failure(&plan.saga_id, step, 1));
        let mut state = FinalState::Compensated;
        for step in succeeded.into_iter().rev().filter(|s| s.step().compensable) {
            let reply = self
                .call(plan, step, Phase::Compensate, cause.as_ref())
                .await?;
            if reply.error.is_some() {
                state = FinalState::CompensationFailed;
            }
        }
        Ok(SagaRun {
            saga_id: plan.saga_id.clone(),
            state,
            failure,
        })
    }

    /// Runs every saga, `concurrency` at a time, calling `on_done` after each.
    pub async fn run_all(
        &self,
        plans: &[SagaPlan],
        concurrency: usize,
        mut on_done: impl FnMut(&SagaRun),
    ) -> Result<Vec<SagaRun>, DemoError> {
        let mut runs = Vec::with_capacity(plans.len());
        let mut stream = futures::stream::iter(plans)
            .map(|plan| self.run_saga(plan))
            .buffer_unordered(concurrency);
        while let Some(run) = stream.next().await {
            let run = run?;
            on_done(&run);
            runs.push(run);
        }
        Ok(runs)
    }

    /// Stops reading replies.
    pub fn stop(self) {
        self.pump.abort();
    }
}
