//! The dead-letter queue: messages that do not decode or validate go to `saga.tracker.dlq` unchanged (key,
//! payload, headers), with the reason and their origin in headers:
//!
//! | header | value |
//! |---|---|
//! | `dlq.reason` | a short code: `empty`, `bad_magic`, `truncated`, `unknown_fingerprint`, `unknown_schema_id`, `malformed`, `invalid_event`, `too_large`, `db_rejected`, `saga_too_long` |
//! | `dlq.error` | the decoder's or validator's message |
//! | `dlq.original.topic` / `dlq.original.partition` / `dlq.original.offset` | where the message was read |
//! | `dlq.service` | `saga-tracker-service` |

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_tracker_core::codec::DecodeError;

use super::validate::InvalidEvent;

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
        let mut h = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter() {
                h = h.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let error = rejection.to_string();
        for (key, value) in [
            (headers::REASON, rejection.code()),
            (headers::ERROR, error.as_str()),
            (headers::TOPIC, message.topic()),
            (headers::PARTITION, partition.as_str()),
            (headers::OFFSET, offset.as_str()),
            (headers::SERVICE, "saga-tracker-service"),
        ] {
            h = h.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(h);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.producer
            .send(record, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}
