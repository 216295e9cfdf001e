//! Reading a datum written with an older known schema version: Avro schema resolution (apache-avro) from the
//! writer's schema into the current one, then into [`SagaEvent`]. Off the hot path: the current version is read by
//! the hand-written reader; this path runs only for events from services still on an older SDK. Its cost is a
//! `BENCHMARKS.md` row (`codec/decode v1 by resolution`).
//!
//! apache-avro allocates a string's claimed length before reading it (bounded by a process-wide limit, 512 MiB by
//! default). A hostile length must cost nothing, so this module caps that limit at [`MAX_RESOLVED_DATUM`] the first
//! time it runs, and rejects longer datums before apache-avro sees them.

use std::sync::LazyLock;

use apache_avro::{Schema, from_avro_datum, from_value};

use super::DecodeError;
use crate::event::SagaEvent;
use crate::schema::{SCHEMA_JSON, SchemaVersion, VERSIONS};

/// The largest datum read by resolution (1 MiB, Kafka's default `message.max.bytes`).
pub const MAX_RESOLVED_DATUM: usize = 1 << 20;

struct Schemas {
    reader: Schema,
    writers: Vec<(u32, Schema)>,
}

fn parse(json: &str, version: u32) -> Result<Schema, String> {
    Schema::parse_str(json).map_err(|e| format!("embedded schema v{version} does not parse: {e}"))
}

static SCHEMAS: LazyLock<Result<Schemas, String>> = LazyLock::new(|| {
    let reader = parse(SCHEMA_JSON, crate::schema::SCHEMA_VERSION)?;
    let writers = VERSIONS
        .iter()
        .map(|v| parse(v.json, v.version).map(|schema| (v.version, schema)))
        .collect::<Result<_, _>>()?;
    Ok(Schemas { reader, writers })
});

fn failed(version: &SchemaVersion, message: impl Into<String>) -> DecodeError {
    DecodeError::Resolution {
        version: version.version,
        message: message.into(),
    }
}

/// Reads `datum`, written with `version`, into the current model.
pub(crate) fn read(version: &SchemaVersion, datum: &[u8]) -> Result<SagaEvent, DecodeError> {
    if datum.len() > MAX_RESOLVED_DATUM {
        return Err(failed(
            version,
            format!(
                "datum of {} bytes is larger than {MAX_RESOLVED_DATUM}, the limit for older schema versions",
                datum.len()
            ),
        ));
    }
    apache_avro::util::max_allocation_bytes(MAX_RESOLVED_DATUM);
    let schemas = SCHEMAS.as_ref().map_err(|e| failed(version, e.clone()))?;
    let writer = schemas
        .writers
        .iter()
        .find(|(v, _)| *v == version.version)
        .map(|(_, schema)| schema)
        .ok_or_else(|| failed(version, "no embedded schema for this version"))?;
    let mut rest = datum;
    let value = from_avro_datum(writer, &mut rest, Some(&schemas.reader))
        .map_err(|e| failed(version, e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            offset: datum.len() - rest.len(),
            count: rest.len(),
        });
    }
    from_value::<SagaEvent>(&value).map_err(|e| failed(version, e.to_string()))
}
