//! The arguments of `#[saga_step(..)]` and `#[saga_compensation(..)]`.
//!
//! ```text
//! (OrderSaga, ReserveStock, saga_id = cmd.saga_id, order_id = cmd.order_id, attempt = n,
//!  error_kind = classify, metadata(region = cmd.region), outbox = tx, method)
//! (type = OrderSaga, step = ReserveStock, ...)
//! ```
//!
//! Adding a `key = <expr>` key is one field of [`StepArgs`], one line in [`StepArgs::expr_slot`] and one entry
//! of [`KEYS`].

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, Ident, Path, Token};

use crate::errors::Errors;

/// The keys the attributes accept, for messages.
pub const KEYS: &str =
    "type, step, saga_id, order_id, attempt, error_kind, metadata(..), outbox, method";

/// The parsed arguments of `#[saga_step(..)]` / `#[saga_compensation(..)]`.
#[derive(Clone)]
pub struct StepArgs {
    /// The saga type: `OrderSaga` (first positional argument, or `type = ..`).
    pub saga: Path,
    /// The step: a variant of the saga enum (second positional argument, or `step = ..`).
    pub step: Ident,
    /// `saga_id = <expr>`.
    pub saga_id: Option<Expr>,
    /// `order_id = <expr>`.
    pub order_id: Option<Expr>,
    /// `attempt = <expr>`.
    pub attempt: Option<Expr>,
    /// `error_kind = <expr>`: a fn from `&E` to the recorded error kind.
    pub error_kind: Option<Expr>,
    /// `metadata(key = <expr>, ..)`, in order.
    pub metadata: Vec<(Ident, Expr)>,
    /// `outbox = tx`: the parameter (a `&mut sqlx::Transaction<'_, Postgres>` or `&mut PgConnection`) whose
    /// transaction receives the step's STARTED and SUCCEEDED events (feature `outbox` of `saga-tracker`).
    pub outbox: Option<Ident>,
    /// `method`: the fn is an associated fn that a service never wires (no wiring key is generated for it); only
    /// needed when a free fn of the same module has the same name and step.
    pub method: Option<Ident>,
}

/// The arguments while they are read.
#[derive(Default)]
struct Partial {
    saga: Option<Path>,
    step: Option<Ident>,
    saga_id: Option<Expr>,
    order_id: Option<Expr>,
    attempt: Option<Expr>,
    error_kind: Option<Expr>,
    metadata: Vec<(Ident, Expr)>,
    outbox: Option<Ident>,
    method: Option<Ident>,
    seen: HashMap<String, Span>,
    positional: usize,
}

impl StepArgs {
    /// The slot of a `key = <expr>` key, `None` for an unknown key. A new key is one line here.
    fn expr_slot<'a>(partial: &'a mut Partial, key: &str) -> Option<&'a mut Option<Expr>> {
        match key {
            "saga_id" => Some(&mut partial.saga_id),
            "order_id" => Some(&mut partial.order_id),
            "attempt" => Some(&mut partial.attempt),
            "error_kind" => Some(&mut partial.error_kind),
            _ => None,
        }
    }
}

