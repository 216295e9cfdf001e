//! The dead-letter queue: messages that do not decode or validate go to `saga.tracker.dlq` unchanged (key,
//! payload, headers), with the reason and their origin in headers:
//!
//! | header | value |
//! |---|---|
//! | `dlq.reason` | a short code: `empty`, `bad_magic`, `truncated`, `unknown_fingerprint`, `unknown_schema_id`, `malformed`, `invalid_event`, `too_large`, `db_rejected`, `saga_too_long` |
//! | `dlq.error` | the decoder's or validator's message |
//! | `dlq.original.topic` / `dlq.original.partition` / `dlq.original.offset` | where the message was read |
//! | `dlq.service` | `saga-tracker-service` |
//!
//! ## When the DLQ topic refuses a message
//!
//! A failed produce is classified by [`produce_failure`]:
//!
//! - *transient* (broker down, request timed out, message timed out in librdkafka's queue, queue full, not enough
//!   replicas, leader moving, ...): retried with backoff; the partition's progress waits meanwhile (its offsets
//!   are not committed, `saga_tracker_partition_stalled` shows it after `--stall-after-seconds`), nothing is lost;
//! - *permanent* (the record is too large for the DLQ topic or the broker, the topic or cluster is not authorized,
//!   the broker calls the record invalid or a policy refuses it, the topic does not exist and is not
//!   auto-created): retrying cannot help, so the message is kept in PostgreSQL instead, in `saga_dlq_local` with
//!   the original key, value and headers, the reason and both errors ([`LocalDeadLetter`]), counted in
//!   `saga_tracker_dlq_local_messages_total{cause}`, and ingestion goes on. `dlq redrive` places those rows
//!   later (stores what now validates, produces the rest to the DLQ topic) and deletes each one it placed.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_tracker_core::codec::DecodeError;

use super::validate::InvalidEvent;
use crate::db::LocalDeadLetter;

/// Header names.
pub mod headers {
    /// Short reason code.
    pub const REASON: &str = "dlq.reason";
    /// Full error text.
    pub const ERROR: &str = "dlq.error";
    /// Source topic.
    pub const TOPIC: &str = "dlq.original.topic";
    /// Source partition (decimal).
    pub const PARTITION: &str = "dlq.original.partition";
    /// Source offset (decimal).
    pub const OFFSET: &str = "dlq.original.offset";
    /// Who dead-lettered it.
    pub const SERVICE: &str = "dlq.service";
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The codec refused it.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// It decoded but cannot be stored.
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    /// PostgreSQL refused to store it with a data error (found by bisecting the batch); the text is the
    /// database's message with its SQLSTATE.
    #[error("the database rejected the event: {0}")]
    Database(String),
    /// Its saga already holds `--max-events-per-saga` events.
    #[error("the saga already holds {0} events (--max-events-per-saga)")]
    SagaTooLong(u32),
}

impl Rejection {
    /// The `dlq.reason` code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Database(_) => "db_rejected",
            Rejection::SagaTooLong(_) => "saga_too_long",
            Rejection::Invalid(InvalidEvent::TooLarge(_)) => "too_large",
            Rejection::Invalid(_) => "invalid_event",
            Rejection::Decode(e) => match e {
                DecodeError::Empty => "empty",
                DecodeError::BadMagic { .. } => "bad_magic",
                DecodeError::TruncatedHeader { .. }
                | DecodeError::Truncated { .. }
                | DecodeError::LengthBeyondPayload { .. } => "truncated",
                DecodeError::UnknownFingerprint { .. } => "unknown_fingerprint",
                DecodeError::UnknownSchemaId { .. } => "unknown_schema_id",
                _ => "malformed",
            },
        }
    }
}

/// Sends rejected messages to the DLQ topic.
pub struct DlqProducer {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for DlqProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DlqProducer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DlqProducer {
    /// A producer for `topic` (`acks=all`, idempotent) with the given extra properties.
    pub fn new(
        brokers: &str,
        topic: &str,
        extra: &[(String, String)],
    ) -> Result<DlqProducer, KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000");
        for (k, v) in extra {
            config.set(k, v);
        }
        Ok(DlqProducer {
            producer: config.create()?,
            topic: topic.to_owned(),
        })
    }

