//! Cold storage: where archives live and what they hold.
//!
//! Layout under the archive URL (`file:///dir` or `s3://bucket/prefix`): one Avro object container file per
//! UTC day, `saga_events/year=YYYY/month=MM/YYYY-MM-DD.avro`, deflate-compressed, with the [`ARCHIVE_SCHEMA`]
//! embedded in its header (fastavro, avro-tools and apache-avro read it as is). Each record is one stored row
//! of `saga_events`: the event's fields, where the tracker read it (`kafka_*`) and when (`ingested_at`), and
//! `extra`, a JSON object with any column a later migration added, so a restore gives back the row as it was.
//!
//! S3 credentials and endpoint come from the usual `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for S3-compatible stores, `AWS_ALLOW_HTTP`).

use std::sync::Arc;

use apache_avro::{Codec, DeflateSettings, Reader, Schema, Writer};
use chrono::{DateTime, NaiveDate, Utc};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::OpsError;

/// The Avro schema of an archive record (one row of `saga_events`).
pub const ARCHIVE_SCHEMA: &str = r#"{
  "type": "record",
  "name": "ArchivedSagaEvent",
  "namespace": "io.sagatracker.archive",
  "doc": "One row of the tracker's saga_events table, exported by `saga-tracker-service archive`.",
  "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "idempotency_key", "type": "string"},
    {"name": "saga_id", "type": "string"},
    {"name": "saga_type", "type": "string"},
    {"name": "step", "type": "string"},
    {"name": "status", "type": "string"},
    {"name": "attempt", "type": "int"},
    {"name": "order_id", "type": ["null", "string"], "default": null},
    {"name": "service", "type": "string"},
    {"name": "recorded_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "duration_micros", "type": ["null", "long"], "default": null},
    {"name": "error_kind", "type": ["null", "string"], "default": null},
    {"name": "error_message", "type": ["null", "string"], "default": null},
    {"name": "metadata", "type": "string", "doc": "JSON object"},
    {"name": "kafka_topic", "type": "string"},
    {"name": "kafka_partition", "type": "int"},
    {"name": "kafka_offset", "type": "long"},
    {"name": "ingested_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "extra", "type": "string", "default": "{}", "doc": "JSON object: columns added by later migrations"}
  ]
}"#;

/// The columns [`ArchivedEvent`] holds as fields; every other column but `restored` goes to `extra`.
const TYPED: [&str; 18] = [
    "event_id",
    "idempotency_key",
    "saga_id",
    "saga_type",
    "step",
    "status",
    "attempt",
    "order_id",
    "service",
    "recorded_at",
    "duration_micros",
    "error_kind",
    "error_message",
    "metadata",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "ingested_at",
];

/// One archived row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedEvent {
    /// The event id (UUID text).
    pub event_id: String,
    /// `{sagaId}:{step}:{status}:{attempt}`.
    pub idempotency_key: String,
    /// The saga instance.
    pub saga_id: String,
    /// The saga type.
    pub saga_type: String,
    /// The step.
    pub step: String,
    /// The step status.
    pub status: String,
    /// The attempt.
    pub attempt: i32,
    /// The business order id.
    pub order_id: Option<String>,
    /// The recording service.
    pub service: String,
    /// Event time, microseconds since the epoch.
    pub recorded_at: i64,
    /// Handler duration.
    pub duration_micros: Option<i64>,
    /// Error kind.
    pub error_kind: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
    /// Metadata, a JSON object as text.
    pub metadata: String,
    /// Source topic.
    pub kafka_topic: String,
    /// Source partition.
    pub kafka_partition: i32,
    /// Source offset.
    pub kafka_offset: i64,
    /// When the tracker stored it, microseconds since the epoch.
    pub ingested_at: i64,
    /// Other columns, a JSON object as text.
    pub extra: String,
}

