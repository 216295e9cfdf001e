//! `saga-tracker checklist` on the fixture workspaces under `tests/fixtures/checklist/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/checklist");
const CRATES: [&str; 3] = ["shared-sagas", "order-service", "payment-service"];

fn checklist(manifests: &[PathBuf], format: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_saga-tracker"));
    cmd.args(["checklist", "--format", format]);
    for m in manifests {
        cmd.arg("--manifest-path").arg(m);
    }
    cmd.output().expect("run saga-tracker")
}

fn fixture(name: &str) -> Vec<PathBuf> {
    CRATES
        .iter()
        .map(|c| Path::new(FIXTURES).join(name).join(c).join("Cargo.toml"))
        .collect()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

fn item<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["items"]
        .as_array()
        .expect("items[]")
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item `{id}` in {report:#}"))
}

/// The Markdown line of the failed item whose text contains every needle.
fn failed_line<'a>(md: &'a str, needles: &[&str]) -> &'a str {
    md.lines()
        .find(|l| l.starts_with("- [ ] ✗") && needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no ✗ line with {needles:?} in:\n{md}"))
}

#[test]
fn good_fixture_passes_in_both_formats() {
    let md = checklist(&fixture("good"), "md");
    assert_eq!(md.status.code(), Some(0), "{}", stdout(&md));
    let text = stdout(&md);
    assert!(text.contains("✓ PASSED"), "{text}");
    assert!(!text.contains('✗'), "{text}");

    let out = checklist(&fixture("good"), "json");
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(report["summary"]["failed"], 0);
    // Handlers in other crates, methods in impl and trait-impl blocks, keyword form, nested modules:
    let step = item(&report, "step:OrderSaga::ReserveStock");
    assert!(
        step["detail"]
            .as_str()
            .expect("detail")
            .contains("handlers::stock::reserve_stock"),
        "{step}"
    );
    assert!(
        item(&report, "step:OrderSaga::ChargePayment")["detail"]
            .as_str()
            .expect("detail")
            .contains("Payments::charge")
    );
    assert!(
        item(&report, "step:OrderSaga::ConfirmOrder")["detail"]
            .as_str()
            .expect("detail")
            .contains("Orders::confirm")
    );
    assert_eq!(
        item(&report, "owner:payment-service")["detail"],
        "owner = \"payments-team\""
    );
    let saga = item(&report, "saga:OrderSaga");
    assert!(
        saga["location"]
            .as_str()
            .expect("location")
            .ends_with("good/shared-sagas/src/lib.rs:8"),
        "{saga}"
    );
}

#[test]
fn bad_fixture_fails_and_names_every_defect_in_markdown() {
    let out = checklist(&fixture("bad"), "md");
    assert_eq!(out.status.code(), Some(1));
    let md = stdout(&out);
    assert!(md.contains("✗ FAILED"), "{md}");
    // Missing handler, with the step's declaration.
    let missing = failed_line(&md, &["OrderSaga::ShipOrder", "step handler", "missing"]);
    assert!(
        missing.contains("bad/shared-sagas/src/lib.rs:15"),
        "{missing}"
    );
    // Missing compensation.
    failed_line(&md, &["OrderSaga::ReserveStock", "compensation", "missing"]);
    // Missing owner.
    let owner = failed_line(&md, &["`payment-service` names its data owner"]);
    assert!(owner.contains("bad/payment-service/Cargo.toml:"), "{owner}");
    // Duplicate handler, listing both places.
    let dup = failed_line(&md, &["OrderSaga::ConfirmOrder", "duplicate"]);
    assert!(
        dup.contains("order-service/src/lib.rs:12")
            && dup.contains("payment-service/src/lib.rs:19"),
        "{dup}"
    );
    // Routed but un-annotated handler.
    let routed = failed_line(
        &md,
        &[
            "PaymentService",
            "charge_payment",
            "has no #[saga_step(OrderSaga, ChargePayment)]",
        ],
    );
    assert!(routed.contains("payment-service/src/lib.rs:13"), "{routed}");
    // Pattern matches: name and parameter type.
    failed_line(&md, &["handle_cancel", "name matches `handle_*`"]);
    failed_line(&md, &["write_audit", "`Transaction` parameter"]);
}

