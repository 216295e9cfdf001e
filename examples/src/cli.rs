//! The command line of `order-saga-demo` and the validated [`DemoConfig`] it turns into.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::DemoError;
use crate::central_tracker::TrackerOptions;
use crate::saga::ServiceName;
use crate::store::OutboxOptions;

/// Runs Order/Product/Payment sagas over Kafka, records every step to `saga.tracker`, then reads the events
/// back and reports what they say.
#[derive(Debug, Clone, Parser)]
#[command(name = "order-saga-demo", version, about, long_about = None)]
pub struct Args {
    /// How many sagas to run.
    #[arg(long, default_value_t = 50, value_parser = parse_sagas, value_name = "N")]
    pub sagas: u32,

    /// Share of sagas that fail at payment (insufficient funds) and are compensated, in [0, 1].
    #[arg(long, default_value_t = 0.3, value_parser = parse_share, value_name = "F", allow_negative_numbers = true)]
    pub failure_rate: f64,

    /// Share of the failing sagas whose stock release fails too (COMPENSATION_FAILED), in [0, 1].
    #[arg(long, default_value_t = 0.2, value_parser = parse_share, value_name = "F", allow_negative_numbers = true)]
    pub compensation_failure_rate: f64,

    /// Seed for which sagas fail (same seed, same failing sagas).
    #[arg(long, default_value_t = 42, value_name = "S")]
    pub seed: u64,

    /// Kafka bootstrap servers (`host:port[,host:port]`). Default: an embedded in-process broker.
    #[arg(long, value_parser = parse_brokers, value_name = "HOST:PORT")]
    pub brokers: Option<String>,

    /// Which services this process runs: `all` (default) or one of them, against a shared `--brokers`.
    /// Start `product` and `payment` first; `order` runs the sagas and prints the report.
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub service: Role,

    /// Write every decoded event of this run to PATH, one JSON object per line.
    #[arg(long, value_name = "PATH")]
    pub emit_json: Option<PathBuf>,

    /// How many sagas run at the same time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub concurrency: u32,

    /// How long to wait for a service's reply to one command, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600), value_name = "SECS")]
    pub reply_timeout: u64,

    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// Also run the central tracker service in-process (same Kafka, PostgreSQL from --database-url) and print
    /// the failed saga's timeline as its API serves it.
    #[arg(long)]
    pub with_tracker: bool,

    /// PostgreSQL for --with-tracker and --outbox; each stores into a schema of its own (`saga_demo_<run id>`,
    /// `saga_demo_outbox_<run id>`).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = crate::central_tracker::DEFAULT_DATABASE_URL,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: String,

    /// Keep the run's tracker schema instead of dropping it at the end.
    #[arg(long, requires = "with_tracker")]
    pub keep_tracker_data: bool,

    /// Leave N of the sagas planned to complete hanging between two steps: reserve_stock succeeds and
    /// charge_payment is never sent. With --with-tracker they show as stuck once --stuck-after-minutes passed.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub hang_sagas: u32,

    /// The run's id (lowercase letters and digits, at most 32), part of every saga id; random when absent. With
    /// --service product/payment: serve only that run's sagas (give the order process the same id); without it
    /// such a service serves every command sent after it started.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// For --with-tracker: a saga not terminal and silent this long counts as stuck (0: at once, to see the
    /// hanging sagas of --hang-sagas in the report).
    #[arg(
        long,
        default_value_t = 15,
        requires = "with_tracker",
        value_name = "MINUTES"
    )]
    pub stuck_after_minutes: u32,
    /// After the report, keep the tracker service up until Ctrl-C (SIGINT or SIGTERM) and print its URLs: the
    /// console (`/ui`), the REST API and GraphQL.
    #[arg(long, requires = "with_tracker")]
    pub serve: bool,

    /// Where the tracker service of --with-tracker listens. Default: 127.0.0.1:8080 with --serve (a URL to
    /// bookmark), an ephemeral port otherwise; `127.0.0.1:0` picks a free port with --serve too.
    #[arg(long, requires = "with_tracker", value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,

    /// Keep the services' state in PostgreSQL tables (--database-url; a schema of its own,
    /// `saga_demo_outbox_<run id>`) and commit each step's events with its business change through the
    /// transactional outbox; a relay in this process publishes them to saga.tracker.
    #[arg(long)]
    pub outbox: bool,

    /// Keep the run's outbox schema (business tables and outbox rows) instead of dropping it at the end.
    #[arg(long, requires = "outbox")]
    pub keep_outbox_data: bool,
}

