//! Retention: day partitions, export to cold storage (Avro, local directory), verify, drop; restore.

mod common;

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use common::{Api, SagaBuilder, T0, TestDb, TestKafka, wait_for_events};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Service;
use saga_tracker_service::ops::OpsError;
use saga_tracker_service::ops::archive::{self, ArchiveOptions};
use saga_tracker_service::ops::cold::{self, ColdStore};
use saga_tracker_service::ops::partitions;
use saga_tracker_service::ops::restore::{self, RestoreOptions};

/// 2024-11-24, the day of `T0`: long past the 90-day retention.
fn old_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 11, 24).expect("day")
}

fn secs_since_t0_for_now() -> i64 {
    (Utc::now().timestamp_micros() - T0) / 1_000_000 - 3600
}

/// Two old sagas (one failed and compensated), one saga from an hour ago.
fn events() -> (Vec<saga_tracker_core::SagaEvent>, Vec<String>) {
    let a = SagaBuilder::new("old-a", "OrderSaga", 10)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1)
        .ev("payment-service", "charge_payment", Failed, 1)
        .ev("order-service", "reserve_stock", CompensationStarted, 1)
        .ev("order-service", "reserve_stock", Compensated, 1);
    let b = SagaBuilder::new("old-b", "OrderSaga", 20)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1);
    let recent = SagaBuilder::new("recent", "OrderSaga", secs_since_t0_for_now()).ev(
        "order-service",
        "reserve_stock",
        Started,
        1,
    );
    let ids = vec!["old-a".to_owned(), "old-b".to_owned(), "recent".to_owned()];
    let all = [a.events, b.events, recent.events].concat();
    (all, ids)
}

async fn answers(api: &Api, ids: &[String]) -> Vec<(u16, serde_json::Value)> {
    let mut out = Vec::new();
    for id in ids {
        out.push(api.json(&format!("/api/v1/sagas/{id}")).await);
        out.push(api.json(&format!("/api/v1/sagas/{id}/timeline")).await);
    }
    out.push(api.json("/api/v1/sagas?type=OrderSaga").await);
    out
}

/// The answers with every `restored` flag removed (after checking it is a boolean).
fn without_restored(mut v: serde_json::Value, restored: &mut Vec<bool>) -> serde_json::Value {
    match &mut v {
        serde_json::Value::Object(m) => {
            if let Some(flag) = m.remove("restored") {
                restored.push(flag.as_bool().expect("restored is a boolean"));
            }
            for (_, x) in m.iter_mut() {
                *x = without_restored(x.take(), restored);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a.iter_mut() {
                *x = without_restored(x.take(), restored);
            }
        }
        _ => {}
    }
    v
}

async fn partition_rows(pool: &sqlx::PgPool, day: NaiveDate) -> Option<i64> {
    let name = saga_tracker_service::ops::day::partition_name(day);
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&name)
        .fetch_one(pool)
        .await
        .expect("query");
    if !exists {
        return None;
    }
    Some(
        sqlx::query_scalar(&format!("SELECT count(*) FROM \"{name}\""))
            .fetch_one(pool)
            .await
            .expect("count"),
    )
}

struct Setup {
    _db: TestDb,
    kafka: TestKafka,
    service: Service,
    ids: Vec<String>,
    events: usize,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let (events, ids) = events();
    kafka.send(&events).await;
    let service = Service::start(kafka.config(&db, "archive-test"))
        .await
        .expect("service starts");
    wait_for_events(&service, events.len() as i64).await;
    Setup {
        _db: db,
        kafka,
        service,
        ids,
        events: events.len(),
        dir: tempfile::tempdir().expect("dir"),
    }
}

fn cold_store(dir: &tempfile::TempDir) -> ColdStore {
    ColdStore::open(&format!("file://{}", dir.path().display())).expect("cold store")
}

