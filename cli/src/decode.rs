//! `saga-tracker decode`: Avro single-object encoded events to JSON, one object per line.
//!
//! Input forms:
//! * **hex lines** (forced with `--hex`, detected when the input is only hex digits and whitespace): one
//!   message per non-empty line; spaces inside a line and a `0x` prefix are ignored.
//! * **raw bytes**: one or more single-object messages back to back, optionally separated by newlines (as
//!   `kcat -f '%s\n'` writes them). A message ends where its Avro datum ends. After an undecodable message,
//!   decoding resumes at the next `C3 01` + v1-fingerprint header.
//!
//! * **Confluent framing** (`00` + 4-byte schema id + datum), with `--registry-schema-ids 17=1,18=2`: a hex line,
//!   or a raw input holding one message; the id picks the writer's schema version, as in the tracker service.
//!
//! Every event goes to stdout as one JSON line; every undecodable message prints its position and the reason
//! on stderr, and decoding continues.

use std::io::{Read, Write};
use std::path::Path;

use saga_tracker_core::SagaEvent;
use saga_tracker_core::codec::{
    self, DecodeError, KnownSchemas, RegistryIds, SINGLE_OBJECT_HEADER_LEN,
};
use saga_tracker_core::schema::{SINGLE_OBJECT_MAGIC, VERSIONS};

use crate::error::CliError;

/// One message of the input: where it was and what it decoded to.
#[derive(Debug)]
pub struct Decoded {
    /// `line N` (hex) or `message N at byte K` (raw).
    pub position: String,
    /// The event, or why the message could not be decoded.
    pub result: Result<SagaEvent, String>,
}

/// True when the input should be read as hex lines: only hex digits, `x` of a `0x` prefix, and whitespace.
pub fn looks_like_hex(input: &[u8]) -> bool {
    !input.starts_with(&SINGLE_OBJECT_MAGIC)
        && input.iter().any(u8::is_ascii_hexdigit)
        && input
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace() || *b == b'x')
}

/// Decodes hex lines: one message per non-empty line.
#[cfg(test)]
pub fn decode_hex_lines(input: &[u8]) -> Vec<Decoded> {
    decode_hex_lines_with(input, &KnownSchemas::all())
}

/// Decodes hex lines with `schemas` (its registry ids decode Confluent-framed lines).
pub fn decode_hex_lines_with(input: &[u8], schemas: &KnownSchemas) -> Vec<Decoded> {
    let text = String::from_utf8_lossy(input);
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let compact: String = line.split_whitespace().collect();
        let compact = compact.strip_prefix("0x").unwrap_or(&compact);
        if compact.is_empty() {
            continue;
        }
        let result = match hex::decode(compact) {
            Ok(bytes) => schemas.decode(&bytes).map_err(|e| e.to_string()),
            Err(e) => Err(format!("not hex: {e}")),
        };
        out.push(Decoded {
            position: format!("line {}", index + 1),
            result,
        });
    }
    out
}

/// Where the next single-object header of any known schema version starts.
fn next_header(input: &[u8], from: usize) -> Option<usize> {
    VERSIONS
        .iter()
        .filter_map(|version| {
            let mut header = SINGLE_OBJECT_MAGIC.to_vec();
            header.extend_from_slice(&version.fingerprint);
            input
                .get(from..)?
                .windows(header.len())
                .position(|w| w == header.as_slice())
        })
        .min()
        .map(|p| from + p)
}

/// Decodes raw bytes: single-object messages back to back, optionally newline-separated.
pub fn decode_raw(input: &[u8]) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        if matches!(input[pos], b'\n' | b'\r') {
            pos += 1;
            continue;
        }
        let position = format!("message {} at byte {pos}", out.len() + 1);
        let message = &input[pos..];
        match codec::decode(message) {
            Ok(event) => {
                out.push(Decoded {
                    position,
                    result: Ok(event),
                });
                break;
            }
            Err(DecodeError::TrailingBytes { offset, .. }) => {
                let end = SINGLE_OBJECT_HEADER_LEN + offset;
                let result = codec::decode(&message[..end]).map_err(|e| e.to_string());
                out.push(Decoded { position, result });
                pos += end;
            }
            Err(err) => {
                out.push(Decoded {
                    position,
                    result: Err(err.to_string()),
                });
                match next_header(input, pos + 1) {
                    Some(next) => pos = next,
                    None => break,
                }
            }
        }
    }
    out
}

/// Decodes `input` in the form `force_hex` or detection picks.
#[cfg(test)]
pub fn decode_input(input: &[u8], force_hex: bool) -> Vec<Decoded> {
    decode_input_with(input, force_hex, &KnownSchemas::all())
}