/// Which part of the system a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// All three services in this process (the default).
    All,
    /// The order service: runs the sagas, then reads `saga.tracker` back and reports.
    Order,
    /// The product (stock) service, until Ctrl-C.
    Product,
    /// The payment service, until Ctrl-C.
    Payment,
}

impl Role {
    /// The services this role runs in-process.
    pub fn services(self) -> &'static [ServiceName] {
        match self {
            Role::All => &ServiceName::ALL,
            Role::Order => &[ServiceName::Order],
            Role::Product => &[ServiceName::Product],
            Role::Payment => &[ServiceName::Payment],
        }
    }

    /// Whether this role runs the sagas and prints the report.
    pub fn runs_sagas(self) -> bool {
        matches!(self, Role::All | Role::Order)
    }
}

fn parse_sagas(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

fn parse_share(s: &str) -> Result<f64, String> {
    let f: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    check_share(f)?;
    Ok(f)
}

fn check_share(f: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&f) {
        return Err(format!("{f} is outside [0, 1]"));
    }
    Ok(())
}

fn parse_brokers(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("no broker given (expected host:port)".into());
    }
    for broker in s.split(',') {
        let broker = broker.trim();
        let Some((host, port)) = broker.rsplit_once(':') else {
            return Err(format!("`{broker}` is not host:port"));
        };
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("`{broker}` is not host:port"));
        }
    }
    Ok(s.to_owned())
}

/// Where the demo's Kafka is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// An in-process mock cluster (librdkafka's MockCluster), created for the run.
    Embedded,
    /// A real Kafka at these bootstrap servers.
    External(String),
}

/// A validated demo configuration: what [`run`](crate::run) takes.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// How many sagas (≥ 1).
    pub sagas: u32,
    /// Share failing at payment, in [0, 1].
    pub failure_rate: f64,
    /// Share of failing sagas whose compensation fails, in [0, 1].
    pub compensation_failure_rate: f64,
    /// The seed.
    pub seed: u64,
    /// The broker.
    pub brokers: BrokerChoice,
    /// What this process runs.
    pub role: Role,
    /// Where to write the decoded events as JSON lines.
    pub emit_json: Option<PathBuf>,
    /// Concurrent sagas (≥ 1).
    pub concurrency: u32,
    /// How long to wait for one reply.
    pub reply_timeout: Duration,
    /// Whether to draw a progress bar (it is drawn only on a terminal anyway).
    pub progress: bool,
    /// `--with-tracker`: run the central tracker service in-process.
    pub tracker: Option<TrackerOptions>,
    /// `--outbox`: the services on PostgreSQL tables, their events through the transactional outbox.
    pub outbox: Option<OutboxOptions>,
    /// `--hang-sagas`: sagas left hanging after `reserve_stock` (taken from those planned to complete).
    pub hang_sagas: u32,
    /// `--run-id`: the run's id (random when absent); services alone in their process serve only its sagas.
    pub run_id: Option<String>,
    /// Read every topic from the beginning instead of from the high watermarks noted when the run starts. Not
    /// on the command line: tests use it to prove that a start offset too early is harmless (messages of other
    /// runs are skipped by content).
    pub from_earliest: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            sagas: 50,
            failure_rate: 0.3,
            compensation_failure_rate: 0.2,
            seed: 42,
            brokers: BrokerChoice::Embedded,
            role: Role::All,
            emit_json: None,
            concurrency: 8,
            reply_timeout: Duration::from_secs(30),
            progress: true,
            tracker: None,
            outbox: None,
            hang_sagas: 0,
            run_id: None,
            from_earliest: false,
        }
    }
}

