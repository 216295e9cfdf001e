//! `saga_service!`: a service declares the saga steps it handles and wires an annotated handler to each
//! (grammar: `saga_tracker_syntax::ServiceDecl`).
//!
//! The checks happen at compile time:
//! - every wired handler must be annotated for exactly that step (`#[saga_step(S, V)]`) or compensation
//!   (`#[saga_compensation(S, V)]`); the message (`#[diagnostic::on_unimplemented]`) says which attribute to add.
//!   The annotation registers a trait impl keyed by where the fn is *defined* (`module_path!()` and its name);
//!   the service computes the key from its own module and the path it writes (`self`, `super`, `crate` and
//!   child modules resolved as paths), so the check follows the fn the path names: an import (glob or not)
//!   never changes the key, and a local un-annotated fn is not found through an annotated one brought in by
//!   a `use`.
//! - a step declared `#[step(compensable)]` that the service handles must have its compensation wired too.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::quote;
use saga_tracker_syntax::{Errors, Route, RouteKind, ServiceDecl, path_string};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use crate::errors::{into_compile_errors, respan};

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let service: ServiceDecl = match syn::parse2(input) {
        Ok(service) => service,
        Err(err) => return err.to_compile_error(),
    };
    let mut errors = Errors::default();
    let rt = quote! { ::saga_tracker::__private };
    let ServiceDecl {
        attrs,
        vis,
        ident,
        routes,
    } = &service;
    let service_name = ident.to_string();

    let mut descriptors = Vec::new();
    for route in routes {
        if let Some(problem) = associated_fn(route) {
            errors.push(problem);
            continue;
        }
        descriptors.push(wired(&rt, route));
    }
    let checks = compensation_checks(&rt, routes);
    if !errors.is_empty() {
        return into_compile_errors(errors);
    }

    quote! {
        #(#attrs)*
        #vis struct #ident;

        #(#checks)*

        impl #ident {
            /// This service and the saga handlers it wires, in declaration order.
            pub const DESCRIPTOR: ::saga_tracker::ServiceDescriptor = ::saga_tracker::ServiceDescriptor {
                name: #service_name,
                handlers: &[#(#descriptors),*],
            };

            /// The descriptors of the handlers this service wires.
            pub fn descriptors() -> &'static [&'static ::saga_tracker::StepDescriptor] {
                Self::DESCRIPTOR.handlers
            }

            /// Checks at start-up that every wired handler is in the link-time registry.
            pub fn verify() -> ::core::result::Result<(), ::saga_tracker::registry::VerifyError> {
                Self::DESCRIPTOR.verify()
            }
        }
    }
}

/// A handler path whose parent segment is a type (`Svc::handle`): an associated fn cannot be wired.
fn associated_fn(route: &Route) -> Option<syn::Error> {
    let segments = &route.handler.segments;
    let parent = segments.iter().rev().nth(1)?;
    let name = parent.ident.unraw().to_string();
    if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    let last = segments.last()?.ident.unraw();
    Some(syn::Error::new(
        route.handler.span(),
        format!(
            "`{}` is an associated fn; a service wires free fns: wire a free fn annotated #[{}(..)] that calls `{name}::{last}`",
            path_string(&route.handler),
            route.kind.attribute()
        ),
    ))
}

/// The descriptor of the handler the route wires, found through the key of the fn its path names (a trait bound
/// spanned at the handler: "not annotated" points there).
fn wired(rt: &TokenStream, route: &Route) -> TokenStream {
    let saga = &route.saga;
    let step = &route.step;
    let check = match route.kind {
        RouteKind::Step => quote! { wired_step },
        RouteKind::Compensate => quote! { wired_compensation },
    };
    let index = respan(
        quote! { { #saga::#step as ::core::primitive::u16 } },
        step.span(),
    );
    let absolute = route.handler.leading_colon.is_some();
    let segments: Vec<String> = route
        .handler
        .segments
        .iter()
        .map(|s| s.ident.unraw().to_string())
        .collect();
    let key = quote! {
        #rt::HandlerKey<{ #rt::wired_key(::core::module_path!(), &[#(#segments),*], #absolute) }>
    };
    let handler = &route.handler;
    // The path must name a value (the key alone would accept a path to nothing).
    respan(
        quote! { { let _ = #handler; #rt::#check::<#saga, #index, #key, _>() } },
        route.handler.span(),
    )
}

/// A compensable step the service handles must have its compensation wired too.
fn compensation_checks(rt: &TokenStream, routes: &[Route]) -> Vec<TokenStream> {
    let compensated: HashSet<(String, String)> = routes
        .iter()
        .filter(|r| r.kind == RouteKind::Compensate)
        .map(|r| (path_string(&r.saga), r.step.to_string()))
        .collect();
    routes
        .iter()
        .filter(|r| r.kind == RouteKind::Step)
        .filter(|r| !compensated.contains(&(path_string(&r.saga), r.step.to_string())))
        .map(|route| {
            let saga = &route.saga;
            let step = &route.step;
            respan(
                quote! {
                    const _: () = #rt::without_compensation::<#saga, { #saga::#step as ::core::primitive::u16 }>();
                },
                step.span(),
            )
        })
        .collect()
}