impl ArchivedEvent {
    /// From a row as `to_jsonb(saga_events)` gives it.
    pub fn from_row_json(row: Value) -> Result<ArchivedEvent, String> {
        let Value::Object(mut row) = row else {
            return Err("row is not a JSON object".into());
        };
        let mut take = |k: &str| row.remove(k).unwrap_or(Value::Null);
        let text = |v: Value, k: &str| -> Result<String, String> {
            match v {
                Value::String(s) => Ok(s),
                other => Err(format!("column {k}: expected text, got {other}")),
            }
        };
        let opt_text = |v: Value| v.as_str().map(str::to_owned);
        let int = |v: Value, k: &str| {
            v.as_i64()
                .ok_or_else(|| format!("column {k}: not an integer"))
        };
        let time = |v: Value, k: &str| -> Result<i64, String> {
            let s = v
                .as_str()
                .ok_or_else(|| format!("column {k}: not a time"))?;
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_micros())
                .map_err(|e| format!("column {k}: `{s}`: {e}"))
        };
        let event = ArchivedEvent {
            event_id: text(take("event_id"), "event_id")?,
            idempotency_key: text(take("idempotency_key"), "idempotency_key")?,
            saga_id: text(take("saga_id"), "saga_id")?,
            saga_type: text(take("saga_type"), "saga_type")?,
            step: text(take("step"), "step")?,
            status: text(take("status"), "status")?,
            attempt: i32::try_from(int(take("attempt"), "attempt")?).map_err(|e| e.to_string())?,
            order_id: opt_text(take("order_id")),
            service: text(take("service"), "service")?,
            recorded_at: time(take("recorded_at"), "recorded_at")?,
            duration_micros: take("duration_micros").as_i64(),
            error_kind: opt_text(take("error_kind")),
            error_message: opt_text(take("error_message")),
            metadata: take("metadata").to_string(),
            kafka_topic: text(take("kafka_topic"), "kafka_topic")?,
            kafka_partition: i32::try_from(int(take("kafka_partition"), "kafka_partition")?)
                .map_err(|e| e.to_string())?,
            kafka_offset: int(take("kafka_offset"), "kafka_offset")?,
            ingested_at: time(take("ingested_at"), "ingested_at")?,
            extra: String::new(),
        };
        row.remove("restored");
        Ok(ArchivedEvent {
            extra: Value::Object(row).to_string(),
            ..event
        })
    }

    /// The row for `jsonb_populate_record(NULL::saga_events, ...)`, marked `restored`.
    pub fn to_row_json(&self) -> Result<Value, String> {
        let time = |micros: i64, k: &str| {
            DateTime::<Utc>::from_timestamp_micros(micros)
                .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)))
                .ok_or_else(|| format!("{k} {micros} is out of range"))
        };
        let mut row = match serde_json::from_str::<Value>(&self.extra) {
            Ok(Value::Object(m)) => m,
            _ => return Err(format!("extra of {} is not a JSON object", self.event_id)),
        };
        let metadata: Value = serde_json::from_str(&self.metadata)
            .map_err(|e| format!("metadata of {}: {e}", self.event_id))?;
        let fields: [(&str, Value); 18] = [
            ("event_id", Value::from(self.event_id.clone())),
            ("idempotency_key", Value::from(self.idempotency_key.clone())),
            ("saga_id", Value::from(self.saga_id.clone())),
            ("saga_type", Value::from(self.saga_type.clone())),
            ("step", Value::from(self.step.clone())),
            ("status", Value::from(self.status.clone())),
            ("attempt", Value::from(self.attempt)),
            ("order_id", Value::from(self.order_id.clone())),
            ("service", Value::from(self.service.clone())),
            ("recorded_at", time(self.recorded_at, "recorded_at")?),
            ("duration_micros", Value::from(self.duration_micros)),
            ("error_kind", Value::from(self.error_kind.clone())),
            ("error_message", Value::from(self.error_message.clone())),
            ("metadata", metadata),
            ("kafka_topic", Value::from(self.kafka_topic.clone())),
            ("kafka_partition", Value::from(self.kafka_partition)),
            ("kafka_offset", Value::from(self.kafka_offset)),
            ("ingested_at", time(self.ingested_at, "ingested_at")?),
        ];
        debug_assert!(fields.iter().map(|(k, _)| *k).eq(TYPED));
        for (k, v) in fields {
            row.insert(k.to_owned(), v);
        }
        row.insert("restored".into(), Value::Bool(true));
        Ok(Value::Object(row))
    }
}

/// The parsed [`ARCHIVE_SCHEMA`].
fn schema() -> Schema {
    // A constant that parses (checked by a test).
    Schema::parse_str(ARCHIVE_SCHEMA).unwrap_or(Schema::Null)
}

/// An opened archive location.
#[derive(Debug, Clone)]
pub struct ColdStore {
    /// The object store.
    pub store: Arc<dyn ObjectStore>,
    /// The prefix inside it.
    pub prefix: Path,
    /// The URL as given (for messages).
    pub url: String,
}

