//! `reconcile --day D` (R9): compares what the services recorded in their outbox tables
//! (`saga_tracker_outbox`, one database URL per service) with what the tracker holds for the UTC day `D`
//! (by the events' `recordedAt`):
//!
//! - counts per saga type / step / status on both sides (tracker side: only the services found in the
//!   outboxes, since other services have no outbox to compare with);
//! - event ids missing on either side (missing in the tracker and not yet published by the outbox relay are
//!   listed apart, they still count);
//! - outbox rows that do not decode; duplicates absorbed (the same event id more than once in the outboxes);
//! - sagas of the day still not terminal after the stuck threshold (reported, not a discrepancy).
//!
//! Each run is recorded in `reconcile_runs`; the service's `/metrics` reports the latest run
//! (`saga_tracker_reconcile_missing_events`), and `deploy/prometheus/alerts.yml` alerts on it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool, Row};
use uuid::Uuid;

use super::OpsError;
use super::day::bounds;

/// Missing events listed in the report (all are counted).
const LISTED: usize = 100;

/// What to compare.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// The UTC day.
    pub day: NaiveDate,
    /// Outbox database URLs (`?options[search_path]=schema` selects a schema).
    pub outbox_urls: Vec<String>,
    /// Silence after which a non-terminal saga counts as stuck.
    pub stuck_after: Duration,
}

/// One saga type / step / status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountRow {
    /// Saga type.
    pub saga_type: String,
    /// Step.
    pub step: String,
    /// Step status.
    pub status: String,
    /// Events in the outboxes.
    pub outbox: u64,
    /// Events in the tracker.
    pub tracker: u64,
}

/// An event found on one side only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingEvent {
    /// Event id.
    pub event_id: Uuid,
    /// Saga id.
    pub saga_id: String,
    /// Recording service.
    pub service: String,
    /// Step.
    pub step: String,
    /// Status.
    pub status: String,
    /// For events missing in the tracker: whether the outbox relay marked the row published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<bool>,
}

/// A saga of the day still not terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StuckSaga {
    /// Saga id.
    pub saga_id: String,
    /// Saga type.
    pub saga_type: String,
    /// Derived state.
    pub status: String,
    /// Its latest event.
    pub updated_at: DateTime<Utc>,
}

/// One outbox database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxSource {
    /// The URL without its password.
    pub url: String,
    /// Rows of the day read (after decoding, by `recordedAt`).
    pub events: u64,
    /// Rows that did not decode.
    pub undecodable: u64,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// The day.
    pub day: NaiveDate,
    /// When the comparison ran.
    pub ran_at: DateTime<Utc>,
    /// The outboxes read.
    pub sources: Vec<OutboxSource>,
    /// Services found in the outboxes (the tracker side is restricted to them).
    pub services: Vec<String>,
    /// Counts per saga type / step / status.
    pub counts: Vec<CountRow>,
    /// Rows of `counts` that differ.
    pub count_mismatches: u64,
    /// How many events are in the outboxes and not in the tracker.
    pub missing_in_tracker_total: u64,
    /// Of those, not yet published by the relay.
    pub unpublished_total: u64,
    /// The first of them.
    pub missing_in_tracker: Vec<MissingEvent>,
    /// How many events of the covered services are in the tracker and in no outbox.
    pub missing_in_outbox_total: u64,
    /// The first of them.
    pub missing_in_outbox: Vec<MissingEvent>,
    /// Outbox rows beyond the first with the same event id.
    pub duplicates_absorbed: u64,
    /// Outbox rows that did not decode.
    pub undecodable_total: u64,
    /// Sagas of the day not terminal after the stuck threshold.
    pub stuck_sagas: Vec<StuckSaga>,
    /// The threshold, in seconds.
    pub stuck_after_seconds: u64,
    /// True when nothing is missing, every count matches and every outbox row decodes.
    pub ok: bool,
}

