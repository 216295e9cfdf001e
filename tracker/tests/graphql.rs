//! GraphQL at `/api/graphql` against a real PostgreSQL and the service in-process: every query answers what the
//! REST API answers for the same data, connections paginate with the REST cursor, the token guards everything
//! (introspection too), and hostile queries (deep, complex, huge, malformed) get errors, never a 5xx.

mod common;

use std::path::PathBuf;

use common::{Api, SagaBuilder, TestDb, TestKafka, wait_for_events};
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Service;
use serde_json::{Map, Value, json};

const TOKEN: &str = "gql-s3cret";

/// The committed SDL: `tracker/graphql/schema.graphql`.
fn sdl_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("graphql/schema.graphql")
}

#[test]
fn the_committed_sdl_is_the_served_schema() {
    let served = saga_tracker_service::graphql::sdl();
    let path = sdl_path();
    if std::env::var_os("UPDATE_SDL").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, &served).expect("write the SDL");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == served,
        "{} differs from the schema the service serves; if the change is intended, regenerate it with\n  \
         UPDATE_SDL=1 cargo nextest run -p saga-tracker-service --test graphql the_committed_sdl\nand commit the file",
        path.display()
    );
}

fn sample_sagas() -> Vec<SagaBuilder> {
    vec![
        SagaBuilder::new("saga-ok", "OrderSaga", 0)
            .ev("order-service", "reserve_stock", Started, 1)
            .ev("order-service", "reserve_stock", Succeeded, 1)
            .ev("payment-service", "charge_payment", Started, 1)
            .ev("payment-service", "charge_payment", Succeeded, 1),
        SagaBuilder::new("saga-comp", "OrderSaga", 10)
            .ev("order-service", "reserve_stock", Started, 1)
            .ev("order-service", "reserve_stock", Succeeded, 1)
            .ev("payment-service", "charge_payment", Started, 1)
            .ev("payment-service", "charge_payment", Failed, 1)
            .ev("order-service", "reserve_stock", CompensationStarted, 1)
            .ev("order-service", "reserve_stock", Compensated, 1),
        SagaBuilder::new("saga-compfail", "RefundSaga", 20)
            .ev("product-service", "release", Started, 1)
            .ev("product-service", "release", Succeeded, 1)
            .ev("payment-service", "refund", Started, 1)
            .ev("payment-service", "refund", Failed, 1)
            .ev("product-service", "release", CompensationStarted, 1)
            .ev("product-service", "release", CompensationFailed, 1),
        SagaBuilder::new("saga-running", "OrderSaga", 30).ev(
            "order-service",
            "reserve_stock",
            Started,
            1,
        ),
        SagaBuilder::new("saga-late", "OrderSaga", 40)
            .ev("order-service", "reserve_stock", Started, 1)
            .ev("order-service", "reserve_stock", Failed, 1),
    ]
}

