//! The body of `saga_service! { .. }`: one service, the saga steps it handles and the handler wired for each.
//!
//! ```text
//! saga_service! {
//!     /// The stock service.
//!     pub ProductService {
//!         step OrderSaga::ReserveStock => reserve_stock,
//!         compensate OrderSaga::ReserveStock => handlers::release_stock,
//!     }
//! }
//! ```

use std::collections::HashMap;

use proc_macro2::TokenTree;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Path, Token, Visibility};

use crate::errors::Errors;
use crate::path_string;

/// `step` or `compensate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// `step Saga::Step => handler`: the handler is annotated `#[saga_step(Saga, Step)]`.
    Step,
    /// `compensate Saga::Step => handler`: the handler is annotated `#[saga_compensation(Saga, Step)]`.
    Compensate,
}

impl RouteKind {
    /// The entry's keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            RouteKind::Step => "step",
            RouteKind::Compensate => "compensate",
        }
    }

    /// The attribute the handler must carry.
    pub fn attribute(self) -> &'static str {
        match self {
            RouteKind::Step => "saga_step",
            RouteKind::Compensate => "saga_compensation",
        }
    }
}

/// One entry: `step OrderSaga::ReserveStock => reserve_stock`.
#[derive(Clone)]
pub struct Route {
    /// Step or compensation.
    pub kind: RouteKind,
    /// The keyword token (`step` / `compensate`), for locations.
    pub keyword: Ident,
    /// The saga type: `OrderSaga`.
    pub saga: Path,
    /// The step variant: `ReserveStock`.
    pub step: Ident,
    /// The handler fn's path (a turbofish is allowed for a generic fn: `handle::<Cmd>`).
    pub handler: Path,
}

/// A parsed `saga_service!` block.
#[derive(Clone)]
pub struct ServiceDecl {
    /// Outer attributes (doc comments) of the service type.
    pub attrs: Vec<Attribute>,
    /// The service type's visibility.
    pub vis: Visibility,
    /// The service type's name.
    pub ident: Ident,
    /// The entries, in order.
    pub routes: Vec<Route>,
}

impl Parse for ServiceDecl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let ident: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the service's name: `saga_service! { pub ProductService { step OrderSaga::ReserveStock => reserve_stock, } }`",
            )
        })?;
        let content;
        syn::braced!(content in input);
        let mut errors = Errors::default();
        let mut routes: Vec<Route> = Vec::new();
        let mut seen: HashMap<(RouteKind, String, String), ()> = HashMap::new();
        while !content.is_empty() {
            match route(&content, &ident) {
                Ok(r) => {
                    let key = (r.kind, path_string(&r.saga), r.step.to_string());
                    if seen.insert(key, ()).is_some() {
                        errors.push_at(
                            r.step.span(),
                            format!(
                                "`{} {}::{}` is listed twice in {ident}: remove one",
                                r.kind.keyword(),
                                path_string(&r.saga),
                                r.step
                            ),
                        );
                    }
                    routes.push(r);
                }
                Err(err) => {
                    errors.push(err);
                    while !content.is_empty() && !content.peek(Token![,]) {
                        content.parse::<TokenTree>()?;
                    }
                }
            }
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>()?;
        }
        if !input.is_empty() {
            errors.push_at(
                input.span(),
                "one service per saga_service! block: write a second `saga_service! { .. }` for the next one",
            );
        }
        errors.finish(ServiceDecl {
            attrs,
            vis,
            ident,
            routes,
        })
    }
}

fn route(input: ParseStream<'_>, service: &Ident) -> syn::Result<Route> {
    if input.peek(Token![#]) {
        let attrs = input.call(Attribute::parse_outer)?;
        return Err(syn::Error::new(
            attrs[0].span(),
            "an entry takes no attributes: remove it",
        ));
    }
    let keyword: Ident = input.parse()?;
    let kind = match keyword.to_string().as_str() {
        "step" => RouteKind::Step,
        "compensate" => RouteKind::Compensate,
        other => {
            return Err(syn::Error::new(
                keyword.span(),
                format!(
                    "unknown entry `{other}`; write `step OrderSaga::ReserveStock => handler` or `compensate OrderSaga::ReserveStock => handler`"
                ),
            ));
        }
    };
    let mut saga = input.call(Path::parse_mod_style)?;
    let span = saga.span();
    let Some(last) = saga.segments.pop() else {
        return Err(syn::Error::new(span, "expected `OrderSaga::ReserveStock`"));
    };
    saga.segments.pop_punct();
    if saga.segments.is_empty() {
        return Err(syn::Error::new(
            span,
            format!(
                "expected the saga type and the step: `{} OrderSaga::{}`",
                kind.keyword(),
                last.value().ident
            ),
        ));
    }
    let step = last.into_value().ident;
    if !input.peek(Token![=>]) {
        let saga_str = path_string(&saga);
        return Err(syn::Error::new(
            step.span(),
            format!(
                "`{word} {saga_str}::{step}` has no handler: wire the fn annotated #[{attr}({saga_str}, {step})] that handles it in {service}: `{word} {saga_str}::{step} => handler_fn`",
                word = kind.keyword(),
                attr = kind.attribute(),
            ),
        ));
    }
    input.parse::<Token![=>]>()?;
    let handler: syn::ExprPath = input.parse()?;
    if let Some(q) = &handler.qself {
        return Err(syn::Error::new(
            q.lt_token.span,
            "wire a free fn by its path, e.g. `handlers::reserve_stock`",
        ));
    }
    Ok(Route {
        kind,
        keyword,
        saga,
        step,
        handler: handler.path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_service_with_routes() {
        let s: ServiceDecl = syn::parse_str(
            "/// doc\npub ProductService { step OrderSaga::ReserveStock => h::reserve, compensate OrderSaga::ReserveStock => release }",
        )
        .expect("parses");
        assert_eq!(s.ident, "ProductService");
        assert_eq!(s.routes.len(), 2);
        assert_eq!(s.routes[1].kind, RouteKind::Compensate);
        assert_eq!(path_string(&s.routes[0].handler), "h::reserve");
    }

    #[test]
    fn forms_the_macro_rejects() {
        for src in [
            "A { compensation S::X => f }",
            "A { step S::X }",
            "A { step X => f }",
            "A { step S::X => f } B { step S::X => g }",
            "A { step S::X => f, step S::X => g }",
            "A { #[doc = \"x\"] step S::X => f }",
        ] {
            assert!(syn::parse_str::<ServiceDecl>(src).is_err(), "{src}");
        }
    }
}
