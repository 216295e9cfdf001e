//! `--with-tracker --serve`: the demo binary keeps its in-process tracker service up after the report, prints
//! its URLs, answers REST and GraphQL on them, and on SIGINT stops, drops its schema and exits 0. Real
//! PostgreSQL (`DATABASE_URL`), the embedded broker.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use saga_tracker_examples::central_tracker::DEFAULT_DATABASE_URL;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_order-saga-demo");
const SAGAS: i64 = 8;

/// Kills the child if the test fails before it exits.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// Reads lines until one satisfies `until` (or the output ends): every line read.
fn read_until(lines: &mpsc::Receiver<String>, until: impl Fn(&str) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(240)) {
            Ok(line) => {
                let done = until(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!("no more output ({e}); so far:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn serve_keeps_the_tracker_up_until_sigint() {
    let child = Command::new(BIN)
        .args([
            "--sagas",
            &SAGAS.to_string(),
            "--failure-rate",
            "0.5",
            "--no-progress",
            "--with-tracker",
            "--serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &database_url(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start order-saga-demo");
    let mut demo = Demo(child);
    let stdout = demo.0.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // the report, then the URLs
    let printed = read_until(&lines, |l| l.trim_start().starts_with("metrics"));
    let text = printed.join("\n");
    assert!(text.contains("still serving (--serve)"), "{text}");
    let url_of = |name: &str| -> String {
        printed
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} URL in:\n{text}"))
    };
    let graphql = url_of("GraphQL");
    let rest = url_of("REST");
    assert!(url_of("console").ends_with("/ui"), "{text}");
    assert!(graphql.starts_with("http://127.0.0.1:") && graphql.ends_with("/api/graphql"));
    let base = graphql.trim_end_matches("/api/graphql").to_owned();
    let schema = printed
        .iter()
        .find_map(|l| l.split("(schema ").nth(1))
        .map(|s| s.trim_end_matches("):").to_owned())
        .unwrap_or_else(|| panic!("no schema in:\n{text}"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let stats: Value = client
            .get(format!("{base}/api/v1/stats"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats JSON");
        assert_eq!(stats["sagas_total"], SAGAS, "{stats}");
        let list: Value = client
            .get(&rest)
            .send()
            .await
            .expect("sagas")
            .json()
            .await
            .expect("sagas JSON");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(SAGAS as usize));
        let query = "{ stats { sagasTotal } \
                     sagas(first: 50, filter: { status: COMPENSATED }) { \
                       edges { node { sagaId status events { status } links { failureEventId } } } } }";
        let answer: Value = client
            .post(&graphql)
            .json(&json!({ "query": query }))
            .send()
            .await
            .expect("graphql")
            .json()
            .await
            .expect("graphql JSON");
        assert!(answer.get("errors").is_none(), "{answer}");
        assert_eq!(answer["data"]["stats"]["sagasTotal"], SAGAS);
        let compensated = answer["data"]["sagas"]["edges"].as_array().expect("edges");
        assert!(!compensated.is_empty(), "{answer}");
        for edge in compensated {
            let node = &edge["node"];
            assert_eq!(node["status"], "COMPENSATED");
            assert!(
                node["events"]
                    .as_array()
                    .expect("events")
                    .iter()
                    .any(|e| e["status"] == "FAILED"),
                "{node}"
            );
            assert!(
                !node["links"].as_array().expect("links").is_empty(),
                "{node}"
            );
        }
    });

    // SIGINT: the demo stops the service, drops the schema and exits 0
    let pid = demo.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let rest_of_output = read_until(&lines, |l| l.contains("Tracker service stopped"));
    let last = rest_of_output.last().expect("a line");
    assert!(last.contains(&schema) && last.contains("dropped"), "{last}");
    let status = demo.0.wait().expect("exit status");
    assert_eq!(status.code(), Some(0), "{status}");
    runtime.block_on(async {
        let gone = reqwest::Client::new()
            .get(format!("{base}/livez"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        assert!(gone.is_err(), "still serving after exit");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&database_url())
            .await
            .expect("test database");
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
        )
        .bind(&schema)
        .fetch_one(&pool)
        .await
        .expect("query");
        assert_eq!(n, 0, "schema {schema} was not dropped");
        pool.close().await;
    });
}
