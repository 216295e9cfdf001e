//! `saga-tracker decode` against the golden vectors.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../schemas/vectors/saga_tracker_v1.json"
);

fn vectors() -> Value {
    let text =
        std::fs::read_to_string(VECTORS).expect("schemas/vectors/saga_tracker_v1.json is present");
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn decode(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_saga-tracker"))
        .arg("decode")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run saga-tracker");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is a JSON object"))
        .collect()
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("vector without `{key}`"))
}

#[test]
fn hex_lines_decode_every_valid_vector_and_report_every_invalid_one() {
    let v = vectors();
    let valid = field(&v, "valid").as_array().expect("valid[]");
    let invalid = field(&v, "invalid").as_array().expect("invalid[]");
    // Invalid vectors first, so every valid one follows a failure: decoding must continue.
    let mut input = String::new();
    for (bad, good) in invalid.iter().zip(valid.iter().cycle()) {
        input.push_str(field(bad, "single_object_hex").as_str().expect("hex"));
        input.push('\n');
        input.push_str(field(good, "single_object_hex").as_str().expect("hex"));
        input.push('\n');
    }
    let out = decode(&["--hex"], input.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(1),
        "an undecodable input makes the exit code 1"
    );
    let events = json_lines(&out);
    assert_eq!(events.len(), invalid.len());
    for (event, good) in events.iter().zip(valid.iter().cycle()) {
        assert_eq!(
            event,
            field(good, "event"),
            "vector {}",
            field(good, "name")
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let non_empty = invalid
        .iter()
        .filter(|b| {
            !field(b, "single_object_hex")
                .as_str()
                .unwrap_or("")
                .is_empty()
        })
        .count();
    assert_eq!(
        stderr.lines().count(),
        non_empty,
        "one reason per undecodable line:\n{stderr}"
    );
    assert!(
        stderr.contains("line 3: not an Avro single-object message"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown writer schema fingerprint"),
        "{stderr}"
    );
}

#[test]
fn hex_input_is_detected_without_the_flag() {
    let v = vectors();
    let first = &field(&v, "valid")[0];
    let line = format!(
        "{}\n",
        field(first, "single_object_hex").as_str().expect("hex")
    );
    let out = decode(&[], line.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_lines(&out), vec![field(first, "event").clone()]);
}

#[test]
fn raw_messages_from_a_file_back_to_back_and_newline_separated() {
    let v = vectors();
    let valid = field(&v, "valid").as_array().expect("valid[]");
    let mut raw = Vec::new();
    for (i, good) in valid.iter().enumerate() {
        raw.extend(
            hex::decode(field(good, "single_object_hex").as_str().expect("hex")).expect("hex"),
        );
        if i % 2 == 0 {
            raw.push(b'\n'); // as `kcat -f '%s\n'` writes
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.bin");
    std::fs::write(&file, &raw).expect("write");
    let out = decode(&[file.to_str().expect("utf-8 path")], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = json_lines(&out);
    let expected: Vec<Value> = valid.iter().map(|g| field(g, "event").clone()).collect();
    assert_eq!(events, expected);
}

#[test]
fn a_raw_message_with_an_unknown_fingerprint_is_reported_and_the_next_decoded() {
    let v = vectors();
    let good = &field(&v, "valid")[0];
    let mut raw =
        hex::decode(field(good, "single_object_hex").as_str().expect("hex")).expect("hex");
    let mut bad = raw.clone();
    bad[2..10].copy_from_slice(&[0; 8]);
    bad.append(&mut raw);
    let out = decode(&[], &bad);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&out), vec![field(good, "event").clone()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .starts_with("message 1 at byte 0: unknown writer schema fingerprint 0000000000000000"),
        "{stderr}"
    );
}

#[test]
fn a_missing_input_file_is_a_usage_error() {
    let out = decode(&["/no/such/events.bin"], b"");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/no/such/events.bin") && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[test]
fn confluent_framed_v1_and_v2_hex_lines_decode_with_the_registry_id_map() {
    // v1 bytes from the v1 golden vectors, v2 bytes from fastavro's v2 vectors, re-framed as Confluent.
    let v1 = vectors();
    let v1_hex = field(&field(&v1, "valid")[0], "single_object_hex")
        .as_str()
        .expect("hex")
        .to_owned();
    let v2_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/vectors/saga_tracker_v2.json"
    );
    let v2: Value =
        serde_json::from_str(&std::fs::read_to_string(v2_path).expect("v2 vectors")).expect("JSON");
    let v2_hex = field(&field(&v2, "valid")[0], "single_object_hex")
        .as_str()
        .expect("hex")
        .to_owned();
    // single-object header: 20 hex digits; Confluent: 00 + 4-byte id
    let input = format!(
        "00{:08x}{}\n00{:08x}{}\n00{:08x}{}\n",
        17,
        &v1_hex[20..],
        18,
        &v2_hex[20..],
        19,
        &v2_hex[20..]
    );
    let out = decode(&["--registry-schema-ids", "17=1,18=2"], input.as_bytes());
    let events = json_lines(&out);
    assert_eq!(events.len(), 2, "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 3: unknown schema registry id 19; configured: 17=v1,18=v2"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1));
    // an id mapped to a version this build does not know is a usage error (before any input is read)
    let bad = Command::new(env!("CARGO_BIN_EXE_saga-tracker"))
        .args(["decode", "--registry-schema-ids", "17=9"])
        .stdin(Stdio::null())
        .output()
        .expect("run saga-tracker");
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("17 maps to v9"));
}
