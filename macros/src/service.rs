//! `saga_service!`: a service declares the saga steps it handles and wires an annotated handler to each
//! (grammar: `saga_tracker_syntax::ServiceDecl`).
//!
//! The checks happen at compile time:
//! - every wired handler must be annotated for exactly that step (`#[saga_step(S, V)]`) or compensation
//!   (`#[saga_compensation(S, V)]`); the message (`#[diagnostic::on_unimplemented]`) says which attribute to add.
//!   The annotation's marker is found by a method call through the handler's own path (its hidden trait comes
//!   along with every import of the fn); a fallback trait one auto-reference away answers for an un-annotated
//!   fn, so it gets the same message.
//! - a step declared `#[step(compensable)]` that the service handles must have its compensation wired too.
//!
//! At start-up, `verify()` checks that each fn the service names *is* the fn whose marker was found (an
//! un-annotated fn can hide behind an annotated one of the same name brought in by a glob import; only the
//! fn's type tells them apart, and Rust compares types of fn items only at run time).

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
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

    let mut checks = Vec::new();
    let mut descriptors = Vec::new();
    let mut identities = Vec::new();
    for route in routes {
        if let Some(problem) = associated_fn(route) {
            errors.push(problem);
            continue;
        }
        let lookup = Lookup::new(&rt, route);
        checks.push(wiring_check(&rt, route, &lookup));
        let call = &lookup.call;
        descriptors.push(quote! { #rt::descriptor_of(#call) });
        let path_str = path_string(&route.handler);
        let handler = &route.handler;
        let value = respan(
            quote! { || #rt::type_id_of_val(&#handler) },
            route.handler.span(),
        );
        identities.push(quote! {
            #rt::HandlerIdentity { path: #path_str, annotated: #rt::handler_type_of(#call), wired: #value }
        });
    }
    checks.extend(compensation_checks(&rt, routes));
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
                identities: &[#(#identities),*],
            };

            /// The descriptors of the handlers this service wires.
            pub fn descriptors() -> &'static [&'static ::saga_tracker::StepDescriptor] {
                Self::DESCRIPTOR.handlers
            }

            /// Checks at start-up that every wired fn is the annotated fn and is in the link-time registry.
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

/// The method-call lookup of a handler's marker: a `&|| ..` closure whose return type is `Marked<marker>`.
struct Lookup {
    call: TokenStream,
}

impl Lookup {
    fn new(rt: &TokenStream, route: &Route) -> Lookup {
        let handler = &route.handler;
        let span = handler.span();
        let last = handler
            .segments
            .last()
            .map(|s| s.ident.unraw().to_string())
            .unwrap_or_default();
        let method = format_ident!("__saga_tracker_{}", last);
        // For `module::fn`, the module's items (the marker trait is re-exported there by name and anonymously)
        // come into the closure's scope; a single name is looked up where the service is.
        let import = (handler.segments.len() > 1).then(|| {
            let mut prefix = handler.clone();
            prefix.segments.pop();
            prefix.segments.pop_punct();
            for segment in prefix.segments.iter_mut() {
                segment.arguments = syn::PathArguments::None;
            }
            quote! {
                #[allow(unused_imports)]
                use #prefix::*;
            }
        });
        let call = respan(
            quote! {
                &|| {
                    #import
                    #[allow(non_camel_case_types, dead_code)]
                    trait __SagaTrackerUnannotated {
                        fn #method(&self) -> #rt::Marked<#rt::Unannotated>;
                    }
                    impl __SagaTrackerUnannotated for &#rt::HandlerProbe {
                        fn #method(&self) -> #rt::Marked<#rt::Unannotated> {
                            #rt::Marked::NEW
                        }
                    }
                    (&#rt::HandlerProbe).#method()
                }
            },
            span,
        );
        Lookup { call }
    }
}

fn wiring_check(rt: &TokenStream, route: &Route, lookup: &Lookup) -> TokenStream {
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
    let call = &lookup.call;
    respan(
        quote! { const _: () = #rt::#check::<#saga, #index, _, _>(#call); },
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
