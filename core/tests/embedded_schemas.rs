//! The schema versions this crate embeds (`core/schemas/`) are the repository's `schemas/history/`, byte for
//! byte, and the current one is `schemas/SagaTracker.avsc` — so the crate packages on its own and cannot drift.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn avsc_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".avsc"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_history_version_is_embedded_byte_for_byte() {
    let history = repo().join("schemas/history");
    let embedded = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let names = avsc_files(&history);
    assert!(!names.is_empty(), "schemas/history has no versions");
    assert_eq!(
        names,
        avsc_files(&embedded),
        "core/schemas/ must hold exactly the files of schemas/history/"
    );
    for name in &names {
        let theirs = std::fs::read(history.join(name)).expect("read history");
        let ours = std::fs::read(embedded.join(name)).expect("read embedded");
        assert!(
            theirs == ours,
            "core/schemas/{name} differs from schemas/history/{name}"
        );
    }
}

#[test]
fn the_current_schema_is_the_newest_history_version_and_the_one_compiled_in() {
    let current =
        std::fs::read_to_string(repo().join("schemas/SagaTracker.avsc")).expect("read current");
    let newest = avsc_files(&repo().join("schemas/history"))
        .into_iter()
        .max_by_key(|name| {
            name.trim_start_matches("SagaTracker.v")
                .trim_end_matches(".avsc")
                .parse::<u32>()
                .unwrap_or_else(|_| panic!("history file {name} is not SagaTracker.vN.avsc"))
        })
        .expect("a newest version");
    let newest_text =
        std::fs::read_to_string(repo().join("schemas/history").join(&newest)).expect("read newest");
    assert_eq!(
        current, newest_text,
        "schemas/SagaTracker.avsc must equal schemas/history/{newest}"
    );
    assert_eq!(saga_tracker_core::schema::SCHEMA_JSON, current);
}