impl ColdStore {
    /// Opens `file:///dir` (created if missing) or `s3://bucket/prefix` (credentials from `AWS_*`).
    pub fn open(url: &str) -> Result<ColdStore, OpsError> {
        let parsed = url::Url::parse(url).map_err(|e| {
            OpsError::Input(format!(
                "--archive-url `{url}`: {e}; expected file:///path or s3://bucket/prefix"
            ))
        })?;
        match parsed.scheme() {
            "file" => {
                let dir = parsed.to_file_path().map_err(|()| {
                    OpsError::Input(format!("--archive-url `{url}` is not a local path"))
                })?;
                std::fs::create_dir_all(&dir).map_err(|e| {
                    OpsError::Input(format!("--archive-url `{url}`: cannot create {dir:?}: {e}"))
                })?;
                Ok(ColdStore {
                    store: Arc::new(LocalFileSystem::new_with_prefix(&dir)?),
                    prefix: Path::default(),
                    url: url.to_owned(),
                })
            }
            "s3" => {
                let bucket = parsed.host_str().unwrap_or_default();
                if bucket.is_empty() {
                    return Err(OpsError::Input(format!(
                        "--archive-url `{url}` names no bucket"
                    )));
                }
                let store = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| OpsError::Input(format!("--archive-url `{url}`: {e}")))?;
                Ok(ColdStore {
                    store: Arc::new(store),
                    prefix: Path::from(parsed.path().trim_matches('/')),
                    url: url.to_owned(),
                })
            }
            other => Err(OpsError::Input(format!(
                "--archive-url `{url}`: scheme `{other}` not supported; use file:///path or s3://bucket/prefix"
            ))),
        }
    }

    /// Where the archive of `day` lives.
    pub fn day_path(&self, day: NaiveDate) -> Path {
        let mut path = self.prefix.clone();
        for part in [
            "saga_events".to_owned(),
            format!("year={}", day.format("%Y")),
            format!("month={}", day.format("%m")),
            format!("{}.avro", day.format("%Y-%m-%d")),
        ] {
            path = path.child(part);
        }
        path
    }

    /// The archive file of `day` as stored, `None` when there is none.
    pub async fn get_day(&self, day: NaiveDate) -> Result<Option<Vec<u8>>, OpsError> {
        match self.store.get(&self.day_path(day)).await {
            Ok(got) => Ok(Some(got.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The archive of `day`, `None` when there is none (the whole day in memory: for tests and small days).
    pub async fn read_day(&self, day: NaiveDate) -> Result<Option<Vec<ArchivedEvent>>, OpsError> {
        let Some(bytes) = self.get_day(day).await? else {
            return Ok(None);
        };
        read_container(&bytes)
            .map(Some)
            .map_err(|reason| OpsError::BadArchive {
                path: self.day_path(day).to_string(),
                reason,
            })
    }

    /// Stores a file built by [`ContainerWriter`] as the archive of `day` (replacing any).
    pub async fn put_day(&self, day: NaiveDate, bytes: Vec<u8>) -> Result<(), OpsError> {
        self.store.put(&self.day_path(day), bytes.into()).await?;
        Ok(())
    }
}

/// Builds an archive file record by record (the file, compressed, is held in memory: about 50 bytes per
/// event).
pub struct ContainerWriter {
    writer: Writer<'static, Vec<u8>>,
    written: usize,
    declared: usize,
}

static SCHEMA: std::sync::LazyLock<Schema> = std::sync::LazyLock::new(schema);

impl ContainerWriter {
    /// A file for `day` that will hold exactly `events` records (the count goes in its header).
    pub fn new(day: NaiveDate, events: usize) -> Result<ContainerWriter, String> {
        let mut writer = Writer::with_codec(
            &SCHEMA,
            Vec::new(),
            Codec::Deflate(DeflateSettings::default()),
        );
        writer
            .add_user_metadata("saga.tracker.archive.day".into(), day.to_string())
            .map_err(|e| e.to_string())?;
        writer
            .add_user_metadata("saga.tracker.archive.events".into(), events.to_string())
            .map_err(|e| e.to_string())?;
        Ok(ContainerWriter {
            writer,
            written: 0,
            declared: events,
        })
    }

    /// Appends one record.
    pub fn append(&mut self, event: &ArchivedEvent) -> Result<(), String> {
        self.writer.append_ser(event).map_err(|e| e.to_string())?;
        self.written += 1;
        Ok(())
    }

    /// The file's bytes; an error when the records written are not the count declared.
    pub fn finish(self) -> Result<Vec<u8>, String> {
        if self.written != self.declared {
            return Err(format!(
                "{} records written, {} declared (rows changed during the export)",
                self.written, self.declared
            ));
        }
        self.writer.into_inner().map_err(|e| e.to_string())
    }
}

/// An Avro object container file holding `events`.
pub fn write_container(day: NaiveDate, events: &[ArchivedEvent]) -> Result<Vec<u8>, String> {
    let mut w = ContainerWriter::new(day, events.len())?;
    for e in events {
        w.append(e)?;
    }
    w.finish()
}

/// The records of a container written by [`write_container`], one by one, after checking its schema is
/// [`ARCHIVE_SCHEMA`]. Use [`check_container`] first to know every record reads and the count matches.
pub fn records(
    bytes: &[u8],
) -> Result<impl Iterator<Item = Result<ArchivedEvent, String>> + '_, String> {
    let reader = Reader::new(bytes).map_err(|e| format!("not an Avro container file: {e}"))?;
    let expected = SCHEMA.canonical_form();
    let found = reader.writer_schema().canonical_form();
    if found != expected {
        return Err(format!(
            "schema is not the tracker's archive schema (found {found})"
        ));
    }
    Ok(reader.enumerate().map(|(i, value)| {
        let value = value.map_err(|e| format!("record {i}: {e}"))?;
        let event: ArchivedEvent =
            apache_avro::from_value(&value).map_err(|e| format!("record {i}: {e}"))?;
        Uuid::parse_str(&event.event_id)
            .map_err(|e| format!("record {i}: event_id `{}`: {e}", event.event_id))?;
        Ok(event)
    }))
}

/// Reads every record of a container: its schema must be [`ARCHIVE_SCHEMA`], every record must read, and the
/// record count must match the count in its header. Returns the event ids, in file order.
pub fn check_container(bytes: &[u8]) -> Result<Vec<Uuid>, String> {
    let declared: Option<usize> = Reader::new(bytes)
        .map_err(|e| format!("not an Avro container file: {e}"))?
        .user_metadata()
        .get("saga.tracker.archive.events")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
    let mut ids = Vec::new();
    for event in records(bytes)? {
        let event = event?;
        ids.push(Uuid::parse_str(&event.event_id).map_err(|e| e.to_string())?);
    }
    match declared {
        Some(n) if n == ids.len() => Ok(ids),
        Some(n) => Err(format!("header says {n} events, {} read", ids.len())),
        None => Err("header has no event count (saga.tracker.archive.events)".into()),
    }
}

/// Reads a whole container (see [`check_container`]).
pub fn read_container(bytes: &[u8]) -> Result<Vec<ArchivedEvent>, String> {
    check_container(bytes)?;
    records(bytes)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ArchivedEvent {
        ArchivedEvent::from_row_json(serde_json::json!({
            "event_id": "0193a0c0-0000-7000-8000-000000000001",
            "idempotency_key": "s:step:STARTED:1", "saga_id": "s", "saga_type": "OrderSaga",
            "step": "step", "status": "STARTED", "attempt": 1, "order_id": null, "service": "svc",
            "recorded_at": "2024-11-24T00:00:00.000001+00:00", "duration_micros": null,
            "error_kind": null, "error_message": null, "metadata": {"traceId": "abc"},
            "kafka_topic": "saga.tracker", "kafka_partition": 2, "kafka_offset": 7,
            "ingested_at": "2024-11-24T00:00:01+00:00", "restored": false, "schema_version": 2
        }))
        .expect("row")
    }

    #[test]
    fn rows_round_trip_through_a_container() {
        assert!(!matches!(*SCHEMA, Schema::Null));
        let e = sample();
        assert_eq!(e.recorded_at, 1_732_406_400_000_001);
        assert_eq!(e.extra, r#"{"schema_version":2}"#);
        let day = NaiveDate::from_ymd_opt(2024, 11, 24).expect("day");
        let bytes = write_container(day, &[e.clone(), e.clone()]).expect("write");
        let back = read_container(&bytes).expect("read");
        assert_eq!(back, vec![e.clone(), e.clone()]);
        let row = e.to_row_json().expect("row");
        assert_eq!(row["schema_version"], 2);
        assert_eq!(row["restored"], true);
        assert_eq!(row["recorded_at"], "2024-11-24T00:00:00.000001Z");
        assert_eq!(row["metadata"]["traceId"], "abc");
    }

    #[test]
    fn corrupt_or_foreign_containers_are_refused() {
        let day = NaiveDate::from_ymd_opt(2024, 11, 24).expect("day");
        let bytes = write_container(day, &[sample(), sample(), sample()]).expect("write");
        assert!(read_container(&bytes[..bytes.len() - 20]).is_err(), "short");
        let mut flipped = bytes.clone();
        let n = flipped.len();
        flipped[n - 30] ^= 0xff;
        assert!(read_container(&flipped).is_err(), "flipped byte");
        assert!(read_container(b"not avro").is_err());
        let other = Schema::parse_str(
            r#"{"type":"record","name":"X","fields":[{"name":"a","type":"int"}]}"#,
        )
        .expect("schema");
        let mut w = Writer::new(&other, Vec::new());
        let mut r = apache_avro::types::Record::new(&other).expect("record");
        r.put("a", 1);
        w.append(r).expect("append");
        let foreign = w.into_inner().expect("bytes");
        let err = read_container(&foreign).expect_err("foreign schema");
        assert!(err.contains("schema"), "{err}");
    }
}
