//! Procedural macros for `saga-tracker`. Use them through the `saga-tracker` crate, which re-exports them:
//! `#[derive(Saga)]`, `#[saga_step]`, `#[saga_compensation]` and `saga_service!`.

use proc_macro::TokenStream;

mod derive_saga;
mod errors;
mod service;
mod step_attr;

/// Declares a saga type: a fieldless enum whose variants are its steps. See `saga_tracker::Saga`.
///
/// `#[saga(name = "...")]` on the enum sets the wire name of the saga type (default: the enum's name);
/// `#[step(compensable)]` marks a step that has a compensation; `#[step(name = "...")]` overrides the step's
/// wire name (default: the variant in snake_case).
#[proc_macro_derive(Saga, attributes(saga, step))]
pub fn derive_saga(input: TokenStream) -> TokenStream {
    derive_saga::expand(input.into()).into()
}

/// Records a saga step: STARTED before the body, then SUCCEEDED on `Ok`, FAILED on `Err`, a panic or a dropped
/// future. `#[saga_step(OrderSaga, ReserveStock, saga_id = cmd.saga_id)]`; see the `saga-tracker` crate docs.
#[proc_macro_attribute]
pub fn saga_step(args: TokenStream, item: TokenStream) -> TokenStream {
    step_attr::expand(step_attr::Kind::Step, args.into(), item.into()).into()
}

/// Records a compensation: COMPENSATION_STARTED, then COMPENSATED or COMPENSATION_FAILED.
/// `#[saga_compensation(OrderSaga, ReserveStock, saga_id = ...)]`; the step must be declared `#[step(compensable)]`.
#[proc_macro_attribute]
pub fn saga_compensation(args: TokenStream, item: TokenStream) -> TokenStream {
    step_attr::expand(step_attr::Kind::Compensation, args.into(), item.into()).into()
}

/// Declares a service: the saga steps it handles and the annotated handler wired for each.
///
/// ```text
/// saga_service! {
///     /// The stock service.
///     pub ProductService {
///         step OrderSaga::ReserveStock => reserve_stock,
///         compensate OrderSaga::ReserveStock => release_stock,
///     }
/// }
/// ```
#[proc_macro]
pub fn saga_service(input: TokenStream) -> TokenStream {
    service::expand(input.into()).into()
}
