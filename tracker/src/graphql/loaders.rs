//! The timelines of the sagas of one request, loaded together: a page of sagas asking for `events` or `links`
//! costs one query, not one per saga.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;

use crate::db::timeline::{self, TimelineEntry};
use crate::db::{EventRow, Store};

/// Loads timelines by saga id ([`Store::events_of`], then [`timeline::build`]).
pub struct TimelineLoader {
    /// The database.
    pub store: Store,
}

impl Loader<String> for TimelineLoader {
    type Value = Arc<Vec<TimelineEntry>>;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let rows = self.store.events_of(keys).await.map_err(Arc::new)?;
        let mut by_saga: HashMap<String, Vec<EventRow>> = HashMap::new();
        for row in rows {
            by_saga.entry(row.saga_id.clone()).or_default().push(row);
        }
        Ok(by_saga
            .into_iter()
            .map(|(id, events)| (id, Arc::new(timeline::build(events))))
            .collect())
    }
}
