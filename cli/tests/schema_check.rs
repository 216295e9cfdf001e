//! `saga-tracker schema check`: the repository's schemas pass; a breaking history fails naming the fields.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema");

fn schema_check(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_saga-tracker"))
        .current_dir(dir)
        .args(["schema", "check"])
        .args(args)
        .output()
        .expect("run saga-tracker")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn repository_schema_is_compatible_with_its_history_and_prints_the_v1_and_v2_fingerprints() {
    let out = schema_check(Path::new(WORKSPACE), &[]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SagaTracker.v1.avsc"), "{text}");
    assert!(text.contains("fingerprint 4ea4c63af7f12518"), "{text}");
    assert!(text.contains("SagaTracker.v2.avsc"), "{text}");
    assert!(text.contains("fingerprint f5500e0a1fcefdfe"), "{text}");
    assert!(text.contains("current  "), "{text}");
    assert!(text.contains("2 version(s)"), "{text}");
    assert_eq!(text.matches("backward ✓  forward ✓").count(), 2, "{text}");
}

#[test]
fn defaults_are_found_from_a_subdirectory_of_the_workspace() {
    let out = schema_check(&PathBuf::from(WORKSPACE).join("cli/src"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn removed_field_and_changed_type_fail_naming_each_field_and_reason() {
    let dir = PathBuf::from(FIXTURES).join("breaking");
    let out = schema_check(
        &dir,
        &["--schema", "SagaTracker.avsc", "--history", "history"],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("✗ v1"), "{text}");
    // `service` was removed and has no default: a v1 reader cannot read new data.
    let service = text
        .lines()
        .find(|l| l.contains("forward") && l.contains("field `service`"))
        .unwrap_or_else(|| panic!("no forward line for `service` in:\n{text}"));
    assert!(service.contains("no default"), "{service}");
    // `attempt` changed from int to string: neither direction reads it.
    for direction in ["backward", "forward"] {
        let attempt = text
            .lines()
            .find(|l| l.trim_start().starts_with(direction) && l.contains("field `attempt`"))
            .unwrap_or_else(|| panic!("no {direction} line for `attempt` in:\n{text}"));
        assert!(
            attempt.contains("int") && attempt.contains("string"),
            "{attempt}"
        );
    }
    assert!(text.contains("INCOMPATIBLE"), "{text}");
}

#[test]
fn an_added_optional_field_and_enum_symbol_are_compatible_with_every_version() {
    let dir = PathBuf::from(FIXTURES).join("compatible");
    let out = schema_check(
        &dir,
        &["--schema", "SagaTracker.avsc", "--history", "history"],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let v1 = text.find("✓ v1").expect("v1 listed");
    let v2 = text.find("✓ v2").expect("v2 listed");
    assert!(v1 < v2, "versions in order:\n{text}");
    assert!(text.contains("fingerprint 4ea4c63af7f12518"), "{text}");
}

#[test]
fn a_missing_history_directory_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = PathBuf::from(WORKSPACE).join("schemas/SagaTracker.avsc");
    let schema = schema.to_str().expect("utf-8 path");
    let out = schema_check(
        dir.path(),
        &["--schema", schema, "--history", "no-such-dir"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-dir") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn a_history_file_that_is_not_a_schema_fails_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("history")).expect("mkdir");
    std::fs::write(dir.path().join("history/SagaTracker.v1.avsc"), "{not json").expect("write");
    let schema = PathBuf::from(WORKSPACE).join("schemas/SagaTracker.avsc");
    let out = schema_check(
        dir.path(),
        &[
            "--schema",
            schema.to_str().expect("utf-8"),
            "--history",
            "history",
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("✗ v1") && text.contains("not JSON"), "{text}");
}
