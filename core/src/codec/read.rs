//! The Avro binary reader for [`SagaEvent`]. Every length is checked against the bytes that remain
//! before anything is allocated, so a hostile length costs nothing.

use std::collections::BTreeMap;

use super::DecodeError;
use crate::event::{SagaEvent, StepError, StepStatus};

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn long(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let mut n: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(DecodeError::Truncated {
                    field,
                    offset: self.pos,
                });
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(DecodeError::VarintOverflow {
                    field,
                    offset: self.pos - 1,
                });
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError::VarintOverflow {
                    field,
                    offset: self.pos - 1,
                });
            }
        }
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn int(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let offset = self.pos;
        let v = self.long(field)?;
        i32::try_from(v).map_err(|_| DecodeError::IntOutOfRange {
            field,
            offset,
            value: v,
        })
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let offset = self.pos;
        let len = self.long(field)?;
        if len < 0 {
            return Err(DecodeError::NegativeLength { field, offset, len });
        }
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len_usize > self.remaining() {
            return Err(DecodeError::LengthBeyondPayload {
                field,
                offset,
                len: len as u64,
                remaining: self.remaining(),
            });
        }
        let raw = &self.bytes[self.pos..self.pos + len_usize];
        self.pos += len_usize;
        std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { field, offset })
    }

    fn union_index(&mut self, field: &'static str, branches: i64) -> Result<i64, DecodeError> {
        let offset = self.pos;
        let index = self.long(field)?;
        if !(0..branches).contains(&index) {
            return Err(DecodeError::UnionIndexOutOfRange {
                field,
                offset,
                index,
            });
        }
        Ok(index)
    }

    pub(crate) fn event(&mut self) -> Result<SagaEvent, DecodeError> {
        let event_id_offset = self.pos;
        let event_id = self.str("eventId")?;
        let idempotency_key = self.str("idempotencyKey")?.to_owned();
        let saga_id = self.str("sagaId")?.to_owned();
        let saga_type = self.str("sagaType")?.to_owned();
        let step = self.str("step")?.to_owned();
        let status_offset = self.pos;
        let status_index = self.int("status")?;
        let status = u32::try_from(status_index)
            .ok()
            .and_then(StepStatus::from_index)
            .ok_or(DecodeError::EnumIndexOutOfRange {
                field: "status",
                offset: status_offset,
                index: i64::from(status_index),
            })?;
        let attempt = self.int("attempt")?;
        let order_id = match self.union_index("orderId", 2)? {
            0 => None,
            _ => Some(self.str("orderId")?.to_owned()),
        };
        let service = self.str("service")?.to_owned();
        let recorded_at = self.long("recordedAt")?;
        let duration_micros = match self.union_index("durationMicros", 2)? {
            0 => None,
            _ => Some(self.long("durationMicros")?),
        };
        let error = match self.union_index("error", 2)? {
            0 => None,
            _ => Some(StepError {
                kind: self.str("error.kind")?.to_owned(),
                message: self.str("error.message")?.to_owned(),
            }),
        };
        let metadata = self.metadata()?;
        if self.remaining() > 0 {
            return Err(DecodeError::TrailingBytes {
                offset: self.pos,
                count: self.remaining(),
            });
        }
        // The uuid logical type is checked last, so a structural defect is reported as such.
        let event_id = uuid::Uuid::try_parse(event_id).map_err(|_| DecodeError::InvalidUuid {
            offset: event_id_offset,
            value: event_id.chars().take(64).collect(),
        })?;
        Ok(SagaEvent {
            event_id,
            idempotency_key,
            saga_id,
            saga_type,
            step,
            status,
            attempt,
            order_id,
            service,
            recorded_at,
            duration_micros,
            error,
            metadata,
        })
    }

    fn metadata(&mut self) -> Result<BTreeMap<String, String>, DecodeError> {
        let mut map = BTreeMap::new();
        loop {
            let offset = self.pos;
            let mut count = self.long("metadata")?;
            if count == 0 {
                return Ok(map);
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes.
                count = count.checked_neg().ok_or(DecodeError::VarintOverflow {
                    field: "metadata",
                    offset,
                })?;
                let size = self.long("metadata")?;
                if size < 0 || size as u64 > self.remaining() as u64 {
                    return Err(DecodeError::LengthBeyondPayload {
                        field: "metadata",
                        offset,
                        len: size.unsigned_abs(),
                        remaining: self.remaining(),
                    });
                }
            }
            // Every entry takes at least two bytes (two empty strings).
            if count as u64 > (self.remaining() / 2) as u64 {
                return Err(DecodeError::LengthBeyondPayload {
                    field: "metadata",
                    offset,
                    len: count as u64,
                    remaining: self.remaining(),
                });
            }
            for _ in 0..count {
                let key = self.str("metadata key")?.to_owned();
                let value = self.str("metadata value")?.to_owned();
                map.insert(key, value);
            }
        }
    }
}