struct OutboxEvent {
    key: (String, String, String),
    missing: MissingEvent,
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// Reads the day's events from one outbox.
async fn read_outbox(
    url: &str,
    day: NaiveDate,
    out: &mut HashMap<Uuid, OutboxEvent>,
    duplicates: &mut u64,
) -> Result<OutboxSource, OpsError> {
    let what = format!("outbox database {}", redact(url));
    let mut conn = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url))
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut))
        .map_err(|source| OpsError::Connect {
            what: what.clone(),
            source,
        })?;
    // created_at is close to recordedAt; a day on either side catches clock skew and late relays
    let (start, end) = bounds(day);
    let rows = sqlx::query(
        "SELECT payload, created_at, published_at IS NOT NULL AS published FROM saga_tracker_outbox
         WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(start - chrono::Duration::days(1))
    .bind(end + chrono::Duration::days(1))
    .fetch_all(&mut conn)
    .await
    .map_err(|source| OpsError::Connect { what, source })?;
    let mut source = OutboxSource {
        url: redact(url),
        events: 0,
        undecodable: 0,
    };
    for row in rows {
        let payload: Vec<u8> = row.try_get("payload")?;
        let published: bool = row.try_get("published")?;
        let event = match saga_tracker_core::codec::decode_any(&payload, None) {
            Ok(e) => e,
            Err(_) => {
                // the event time is unknown: count the row on the day it was written
                let created: DateTime<Utc> = row.try_get("created_at")?;
                if created >= start && created < end {
                    source.undecodable += 1;
                }
                continue;
            }
        };
        let at = DateTime::<Utc>::from_timestamp_micros(event.recorded_at);
        if at.is_none_or(|t| t < start || t >= end) {
            continue;
        }
        source.events += 1;
        if let Some(known) = out.get_mut(&event.event_id) {
            *duplicates += 1;
            if published {
                known.missing.published = Some(true);
            }
            continue;
        }
        out.insert(
            event.event_id,
            OutboxEvent {
                key: (
                    event.saga_type.clone(),
                    event.step.clone(),
                    event.status.as_str().to_owned(),
                ),
                missing: MissingEvent {
                    event_id: event.event_id,
                    saga_id: event.saga_id,
                    service: event.service,
                    step: event.step,
                    status: event.status.as_str().to_owned(),
                    published: Some(published),
                },
            },
        );
    }
    let _ = conn.close().await;
    Ok(source)
}

