//! The derived `sagas` rows and their [`Summary`] rows (`saga_summaries`): lock, load, admit under the per-saga
//! cap, rebuild from events, upsert. Used by the batch writer ([`Store::write`](super::Store::write)) and by
//! `restore` (through [`recompute_sagas`](super::recompute_sagas)).

use std::collections::{HashMap, HashSet};

use saga_tracker_core::SagaEvent;
use sqlx::Row;
use uuid::Uuid;

use super::state::{self, EventFacts};
use super::store::{IncomingEvent, micros_to_datetime};
use super::summary::Summary;

/// The facts of an incoming event.
pub(crate) fn facts_of(e: &SagaEvent) -> EventFacts {
    EventFacts {
        step_index: e.step_index,
        step_count: e.step_count,
        compensable: e.compensable,
        event_id: e.event_id,
        saga_type: e.saga_type.clone(),
        step: e.step.clone(),
        status: e.status,
        attempt: e.attempt,
        order_id: e.order_id.clone(),
        service: e.service.clone(),
        recorded_at: micros_to_datetime(e.recorded_at),
    }
}

/// Takes the transaction-scoped advisory lock of every saga (in hash order, so two writers cannot deadlock):
/// the summaries read next stay current until the transaction ends.
pub(crate) async fn lock(tx: &mut sqlx::PgConnection, sagas: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM
             (SELECT DISTINCT hashtextextended(id, 0) AS k FROM unnest($1::text[]) AS id ORDER BY k) AS keys",
    )
    .bind(sagas)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What [`load`] read of a batch's sagas (locked).
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The summary of every saga that has stored events.
    pub(crate) summaries: HashMap<String, Summary>,
    /// The sagas whose summary was rebuilt from their stored events, or that have none (new sagas): the events
    /// of these sagas stored so far are exactly [`Loaded::rebuilt_events`]. The others' summaries were read as
    /// stored, and count every event of their saga.
    pub(crate) rebuilt: HashSet<String>,
    /// `(event id, recorded_at in microseconds)` of every stored event of the [`Loaded::rebuilt`] sagas.
    pub(crate) rebuilt_events: HashSet<(Uuid, i64)>,
}

/// The summaries of the stored sagas among `sagas` (locked). A saga whose summary is missing or does not count
/// its `sagas` row's events (a row written by an older tracker during a rolling upgrade), or that has no `sagas`
/// row (new, or events stored without one), is rebuilt from its stored events (none for a new saga).
pub(crate) async fn load(
    tx: &mut sqlx::PgConnection,
    sagas: &[String],
) -> Result<Loaded, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.saga_id, s.event_count, m.summary::text AS summary FROM sagas s
             LEFT JOIN saga_summaries m ON m.saga_id = s.saga_id
         WHERE s.saga_id = ANY($1)",
    )
    .bind(sagas)
    .fetch_all(&mut *tx)
    .await?;
    let mut summaries = HashMap::with_capacity(rows.len());
    let mut stale = Vec::new();
    let mut known = HashSet::with_capacity(rows.len());
    for r in rows {
        let id: String = r.try_get("saga_id")?;
        known.insert(id.clone());
        let count: i32 = r.try_get("event_count")?;
        let summary: Option<&str> = r.try_get("summary")?;
        match summary.and_then(|v| serde_json::from_str::<Summary>(v).ok()) {
            Some(s) if s.n == i64::from(count) => {
                summaries.insert(id, s);
            }
            _ => stale.push(id),
        }
    }
    stale.extend(sagas.iter().filter(|id| !known.contains(*id)).cloned());
    let mut loaded = Loaded {
        summaries,
        ..Loaded::default()
    };
    if !stale.is_empty() {
        tracing::debug!(
            sagas = stale.len(),
            "rebuilding saga summaries from their events"
        );
        let (summaries, events) = rebuild_with_events(tx, &stale).await?;
        loaded.summaries.extend(summaries);
        loaded.rebuilt_events = events;
        loaded.rebuilt = stale.into_iter().collect();
    }
    Ok(loaded)
}

