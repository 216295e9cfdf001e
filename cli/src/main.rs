//! `saga-tracker`: the release checklist, the schema compatibility check and the event decoder.
//!
//! Exit codes: 0 everything passed, 1 a check failed (or an input could not be decoded), 2 usage or I/O error.

mod checklist;
mod decode;
mod error;
#[cfg(feature = "outbox")]
mod outbox;
mod output;
mod paths;
mod schema_check;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Saga tracker tooling: release checklist, schema compatibility, event decoding.
#[derive(Debug, Parser)]
#[command(name = "saga-tracker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that every declared saga step has exactly one annotated handler (and compensation), that routed
    /// and handler-like functions are annotated, and that each service names its data owner.
    Checklist {
        /// A crate's Cargo.toml (repeat to check several services together). Default: ./Cargo.toml.
        #[arg(long = "manifest-path", value_name = "PATH")]
        manifest_paths: Vec<PathBuf>,
        /// Output format: a Markdown checklist for people, JSON for CI.
        #[arg(long, value_enum, default_value_t = Format::Md)]
        format: Format,
    },
    /// Schema tools.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Decode Avro single-object encoded events (raw bytes or hex lines) to JSON, one object per line.
    Decode {
        /// Read hex lines (one message per line) even if the input does not look like hex.
        #[arg(long)]
        hex: bool,
        /// Decode Confluent framing (`00` + schema id) with these schema registry ids, `ID=VERSION` pairs
        /// (`17=1,18=2`), as the tracker service's flag of the same name.
        #[arg(long, env = "TRACKER_REGISTRY_SCHEMA_IDS")]
        registry_schema_ids: Option<saga_tracker_core::codec::RegistryIds>,
        /// The input file; stdin when absent or `-`.
        file: Option<PathBuf>,
    },
    /// The transactional outbox (built with feature `outbox`).
    #[cfg(feature = "outbox")]
    Outbox {
        #[command(subcommand)]
        command: outbox::OutboxCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Check that the current schema is backward and forward compatible with every version in the history.
    Check {
        /// The current schema.
        #[arg(long, value_name = "PATH", default_value = "schemas/SagaTracker.avsc")]
        schema: PathBuf,
        /// The directory of released versions (`*.avsc`).
        #[arg(long, value_name = "DIR", default_value = "schemas/history")]
        history: PathBuf,
    },
}

/// Output format of `checklist`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A Markdown checklist (✓/✗ per item).
    Md,
    /// One JSON document.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Checklist {
            manifest_paths,
            format,
        } => checklist::run(&manifest_paths, format),
        Command::Schema {
            command: SchemaCommand::Check { schema, history },
        } => schema_check::run(&schema, &history),
        Command::Decode {
            hex,
            file,
            registry_schema_ids,
        } => decode::run(hex, file.as_deref(), registry_schema_ids),
        #[cfg(feature = "outbox")]
        Command::Outbox { command } => outbox::run(command).map_err(error::CliError::Outbox),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}
