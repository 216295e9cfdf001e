//! A JSON-lines sink for local development: one decoded event per line, to a file or stdout.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{Delivery, Envelope, Sink, SinkError};
use crate::codec;

/// Writes each event as one JSON object per line (the Avro field names, `serde_json` form of [`SagaEvent`](crate::SagaEvent)).
pub struct JsonLinesSink {
    target: String,
    out: Mutex<BufWriter<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl JsonLinesSink {
    /// Appends to `path`, creating it if needed.
    pub fn append_to(path: impl AsRef<Path>) -> Result<Self, SinkError> {
        let path = path.as_ref();
        let file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self::to_writer(path.display().to_string(), file))
    }

    /// Writes to standard output.
    pub fn stdout() -> Self {
        Self::to_writer("stdout", std::io::stdout())
    }

    /// Writes to any writer; `name` is used in messages.
    pub fn to_writer(name: impl Into<String>, writer: impl Write + Send + 'static) -> Self {
        JsonLinesSink {
            target: name.into(),
            out: Mutex::new(BufWriter::new(Box::new(writer))),
        }
    }
}

impl Sink for JsonLinesSink {
    fn send(&self, envelope: Envelope<'_>, delivery: Delivery) {
        let line = codec::decode_either_framing(envelope.payload)
            .map_err(|e| e.to_string())
            .and_then(|event| serde_json::to_string(&event).map_err(|e| e.to_string()));
        let written = line.and_then(|line| {
            let mut out = self.out.lock().map_err(|_| "writer poisoned".to_owned())?;
            writeln!(out, "{line}").map_err(|e| e.to_string())
        });
        match written {
            Ok(()) => delivery.delivered(),
            Err(reason) => delivery.failed(envelope.key, envelope.payload, &reason),
        }
    }

    fn flush(&self, _timeout: Duration) -> Result<(), SinkError> {
        let mut out = self.out.lock().map_err(|_| SinkError::Io {
            path: PathBuf::from(&self.target),
            source: std::io::Error::other("writer poisoned"),
        })?;
        out.flush().map_err(|source| SinkError::Io {
            path: PathBuf::from(&self.target),
            source,
        })
    }

    fn describe(&self) -> String {
        format!("json-lines to {}", self.target)
    }
}