/// The summaries of `sagas` from all their stored events (sagas without events are absent).
pub(crate) async fn rebuild(
    tx: &mut sqlx::PgConnection,
    sagas: &[String],
) -> Result<HashMap<String, Summary>, sqlx::Error> {
    Ok(rebuild_with_events(tx, sagas).await?.0)
}

/// [`rebuild`], and the `(event id, recorded_at in microseconds)` of the events read.
async fn rebuild_with_events(
    tx: &mut sqlx::PgConnection,
    sagas: &[String],
) -> Result<(HashMap<String, Summary>, HashSet<(Uuid, i64)>), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT event_id, saga_id, saga_type, step, status, attempt, order_id, service, recorded_at,
             step_index, step_count, compensable
         FROM saga_events WHERE saga_id = ANY($1)",
    )
    .bind(sagas)
    .fetch_all(&mut *tx)
    .await?;
    let mut summaries: HashMap<String, Summary> = HashMap::new();
    let mut events = HashSet::with_capacity(rows.len());
    for r in rows {
        let status: String = r.try_get("status")?;
        let facts = EventFacts {
            event_id: r.try_get("event_id")?,
            saga_type: r.try_get("saga_type")?,
            step: r.try_get("step")?,
            status: state::parse_status(&status),
            attempt: r.try_get("attempt")?,
            order_id: r.try_get("order_id")?,
            service: r.try_get("service")?,
            recorded_at: r.try_get("recorded_at")?,
            step_index: r.try_get("step_index")?,
            step_count: r.try_get("step_count")?,
            compensable: r.try_get("compensable")?,
        };
        events.insert((facts.event_id, facts.recorded_at.timestamp_micros()));
        let id: String = r.try_get("saga_id")?;
        match summaries.get_mut(&id) {
            Some(s) => s.add(&facts),
            None => {
                summaries.insert(id, Summary::of(&facts));
            }
        }
    }
    Ok((summaries, events))
}

/// Splits `unique` (indices into `batch`) into the events to write and those over the cap: a saga holding
/// `max` events takes no new one; events already stored are not counted (they are duplicates, absorbed by the
/// insert). The batch's order decides which events of a saga near the cap are admitted.
pub(crate) async fn admit(
    tx: &mut sqlx::PgConnection,
    batch: &[IncomingEvent],
    unique: Vec<usize>,
    summaries: &HashMap<String, Summary>,
    max: i64,
) -> Result<(Vec<usize>, Vec<usize>), sqlx::Error> {
    let stored = |id: &str| summaries.get(id).map_or(0, |s| s.n);
    let mut incoming: HashMap<&str, i64> = HashMap::new();
    for &i in &unique {
        *incoming.entry(batch[i].event.saga_id.as_str()).or_default() += 1;
    }
    let near: Vec<&str> = incoming
        .iter()
        .filter(|(id, n)| stored(id) + **n > max)
        .map(|(id, _)| *id)
        .collect();
    if near.is_empty() {
        return Ok((unique, Vec::new()));
    }
    // Which of the near sagas' events are already stored (re-deliveries): they pass to the insert.
    let ids: Vec<Uuid> = unique
        .iter()
        .filter(|&&i| near.contains(&batch[i].event.saga_id.as_str()))
        .map(|&i| batch[i].event.event_id)
        .collect();
    let known: HashSet<Uuid> = sqlx::query_scalar(
        "SELECT event_id FROM saga_events WHERE saga_id = ANY($1) AND event_id = ANY($2)",
    )
    .bind(&near)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut room: HashMap<&str, i64> = near.iter().map(|id| (*id, max - stored(id))).collect();
    let (mut admitted, mut refused) = (Vec::with_capacity(unique.len()), Vec::new());
    for i in unique {
        let event = &batch[i].event;
        match room.get_mut(event.saga_id.as_str()) {
            Some(_) if known.contains(&event.event_id) => admitted.push(i),
            Some(left) if *left > 0 => {
                *left -= 1;
                admitted.push(i);
            }
            Some(_) => refused.push(i),
            None => admitted.push(i),
        }
    }
    Ok((admitted, refused))
}