/// Compares and records the run in `reconcile_runs`.
pub async fn run(
    tracker: &PgPool,
    options: &ReconcileOptions,
) -> Result<ReconcileReport, OpsError> {
    if options.outbox_urls.is_empty() {
        return Err(OpsError::Input(
            "give at least one --outbox-database-url (a service database with saga_tracker_outbox)"
                .into(),
        ));
    }
    if options.day > Utc::now().date_naive() {
        return Err(OpsError::Input(format!(
            "--day {} is in the future",
            options.day
        )));
    }
    let mut outbox: HashMap<Uuid, OutboxEvent> = HashMap::new();
    let mut duplicates = 0;
    let mut sources = Vec::new();
    for url in &options.outbox_urls {
        sources.push(read_outbox(url, options.day, &mut outbox, &mut duplicates).await?);
    }
    let services: BTreeSet<String> = outbox.values().map(|e| e.missing.service.clone()).collect();
    let services: Vec<String> = services.into_iter().collect();

    let (start, end) = bounds(options.day);
    let rows = sqlx::query(
        "SELECT event_id, saga_id, saga_type, step, status, service FROM saga_events
         WHERE recorded_at >= $1 AND recorded_at < $2 AND service = ANY($3)",
    )
    .bind(start)
    .bind(end)
    .bind(&services)
    .fetch_all(tracker)
    .await?;
    let mut counts: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    for e in outbox.values() {
        counts.entry(e.key.clone()).or_default().0 += 1;
    }
    let mut tracker_ids = HashSet::new();
    let mut missing_in_outbox = Vec::new();
    for r in rows {
        let id: Uuid = r.try_get("event_id")?;
        let key = (
            r.try_get("saga_type")?,
            r.try_get("step")?,
            r.try_get("status")?,
        );
        counts.entry(key).or_default().1 += 1;
        tracker_ids.insert(id);
        if !outbox.contains_key(&id) {
            missing_in_outbox.push(MissingEvent {
                event_id: id,
                saga_id: r.try_get("saga_id")?,
                service: r.try_get("service")?,
                step: r.try_get("step")?,
                status: r.try_get("status")?,
                published: None,
            });
        }
    }
    let mut missing_in_tracker: Vec<MissingEvent> = outbox
        .values()
        .filter(|e| !tracker_ids.contains(&e.missing.event_id))
        .map(|e| e.missing.clone())
        .collect();
    missing_in_tracker.sort_by(|a, b| (&a.saga_id, a.event_id).cmp(&(&b.saga_id, b.event_id)));
    missing_in_outbox.sort_by(|a, b| (&a.saga_id, a.event_id).cmp(&(&b.saga_id, b.event_id)));
    let counts: Vec<CountRow> = counts
        .into_iter()
        .map(|((saga_type, step, status), (o, t))| CountRow {
            saga_type,
            step,
            status,
            outbox: o,
            tracker: t,
        })
        .collect();

    let stuck_cutoff =
        Utc::now() - chrono::Duration::from_std(options.stuck_after).unwrap_or_default();
    let stuck_rows = sqlx::query(
        "SELECT saga_id, saga_type, status, updated_at FROM sagas
         WHERE status NOT IN ('SUCCEEDED', 'COMPENSATED', 'COMPENSATION_FAILED') AND updated_at < $3
           AND saga_id IN (SELECT saga_id FROM saga_events WHERE recorded_at >= $1 AND recorded_at < $2)
         ORDER BY updated_at, saga_id",
    )
    .bind(start)
    .bind(end)
    .bind(stuck_cutoff)
    .fetch_all(tracker)
    .await?;
    let stuck_sagas = stuck_rows
        .iter()
        .map(|r| {
            Ok(StuckSaga {
                saga_id: r.try_get("saga_id")?,
                saga_type: r.try_get("saga_type")?,
                status: r.try_get("status")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;

    let count_mismatches = counts.iter().filter(|c| c.outbox != c.tracker).count() as u64;
    let undecodable_total = sources.iter().map(|s| s.undecodable).sum();
    let missing_in_tracker_total = missing_in_tracker.len() as u64;
    let missing_in_outbox_total = missing_in_outbox.len() as u64;
    let unpublished_total = missing_in_tracker
        .iter()
        .filter(|m| m.published == Some(false))
        .count() as u64;
    missing_in_tracker.truncate(LISTED);
    missing_in_outbox.truncate(LISTED);
    let report = ReconcileReport {
        day: options.day,
        ran_at: Utc::now(),
        sources,
        services,
        counts,
        count_mismatches,
        missing_in_tracker_total,
        unpublished_total,
        missing_in_tracker,
        missing_in_outbox_total,
        missing_in_outbox,
        duplicates_absorbed: duplicates,
        undecodable_total,
        stuck_sagas,
        stuck_after_seconds: options.stuck_after.as_secs(),
        ok: missing_in_tracker_total == 0
            && missing_in_outbox_total == 0
            && count_mismatches == 0
            && undecodable_total == 0,
    };
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO reconcile_runs (day, ran_at, missing_in_tracker, missing_in_outbox, count_mismatches,
             stuck_sagas, ok, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(report.day)
    .bind(report.ran_at)
    .bind(as_i64(report.missing_in_tracker_total))
    .bind(as_i64(report.missing_in_outbox_total))
    .bind(as_i64(report.count_mismatches))
    .bind(as_i64(report.stuck_sagas.len() as u64))
    .bind(report.ok)
    .bind(serde_json::to_value(&report).map_err(|e| OpsError::Input(e.to_string()))?)
    .execute(tracker)
    .await?;
    Ok(report)
}

/// The latest run, as `/metrics` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastRun {
    /// Events in the outboxes, not in the tracker.
    pub missing_in_tracker: i64,
    /// Events in the tracker, in no outbox.
    pub missing_in_outbox: i64,
    /// When it ran (Unix seconds).
    pub ran_at: i64,
    /// Whether it found no discrepancy.
    pub ok: bool,
}

/// The latest `reconcile` run, if any.
pub async fn last_run(pool: &PgPool) -> Result<Option<LastRun>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT missing_in_tracker, missing_in_outbox, ran_at, ok FROM reconcile_runs
         ORDER BY ran_at DESC, id DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(LastRun {
            missing_in_tracker: r.try_get("missing_in_tracker")?,
            missing_in_outbox: r.try_get("missing_in_outbox")?,
            ran_at: r.try_get::<DateTime<Utc>, _>("ran_at")?.timestamp(),
            ok: r.try_get("ok")?,
        })
    })
    .transpose()
}

/// The report for people.
pub fn markdown(r: &ReconcileReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Saga reconciliation {} (UTC)\n", r.day);
    let _ = writeln!(
        s,
        "Outboxes: {}. Services compared: {}.\n",
        r.sources
            .iter()
            .map(|o| format!("{} ({} events)", o.url, o.events))
            .collect::<Vec<_>>()
            .join(", "),
        if r.services.is_empty() {
            "none".to_owned()
        } else {
            r.services.join(", ")
        }
    );
    let _ = writeln!(s, "| saga type | step | status | outbox | tracker | |");
    let _ = writeln!(s, "|---|---|---|---:|---:|---|");
    for c in &r.counts {
        let mark = if c.outbox == c.tracker {
            ""
        } else {
            "**differs**"
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {mark} |",
            c.saga_type, c.step, c.status, c.outbox, c.tracker
        );
    }
    let _ = writeln!(
        s,
        "\nMissing in the tracker: {} ({} not yet published by the outbox relay)",
        r.missing_in_tracker_total, r.unpublished_total
    );
    for m in &r.missing_in_tracker {
        let _ = writeln!(
            s,
            "- `{}` saga `{}` {} {} {}{}",
            m.event_id,
            m.saga_id,
            m.service,
            m.step,
            m.status,
            if m.published == Some(false) {
                " (unpublished)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        s,
        "\nMissing in the outboxes: {}",
        r.missing_in_outbox_total
    );
    for m in &r.missing_in_outbox {
        let _ = writeln!(
            s,
            "- `{}` saga `{}` {} {} {}",
            m.event_id, m.saga_id, m.service, m.step, m.status
        );
    }
    let _ = writeln!(
        s,
        "\nDuplicates absorbed: {} · undecodable outbox rows: {}",
        r.duplicates_absorbed, r.undecodable_total
    );
    let _ = writeln!(
        s,
        "\nStuck sagas (not terminal, silent for more than {} s): {}",
        r.stuck_after_seconds,
        r.stuck_sagas.len()
    );
    for st in &r.stuck_sagas {
        let _ = writeln!(
            s,
            "- `{}` {} {} since {}",
            st.saga_id,
            st.saga_type,
            st.status,
            st.updated_at.to_rfc3339()
        );
    }
    let _ = writeln!(
        s,
        "\nResult: {}",
        if r.ok { "OK" } else { "DISCREPANCY (exit 1)" }
    );
    s
}

/// The default day: yesterday (UTC).
pub fn yesterday() -> NaiveDate {
    let today = Utc::now().date_naive();
    today.checked_sub_days(Days::new(1)).unwrap_or(today)
}