impl DemoConfig {
    /// Checks the values a caller of [`run`](crate::run) could get wrong (the command line checks them too).
    pub fn validate(&self) -> Result<(), DemoError> {
        let invalid = |message: String| Err(DemoError::InvalidInput(message));
        if self.sagas == 0 {
            return invalid("--sagas must be at least 1".into());
        }
        if let Err(e) = check_share(self.failure_rate) {
            return invalid(format!("--failure-rate: {e}"));
        }
        if let Err(e) = check_share(self.compensation_failure_rate) {
            return invalid(format!("--compensation-failure-rate: {e}"));
        }
        let completing = self.sagas as usize - self.failing_sagas();
        if self.hang_sagas as usize > completing {
            return invalid(format!(
                "--hang-sagas {}: only {completing} of the {} sagas are planned to complete (the others fail at payment)",
                self.hang_sagas, self.sagas
            ));
        }
        if let Some(id) = &self.run_id
            && (id.is_empty()
                || id.len() > 32
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        {
            return invalid(format!(
                "--run-id {id:?}: use 1 to 32 lowercase letters and digits"
            ));
        }
        if self.concurrency == 0 {
            return invalid("--concurrency must be at least 1".into());
        }
        if self.reply_timeout.is_zero() {
            return invalid("--reply-timeout must be at least 1 second".into());
        }
        if let BrokerChoice::External(brokers) = &self.brokers
            && let Err(e) = parse_brokers(brokers)
        {
            return invalid(format!("--brokers: {e}"));
        }
        if self.role != Role::All && self.brokers == BrokerChoice::Embedded {
            return invalid(format!(
                "--service {} needs --brokers: the embedded broker lives inside one process",
                self.role.services().first().map_or("?", |s| s.short_name())
            ));
        }
        if let Some(tracker) = &self.tracker {
            if !self.role.runs_sagas() {
                return invalid(
                    "--with-tracker goes with the process that runs the sagas (--service all or order)"
                        .into(),
                );
            }
            if tracker.database_url.trim().is_empty() {
                return invalid("--database-url must not be empty".into());
            }
        }
        if let Some(outbox) = &self.outbox {
            if self.role != Role::All {
                return invalid(
                    "--outbox runs the three services and their relay in one process (--service all)"
                        .into(),
                );
            }
            if outbox.database_url.trim().is_empty() {
                return invalid("--database-url must not be empty".into());
            }
        }
        Ok(())
    }
}

impl DemoConfig {
    /// How many sagas fail at payment: `round(sagas × failure_rate)`.
    pub fn failing_sagas(&self) -> usize {
        let n = self.sagas as usize;
        (((n as f64) * self.failure_rate).round() as usize).min(n)
    }
}

impl TryFrom<Args> for DemoConfig {
    type Error = DemoError;

