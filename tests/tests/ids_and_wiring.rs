//! Saga id sources, opt-in ids and metadata, error classifiers, the link-time registry and `saga_service!`.

use std::fmt;

use saga_tracker::{
    HandlerKind, SagaContext, StepStatus, saga_compensation, saga_service, saga_step, with_default,
};
use saga_tracker_tests::{OrderSaga, Recorder};

/// A payment error with a code.
#[derive(Debug, PartialEq)]
pub struct PayError {
    /// Machine-readable code.
    pub code: &'static str,
}

impl fmt::Display for PayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payment refused ({})", self.code)
    }
}

fn classify(e: &PayError) -> &'static str {
    e.code
}

/// A request context carrying the ids.
pub struct Ctx {
    /// Saga.
    pub saga: String,
    /// Order.
    pub order: u64,
    /// Retry count.
    pub retry: i32,
}

impl SagaContext for Ctx {
    fn saga_id(&self) -> &str {
        &self.saga
    }
    fn order_id(&self) -> Option<&str> {
        Some("order-from-ctx")
    }
    fn attempt(&self) -> Option<i32> {
        Some(self.retry)
    }
}

/// Ids from a `SagaContext` argument (not the first argument).
#[saga_step(OrderSaga, ChargePayment, error_kind = classify)]
fn charge_ctx(amount: u64, ctx: &Ctx) -> Result<u64, PayError> {
    if amount == 0 {
        Err(PayError {
            code: "ZERO_AMOUNT",
        })
    } else {
        Ok(amount)
    }
}

/// Keyword form with order id, attempt and opt-in metadata.
#[saga_step(type = OrderSaga, step = ChargePayment, saga_id = ctx.saga, order_id = ctx.order, attempt = ctx.retry + 1, metadata(tenant = tenant, amount = amount))]
fn charge_meta(ctx: &Ctx, tenant: &str, amount: u64, card_number: &str) -> Result<u64, PayError> {
    let _ = card_number;
    Ok(amount)
}

/// `Result<impl Trait, E>` and a closure classifier.
#[saga_step(OrderSaga, ConfirmOrder, saga_id = id, error_kind = |e: &PayError| format!("confirm/{}", e.code))]
fn confirm(id: u64, ok: bool) -> Result<impl fmt::Display, PayError> {
    if ok {
        Ok(format!("confirmed {id}"))
    } else {
        Err(PayError { code: "LATE" })
    }
}

#[test]
fn saga_context_supplies_ids_and_classifier_supplies_kind() {
    let rec = Recorder::new("svc");
    let ctx = Ctx {
        saga: "ctx-1".into(),
        order: 9,
        retry: 3,
    };
    with_default(&rec.tracker, || {
        assert_eq!(charge_ctx(5, &ctx), Ok(5));
        assert!(charge_ctx(0, &ctx).is_err());
    });
    let events = rec.events();
    assert_eq!(events.len(), 4);
    for e in &events {
        assert_eq!(e.saga_id, "ctx-1");
        assert_eq!(e.order_id.as_deref(), Some("order-from-ctx"));
        assert_eq!(e.attempt, 3);
    }
    let error = events[3].error.as_ref().expect("error");
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("ZERO_AMOUNT", "payment refused (ZERO_AMOUNT)")
    );
}

#[test]
fn keyword_form_order_id_attempt_and_only_named_metadata() {
    let rec = Recorder::new("svc");
    let ctx = Ctx {
        saga: "kw-1".into(),
        order: 42,
        retry: 1,
    };
    with_default(&rec.tracker, || {
        assert_eq!(
            charge_meta(&ctx, "acme", 250, "4111-1111-1111-1111"),
            Ok(250)
        )
    });
    let events = rec.events();
    assert_eq!(
        events.iter().map(|e| e.status).collect::<Vec<_>>(),
        [StepStatus::Started, StepStatus::Succeeded]
    );
    for e in &events {
        assert_eq!(e.saga_id, "kw-1");
        assert_eq!(e.order_id.as_deref(), Some("42"));
        assert_eq!(e.attempt, 2);
        assert_eq!(e.metadata.get("tenant").map(String::as_str), Some("acme"));
        assert_eq!(e.metadata.get("amount").map(String::as_str), Some("250"));
        assert!(
            !format!("{e:?}").contains("4111"),
            "an argument not named is never captured"
        );
    }
}

