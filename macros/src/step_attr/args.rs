//! Parsing `#[saga_step(...)]` / `#[saga_compensation(...)]` arguments. Every problem is collected, so all the
//! attribute errors of one item are reported together, each under its own token.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Ident, Path, Token};

use crate::errors::Errors;

/// The keys the attribute accepts.
pub(crate) const KEYS: &str =
    "type, step, saga_id, order_id, attempt, metadata(..), error_kind, method";

/// The parsed arguments.
#[derive(Default)]
pub(crate) struct StepArgs {
    pub saga: Option<Path>,
    pub step: Option<Ident>,
    pub saga_id: Option<Expr>,
    pub order_id: Option<Expr>,
    pub attempt: Option<Expr>,
    pub error_kind: Option<Expr>,
    pub metadata: Vec<(Ident, Expr)>,
    /// `method`: the fn is an associated fn in an impl (no hidden marker type is emitted).
    pub method: bool,
}

pub(crate) fn parse(tokens: TokenStream, attr_name: &str, errors: &mut Errors) -> StepArgs {
    let mut args = StepArgs::default();
    let mut seen: HashMap<String, Span> = HashMap::new();
    let mut positional = 0usize;
    let parser = |input: ParseStream<'_>| -> syn::Result<()> {
        while !input.is_empty() {
            if let Err(err) = parse_entry(input, &mut args, &mut seen, &mut positional) {
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
        Ok(())
    };
    if let Err(err) = parser.parse2(tokens) {
        errors.push(err);
    }
    if args.saga.is_none() || args.step.is_none() {
        errors.push_at(
            Span::call_site(),
            format!(
                "#[{attr_name}] needs the saga type and the step: #[{attr_name}(OrderSaga, ReserveStock, ...)] or #[{attr_name}(type = OrderSaga, step = ReserveStock, ...)]"
            ),
        );
    }
    args
}

fn note_key(seen: &mut HashMap<String, Span>, key: &str, span: Span) -> syn::Result<()> {
    if seen.contains_key(key) {
        return Err(syn::Error::new(
            span,
            format!("duplicate key `{key}`: give it once"),
        ));
    }
    seen.insert(key.to_owned(), span);
    Ok(())
}

fn parse_entry(
    input: ParseStream<'_>,
    args: &mut StepArgs,
    seen: &mut HashMap<String, Span>,
    positional: &mut usize,
) -> syn::Result<()> {
    if input.peek(Token![type]) {
        let kw: Token![type] = input.parse()?;
        input.parse::<Token![=]>()?;
        let saga: Path = input.parse()?;
        note_key(seen, "type", kw.span)?;
        args.saga = Some(saga);
        return Ok(());
    }
    if input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
        let key: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let name = key.to_string();
        let slot = match name.as_str() {
            "step" => {
                let step: Ident = input.parse()?;
                note_key(seen, "step", key.span())?;
                args.step = Some(step);
                return Ok(());
            }
            "saga_id" => &mut args.saga_id,
            "order_id" => &mut args.order_id,
            "attempt" => &mut args.attempt,
            "error_kind" => &mut args.error_kind,
            _ => {
                let _: Expr = input.parse()?;
                return Err(unknown_key(&key));
            }
        };
        let value: Expr = input.parse()?;
        note_key(seen, &name, key.span())?;
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
        note_key(seen, "metadata", key.span())?;
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
                    format!("duplicate metadata key `{k}`"),
                ));
            }
            if k == "traceId" || k == "spanId" {
                return Err(syn::Error::new(
                    k.span(),
                    format!(
                        "metadata key `{k}` is reserved: the tracker sets it from the OpenTelemetry span"
                    ),
                ));
            }
            args.metadata.push((k, v));
        }
        return Ok(());
    }
    if input.peek(Ident) && (input.peek2(Token![,]) || is_last(input)) && *positional >= 2 {
        let key: Ident = input.parse()?;
        if key == "method" {
            note_key(seen, "method", key.span())?;
            args.method = true;
            return Ok(());
        }
        return Err(unknown_key(&key));
    }
    // Positional: saga type, then step.
    let path: Path = input.parse()?;
    match *positional {
        0 => {
            *positional += 1;
            note_key(seen, "type", path_span(&path))?;
            args.saga = Some(path);
        }
        1 => {
            *positional += 1;
            let Some(step) = path.get_ident().cloned() else {
                return Err(syn::Error::new(
                    path_span(&path),
                    "the step is a variant name of the saga enum, e.g. `ReserveStock`",
                ));
            };
            note_key(seen, "step", step.span())?;
            args.step = Some(step);
        }
        _ => {
            return Err(syn::Error::new(
                path_span(&path),
                format!(
                    "unexpected argument; after the saga type and the step, use `key = value` with a key out of: {KEYS}"
                ),
            ));
        }
    }
    Ok(())
}

fn is_last(input: ParseStream<'_>) -> bool {
    let fork = input.fork();
    fork.parse::<Ident>().is_ok() && fork.is_empty()
}

fn unknown_key(key: &Ident) -> syn::Error {
    syn::Error::new(
        key.span(),
        format!("unknown key `{key}`; expected one of: {KEYS}"),
    )
}

fn path_span(path: &Path) -> Span {
    syn::spanned::Spanned::span(path)
}