/// [`decode_input`] with `schemas`: with registry ids, a raw input starting with `00` is one Confluent message.
pub fn decode_input_with(input: &[u8], force_hex: bool, schemas: &KnownSchemas) -> Vec<Decoded> {
    if force_hex || looks_like_hex(input) {
        decode_hex_lines_with(input, schemas)
    } else if input.first() == Some(&0) && !schemas.registry_ids().is_empty() {
        let message = input.strip_suffix(b"\n").unwrap_or(input);
        vec![Decoded {
            position: "message 1 at byte 0".into(),
            result: schemas.decode(message).map_err(|e| e.to_string()),
        }]
    } else {
        decode_raw(input)
    }
}

/// Reads `file` (stdin when `None` or `-`), prints events and reasons; `Ok(false)` when any message failed.
/// `registry_ids` decode Confluent-framed messages.
pub fn run(
    force_hex: bool,
    file: Option<&Path>,
    registry_ids: Option<RegistryIds>,
) -> Result<bool, CliError> {
    let schemas = KnownSchemas::all().with_registry_ids(registry_ids.unwrap_or_default())?;
    let input = match file {
        Some(path) if path != Path::new("-") => {
            std::fs::read(path).map_err(|e| CliError::read("input file", path, e))?
        }
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|source| CliError::Io {
                    context: "cannot read stdin",
                    source,
                })?;
            buf
        }
    };
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let mut all_ok = true;
    for decoded in decode_input_with(&input, force_hex, &schemas) {
        match decoded.result {
            Ok(event) => {
                let json = serde_json::to_string(&event).map_err(|e| CliError::Io {
                    context: "cannot write JSON",
                    source: std::io::Error::other(e),
                })?;
                match writeln!(stdout, "{json}") {
                    Ok(()) => {}
                    // The reader went away (e.g. `| head`): stop quietly.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(all_ok),
                    Err(source) => {
                        return Err(CliError::Io {
                            context: "cannot write stdout",
                            source,
                        });
                    }
                }
            }
            Err(reason) => {
                all_ok = false;
                eprintln!("{}: {reason}", decoded.position);
            }
        }
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        codec::encode(&saga_tracker_core::testing::sample_event())
    }

    #[test]
    fn raw_messages_back_to_back_and_newline_separated_are_split() {
        let one = sample();
        let mut input = one.clone();
        input.extend_from_slice(&one);
        input.push(b'\n');
        input.extend_from_slice(&one);
        input.push(b'\n');
        let decoded = decode_raw(&input);
        assert_eq!(decoded.len(), 3);
        assert!(decoded.iter().all(|d| d.result.is_ok()), "{decoded:?}");
    }

    #[test]
    fn a_bad_raw_message_is_reported_and_the_next_one_decoded() {
        let one = sample();
        let mut input = one[..one.len() - 5].to_vec();
        input[12] = 0xff; // corrupt the first message's datum
        input.extend_from_slice(&one);
        let decoded = decode_raw(&input);
        assert_eq!(decoded.len(), 2, "{decoded:?}");
        assert!(decoded[0].result.is_err());
        assert!(decoded[1].result.is_ok());
    }

    #[test]
    fn hex_is_detected_and_raw_is_not() {
        assert!(looks_like_hex(b"c301ab\n"));
        assert!(!looks_like_hex(&sample()));
        assert!(!looks_like_hex(b"hello"));
    }

    #[test]
    fn confluent_framing_decodes_by_registry_id() {
        let event = saga_tracker_core::testing::sample_event();
        let framed = codec::encode_framed(&event, codec::Framing::Confluent { schema_id: 18 });
        let ids: RegistryIds = "17=1,18=2".parse().expect("ids");
        let schemas = KnownSchemas::all().with_registry_ids(ids).expect("ids");
        let mut unmapped = framed.clone();
        unmapped[4] = 19;
        let lines = format!("{}\n{}\n", hex::encode(&framed), hex::encode(&unmapped));
        let decoded = decode_input_with(lines.as_bytes(), false, &schemas);
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].result.as_ref().ok(), Some(&event));
        let err = decoded[1].result.as_ref().expect_err("unmapped");
        assert!(err.contains("unknown schema registry id 19"), "{err}");
        let raw = decode_input_with(&framed, false, &schemas);
        assert_eq!(raw.len(), 1);
        assert_eq!(raw[0].result.as_ref().ok(), Some(&event));
        // without ids, Confluent framing is not read
        assert!(decode_input(&framed, false)[0].result.is_err());
    }

    #[test]
    fn hex_lines_report_bad_hex_with_the_line_number() {
        let mut input = hex::encode(sample()).into_bytes();
        input.extend_from_slice(b"\nzz\n\n");
        input.extend_from_slice(hex::encode(sample()).as_bytes());
        let decoded = decode_hex_lines(&input);
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[1].position, "line 2");
        assert!(
            decoded[1]
                .result
                .as_ref()
                .err()
                .is_some_and(|e| e.contains("not hex"))
        );
        assert!(decoded[2].result.is_ok());
    }
}
