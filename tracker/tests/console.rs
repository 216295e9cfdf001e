//! The operator console in a real headless Chromium (Debian's `chromium` + `chromium-driver`, installed by
//! `scripts/install-browser`), against a running service on real PostgreSQL with demo-like sagas: the token
//! gate, the list and its filters, the detail page's swimlanes with the failure linked to its compensations, the
//! overview, and updates without a reload. Screenshots go to `target/console-screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SagaBuilder, TestDb, TestKafka, wait_for_events};
use fantoccini::{Client, ClientBuilder, Locator};
use saga_tracker_core::SagaEvent;
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Service;
use serde_json::{Value, json};

const TOKEN: &str = "console-s3cret";
const TRACE_TEMPLATE: &str = "https://tempo.example/trace/{traceId}";
const HOSTILE_ID: &str = "<img src=x onerror=\"window.__pwned=1\">";
const HOSTILE_MESSAGE: &str = "<script>window.__pwned=2</script> carrier API refused the parcel";

/// chromedriver on an ephemeral port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: run `scripts/install-browser` (Debian's chromium and chromium-driver), or set {env}",
        path.display()
    );
    path
}

async fn start_driver() -> Driver {
    let exe = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await
            && r.status().is_success()
        {
            return driver;
        }
        assert!(Instant::now() < deadline, "chromedriver did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser(driver: &Driver) -> Client {
    let chromium = binary("CHROMIUM", "/usr/bin/chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1440,1000", "--force-device-scale-factor=1", "--lang=en-US"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Polls `script` (a function body returning a value) until `done` accepts its result.
async fn until(client: &Client, what: &str, script: &str, done: impl Fn(&Value) -> bool) -> Value {
    // generous: CI runs this beside the rest of the suite on two cores
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let v = client.execute(script, vec![]).await.expect("script runs");
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last value {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn row_ids(client: &Client) -> Value {
    client
        .execute(
            "return [...document.querySelectorAll('#saga-rows tr[data-saga-id]')].map(r => r.dataset.sagaId)",
            vec![],
        )
        .await
        .expect("rows")
}

async fn wait_rows(client: &Client, expected: &[&str]) {
    let expected = json!(expected);
    until(
        client,
        &format!("rows {expected}"),
        "return [...document.querySelectorAll('#saga-rows tr[data-saga-id]')].map(r => r.dataset.sagaId)",
        |v| *v == expected,
    )
    .await;
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(screenshots().join(name), png).expect("write screenshot");
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as i64
}

/// Gives the saga's events the times `start + offsets_ms[i]`, each outcome the handler duration since its
/// STARTED, a trace id and an order id of its own.
fn timed(
    saga: SagaBuilder,
    start: i64,
    offsets_ms: &[i64],
    trace: &str,
    order: &str,
) -> Vec<SagaEvent> {
    let mut events = saga.events;
    assert_eq!(events.len(), offsets_ms.len());
    for (e, ms) in events.iter_mut().zip(offsets_ms) {
        e.recorded_at = start + ms * 1000;
        e.metadata.insert("traceId".into(), trace.into());
        e.order_id = Some(order.into());
    }
    let starts: Vec<(String, i32, bool, i64)> = events
        .iter()
        .filter(|e| matches!(e.status, Started | CompensationStarted))
        .map(|e| {
            (
                e.step.clone(),
                e.attempt,
                e.status.is_compensation(),
                e.recorded_at,
            )
        })
        .collect();
    for e in events.iter_mut().filter(|e| e.status.is_terminal()) {
        if let Some((_, _, _, t)) = starts.iter().find(|(step, attempt, comp, _)| {
            *step == e.step && *attempt == e.attempt && *comp == e.status.is_compensation()
        }) {
            e.duration_micros = Some(e.recorded_at - t);
        }
    }
    events
}

/// A completed order, a compensated one (shipping failed: payment refunded, stock released), a compensation that
/// failed, a stuck one (silent for 30 minutes), a running one with a hostile id.
fn demo_sagas(now: i64) -> Vec<Vec<SagaEvent>> {
    let minute = 60_000_000;
    let ok = SagaBuilder::new("order-8811", "OrderSaga", 0)
        .ev("inventory-service", "reserve_stock", Started, 1)
        .ev("inventory-service", "reserve_stock", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1)
        .ev("payment-service", "charge_payment", Succeeded, 1)
        .ev("shipping-service", "ship_order", Started, 1)
        .ev("shipping-service", "ship_order", Succeeded, 1);
    let mut compensated = SagaBuilder::new("order-8812", "OrderSaga", 0)
        .ev("inventory-service", "reserve_stock", Started, 1)
        .ev("inventory-service", "reserve_stock", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1)
        .ev("payment-service", "charge_payment", Succeeded, 1)
        .ev("shipping-service", "ship_order", Started, 1)
        .ev("shipping-service", "ship_order", Failed, 1)
        .ev("payment-service", "charge_payment", CompensationStarted, 1)
        .ev("payment-service", "charge_payment", Compensated, 1)
        .ev("inventory-service", "reserve_stock", CompensationStarted, 1)
        .ev("inventory-service", "reserve_stock", Compensated, 1);
    compensated.events[5].error = Some(saga_tracker_core::StepError::new(
        "CarrierUnavailable",
        HOSTILE_MESSAGE,
    ));
    let comp_failed = SagaBuilder::new("order-8813", "OrderSaga", 0)
        .ev("inventory-service", "reserve_stock", Started, 1)
        .ev("inventory-service", "reserve_stock", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1)
        .ev("payment-service", "charge_payment", Failed, 1)
        .ev("inventory-service", "reserve_stock", CompensationStarted, 1)
        .ev("inventory-service", "reserve_stock", CompensationFailed, 1);
    let stuck = SagaBuilder::new("order-8790", "OrderSaga", 0)
        .ev("inventory-service", "reserve_stock", Started, 1)
        .ev("inventory-service", "reserve_stock", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1);
    let hostile =
        SagaBuilder::new(HOSTILE_ID, "RefundSaga", 0).ev("payment-service", "refund", Started, 1);
    vec![
        timed(
            stuck,
            now - 30 * minute,
            &[0, 40, 55],
            "0af7651916cd43dd8448eb211c80319c",
            "8790",
        ),
        timed(
            ok,
            now - 9 * minute,
            &[0, 35, 60, 470, 500, 1310],
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "8811",
        ),
        timed(
            comp_failed,
            now - 6 * minute,
            &[0, 30, 45, 2600, 2650, 2900],
            "5b8efff798038103d269b633813fc60c",
            "8813",
        ),
        timed(
            compensated,
            now - 4 * minute,
            &[0, 42, 70, 520, 560, 3560, 3600, 3850, 3900, 3960],
            "8a3c60f7d188f8fa79d48a391a778fa6",
            "8812",
        ),
        timed(
            hostile,
            now - minute,
            &[0],
            "2c9d1a7e4b6f4a0c9e8d7f6a5b4c3d2e",
            "R-2044",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_lists_filters_and_tells_a_sagas_story() {
    let driver = start_driver().await;
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let sagas = demo_sagas(now_micros());
    let n: usize = sagas.iter().map(Vec::len).sum();
    for events in &sagas {
        kafka.send(events).await;
    }
    let mut config = kafka.config(&db, "console-test");
    config.api_token = Some(TOKEN.into());
    config.trace_url_template = Some(TRACE_TEMPLATE.into());
    let service = Service::start(config).await.expect("service starts");
    wait_for_events(&service, n as i64).await;
    let base = format!("http://{}", service.addr());
    let client = browser(&driver).await;

    // `/` leads to the console; without a token it shows an error and no data
    client.goto(&format!("{base}/")).await.expect("open /");
    let url = client.current_url().await.expect("url");
    assert!(url.path().starts_with("/ui/"), "{url}");
    until(
        &client,
        "the missing-token error",
        "const e = document.getElementById('error'); return !e.hidden && e.textContent",
        |v| v.as_str().is_some_and(|t| t.contains("needs an API token")),
    )
    .await;
    assert_eq!(row_ids(&client).await, json!([]));

    // a wrong token: a clear error, no data
    let token = client
        .find(Locator::Id("token"))
        .await
        .expect("token field");
    token.send_keys("guess").await.expect("type");
    client
        .find(Locator::Id("token-save"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    until(
        &client,
        "the wrong-token error",
        "const e = document.getElementById('error'); return !e.hidden && e.textContent",
        |v| v.as_str().is_some_and(|t| t.contains("token was refused")),
    )
    .await;
    let shown: Value = client
        .execute(
            "return {rows: document.querySelectorAll('#saga-rows tr').length, \
                     counts: document.querySelectorAll('#counts .chip').length, \
                     main: document.getElementById('main').textContent.trim()}",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(shown, json!({"rows": 0, "counts": 0, "main": ""}));
    screenshot(&client, "wrong-token.png").await;

    // the right token: every saga, counts per state, the stuck one highlighted, hostile text as text
    let token = client
        .find(Locator::Id("token"))
        .await
        .expect("token field");
    token.send_keys(TOKEN).await.expect("type");
    client
        .find(Locator::Id("token-save"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_rows(
        &client,
        &[
            HOSTILE_ID,
            "order-8812",
            "order-8813",
            "order-8811",
            "order-8790",
        ],
    )
    .await;
    let page: Value = client
        .execute(
            "const row = id => [...document.querySelectorAll('#saga-rows tr')].find(r => r.dataset.sagaId === id);\
             return {error: document.getElementById('error').hidden, \
                     stuck: [...document.querySelectorAll('#saga-rows tr.stuck')].map(r => r.dataset.sagaId), \
                     hostileText: row(arguments[0]).querySelector('a').textContent, \
                     injected: document.querySelectorAll('#saga-rows img, #saga-rows script').length, \
                     pwned: window.__pwned ?? null, \
                     compensated: document.querySelector('[data-count-state=COMPENSATED] .n').textContent, \
                     stuckCount: document.querySelector('#stuck-count .n').textContent, \
                     tokenStored: sessionStorage.getItem('saga-tracker-console-token')}",
            vec![json!(HOSTILE_ID)],
        )
        .await
        .expect("script");
    assert_eq!(
        page,
        json!({"error": true, "stuck": ["order-8790"], "hostileText": HOSTILE_ID, "injected": 0,
               "pwned": null, "compensated": "1", "stuckCount": "1", "tokenStored": TOKEN})
    );
    screenshot(&client, "list.png").await;

    // the state filter narrows the list to the compensated saga
    client
        .find(Locator::Id("filter-status"))
        .await
        .expect("state filter")
        .select_by_value("COMPENSATED")
        .await
        .expect("select");
    client
        .find(Locator::Id("apply"))
        .await
        .expect("apply")
        .click()
        .await
        .expect("click");
    wait_rows(&client, &["order-8812"]).await;
    assert!(
        client
            .current_url()
            .await
            .expect("url")
            .fragment()
            .is_some_and(|f| f.contains("status=COMPENSATED")),
        "the filter is in the address"
    );
    screenshot(&client, "list-compensated.png").await;

    // search by trace id finds the same saga; by order id too
    for text in ["8a3c60f7d188f8fa79d48a391a778fa6", "8812"] {
        client
            .find(Locator::Id("reset"))
            .await
            .expect("reset")
            .click()
            .await
            .expect("click");
        wait_rows(
            &client,
            &[
                HOSTILE_ID,
                "order-8812",
                "order-8813",
                "order-8811",
                "order-8790",
            ],
        )
        .await;
        client
            .find(Locator::Id("search"))
            .await
            .expect("search")
            .send_keys(text)
            .await
            .expect("type");
        client
            .find(Locator::Id("apply"))
            .await
            .expect("apply")
            .click()
            .await
            .expect("click");
        wait_rows(&client, &["order-8812"]).await;
    }

    // the detail page: swimlanes per service, the failure joined to the compensations it triggered
    client
        .find(Locator::Css("#saga-rows a.saga-link"))
        .await
        .expect("the saga's link")
        .click()
        .await
        .expect("click");
    let story = until(
        &client,
        "the swimlanes",
        "const svg = document.getElementById('swimlanes'); if (!svg) return null;\
         const failed = svg.querySelector('g.bar[data-outcome=FAILED]');\
         const fid = failed && failed.dataset.failureId;\
         return {lanes: [...svg.querySelectorAll('g.lane')].map(l => l.dataset.service),\
                 forward: [...svg.querySelectorAll('g.bar.forward')].map(b => b.dataset.step + ':' + b.dataset.outcome),\
                 compensations: [...svg.querySelectorAll('g.bar.compensation')].map(b => b.dataset.step + ':' + b.dataset.outcome + ':' + (b.dataset.triggeredBy === fid)),\
                 failedStep: failed && failed.dataset.step,\
                 links: [...svg.querySelectorAll('path.link')].map(p => [p.dataset.from === fid, svg.querySelector(`g.bar[data-event-ids~=\"${p.dataset.to}\"]`).dataset.step]),\
                 listed: [...document.querySelectorAll(`#failures [data-failure-id=\"${fid}\"] [data-compensation-id]`)].length,\
                 errorKind: document.querySelector('#failures .error-kind').textContent,\
                 errorMessage: document.querySelector('#failures .error-message').textContent,\
                 injected: document.querySelectorAll('main script, main img').length,\
                 pwned: window.__pwned ?? null,\
                 trace: [...document.querySelectorAll('a.trace-link')].map(a => a.getAttribute('href'))}",
        |v| !v.is_null(),
    )
    .await;
    assert_eq!(
        story,
        json!({
            "lanes": ["inventory-service", "payment-service", "shipping-service"],
            "forward": ["reserve_stock:SUCCEEDED", "charge_payment:SUCCEEDED", "ship_order:FAILED"],
            "compensations": ["charge_payment:COMPENSATED:true", "reserve_stock:COMPENSATED:true"],
            "failedStep": "ship_order",
            "links": [[true, "charge_payment"], [true, "reserve_stock"]],
            "listed": 4,
            "errorKind": "CarrierUnavailable",
            "errorMessage": HOSTILE_MESSAGE,
            "injected": 0,
            "pwned": null,
            "trace": ["https://tempo.example/trace/8a3c60f7d188f8fa79d48a391a778fa6"],
        })
    );
    // the whole story on one picture
    client
        .set_window_size(1440, 1500)
        .await
        .expect("window size");
    tokio::time::sleep(Duration::from_millis(3500)).await; // one refresh at the new width
    screenshot(&client, "detail.png").await;
    client
        .set_window_size(1440, 1000)
        .await
        .expect("window size");

    // the overview: activity, failures, slowest steps, DLQ and lag
    client
        .find(Locator::Id("nav-overview"))
        .await
        .expect("overview link")
        .click()
        .await
        .expect("click");
    let overview = until(
        &client,
        "the overview",
        "const a = document.getElementById('activity'); if (!a) return null;\
         const n = sel => document.querySelector(sel + ' .value').textContent;\
         return {events: [...a.querySelectorAll('g.bucket')].reduce((s, b) => s + Number(b.dataset.events), 0),\
                 failures: n('#tile-failures'), compfail: n('#tile-compfail'), dlq: n('#tile-dlq'),\
                 slowest: document.querySelector('#slowest tbody tr').dataset.step}",
        |v| !v.is_null(),
    )
    .await;
    assert_eq!(
        overview,
        json!({"events": n, "failures": "2", "compfail": "1", "dlq": "0", "slowest": "ship_order"})
    );
    screenshot(&client, "overview.png").await;

    // updates without a reload: a saga ingested while the list is open appears
    client
        .find(Locator::Id("nav-sagas"))
        .await
        .expect("sagas link")
        .click()
        .await
        .expect("click");
    wait_rows(
        &client,
        &[
            HOSTILE_ID,
            "order-8812",
            "order-8813",
            "order-8811",
            "order-8790",
        ],
    )
    .await;
    let late = timed(
        SagaBuilder::new("order-8814", "OrderSaga", 0).ev(
            "inventory-service",
            "reserve_stock",
            Started,
            1,
        ),
        now_micros(),
        &[0],
        "9f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "8814",
    );
    kafka.send(&late).await;
    wait_rows(
        &client,
        &[
            "order-8814",
            HOSTILE_ID,
            "order-8812",
            "order-8813",
            "order-8811",
            "order-8790",
        ],
    )
    .await;

    // keyset pages (the API's next_cursor), two sagas a page
    client
        .goto(&format!("{base}/ui/#/sagas?limit=2"))
        .await
        .expect("open page 1");
    wait_rows(&client, &["order-8814", HOSTILE_ID]).await;
    let click = async |id: &str| {
        client
            .find(Locator::Id(id))
            .await
            .expect("pager button")
            .click()
            .await
            .expect("click");
    };
    click("next-page").await;
    wait_rows(&client, &["order-8812", "order-8813"]).await;
    click("next-page").await;
    wait_rows(&client, &["order-8811", "order-8790"]).await;
    let last: Value = client
        .execute(
            "return document.getElementById('next-page').disabled",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(last, json!(true), "no page after the last");
    click("prev-page").await;
    wait_rows(&client, &["order-8812", "order-8813"]).await;

    client.close().await.expect("close the browser");
    service.shutdown().await;
}