impl Parse for StepArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let start = input.span();
        let mut errors = Errors::default();
        let mut partial = Partial::default();
        while !input.is_empty() {
            if let Err(err) = entry(input, &mut partial) {
                errors.push(err);
                // Skip to the next top-level comma and go on, to report every problem at once.
                while !input.is_empty() && !input.peek(Token![,]) {
                    input.parse::<TokenTree>()?;
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        let (Some(saga), Some(step)) = (partial.saga.take(), partial.step.take()) else {
            if !errors.is_empty() {
                return Err(errors
                    .into_error()
                    .unwrap_or_else(|| syn::Error::new(start, "")));
            }
            errors.push_at(
                start,
                "the saga type and the step come first: `(OrderSaga, ReserveStock, ...)` or `(type = OrderSaga, step = ReserveStock, ...)`",
            );
            return Err(errors
                .into_error()
                .unwrap_or_else(|| syn::Error::new(start, "")));
        };
        if looks_swapped(&saga, &step) {
            errors.push_at(
                saga.span(),
                format!(
                    "the saga type comes first and the step second: `({step}, {}, ...)`",
                    saga.segments
                        .last()
                        .map(|s| s.ident.to_string())
                        .unwrap_or_default()
                ),
            );
        }
        errors.finish(StepArgs {
            saga,
            step,
            saga_id: partial.saga_id,
            order_id: partial.order_id,
            attempt: partial.attempt,
            error_kind: partial.error_kind,
            metadata: partial.metadata,
            outbox: partial.outbox,
            method: partial.method,
        })
    }
}

fn note_key(partial: &mut Partial, key: &str, span: Span) -> syn::Result<()> {
    if partial.seen.contains_key(key) {
        let what = match key {
            "type" => "the saga type is given twice: give it once, first".to_owned(),
            "step" => "the step is given twice: give it once, second".to_owned(),
            _ => format!("duplicate key `{key}`: give it once"),
        };
        return Err(syn::Error::new(span, what));
    }
    partial.seen.insert(key.to_owned(), span);
    Ok(())
}

fn entry(input: ParseStream<'_>, partial: &mut Partial) -> syn::Result<()> {
    if input.peek(Token![type]) {
        let kw: Token![type] = input.parse()?;
        input.parse::<Token![=]>()?;
        let saga = input.call(Path::parse_mod_style)?;
        note_key(partial, "type", kw.span)?;
        partial.saga = Some(saga);
        return Ok(());
    }
    if input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
        let key: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let name = key.to_string();
        if name == "step" {
            let step = step_ident(input)?;
            note_key(partial, "step", key.span())?;
            partial.step = Some(step);
            return Ok(());
        }
        if name == "outbox" {
            let value: Expr = input.parse()?;
            let param = match &value {
                Expr::Path(p) if p.attrs.is_empty() && p.qself.is_none() => p.path.get_ident(),
                _ => None,
            };
            let Some(param) = param else {
                return Err(syn::Error::new(
                    value.span(),
                    "`outbox` names a parameter of this fn that holds the transaction, e.g. `outbox = tx` for `tx: &mut sqlx::Transaction<'_, Postgres>`",
                ));
            };
            note_key(partial, "outbox", key.span())?;
            partial.outbox = Some(param.clone());
            return Ok(());
        }
        let value: Expr = input.parse()?;
        let Some(slot) = StepArgs::expr_slot(partial, &name) else {
            return Err(unknown_key(&key));
        };
        if slot.is_some() {
            return Err(syn::Error::new(
                key.span(),
                format!("duplicate key `{key}`: give it once"),
            ));
        }
        *slot = Some(value);
        return Ok(());
    }
    if input.peek(Ident) && input.peek2(syn::token::Paren) {
        let key: Ident = input.parse()?;
        let content;
        syn::parenthesized!(content in input);
        if key != "metadata" {
            let _: TokenStream = content.parse()?;
            return Err(unknown_key(&key));
        }
        note_key(partial, "metadata", key.span())?;
        let entries = content.parse_terminated(
            |p| {
                let k: Ident = p.parse()?;
                p.parse::<Token![=]>()?;
                let v: Expr = p.parse()?;
                Ok((k, v))
            },
            Token![,],
        )?;
        let mut keys: HashMap<String, Span> = HashMap::new();
        for (k, v) in entries {
            if keys.insert(k.to_string(), k.span()).is_some() {
                return Err(syn::Error::new(
                    k.span(),
                    format!("duplicate metadata key `{k}`: give it once"),
                ));
            }
            if k == "traceId" || k == "spanId" {
                return Err(syn::Error::new(
                    k.span(),
                    format!(
                        "metadata key `{k}` is reserved: the tracker sets it from the OpenTelemetry span; remove it"
                    ),
                ));
            }
            partial.metadata.push((k, v));
        }
        return Ok(());
    }
    if input.peek(Ident) && partial.positional >= 2 && (input.peek2(Token![,]) || is_last(input)) {
        let key: Ident = input.parse()?;
        if key == "method" {
            note_key(partial, "method", key.span())?;
            partial.method = Some(key);
            return Ok(());
        }
        return Err(unknown_key(&key));
    }
    // Positional: the saga type, then the step.
    match partial.positional {
        0 => {
            if input.peek(syn::Lit) {
                let lit: syn::Lit = input.parse()?;
                return Err(syn::Error::new(
                    lit.span(),
                    "the saga type is a type, not a string: write its name, e.g. `OrderSaga`",
                ));
            }
            let path = input.call(Path::parse_mod_style)?;
            partial.positional += 1;
            note_key(partial, "type", path.span())?;
            partial.saga = Some(path);
        }
        1 => {
            let step = step_ident(input)?;
            partial.positional += 1;
            note_key(partial, "step", step.span())?;
            partial.step = Some(step);
        }
        _ => {
            let expr: Expr = input.parse()?;
            return Err(syn::Error::new(
                expr.span(),
                format!(
                    "unexpected argument; after the saga type and the step, write `key = value` with a key out of: {KEYS}"
                ),
            ));
        }
    }
    Ok(())
}