#[test]
fn impl_trait_return_and_closure_classifier() {
    let rec = Recorder::new("svc");
    with_default(&rec.tracker, || {
        assert_eq!(
            confirm(7, true).map(|v| v.to_string()).ok().as_deref(),
            Some("confirmed 7")
        );
        assert!(confirm(8, false).is_err());
    });
    let events = rec.events();
    assert_eq!(events[0].saga_id, "7");
    assert_eq!(
        events[3].error.as_ref().map(|e| e.kind.as_str()),
        Some("confirm/LATE")
    );
}

/// The product service's step handler.
#[saga_step(OrderSaga, ReserveStock, saga_id = saga_id)]
pub fn reserve_stock(saga_id: &str, qty: u32) -> Result<u32, PayError> {
    Ok(qty)
}

/// Its compensation.
#[saga_compensation(OrderSaga, ReserveStock)]
pub fn release_stock(#[saga_id] saga_id: &str) -> Result<(), PayError> {
    Ok(())
}

/// A handler in another module, wired by path.
pub mod confirmations {
    use super::*;

    /// Confirms.
    #[saga_step(OrderSaga, ConfirmOrder, saga_id = saga_id)]
    pub async fn confirm_order(saga_id: String) -> Result<(), PayError> {
        Ok(())
    }
}

saga_service! {
    /// The product service: the steps it handles and the handler wired for each.
    pub ProductService {
        step OrderSaga::ReserveStock => reserve_stock,
        compensate OrderSaga::ReserveStock => release_stock,
        step OrderSaga::ConfirmOrder => confirmations::confirm_order,
    }
}

#[test]
fn service_lists_and_verifies_its_handlers() {
    let handlers = ProductService::descriptors();
    let summary: Vec<(&str, &str, HandlerKind, &str)> = handlers
        .iter()
        .map(|d| (d.saga_type, d.step, d.kind, d.fn_name))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "OrderSaga",
                "reserve_stock",
                HandlerKind::Step,
                "reserve_stock"
            ),
            (
                "OrderSaga",
                "reserve_stock",
                HandlerKind::Compensation,
                "release_stock"
            ),
            ("OrderSaga", "confirm", HandlerKind::Step, "confirm_order"),
        ]
    );
    assert_eq!(handlers[0].module_path, "ids_and_wiring");
    assert_eq!(handlers[2].module_path, "ids_and_wiring::confirmations");
    assert!(handlers[0].file.ends_with("ids_and_wiring.rs"));
    assert_eq!(handlers[0].line, line_of("pub fn reserve_stock("));
    assert_eq!(ProductService::DESCRIPTOR.name, "ProductService");
    assert_eq!(ProductService::verify(), Ok(()));
}

fn line_of(needle: &str) -> u32 {
    let source = include_str!("ids_and_wiring.rs");
    let index = source
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle in source");
    u32::try_from(index + 1).expect("small file")
}

#[test]
fn registry_lists_every_annotated_handler_including_methods() {
    let all = saga_tracker::registry::descriptors();
    let names: Vec<(&str, HandlerKind)> = all.iter().map(|d| (d.fn_name, d.kind)).collect();
    for expected in [
        ("charge_ctx", HandlerKind::Step),
        ("charge_meta", HandlerKind::Step),
        ("confirm", HandlerKind::Step),
        ("reserve_stock", HandlerKind::Step),
        ("release_stock", HandlerKind::Compensation),
        ("confirm_order", HandlerKind::Step),
        ("take", HandlerKind::Step),
    ] {
        assert!(
            names.contains(&expected),
            "{expected:?} registered; got {names:?}"
        );
    }
    let take = all
        .iter()
        .find(|d| d.fn_name == "take")
        .expect("method registered");
    assert!(take.is_method);
    assert_eq!(take.fn_path(), "ids_and_wiring::<impl>::take");
    assert_eq!(
        saga_tracker::registry::descriptors_of("OrderSaga").len(),
        all.len()
    );
}

/// A type with a method step.
pub struct Stock;

impl Stock {
    /// A method handler: records, and is registered, but is wired through a free fn.
    #[saga_step(OrderSaga, ReserveStock, saga_id = saga_id)]
    pub fn take(&self, saga_id: &str) -> Result<(), PayError> {
        Ok(())
    }
}
