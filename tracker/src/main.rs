//! `saga-tracker-service`: the binary. Configuration by flags and environment; see `--help`.

use clap::{CommandFactory as _, FromArgMatches as _, Parser as _};
use saga_tracker_service::{Config, Service, ops};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let operation = std::env::args()
        .nth(1)
        .is_some_and(|a| ops::cli::is_command(&a));
    // operations print their own summary: only warnings from the libraries
    let default_filter = if operation { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(if operation {
            // stdout holds the operation's report
            BoxMakeWriter::new(std::io::stderr)
        } else {
            BoxMakeWriter::new(std::io::stdout)
        })
        .init();
    if operation {
        let cli = ops::cli::OpsCli::parse();
        return std::process::ExitCode::from(ops::cli::run(cli.command).await);
    }
    let matches = Config::command().get_matches();
    let config = match Config::from_arg_matches(&matches) {
        Ok(config) => config,
        Err(e) => e.exit(),
    };
    for flag in saga_tracker_service::config::secrets_on_command_line(&matches) {
        tracing::warn!(
            "{flag} is given on the command line, where every user of this host can read it \
             (/proc/PID/cmdline); use {flag}-file or the environment variable instead"
        );
    }
    match Service::start(config).await {
        Ok(service) => {
            service.run_until(shutdown_signal()).await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "saga-tracker-service did not start");
            eprintln!("saga-tracker-service: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