/// The step: a bare variant name.
fn step_ident(input: ParseStream<'_>) -> syn::Result<Ident> {
    if input.peek(syn::Lit) {
        let lit: syn::Lit = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            "the step is a variant of the saga enum, not a string: write its name, e.g. `ReserveStock`",
        ));
    }
    let path = input.call(Path::parse_mod_style)?;
    match path.get_ident() {
        Some(ident) => Ok(ident.clone()),
        None => Err(syn::Error::new(
            path.span(),
            format!(
                "the step is a bare variant name of the saga enum: write `{}`, with the saga type as the first argument",
                path.segments
                    .last()
                    .map(|s| s.ident.to_string())
                    .unwrap_or_default()
            ),
        )),
    }
}

/// `(ReserveStock, OrderSaga)`: by the naming convention, the step names the saga and the saga type does not.
fn looks_swapped(saga: &Path, step: &Ident) -> bool {
    let saga_name = saga
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default();
    step.to_string().ends_with("Saga") && !saga_name.ends_with("Saga")
}

fn is_last(input: ParseStream<'_>) -> bool {
    let fork = input.fork();
    fork.parse::<Ident>().is_ok() && fork.is_empty()
}

fn unknown_key(key: &Ident) -> syn::Error {
    let hint = match key.to_string().as_str() {
        "saga" | "saga_type" => " (the saga type is `type = ...` or the first argument)",
        _ => "",
    };
    syn::Error::new(
        key.span(),
        format!("unknown key `{key}`{hint}; expected one of: {KEYS}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        match syn::parse_str::<StepArgs>(src) {
            Ok(_) => panic!("`{src}` parsed"),
            Err(e) => e
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }

    #[test]
    fn positional_and_keyed_forms() {
        let a: StepArgs = syn::parse_str(
            "sagas::OrderSaga, ReserveStock, saga_id = c.id, attempt = 2, metadata(region = r), outbox = tx, method",
        )
        .expect("parses");
        assert_eq!(
            a.outbox.as_ref().map(|i| i.to_string()).as_deref(),
            Some("tx")
        );
        assert_eq!(crate::path_string(&a.saga), "sagas::OrderSaga");
        assert_eq!(a.step, "ReserveStock");
        assert!(a.saga_id.is_some() && a.attempt.is_some() && a.order_id.is_none());
        assert_eq!(a.metadata.len(), 1);
        assert!(a.method.is_some());
        let b: StepArgs = syn::parse_str("type = OrderSaga, step = ReserveStock").expect("parses");
        assert_eq!(b.step, "ReserveStock");
    }

    #[test]
    fn rejected_forms_say_what_to_write() {
        assert!(err("saga = OrderSaga, step = ReserveStock").contains("unknown key `saga`"));
        assert!(err("OrderSaga, \"reserve_stock\"").contains("not a string"));
        assert!(err("OrderSaga").contains("the saga type and the step come first"));
        assert!(err("OrderSaga, ReserveStock, bogus = 1").contains("unknown key `bogus`"));
        assert!(err("OrderSaga, ReserveStock, saga_id = a, saga_id = b").contains("duplicate key"));
        assert!(err("OrderSaga, ReserveStock, outbox = &mut tx").contains("names a parameter"));
        assert!(err("OrderSaga, ReserveStock, outbox = a, outbox = b").contains("duplicate key"));
        assert!(err("OrderSaga, OrderSaga::ReserveStock").contains("bare variant name"));
        assert!(err("ReserveStock, OrderSaga").contains("`(OrderSaga, ReserveStock, ...)`"));
        let all = err("OrderSaga, ReserveStock, a = 1, b = 2");
        assert!(all.contains("`a`") && all.contains("`b`"), "{all}");
    }
}