/// The PostgreSQL text form of a `text[]` value (`{"a","b"}`): every element quoted, `"` and `\\` escaped.
fn text_array(items: &[String]) -> String {
    let mut out = String::with_capacity(2 + items.iter().map(|s| s.len() + 3).sum::<usize>());
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// Writes the derived `sagas` row and the summary of each saga, in one statement. The rows go as one typed array
/// per column (`UNNEST`), the array columns as their text form and the summary as JSON text: PostgreSQL parses
/// each value once, with no JSON document around the rows.
pub(crate) async fn upsert<'a>(
    tx: &mut sqlx::PgConnection,
    summaries: impl Iterator<Item = (&'a String, &'a Summary)>,
) -> Result<(), sqlx::Error> {
    let (lower, _) = summaries.size_hint();
    let mut ids: Vec<&str> = Vec::with_capacity(lower);
    let mut types = Vec::with_capacity(lower);
    let mut statuses: Vec<&'static str> = Vec::with_capacity(lower);
    let mut orders = Vec::with_capacity(lower);
    let mut started = Vec::with_capacity(lower);
    let mut updated = Vec::with_capacity(lower);
    let mut failed = Vec::with_capacity(lower);
    let mut pending = Vec::with_capacity(lower);
    let mut steps = Vec::with_capacity(lower);
    let mut services = Vec::with_capacity(lower);
    let mut counts: Vec<i32> = Vec::with_capacity(lower);
    let mut stored: Vec<String> = Vec::with_capacity(lower);
    for (id, summary) in summaries {
        let d = summary.derive();
        ids.push(id);
        types.push(d.saga_type);
        statuses.push(d.status.as_str());
        orders.push(d.order_id);
        started.push(d.started_at);
        updated.push(d.updated_at);
        failed.push(d.failed_step);
        pending.push(text_array(&d.pending_compensations));
        steps.push(text_array(&d.steps));
        services.push(text_array(&d.services));
        counts.push(i32::try_from(d.event_count).unwrap_or(i32::MAX));
        stored.push(serde_json::to_string(summary).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH x AS (
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                 $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int4[], $12::text[])
                 AS x(saga_id, saga_type, status, order_id, started_at, updated_at, failed_step, pending_compensations,
                      steps, services, event_count, summary)
         ), s AS (
             INSERT INTO sagas (saga_id, saga_type, status, order_id, started_at, updated_at, failed_step,
                 pending_compensations, steps, services, event_count, last_ingested_at)
             SELECT saga_id, saga_type, status, order_id, started_at, updated_at, failed_step,
                 pending_compensations::text[], steps::text[], services::text[], event_count, now()
             FROM x
             ON CONFLICT (saga_id) DO UPDATE SET saga_type = EXCLUDED.saga_type, status = EXCLUDED.status,
                 order_id = EXCLUDED.order_id, started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at,
                 failed_step = EXCLUDED.failed_step, pending_compensations = EXCLUDED.pending_compensations,
                 steps = EXCLUDED.steps, services = EXCLUDED.services, event_count = EXCLUDED.event_count,
                 last_ingested_at = EXCLUDED.last_ingested_at
         )
         INSERT INTO saga_summaries (saga_id, summary)
         SELECT saga_id, summary::json FROM x
         ON CONFLICT (saga_id) DO UPDATE SET summary = EXCLUDED.summary",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&statuses)
    .bind(&orders)
    .bind(&started)
    .bind(&updated)
    .bind(&failed)
    .bind(&pending)
    .bind(&steps)
    .bind(&services)
    .bind(&counts)
    .bind(&stored)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::text_array;

    #[test]
    fn text_arrays_quote_and_escape_every_element() {
        assert_eq!(text_array(&[]), "{}");
        let items = [
            "a".to_owned(),
            "b c".to_owned(),
            r#"q"u\o,{t}e"#.to_owned(),
            "NULL".to_owned(),
        ];
        assert_eq!(text_array(&items), r#"{"a","b c","q\"u\\o,{t}e","NULL"}"#);
    }
}