    /// Sends one rejected message and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        message: &OwnedMessage,
        rejection: &Rejection,
    ) -> Result<(), KafkaError> {
        let error = rejection.to_string();
        let h = dlq_headers(
            message.headers(),
            Origin {
                topic: message.topic(),
                partition: message.partition(),
                offset: message.offset(),
            },
            rejection.code(),
            &error,
        );
        self.produce(message.key(), message.payload(), h).await
    }

    /// Sends a dead letter kept in the database (by `dlq redrive`) with its reason and origin.
    pub async fn send_local(&self, d: &LocalDeadLetter) -> Result<(), KafkaError> {
        let original = local_headers(d);
        let h = dlq_headers(
            original.as_ref(),
            Origin {
                topic: &d.source_topic,
                partition: d.source_partition,
                offset: d.source_offset,
            },
            &d.reason,
            &d.error,
        );
        self.produce(d.key.as_deref(), d.payload.as_deref(), h)
            .await
    }

    async fn produce(
        &self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> Result<(), KafkaError> {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        self.producer
            .send(record, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

/// Where a dead letter was read.
#[derive(Debug, Clone, Copy)]
struct Origin<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
}

/// The original headers followed by the `dlq.*` ones.
fn dlq_headers(
    original: Option<&OwnedHeaders>,
    origin: Origin<'_>,
    code: &str,
    error: &str,
) -> OwnedHeaders {
    let mut h = OwnedHeaders::new();
    if let Some(original) = original {
        for header in original.iter() {
            h = h.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
    }
    let partition = origin.partition.to_string();
    let offset = origin.offset.to_string();
    for (key, value) in [
        (headers::REASON, code),
        (headers::ERROR, error),
        (headers::TOPIC, origin.topic),
        (headers::PARTITION, partition.as_str()),
        (headers::OFFSET, offset.as_str()),
        (headers::SERVICE, "saga-tracker-service"),
    ] {
        h = h.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    h
}

/// The original headers of a kept dead letter (`None` when it had none).
fn local_headers(d: &LocalDeadLetter) -> Option<OwnedHeaders> {
    if d.headers.is_empty() {
        return None;
    }
    let mut h = OwnedHeaders::new_with_capacity(d.headers.len());
    for (key, value) in &d.headers {
        let key = String::from_utf8_lossy(key);
        h = h.insert(Header {
            key: &key,
            value: value.as_deref(),
        });
    }
    Some(h)
}

/// What a failed produce to the DLQ topic means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceFailure {
    /// The broker or the network: retry the same message later (the partition waits).
    Transient,
    /// The DLQ topic will refuse this record every time: keep it in the database. The cause is one of
    /// [`PERMANENT_CAUSES`].
    Permanent(&'static str),
}

/// The `cause` codes of permanently refused dead letters (`saga_dlq_local.cause`, the metric's label).
pub const PERMANENT_CAUSES: [&str; 4] = [
    "too_large",
    "not_authorized",
    "invalid_record",
    "unknown_topic",
];

/// Classifies the error of a produce to the DLQ topic (see the module's documentation).
pub fn produce_failure(error: &KafkaError) -> ProduceFailure {
    use RDKafkaErrorCode as C;
    let Some(code) = error.rdkafka_error_code() else {
        return ProduceFailure::Transient;
    };
    match code {
        C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge => {
            ProduceFailure::Permanent("too_large")
        }
        C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed => {
            ProduceFailure::Permanent("not_authorized")
        }
        C::InvalidRecord | C::PolicyViolation => ProduceFailure::Permanent("invalid_record"),
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition | C::InvalidTopic => {
            ProduceFailure::Permanent("unknown_topic")
        }
        _ => ProduceFailure::Transient,
    }
}

/// A rejected message as a row of `saga_dlq_local`.
pub fn local_dead_letter(
    message: &OwnedMessage,
    rejection: &Rejection,
    cause: &str,
    produce_error: &KafkaError,
) -> LocalDeadLetter {
    LocalDeadLetter {
        id: 0,
        source_topic: message.topic().to_owned(),
        source_partition: message.partition(),
        source_offset: message.offset(),
        reason: rejection.code().to_owned(),
        error: rejection.to_string(),
        cause: cause.to_owned(),
        produce_error: produce_error.to_string(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.as_bytes().to_vec(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A kept dead letter as the message it was read as (for re-validation by `dlq redrive`).
pub fn local_message(d: &LocalDeadLetter) -> OwnedMessage {
    OwnedMessage::new(
        d.payload.clone(),
        d.key.clone(),
        d.source_topic.clone(),
        Timestamp::NotAvailable,
        d.source_partition,
        d.source_offset,
        local_headers(d),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_failures() {
        use RDKafkaErrorCode as C;
        let produce = KafkaError::MessageProduction;
        for (code, cause) in [
            (C::MessageSizeTooLarge, "too_large"),
            (C::MessageBatchTooLarge, "too_large"),
            (C::TopicAuthorizationFailed, "not_authorized"),
            (C::ClusterAuthorizationFailed, "not_authorized"),
            (C::InvalidRecord, "invalid_record"),
            (C::PolicyViolation, "invalid_record"),
            (C::UnknownTopicOrPartition, "unknown_topic"),
            (C::UnknownTopic, "unknown_topic"),
        ] {
            assert_eq!(
                produce_failure(&produce(code)),
                ProduceFailure::Permanent(cause),
                "{code:?}"
            );
            assert!(PERMANENT_CAUSES.contains(&cause));
        }
        for code in [
            C::MessageTimedOut,
            C::QueueFull,
            C::AllBrokersDown,
            C::BrokerTransportFailure,
            C::RequestTimedOut,
            C::NotEnoughReplicas,
            C::NotLeaderForPartition,
            C::LeaderNotAvailable,
            C::InvalidMessage,
            C::Fatal,
        ] {
            assert_eq!(
                produce_failure(&produce(code)),
                ProduceFailure::Transient,
                "{code:?}"
            );
        }
        assert_eq!(
            produce_failure(&KafkaError::Canceled),
            ProduceFailure::Transient
        );
    }

    #[test]
    fn a_kept_dead_letter_is_the_message_it_was_read_as() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some(b"00-abc".as_slice()),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        let m = OwnedMessage::new(
            Some(b"payload".to_vec()),
            Some(b"key".to_vec()),
            "saga.tracker".into(),
            Timestamp::NotAvailable,
            2,
            41,
            Some(headers),
        );
        let rejection = Rejection::Database("SQLSTATE 54000: too big".into());
        let d = local_dead_letter(
            &m,
            &rejection,
            "too_large",
            &KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        assert_eq!(d.reason, "db_rejected");
        assert_eq!(d.headers.len(), 2);
        let back = local_message(&d);
        assert_eq!(back.payload(), m.payload());
        assert_eq!(back.key(), m.key());
        assert_eq!(
            (back.topic(), back.partition(), back.offset()),
            ("saga.tracker", 2, 41)
        );
        let h = back.headers().expect("headers");
        assert_eq!(h.count(), 2);
        assert_eq!(h.get(0).key, "traceparent");
        assert_eq!(h.get(0).value, Some(b"00-abc".as_slice()));
        assert_eq!(h.get(1).value, None);
    }
}
