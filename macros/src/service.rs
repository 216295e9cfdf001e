//! `saga_service!`: a service declares the saga steps it handles and wires an annotated handler to each.
//!
//! The checks happen at compile time:
//! - every wired handler must be annotated for exactly that step (`#[saga_step(S, V)]`) or compensation
//!   (`#[saga_compensation(S, V)]`); the message (`#[diagnostic::on_unimplemented]`) says which attribute to add.
//!   A plain un-annotated fn gets the same message: the handler name is looked up in the type namespace through
//!   a module whose glob import supplies a same-named fallback type, which the annotation's hidden marker
//!   type shadows.
//! - a step listed without `=> handler` does not compile;
//! - a step declared `#[step(compensable)]` that the service handles must have its compensation wired too.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Path, Token, Visibility};

use crate::errors::Errors;

struct Service {
    attrs: Vec<Attribute>,
    vis: Visibility,
    ident: Ident,
    entries: Vec<Entry>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum EntryKind {
    Step,
    Compensate,
}

struct Entry {
    kind: EntryKind,
    saga: Path,
    step: Ident,
    handler: Option<Path>,
}

impl Parse for Service {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let ident: Ident = input.parse()?;
        let content;
        syn::braced!(content in input);
        let mut entries = Vec::new();
        while !content.is_empty() {
            let kw: Ident = content.parse()?;
            let kind = match kw.to_string().as_str() {
                "step" => EntryKind::Step,
                "compensate" => EntryKind::Compensate,
                _ => {
                    return Err(syn::Error::new(
                        kw.span(),
                        format!(
                            "unknown entry `{kw}`; expected `step Saga::Step => handler` or `compensate Saga::Step => handler`"
                        ),
                    ));
                }
            };
            let mut path: Path = content.parse()?;
            let span = path.span();
            let Some(last) = path.segments.pop() else {
                return Err(syn::Error::new(span, "expected `Saga::Step`"));
            };
            path.segments.pop_punct();
            if path.segments.is_empty() {
                return Err(syn::Error::new(
                    span,
                    "expected the saga type and the step: `OrderSaga::ReserveStock`",
                ));
            }
            let step = last.into_value().ident;
            let handler = if content.peek(Token![=>]) {
                content.parse::<Token![=>]>()?;
                Some(content.parse::<Path>()?)
            } else {
                None
            };
            entries.push(Entry {
                kind,
                saga: path,
                step,
                handler,
            });
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>()?;
        }
        Ok(Service {
            attrs,
            vis,
            ident,
            entries,
        })
    }
}

fn path_string(path: &Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let joined = segments.join("::");
    if path.leading_colon.is_some() {
        format!("::{joined}")
    } else {
        joined
    }
}

