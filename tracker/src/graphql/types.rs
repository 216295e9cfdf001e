//! The GraphQL fields the REST types do not carry as plain fields: an event's `status`, a saga's `events` and
//! `links` (both from its timeline, loaded by [`TimelineLoader`]).

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{ComplexObject, Context, Result, SimpleObject};
use uuid::Uuid;

use super::errors;
use super::loaders::TimelineLoader;
use super::schema::EVENTS_COST;
use crate::db::timeline::TimelineEntry;
use crate::db::{EventRow, SagaRow};

#[ComplexObject]
impl EventRow {
    /// The step status symbol, e.g. `FAILED` (Avro enum `saga.tracker.StepStatus`).
    async fn status(&self) -> &'static str {
        self.status.as_str()
    }
}

/// A failure and one compensation it triggered (the timeline's `triggered_by`, one link per compensation event).
#[derive(Debug, Clone, PartialEq, Eq, SimpleObject)]
pub struct CompensationLink {
    /// The `FAILED` event.
    pub failure_event_id: Uuid,
    /// The compensation event it triggered.
    pub compensation_event_id: Uuid,
}

#[ComplexObject]
impl SagaRow {
    /// The events in timeline order, failures linked to their compensations (as `GET
    /// /api/v1/sagas/{id}/timeline` serves them).
    #[graphql(complexity = "EVENTS_COST + child_complexity")]
    async fn events(&self, ctx: &Context<'_>) -> Result<Vec<TimelineEntry>> {
        Ok(timeline(ctx, &self.saga_id).await?.as_ref().clone())
    }

    /// Every failure → compensation link of the timeline, in timeline order of the compensations.
    #[graphql(complexity = "EVENTS_COST + child_complexity")]
    async fn links(&self, ctx: &Context<'_>) -> Result<Vec<CompensationLink>> {
        Ok(timeline(ctx, &self.saga_id)
            .await?
            .iter()
            .filter_map(|e| {
                e.triggered_by.map(|failure| CompensationLink {
                    failure_event_id: failure,
                    compensation_event_id: e.event.event_id,
                })
            })
            .collect())
    }
}

async fn timeline(ctx: &Context<'_>, saga_id: &str) -> Result<Arc<Vec<TimelineEntry>>> {
    let loader = ctx.data::<DataLoader<TimelineLoader>>()?;
    Ok(loader
        .load_one(saga_id.to_owned())
        .await
        .map_err(|e| errors::database_shared(&e))?
        .unwrap_or_default())
}