#[tokio::test(flavor = "multi_thread")]
async fn export_drop_restore_gives_the_same_api_answers() {
    let s = setup().await;
    let pool = s.service.store().pool().clone();
    let api = Api::new(&s.service, None);
    let before = answers(&api, &s.ids).await;
    assert!(before.iter().all(|(status, _)| *status == 200));
    // the old events went to the default partition (no partition for 2024); archive splits it
    let cold = cold_store(&s.dir);

    let summary = archive::run(&pool, &cold, &ArchiveOptions::default())
        .await
        .expect("archive");
    assert_eq!(summary.archived.len(), 1, "{summary:?}");
    let day = &summary.archived[0];
    assert_eq!(day.day, old_day());
    assert_eq!(day.partition_rows, 8);
    assert_eq!(day.archived_events, 8);
    assert_eq!(partition_rows(&pool, old_day()).await, None, "dropped");
    let today = Utc::now().date_naive();
    for ahead in 0..=7 {
        let d = today + chrono::Days::new(ahead);
        assert!(
            partition_rows(&pool, d).await.is_some(),
            "partition {d} created ahead"
        );
    }
    // the file: one per day, schema embedded, every event
    let file = s
        .dir
        .path()
        .join("saga_events/year=2024/month=11/2024-11-24.avro");
    let bytes = std::fs::read(&file).expect("archive file");
    let archived = cold::read_container(&bytes).expect("readable");
    assert_eq!(archived.len(), 8);
    assert!(archived.iter().all(|e| e.saga_id.starts_with("old-")));

    // offline now: 404 for the archived sagas, the recent one still served
    let (status, _) = api.json("/api/v1/sagas/old-a").await;
    assert_eq!(status, 404);
    let (status, _) = api.json("/api/v1/sagas/old-a/timeline").await;
    assert_eq!(status, 404);
    assert_eq!(api.ok("/api/v1/sagas/recent").await["restored"], false);
    assert_eq!(
        s.service.store().event_count().await.expect("count"),
        (s.events - 8) as i64
    );
    assert_eq!(
        old_summaries(&pool).await,
        0,
        "the archived sagas' summaries are deleted with their rows"
    );

    // a second archive run has nothing to do
    let again = archive::run(&pool, &cold, &ArchiveOptions::default())
        .await
        .expect("archive again");
    assert!(again.archived.is_empty(), "{again:?}");

    let options = RestoreOptions {
        from: old_day(),
        to: old_day(),
        saga_id: None,
    };
    let restored = restore::run(&pool, &cold, &options).await.expect("restore");
    assert_eq!((restored.events_read, restored.events_inserted), (8, 8));
    assert_eq!(restored.sagas, 2);
    assert_eq!(
        old_summaries(&pool).await,
        2,
        "restore rebuilds the summaries"
    );
    let after = answers(&api, &s.ids).await;
    let mut flags_before = Vec::new();
    let mut flags_after = Vec::new();
    for ((sb, b), (sa, a)) in before.iter().zip(&after) {
        assert_eq!(sb, sa);
        assert_eq!(
            without_restored(b.clone(), &mut flags_before),
            without_restored(a.clone(), &mut flags_after)
        );
    }
    assert!(flags_before.iter().all(|f| !f), "nothing restored before");
    // old-a and old-b are restored (summary, timeline's saga, list), recent is not
    assert_eq!(
        flags_after.iter().filter(|f| **f).count(),
        6,
        "{flags_after:?}"
    );
    assert_eq!(api.ok("/api/v1/sagas/old-a").await["restored"], true);
    let marked: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_events WHERE restored")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(marked, 8);

    // restore twice = restore once
    let db_before: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT saga_id, status, event_count FROM sagas ORDER BY saga_id")
            .fetch_all(&pool)
            .await
            .expect("sagas");
    let twice = restore::run(&pool, &cold, &options).await.expect("restore");
    assert_eq!((twice.events_read, twice.events_inserted), (8, 0));
    assert_eq!(
        s.service.store().event_count().await.expect("count"),
        s.events as i64
    );
    let db_after: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT saga_id, status, event_count FROM sagas ORDER BY saga_id")
            .fetch_all(&pool)
            .await
            .expect("sagas");
    assert_eq!(db_before, db_after);
    assert_eq!(answers(&api, &s.ids).await, after);

    // a restored day stays online while recent; the next archive run keeps it
    let kept = archive::run(&pool, &cold, &ArchiveOptions::default())
        .await
        .expect("archive");
    assert_eq!(kept.kept_restored, vec![old_day()]);
    assert_eq!(partition_rows(&pool, old_day()).await, Some(8));
    // ... and drops it once the keep window is over, without growing the archive
    let evict = archive::run(
        &pool,
        &cold,
        &ArchiveOptions {
            keep_restored_days: 0,
            ..ArchiveOptions::default()
        },
    )
    .await
    .expect("archive");
    assert_eq!(evict.archived.len(), 1);
    assert_eq!(evict.archived[0].archived_events, 8);
    assert_eq!(partition_rows(&pool, old_day()).await, None);
    s.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_of_one_saga_and_bad_input() {
    let s = setup().await;
    let pool = s.service.store().pool().clone();
    let cold = cold_store(&s.dir);
    archive::run(&pool, &cold, &ArchiveOptions::default())
        .await
        .expect("archive");
    let one = restore::run(
        &pool,
        &cold,
        &RestoreOptions {
            from: old_day(),
            to: old_day() + chrono::Days::new(2),
            saga_id: Some("old-b".into()),
        },
    )
    .await
    .expect("restore");
    assert_eq!((one.events_read, one.events_inserted, one.sagas), (2, 2, 1));
    assert_eq!(one.days_missing.len(), 2);
    let api = Api::new(&s.service, None);
    assert_eq!(api.ok("/api/v1/sagas/old-b").await["restored"], true);
    assert_eq!(api.json("/api/v1/sagas/old-a").await.0, 404);

    // no archive in the range: bad input (exit 2)
    let none = restore::run(
        &pool,
        &cold,
        &RestoreOptions {
            from: old_day() - chrono::Days::new(10),
            to: old_day() - chrono::Days::new(9),
            saga_id: None,
        },
    )
    .await
    .expect_err("nothing to restore");
    assert_eq!(none.exit_code(), 2, "{none}");
    // an archive that is not ours: refused with exit 2
    let foreign = s
        .dir
        .path()
        .join("saga_events/year=2024/month=11/2024-11-20.avro");
    std::fs::write(&foreign, b"Obj\x01 not really").expect("write");
    let err = restore::run(
        &pool,
        &cold,
        &RestoreOptions {
            from: old_day() - chrono::Days::new(4),
            to: old_day() - chrono::Days::new(4),
            saga_id: None,
        },
    )
    .await
    .expect_err("foreign file");
    assert!(matches!(err, OpsError::BadArchive { .. }), "{err}");
    assert_eq!(err.exit_code(), 2);
    // a short archive (our schema, cut off): refused before anything is inserted
    let good = std::fs::read(
        s.dir
            .path()
            .join("saga_events/year=2024/month=11/2024-11-24.avro"),
    )
    .expect("archive");
    std::fs::write(
        s.dir
            .path()
            .join("saga_events/year=2024/month=11/2024-11-21.avro"),
        &good[..good.len() - 40],
    )
    .expect("write");
    let online = s.service.store().event_count().await.expect("count");
    let err = restore::run(
        &pool,
        &cold,
        &RestoreOptions {
            from: old_day() - chrono::Days::new(3),
            to: old_day() - chrono::Days::new(3),
            saga_id: None,
        },
    )
    .await
    .expect_err("short file");
    assert!(matches!(err, OpsError::BadArchive { .. }), "{err}");
    assert_eq!(
        s.service.store().event_count().await.expect("count"),
        online
    );
    assert!(ColdStore::open("ftp://x/y").is_err());
    s.service.shutdown().await;
}

/// A cold store that loses the end of every object it writes (a full disk, a cut connection).
#[derive(Debug)]
struct Truncating(Arc<dyn ObjectStore>);

impl std::fmt::Display for Truncating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Truncating({})", self.0)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Truncating {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let bytes: Vec<u8> = payload.iter().flat_map(|b| b.to_vec()).collect();
        let short = bytes[..bytes.len() * 2 / 3].to_vec();
        self.0.put_opts(location, short.into(), opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.0.get_opts(location, options).await
    }
    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        self.0.delete(location).await
    }
    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }
    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.0.copy(from, to).await
    }
    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.0.copy_if_not_exists(from, to).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_export_refuses_to_drop_the_partition() {
    let s = setup().await;
    let pool = s.service.store().pool().clone();
    let good = cold_store(&s.dir);
    let short = ColdStore {
        store: Arc::new(Truncating(Arc::clone(&good.store))),
        ..good.clone()
    };
    let err = archive::run(&pool, &short, &ArchiveOptions::default())
        .await
        .expect_err("a short export must not verify");
    assert!(matches!(err, OpsError::ExportNotVerified { .. }), "{err}");
    assert_eq!(err.exit_code(), 1);
    assert_eq!(
        partition_rows(&pool, old_day()).await,
        Some(8),
        "partition kept"
    );
    let api = Api::new(&s.service, None);
    assert_eq!(api.ok("/api/v1/sagas/old-a").await["status"], "COMPENSATED");

    // an archive of the day already in cold storage that is corrupt: refused too, nothing dropped
    let path = s
        .dir
        .path()
        .join("saga_events/year=2024/month=11/2024-11-24.avro");
    let mut bytes = std::fs::read(&path).expect("short file is there");
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, &bytes).expect("write");
    let err = archive::run(&pool, &good, &ArchiveOptions::default())
        .await
        .expect_err("corrupt archive");
    assert!(matches!(err, OpsError::BadArchive { .. }), "{err}");
    assert_eq!(
        partition_rows(&pool, old_day()).await,
        Some(8),
        "partition kept"
    );

    // once the bad file is moved away, the export goes through
    std::fs::remove_file(&path).expect("remove");
    let ok = archive::run(&pool, &good, &ArchiveOptions::default())
        .await
        .expect("archive");
    assert_eq!(ok.archived.len(), 1);
    assert_eq!(partition_rows(&pool, old_day()).await, None);
    s.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn late_events_for_an_archived_day_are_merged_into_its_archive() {
    let s = setup().await;
    let pool = s.service.store().pool().clone();
    let cold = cold_store(&s.dir);
    archive::run(&pool, &cold, &ArchiveOptions::default())
        .await
        .expect("archive");
    // a late event for the archived day lands in the default partition
    let late = SagaBuilder::new("old-late", "OrderSaga", 30)
        .ev("order-service", "reserve_stock", Started, 1)
        .events;
    s.kafka.send(&late).await;
    wait_for_events(&s.service, (s.events - 8 + 1) as i64).await;
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_events_default")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(in_default, 1);
    let again = archive::run(&pool, &cold, &ArchiveOptions::default())
        .await
        .expect("archive");
    assert_eq!(again.archived.len(), 1);
    assert_eq!(again.archived[0].partition_rows, 1);
    assert_eq!(again.archived[0].archived_events, 9);
    let days = partitions::day_partitions(&pool).await.expect("days");
    assert!(!days.contains(&old_day()));
    s.service.shutdown().await;
}

/// Summaries of the sagas of the archived day (`old-*`).
async fn old_summaries(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM saga_summaries WHERE saga_id LIKE 'old-%'")
        .fetch_one(pool)
        .await
        .expect("count")
}