/// A GraphQL client of the service.
struct Gql {
    url: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Gql {
    fn new(service: &Service, token: Option<&str>) -> Gql {
        Gql {
            url: format!("http://{}/api/graphql", service.addr()),
            client: reqwest::Client::new(),
            token: token.map(str::to_owned),
        }
    }

    /// POSTs a raw body: status and JSON response.
    async fn post_raw(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// Runs a query with variables: status and the response.
    async fn run(&self, query: &str, variables: Value) -> (u16, Value) {
        self.post_raw(json!({ "query": query, "variables": variables }).to_string())
            .await
    }

    /// A query that must succeed: its `data`.
    async fn data(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.run(query, variables).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"].clone()
    }

    /// A query that must fail with a GraphQL error (HTTP 200, no 5xx): the first error's message.
    async fn error(&self, query: &str, variables: Value) -> String {
        let (status, body) = self.run(query, variables).await;
        let query = short(query);
        assert!(status < 500, "{query}: {status} {body}");
        assert_eq!(status, 200, "{query}: {body}");
        let message = body["errors"][0]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{query}: no error in {body}"))
            .to_owned();
        assert!(
            !message.contains("0x00") && !message.to_lowercase().contains("sqlx"),
            "{query}: database text reached the client: {message}"
        );
        message
    }
}

/// The start of a long query, for messages.
fn short(query: &str) -> String {
    query.chars().take(200).collect()
}

fn camel(key: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in key.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A REST or GraphQL value in one comparable form: REST keys in camelCase (not inside maps), absent and
/// null alike, empty `triggeredCompensations` absent, times as instants.
fn normal(v: &Value, rest: bool) -> Value {
    match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                let k = if rest { camel(k) } else { k.clone() };
                if v.is_null() || (k == "triggeredCompensations" && v == &json!([])) {
                    continue;
                }
                // maps whose keys are data, not field names
                let v = if k == "metadata" || k == "sagasByStatus" {
                    v.clone()
                } else {
                    normal(v, rest)
                };
                out.insert(k, v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| normal(v, rest)).collect()),
        Value::String(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => Value::String(t.with_timezone(&chrono::Utc).to_rfc3339()),
            Err(_) => v.clone(),
        },
        _ => v.clone(),
    }
}

/// The GraphQL selection of every key REST serves (camelCase).
fn fields_of(objects: &[&Value]) -> String {
    let mut keys: Vec<String> = objects
        .iter()
        .flat_map(|o| o.as_object().expect("an object").keys().map(|k| camel(k)))
        .collect();
    keys.sort();
    keys.dedup();
    keys.join(" ")
}

#[tokio::test(flavor = "multi_thread")]
async fn graphql_answers_what_rest_answers() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let sagas = sample_sagas();
    let n: usize = sagas.iter().map(|s| s.events.len()).sum();
    for s in &sagas {
        kafka.send(&s.events).await;
    }
    let mut config = kafka.config(&db, "graphql-test");
    config.api_token = Some(TOKEN.into());
    let service = Service::start(config).await.expect("service starts");
    wait_for_events(&service, n as i64).await;
    let rest = Api::new(&service, Some(TOKEN));
    let gql = Gql::new(&service, Some(TOKEN));