/// The handler path as seen from `<service module>::__saga_service_X::__hN` (two modules down).
fn path_from_grandchild(path: &Path) -> TokenStream {
    if path.leading_colon.is_some() {
        return quote! { #path };
    }
    let first = path
        .segments
        .first()
        .map(|s| s.ident.to_string())
        .unwrap_or_default();
    let rest: Vec<_> = path.segments.iter().skip(1).collect();
    match first.as_str() {
        "crate" => quote! { #path },
        "self" => quote! { super::super #(::#rest)* },
        "super" => quote! { super::super::super #(::#rest)* },
        _ => quote! { super::super::#path },
    }
}

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let service: Service = match syn::parse2(input) {
        Ok(service) => service,
        Err(err) => return err.to_compile_error(),
    };
    let mut errors = Errors::default();
    let rt = quote! { ::saga_tracker::__private };
    let Service {
        attrs,
        vis,
        ident,
        entries,
    } = &service;
    let service_name = ident.to_string();
    let module = format_ident!("__saga_service_{}", ident);

    let mut seen: HashMap<(EntryKind, String, String), ()> = HashMap::new();
    let mut fallback_names: Vec<Ident> = Vec::new();
    let mut probes = Vec::new();
    let mut checks = Vec::new();
    let mut descriptors = Vec::new();

    for (n, entry) in entries.iter().enumerate() {
        let saga = &entry.saga;
        let step = &entry.step;
        let saga_str = path_string(saga);
        let (attr, word) = match entry.kind {
            EntryKind::Step => ("saga_step", "step"),
            EntryKind::Compensate => ("saga_compensation", "compensate"),
        };
        if seen
            .insert((entry.kind, saga_str.clone(), step.to_string()), ())
            .is_some()
        {
            errors.push_at(
                step.span(),
                format!("`{word} {saga_str}::{step}` is listed twice in {service_name}"),
            );
            continue;
        }
        let Some(handler) = &entry.handler else {
            errors.push_at(
                step.span(),
                format!(
                    "`{word} {saga_str}::{step}` has no handler: wire the fn that handles it, annotated with #[{attr}({saga_str}, {step})]: `{word} {saga_str}::{step} => handler_fn`"
                ),
            );
            continue;
        };
        let Some(last) = handler.segments.last().map(|s| s.ident.clone()) else {
            continue;
        };
        if !fallback_names.contains(&last) {
            fallback_names.push(last.clone());
        }
        let probe_mod = format_ident!("__h{}", n);
        let import = path_from_grandchild(handler);
        probes.push(quote! {
            pub(super) mod #probe_mod {
                pub(in super::super) use super::__fallback::*;
                pub(in super::super) use #import;
            }
        });
        let handler_type =
            crate::errors::respan(quote! { #module::#probe_mod::#last }, handler.span());
        let compensation = entry.kind == EntryKind::Compensate;
        let handler_str = path_string(handler);
        let message = format!(
            "`{handler_str}` is wired as the {} of `{saga_str}::{step}` in {service_name}, but it is not annotated with #[{attr}({saga_str}, {step})]",
            if compensation {
                "compensation"
            } else {
                "handler"
            }
        );
        let label = format!("add #[{attr}({saga_str}, {step})] to `fn {last}`");
        let note = format!(
            "a handler records its saga events only when annotated: put #[{attr}({saga_str}, {step}, saga_id = ...)] on `fn {last}` (a free fn; to wire a method, wire a free fn that calls it)"
        );
        let trait_ident = format_ident!("__SagaTrackerWired{}", n);
        let assert_ident = format_ident!("__saga_tracker_assert{}", n);
        let assertion = crate::errors::respan(
            quote! { let _ = #assert_ident::<#handler_type>; },
            handler.span(),
        );
        checks.push(quote! {
            const _: () = {
                #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
                trait #trait_ident {}
                impl<H: ?Sized + #rt::StepHandler<#saga, { #saga::#step as u16 }, #compensation>> #trait_ident for H {}
                fn #assert_ident<H: ?Sized + #trait_ident>() {}
                #assertion
            };
        });
        descriptors.push(quote! { <#handler_type as #rt::HandlerDescriptor>::DESCRIPTOR });
    }

    // A compensable step the service handles must have its compensation wired too.
    for (n, entry) in entries.iter().enumerate() {
        if entry.kind != EntryKind::Step {
            continue;
        }
        let saga_str = path_string(&entry.saga);
        let step = &entry.step;
        let wired = entries.iter().any(|e| {
            e.kind == EntryKind::Compensate && path_string(&e.saga) == saga_str && e.step == *step
        });
        if wired {
            continue;
        }
        let saga = &entry.saga;
        let message = format!(
            "step `{saga_str}::{step}` is declared with a compensation, but {service_name} handles the step without wiring its compensation"
        );
        let label = format!(
            "`{saga_str}::{step}` is compensable: {service_name} must also list `compensate {saga_str}::{step} => ...`"
        );
        let note = format!(
            "add `compensate {saga_str}::{step} => release_fn,` where `release_fn` is annotated with #[saga_compensation({saga_str}, {step})]"
        );
        let trait_ident = format_ident!("__SagaTrackerNoCompensation{}", n);
        let assert_ident = format_ident!("__saga_tracker_assert_nc{}", n);
        let nc_assertion =
            crate::errors::respan(quote! { let _ = #assert_ident::<#saga>; }, step.span());
        checks.push(quote! {
            const _: () = {
                #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
                trait #trait_ident {}
                impl<S: ?Sized + #rt::WithoutCompensation<{ #saga::#step as u16 }>> #trait_ident for S {}
                fn #assert_ident<S: ?Sized + #trait_ident>() {}
                #nc_assertion
            };
        });
    }
    if !errors.is_empty() {
        return errors.into_compile_errors();
    }

    quote! {
        #(#attrs)*
        #vis struct #ident;

        #[doc(hidden)]
        #[allow(non_snake_case, non_camel_case_types, unused_imports, dead_code, missing_docs)]
        mod #module {
            pub(super) mod __fallback {
                #(
                    pub struct #fallback_names;
                    impl ::saga_tracker::__private::HandlerDescriptor for #fallback_names {
                        const DESCRIPTOR: &'static ::saga_tracker::__private::StepDescriptor = &::saga_tracker::__private::UNANNOTATED;
                    }
                )*
            }
            #(#probes)*
        }

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