#[test]
fn bad_fixture_fails_and_names_every_defect_in_json() {
    let out = checklist(&fixture("bad"), "json");
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    let failed = |id: &str| {
        let i = item(&report, id);
        assert_eq!(i["ok"], false, "{i}");
        i["detail"].as_str().expect("detail").to_owned()
    };
    assert!(failed("step:OrderSaga::ShipOrder").starts_with("missing"));
    assert!(failed("compensation:OrderSaga::ReserveStock").starts_with("missing"));
    assert!(failed("owner:payment-service").starts_with("missing"));
    assert!(failed("step:OrderSaga::ConfirmOrder").starts_with("duplicate: 2 handlers"));
    assert!(
        failed("route:PaymentService:step:OrderSaga::ChargePayment").contains("has no #[saga_step")
    );
    assert!(failed("unannotated:order-service:handle_cancel").contains("handle_*"));
    let route = item(
        &report,
        "route:PaymentService:step:OrderSaga::ChargePayment",
    );
    assert!(
        route["location"]
            .as_str()
            .expect("location")
            .ends_with("bad/payment-service/src/lib.rs:7"),
        "{route}"
    );
    // Passing items are listed too, with their place.
    assert_eq!(item(&report, "step:OrderSaga::ReserveStock")["ok"], true);
    assert_eq!(item(&report, "owner:order-service")["ok"], true);
    let failures = report["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["ok"] == false)
        .count();
    assert_eq!(report["summary"]["failed"], failures);
}

#[test]
fn a_file_that_does_not_parse_is_reported_and_the_others_still_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).expect("mkdir");
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"svc\"\nversion = \"0.1.0\"\n[package.metadata.saga-tracker]\nowner = \"me\"\n",
    )
    .expect("write");
    std::fs::write(
        root.join("src/lib.rs"),
        "#[derive(Saga)]\nenum S { A }\n#[saga_step(S, A)]\nfn a() {}\nmod broken;\n",
    )
    .expect("write");
    std::fs::write(root.join("src/broken.rs"), "fn fine() {}\n\nfn broken( {\n").expect("write");
    let out = checklist(&[root.join("Cargo.toml")], "json");
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    let parse = report["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"].as_str().is_some_and(|id| id.starts_with("parse:")))
        .unwrap_or_else(|| panic!("no parse item in {report:#}"));
    assert_eq!(parse["ok"], false);
    let location = parse["location"].as_str().expect("location");
    assert!(location.ends_with("src/broken.rs:3"), "{location}");
    // lib.rs was still read: its handler covers the step.
    assert_eq!(item(&report, "step:S::A")["ok"], true);
}

#[test]
fn a_manifest_that_does_not_exist_is_a_clear_usage_error() {
    let out = checklist(&[PathBuf::from("/no/such/service/Cargo.toml")], "md");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: manifest `/no/such/service/Cargo.toml` does not exist"
    );
}

#[test]
fn an_unknown_configuration_key_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"svc\"\n[package.metadata.saga-tracker]\nowners = \"typo\"\n",
    )
    .expect("write");
    let out = checklist(&[dir.path().join("Cargo.toml")], "md");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("owners") && stderr.contains("[package.metadata.saga-tracker]"),
        "{stderr}"
    );
}

#[test]
fn no_saga_declared_is_a_failure_not_a_vacuous_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"svc\"\n[package.metadata.saga-tracker]\nowner = \"me\"\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("src/lib.rs"), "fn f() {}\n").expect("write");
    let out = checklist(&[dir.path().join("Cargo.toml")], "json");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(item(&json(&out), "sagas:any")["ok"], false);
}

#[test]
fn services_in_one_crate_can_name_their_own_owners() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"demo\"\n[package.metadata.saga-tracker]\nservice-owners = { A = \"team-a\", Gone = \"x\" }\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("src/lib.rs"),
        "#[derive(Saga)]\nenum S { X, Y }\n#[saga_step(S, X)]\nfn x() {}\n#[saga_step(S, Y)]\nfn y() {}\n\
         saga_service! { A { step S::X => x } }\nsaga_service! { B { step S::Y => y } }\n",
    )
    .expect("write");
    let out = checklist(&[dir.path().join("Cargo.toml")], "json");
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(item(&report, "owner:demo:A")["ok"], true);
    let b = item(&report, "owner:demo:B");
    assert_eq!(b["ok"], false, "{b}");
    assert!(
        b["location"]
            .as_str()
            .expect("location")
            .ends_with("src/lib.rs:8"),
        "{b}"
    );
    assert_eq!(
        item(&report, "owner:demo")["ok"],
        false,
        "B has no owner, so the package needs one"
    );
    assert!(
        item(&report, "owner:demo:Gone")["detail"]
            .as_str()
            .expect("detail")
            .contains("no saga_service!")
    );
}