    // saga(id): every REST field, the same values
    let rest_saga = rest.ok("/api/v1/sagas/saga-comp").await;
    let saga_fields = fields_of(&[&rest_saga]);
    let got = gql
        .data(
            &format!("query($id: String!) {{ saga(id: $id) {{ {saga_fields} }} }}"),
            json!({ "id": "saga-comp" }),
        )
        .await;
    assert_eq!(normal(&got["saga"], false), normal(&rest_saga, true));
    assert_eq!(got["saga"]["status"], "COMPENSATED");
    let unknown = gql
        .data(r#"{ saga(id: "nope") { sagaId } }"#, json!({}))
        .await;
    assert_eq!(unknown["saga"], Value::Null);

    // events and links: the REST timeline's events, in order, with the failure → compensation links
    let timeline = rest.ok("/api/v1/sagas/saga-comp/timeline").await;
    let rest_events = timeline["events"].as_array().expect("events");
    let mut event_fields = fields_of(&rest_events.iter().collect::<Vec<_>>());
    for extra in ["triggeredBy", "triggeredCompensations"] {
        if !event_fields.split(' ').any(|f| f == extra) {
            event_fields.push_str(&format!(" {extra}"));
        }
    }
    let got = gql
        .data(
            &format!(
                "{{ saga(id: \"saga-comp\") {{ events {{ {event_fields} }} \
                 links {{ failureEventId compensationEventId }} }} }}"
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        normal(&got["saga"]["events"], false),
        normal(&timeline["events"], true)
    );
    let failure = &rest_events[3];
    assert_eq!(failure["status"], "FAILED");
    let expected_links: Vec<Value> = failure["triggered_compensations"]
        .as_array()
        .expect("compensations")
        .iter()
        .map(|c| json!({ "failureEventId": failure["event_id"], "compensationEventId": c }))
        .collect();
    assert_eq!(expected_links.len(), 2);
    assert_eq!(got["saga"]["links"], Value::Array(expected_links));

    // sagas(filter): the REST list for each filter, nested timelines loaded for the whole page
    let list_query = format!(
        "query($filter: SagaFilter, $first: Int, $after: String) {{ sagas(filter: $filter, first: $first, after: $after) {{ \
         edges {{ cursor node {{ {saga_fields} events {{ eventId }} }} }} \
         pageInfo {{ hasNextPage hasPreviousPage endCursor }} }} }}"
    );
    for (rest_query, filter) in [
        ("", json!(null)),
        ("?type=RefundSaga", json!({ "type": "RefundSaga" })),
        ("?status=compensated", json!({ "status": "COMPENSATED" })),
        ("?step=charge_payment", json!({ "step": "charge_payment" })),
        (
            "?service=product-service",
            json!({ "service": "product-service" }),
        ),
        (
            "?from=2024-11-24T00:00:10Z&to=2024-11-24T00:00:30Z",
            json!({ "from": "2024-11-24T00:00:10Z", "to": "2024-11-24T00:00:30Z" }),
        ),
    ] {
        let page = rest.ok(&format!("/api/v1/sagas{rest_query}")).await;
        let got = gql.data(&list_query, json!({ "filter": filter })).await;
        let edges = got["sagas"]["edges"].as_array().expect("edges");
        let nodes: Vec<Value> = edges
            .iter()
            .map(|e| {
                let mut node = e["node"].clone();
                let events = node
                    .as_object_mut()
                    .expect("node")
                    .remove("events")
                    .expect("events");
                let count = events.as_array().expect("events").len();
                assert_eq!(json!(count), node["eventCount"], "{rest_query}");
                node
            })
            .collect();
        assert_eq!(
            normal(&Value::Array(nodes), false),
            normal(&page["items"], true),
            "{rest_query}"
        );
        assert!(!edges.is_empty(), "{rest_query}");
        assert_eq!(got["sagas"]["pageInfo"]["hasNextPage"], false);
    }

    // pagination: first/after walks the pages REST's limit/cursor walks, with the same cursors
    let mut rest_walk = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = rest
            .ok(&format!("/api/v1/sagas?limit=2&cursor={cursor}"))
            .await;
        rest_walk.push(page.clone());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(rest_walk.len(), 3);
    let mut after = Value::Null;
    for (i, rest_page) in rest_walk.iter().enumerate() {
        let got = gql
            .data(&list_query, json!({ "first": 2, "after": after }))
            .await;
        let ids: Vec<&Value> = got["sagas"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| &e["node"]["sagaId"])
            .collect();
        let rest_ids: Vec<&Value> = rest_page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|s| &s["saga_id"])
            .collect();
        assert_eq!(ids, rest_ids, "page {i}");
        let info = &got["sagas"]["pageInfo"];
        assert_eq!(info["hasPreviousPage"], i > 0, "page {i}");
        let last = i + 1 == rest_walk.len();
        assert_eq!(info["hasNextPage"], !last, "page {i}");
        if !last {
            assert_eq!(info["endCursor"], rest_page["next_cursor"], "page {i}");
        }
        after = info["endCursor"].clone();
    }

    // stats
    let rest_stats = rest.ok("/api/v1/stats").await;
    let stats_fields = fields_of(&[&rest_stats]);
    let got = gql
        .data(&format!("{{ stats {{ {stats_fields} }} }}"), json!({}))
        .await;
    assert_eq!(normal(&got["stats"], false), normal(&rest_stats, true));
    assert_eq!(got["stats"]["sagasByStatus"]["COMPENSATION_FAILED"], 1);
    assert_eq!(got["stats"]["sagasTotal"], 5);

    // introspection works with the token
    let types = gql.data("{ __schema { types { name } } }", json!({})).await;
    assert!(
        types["__schema"]["types"]
            .as_array()
            .expect("types")
            .iter()
            .any(|t| t["name"] == "SagaConnection")
    );

    bad_inputs(&gql).await;
    limits(&gql).await;
    service.shutdown().await;
}

async fn bad_inputs(gql: &Gql) {
    let sagas = "query($filter: SagaFilter, $first: Int, $after: String) { \
                 sagas(filter: $filter, first: $first, after: $after) { edges { cursor } } }";
    for (variables, expect) in [
        (json!({ "first": 0 }), "`first`"),
        (json!({ "first": 501 }), "`first`"),
        (json!({ "first": -1 }), "`first`"),
        (json!({ "after": "zz" }), "`after`"),
        (json!({ "after": "1_00" }), "`after`"),
        (json!({ "filter": { "type": "" } }), "`type`"),
        (json!({ "filter": { "type": "a\u{0}b" } }), "NUL"),
        (json!({ "filter": { "step": "\u{0}" } }), "NUL"),
        (json!({ "filter": { "service": "x\u{0}" } }), "NUL"),
        (json!({ "filter": { "status": "DONE" } }), "SagaState"),
        (json!({ "filter": { "from": "yesterday" } }), "DateTime"),
        (json!({ "filter": { "bogus": 1 } }), "bogus"),
    ] {
        let message = gql.error(sagas, variables.clone()).await;
        assert!(message.contains(expect), "{variables}: {message}");
    }
    // a far-away time PostgreSQL cannot hold is refused before the database
    let message = gql
        .error(
            sagas,
            json!({ "filter": { "from": "+200000-01-01T00:00:00Z" } }),
        )
        .await;
    assert!(!message.is_empty());
    let message = gql
        .error(
            r#"query($id: String!) { saga(id: $id) { sagaId } }"#,
            json!({ "id": "a\u{0}b" }),
        )
        .await;
    assert!(message.contains("NUL"), "{message}");
    let (_, body) = gql
        .run(
            r#"query($id: String!) { saga(id: $id) { sagaId } }"#,
            json!({ "id": "" }),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "bad_request");
    // a long id is an unknown saga, not a failure
    let long = "x".repeat(50_000);
    let data = gql
        .data(
            r#"query($id: String!) { saga(id: $id) { sagaId } }"#,
            json!({ "id": long }),
        )
        .await;
    assert_eq!(data["saga"], Value::Null);
    // a body over the limit: 413, not parsed
    let huge = json!({ "query": format!("{{ stats {{ sagasTotal }} }} #{}", "x".repeat(100_000)) });
    let (status, _) = gql.post_raw(huge.to_string()).await;
    assert_eq!(status, 413);
    // not JSON, not a GraphQL request: 400 with a GraphQL error
    for raw in [
        "{",
        "null",
        "\u{0}",
        r#"{"query": 5}"#,
        r#"{"query": "{ __typename }", "variables": 1}"#,
    ] {
        let (status, body) = gql.post_raw(raw.to_owned()).await;
        assert_eq!(status, 400, "{raw}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "bad_request");
        assert_eq!(body.get("data").unwrap_or(&Value::Null), &Value::Null);
    }
    // an empty document (`[]` reads as a request with no query): an error, no data
    let (status, body) = gql.post_raw("[]").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    assert_eq!(body["data"], Value::Null);
    for query in [
        "{",
        "query { sagas(first: ) }",
        "{ nope }",
        "mutation { x }",
    ] {
        gql.error(query, json!({})).await;
    }
}

async fn limits(gql: &Gql) {
    // depth: nested type references beyond the limit
    let mut deep = String::from("name");
    for _ in 0..20 {
        deep = format!("ofType {{ {deep} }}");
    }
    let message = gql
        .error(
            &format!("{{ __schema {{ types {{ fields {{ type {{ {deep} }} }} }} }} }}"),
            json!({}),
        )
        .await;
    assert!(message.contains("too deep"), "{message}");
    // the standard introspection query (7 levels of type references) fits
    gql.data(INTROSPECTION, json!({})).await;
    // a nesting the parser refuses before anything runs
    let brackets = format!("{}{}", "{ __typename ".repeat(2_000), "}".repeat(2_000));
    gql.error(&brackets, json!({})).await;

    // complexity: a big page with every saga's events, or stats a thousand times over
    let message = gql
        .error(
            "{ sagas(first: 500) { edges { node { sagaId events { eventId step status } } } } }",
            json!({}),
        )
        .await;
    assert!(message.contains("too complex"), "{message}");
    let aliases: String = (0..200)
        .map(|i| format!("s{i}: stats {{ sagasTotal }} "))
        .collect();
    let message = gql.error(&format!("{{ {aliases} }}"), json!({})).await;
    assert!(message.contains("too complex"), "{message}");
    // a big page of summaries, or a small one with events, is fine
    gql.data(
        "{ sagas(first: 500) { edges { node { sagaId status steps services } } } }",
        json!({}),
    )
    .await;
    gql.data(
        "{ sagas(first: 20) { edges { node { sagaId events { eventId step status } links { failureEventId } } } } }",
        json!({}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_guards_queries_and_introspection() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let sagas = sample_sagas();
    kafka.send(&sagas[0].events).await;
    let mut config = kafka.config(&db, "graphql-auth-test");
    config.api_token = Some(TOKEN.into());
    let service = Service::start(config).await.expect("service starts");
    wait_for_events(&service, sagas[0].events.len() as i64).await;
    for token in [None, Some("guess"), Some(""), Some("gql-s3cre")] {
        let gql = Gql::new(&service, token);
        for query in [
            r#"{ saga(id: "saga-ok") { sagaId } }"#,
            "{ sagas { edges { node { sagaId } } } }",
            "{ stats { sagasTotal } }",
            "{ __schema { types { name } } }",
            "{ __typename }",
        ] {
            let (status, body) = gql.run(query, json!({})).await;
            assert_eq!(status, 401, "{token:?} {query}: {body}");
            assert_eq!(body.get("data").unwrap_or(&Value::Null), &Value::Null);
            assert_eq!(body["errors"][0]["extensions"]["code"], "unauthorized");
            assert!(!body.to_string().contains("saga-ok"));
        }
        // GET too
        let mut req = reqwest::Client::new().get(format!(
            "http://{}/api/graphql?query=%7B__typename%7D",
            service.addr()
        ));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.expect("request").status().as_u16(), 401);
    }
    let gql = Gql::new(&service, Some(TOKEN));
    let data = gql
        .data(r#"{ saga(id: "saga-ok") { sagaId status } }"#, json!({}))
        .await;
    assert_eq!(data["saga"]["status"], "SUCCEEDED");
    // GET with the token
    let got: Value = reqwest::Client::new()
        .get(format!(
            "http://{}/api/graphql?query=%7Bstats%7BsagasTotal%7D%7D",
            service.addr()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(got["data"]["stats"]["sagasTotal"], 1);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn database_errors_are_graphql_errors_without_the_databases_text() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let sagas = sample_sagas();
    kafka.send(&sagas[1].events).await;
    let service = Service::start(kafka.config(&db, "graphql-db-test"))
        .await
        .expect("service starts");
    wait_for_events(&service, sagas[1].events.len() as i64).await;
    let gql = Gql::new(&service, None);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("connect");
    let rename = async |from: &str, to: &str| {
        sqlx::query(&format!(
            "ALTER TABLE \"{}\".{from} RENAME TO {to}",
            db.schema
        ))
        .execute(&pool)
        .await
        .expect("rename");
    };
    let check = |body: &Value| {
        let errors = body["errors"].as_array().expect("errors");
        assert!(!errors.is_empty(), "{body}");
        for e in errors {
            assert_eq!(e["extensions"]["code"], "database_unavailable", "{body}");
            let message = e["message"].as_str().expect("message");
            assert!(
                !message.contains("saga") && !message.contains("relation"),
                "{message}"
            );
        }
    };
    // the events are gone: the saga's timeline fails, the error says only that the database is unavailable
    rename("saga_events", "saga_events_gone").await;
    let (status, body) = gql
        .run(
            r#"{ saga(id: "saga-comp") { sagaId events { eventId } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    check(&body);
    let (_, body) = gql
        .run(
            "{ sagas { edges { node { links { failureEventId } } } } }",
            json!({}),
        )
        .await;
    check(&body);
    rename("saga_events_gone", "saga_events").await;
    // the sagas are gone: every root field fails the same way
    rename("sagas", "sagas_gone").await;
    for query in [
        r#"{ saga(id: "saga-comp") { sagaId } }"#,
        "{ sagas { edges { cursor } } }",
        "{ stats { sagasTotal } }",
    ] {
        let (status, body) = gql.run(query, json!({})).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(body["data"], Value::Null, "{query}: {body}");
        check(&body);
    }
    rename("sagas_gone", "sagas").await;
    let data = gql
        .data(r#"{ saga(id: "saga-comp") { status } }"#, json!({}))
        .await;
    assert_eq!(data["saga"]["status"], "COMPENSATED");
    pool.close().await;
    service.shutdown().await;
}

/// graphql-js's introspection query (`getIntrospectionQuery()`), what GraphiQL and code generators send.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description
    args { ...InputValue }
    type { ...TypeRef }
    isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}
"#;