    fn try_from(args: Args) -> Result<Self, DemoError> {
        let config = DemoConfig {
            sagas: args.sagas,
            failure_rate: args.failure_rate,
            compensation_failure_rate: args.compensation_failure_rate,
            seed: args.seed,
            brokers: args
                .brokers
                .map_or(BrokerChoice::Embedded, BrokerChoice::External),
            role: args.service,
            emit_json: args.emit_json,
            concurrency: args.concurrency,
            reply_timeout: Duration::from_secs(args.reply_timeout),
            progress: !args.no_progress,
            tracker: args.with_tracker.then(|| TrackerOptions {
                database_url: args.database_url.clone(),
                keep_data: args.keep_tracker_data,
                stuck_after_minutes: args.stuck_after_minutes,
                listen: args.listen.unwrap_or(if args.serve {
                    crate::central_tracker::SERVE_LISTEN
                } else {
                    crate::central_tracker::EPHEMERAL_LISTEN
                }),
                serve: args.serve,
            }),
            outbox: args.outbox.then(|| OutboxOptions {
                database_url: args.database_url.clone(),
                keep_data: args.keep_outbox_data,
            }),
            hang_sagas: args.hang_sagas,
            run_id: args.run_id,
            from_earliest: false,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<DemoConfig, String> {
        let args =
            Args::try_parse_from(std::iter::once("order-saga-demo").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        DemoConfig::try_from(args).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse(&[]).expect("defaults");
        assert_eq!(config.sagas, 50);
        assert_eq!(config.brokers, BrokerChoice::Embedded);
        assert_eq!(config.role, Role::All);
    }

    #[test]
    fn rejects_out_of_range_values() {
        assert!(
            parse(&["--failure-rate", "2"])
                .expect_err("rate 2")
                .contains("outside [0, 1]")
        );
        assert!(
            parse(&["--failure-rate", "-0.1"])
                .expect_err("negative")
                .contains("outside [0, 1]")
        );
        assert!(
            parse(&["--failure-rate", "NaN"])
                .expect_err("nan")
                .contains("outside [0, 1]")
        );
        assert!(
            parse(&["--sagas", "0"])
                .expect_err("zero")
                .contains("at least 1")
        );
        assert!(
            parse(&["--brokers", "nohost"])
                .expect_err("no port")
                .contains("not host:port")
        );
        assert!(
            parse(&["--service", "product"])
                .expect_err("needs brokers")
                .contains("needs --brokers")
        );
        assert!(
            parse(&["--keep-tracker-data"])
                .expect_err("needs --with-tracker")
                .contains("--with-tracker")
        );
        assert!(
            parse(&[
                "--with-tracker",
                "--service",
                "payment",
                "--brokers",
                "localhost:9092"
            ])
            .expect_err("payment runs no sagas")
            .contains("--service all or order")
        );
    }

    #[test]
    fn with_tracker_takes_the_database_url() {
        assert_eq!(parse(&[]).expect("ok").tracker, None);
        let config = parse(&[
            "--with-tracker",
            "--database-url",
            "postgres://u@db/x",
            "--keep-tracker-data",
        ])
        .expect("ok");
        assert_eq!(
            config.tracker,
            Some(TrackerOptions {
                database_url: "postgres://u@db/x".into(),
                keep_data: true,
                stuck_after_minutes: 15,
                ..TrackerOptions::default()
            })
        );
        let serve = parse(&["--with-tracker", "--serve"]).expect("ok");
        let tracker = serve.tracker.expect("tracker");
        assert!(tracker.serve);
        assert_eq!(tracker.listen, crate::central_tracker::SERVE_LISTEN);
        let tracker = parse(&["--with-tracker", "--serve", "--listen", "0.0.0.0:9000"])
            .expect("ok")
            .tracker
            .expect("tracker");
        assert_eq!(tracker.listen.to_string(), "0.0.0.0:9000");
        assert!(
            parse(&["--serve"])
                .expect_err("needs --with-tracker")
                .contains("--with-tracker")
        );
        assert!(parse(&["--with-tracker", "--listen", "nowhere"]).is_err());
    }

    #[test]
    fn outbox_takes_the_database_url_and_runs_all_services() {
        assert_eq!(parse(&[]).expect("ok").outbox, None);
        let config = parse(&[
            "--outbox",
            "--database-url",
            "postgres://u@db/x",
            "--keep-outbox-data",
        ])
        .expect("ok");
        assert_eq!(
            config.outbox,
            Some(OutboxOptions {
                database_url: "postgres://u@db/x".into(),
                keep_data: true,
            })
        );
        assert!(
            parse(&["--keep-outbox-data"])
                .expect_err("needs --outbox")
                .contains("--outbox")
        );
        assert!(
            parse(&[
                "--outbox",
                "--service",
                "order",
                "--brokers",
                "localhost:9092"
            ])
            .expect_err("one process")
            .contains("--service all")
        );
    }

    #[test]
    fn a_run_id_is_lowercase_letters_and_digits() {
        let config = parse(&["--run-id", "0a1b2c3d"]).expect("ok");
        assert_eq!(config.run_id.as_deref(), Some("0a1b2c3d"));
        for bad in ["", "ABC", "a-b", &"a".repeat(33)] {
            assert!(
                parse(&["--run-id", bad])
                    .expect_err("bad run id")
                    .contains("--run-id"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hang_sagas_come_from_the_completing_ones() {
        let config = parse(&[
            "--with-tracker",
            "--hang-sagas",
            "2",
            "--stuck-after-minutes",
            "0",
            "--sagas",
            "10",
        ])
        .expect("ok");
        assert_eq!(config.hang_sagas, 2);
        assert_eq!(config.tracker.map(|t| t.stuck_after_minutes), Some(0));
        // 10 sagas at failure rate 0.3: 7 complete
        assert!(parse(&["--sagas", "10", "--hang-sagas", "7"]).is_ok());
        assert!(
            parse(&["--sagas", "10", "--hang-sagas", "8"])
                .expect_err("too many")
                .contains("only 7 of the 10 sagas")
        );
        assert!(
            parse(&["--stuck-after-minutes", "0"])
                .expect_err("needs --with-tracker")
                .contains("--with-tracker")
        );
    }

    #[test]
    fn accepts_explicit_values() {
        let config = parse(&[
            "--sagas",
            "3",
            "--failure-rate",
            "1",
            "--seed",
            "7",
            "--brokers",
            "localhost:9092",
        ])
        .expect("ok");
        assert_eq!(config.sagas, 3);
        assert_eq!(config.failure_rate, 1.0);
        assert_eq!(
            config.brokers,
            BrokerChoice::External("localhost:9092".into())
        );
    }
}
