//! `order-saga-demo`: runs Order/Product/Payment sagas over Kafka, records every step to `saga.tracker`, reads
//! the events back and reports what they say.
//!
//! Exit codes: 0 all timelines consistent; 1 some saga's recorded timeline is inconsistent; 2 bad input
//! (arguments, unreachable `--brokers`, unwritable `--emit-json`, unusable `--database-url` with
//! `--with-tracker`); 3 the demo could not finish.

use std::process::ExitCode;

use clap::Parser as _;
use clap::error::ErrorKind;
use saga_tracker_examples::{Args, DemoConfig, DemoOutcome, EXIT_BAD_INPUT};

fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message is several lines; the first says what is wrong.
            let text = e.to_string();
            eprintln!(
                "{}",
                text.lines().next().unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let outcome = DemoConfig::try_from(args).and_then(saga_tracker_examples::run);
    match outcome {
        Ok(DemoOutcome::Report(report)) => {
            // with --serve, the report was printed before serving
            if !report.tracker.as_ref().is_some_and(|t| t.serving) {
                print!("{}", report.render());
            }
            ExitCode::from(report.exit_code())
        }
        Ok(DemoOutcome::Served(served)) => {
            for s in served {
                eprintln!(
                    "{}: handled {} commands, recorded {} events ({} delivered); skipped {} commands of other runs",
                    s.name, s.handled, s.stats.recorded, s.stats.delivered, s.other_runs
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
