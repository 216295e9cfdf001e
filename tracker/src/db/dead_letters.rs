//! `saga_dlq_local`: dead letters the DLQ topic refused for good, kept in PostgreSQL with the original record so
//! that ingestion goes on and `dlq redrive` can place them later (see [`crate::ingest::dlq`]).

use sqlx::Row;

use super::Store;

/// One dead letter kept in the database: the original record and why it is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDeadLetter {
    /// The row id (0 before it is stored).
    pub id: i64,
    /// Where the message was read.
    pub source_topic: String,
    /// Its partition.
    pub source_partition: i32,
    /// Its offset.
    pub source_offset: i64,
    /// The `dlq.reason` code.
    pub reason: String,
    /// The `dlq.error` text.
    pub error: String,
    /// Why the DLQ topic refused it: `too_large`, `not_authorized`, `invalid_record` or `unknown_topic`.
    pub cause: String,
    /// librdkafka's error.
    pub produce_error: String,
    /// The record's key.
    pub key: Option<Vec<u8>>,
    /// The record's value.
    pub payload: Option<Vec<u8>>,
    /// The record's headers, in order (a `None` value is a header without one).
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// PostgreSQL text cannot hold NUL: the error texts quote what a producer sent.
fn text(s: &str) -> String {
    s.replace('\0', "\\0")
}

impl Store {
    /// Keeps a dead letter; a message kept already (the same source offset, read again after a restart) is not
    /// added twice. True when the row is new.
    pub async fn keep_dead_letter(&self, d: &LocalDeadLetter) -> Result<bool, sqlx::Error> {
        let (keys, values): (Vec<Vec<u8>>, Vec<Option<Vec<u8>>>) =
            d.headers.iter().cloned().unzip();
        let inserted = sqlx::query(
            "INSERT INTO saga_dlq_local (source_topic, source_partition, source_offset, reason, error, cause,
                                         produce_error, message_key, payload, header_keys, header_values)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING",
        )
        .bind(text(&d.source_topic))
        .bind(d.source_partition)
        .bind(d.source_offset)
        .bind(text(&d.reason))
        .bind(text(&d.error))
        .bind(text(&d.cause))
        .bind(text(&d.produce_error))
        .bind(&d.key)
        .bind(&d.payload)
        .bind(keys)
        .bind(values)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Up to `limit` kept dead letters with an id above `after`, oldest first.
    pub async fn local_dead_letters(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LocalDeadLetter>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, source_topic, source_partition, source_offset, reason, error, cause, produce_error,
                    message_key, payload, header_keys, header_values
             FROM saga_dlq_local WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                let keys: Vec<Vec<u8>> = r.try_get("header_keys")?;
                let values: Vec<Option<Vec<u8>>> = r.try_get("header_values")?;
                Ok(LocalDeadLetter {
                    id: r.try_get("id")?,
                    source_topic: r.try_get("source_topic")?,
                    source_partition: r.try_get("source_partition")?,
                    source_offset: r.try_get("source_offset")?,
                    reason: r.try_get("reason")?,
                    error: r.try_get("error")?,
                    cause: r.try_get("cause")?,
                    produce_error: r.try_get("produce_error")?,
                    key: r.try_get("message_key")?,
                    payload: r.try_get("payload")?,
                    headers: keys.into_iter().zip(values).collect(),
                })
            })
            .collect()
    }

    /// Deletes a kept dead letter once it was placed (stored, or produced to the DLQ topic).
    pub async fn delete_local_dead_letter(&self, id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM saga_dlq_local WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// How many dead letters are kept in the database.
    pub async fn local_dead_letter_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM saga_dlq_local")
            .fetch_one(self.pool())
            .await
    }
}
