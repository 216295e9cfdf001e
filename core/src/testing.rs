//! A fixed sample event for doc examples and tests. Not part of the stable API.

use std::collections::BTreeMap;

use crate::event::{SagaEvent, StepStatus};

/// A fixed, valid event.
pub fn sample_event() -> SagaEvent {
    SagaEvent {
        event_id: uuid::Uuid::from_u128(0x0190c3e2_5d4f_7c1a_9b2e_1234567890ab),
        idempotency_key: "saga-0001:reserve_stock:STARTED:1".into(),
        saga_id: "saga-0001".into(),
        saga_type: "OrderSaga".into(),
        step: "reserve_stock".into(),
        status: StepStatus::Started,
        attempt: 1,
        order_id: None,
        service: "order-service".into(),
        recorded_at: 1_732_406_400_000_000,
        duration_micros: None,
        error: None,
        metadata: BTreeMap::new(),
    }
}
