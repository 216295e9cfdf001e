//! The grammar of saga-tracker's macros, as [`syn::parse::Parse`] implementations shared by the macros
//! (`saga-tracker-macros`) and the release checklist (`saga-tracker-cli`), so both accept exactly the same forms:
//!
//! - [`StepArgs`]: the arguments of `#[saga_step(..)]` and `#[saga_compensation(..)]`;
//! - [`SagaDecl`]: a `#[derive(Saga)]` declaration (the enum, `#[saga(..)]` and `#[step(..)]`);
//! - [`ServiceDecl`]: the body of `saga_service! { .. }`.
//!
//! Every parser reports all the problems it finds at once (combined into one [`syn::Error`]), each under the
//! user's token, saying what to write instead.
//!
//! ```
//! use saga_tracker_syntax::StepArgs;
//!
//! let args: StepArgs = syn::parse_str("OrderSaga, ReserveStock, saga_id = cmd.saga_id").unwrap();
//! assert_eq!(args.step, "ReserveStock");
//! assert!(syn::parse_str::<StepArgs>("ReserveStock").is_err());
//! ```

mod args;
mod errors;
mod saga;
mod service;

pub use args::{KEYS, StepArgs};
pub use errors::Errors;
pub use saga::{SagaDecl, StepDecl};
pub use service::{Route, RouteKind, ServiceDecl};

/// `path` as written, without spaces: `crate::sagas::OrderSaga`.
pub fn path_string(path: &syn::Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let joined = segments.join("::");
    if path.leading_colon.is_some() {
        format!("::{joined}")
    } else {
        joined
    }
}
