//! `#[saga_step]` and `#[saga_compensation]`: wrap a handler fn so every call records its saga events.

mod args;
mod body;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat};

use crate::errors::Errors;
use args::StepArgs;

/// Which attribute.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Step,
    Compensation,
}

impl Kind {
    fn attr_name(self) -> &'static str {
        match self {
            Kind::Step => "saga_step",
            Kind::Compensation => "saga_compensation",
        }
    }
}

pub(crate) fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let attr = kind.attr_name();
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let span = not_a_fn_span(&item);
            errors.push_at(span, format!("#[{attr}] can only be applied to a fn with a body (a free fn, or a method in an impl or trait)"));
            let mut out = errors.into_compile_errors();
            out.extend(item);
            return out;
        }
    };
    let args = args::parse(args, attr, &mut errors);
    if let Some(constness) = &func.sig.constness {
        errors.push_at(
            constness.span,
            format!(
                "#[{attr}] cannot be applied to a `const fn`: recording a step happens at run time"
            ),
        );
    }
    let saga_id_param = take_saga_id_params(&mut func, &args, &mut errors);
    let id_source = id_source(&func, &args, saga_id_param.as_ref(), attr, &mut errors);

    let (Some(saga), Some(step), true) = (args.saga.clone(), args.step.clone(), errors.is_empty())
    else {
        // On an error, still emit the original fn so IDEs keep working.
        let mut out = errors.into_compile_errors();
        out.extend(quote! { #func });
        return out;
    };
    let Some(id_source) = id_source else {
        let mut out = errors.into_compile_errors();
        out.extend(quote! { #func });
        return out;
    };
    generate(kind, func, &args, &saga, &step, id_source)
}

/// Where the saga id of a call comes from.
enum IdSource {
    Expr(syn::Expr),
    Param(syn::Ident),
    /// Probe these arguments for a `SagaContext` (`self` is written as `self`).
    Context(Vec<TokenStream>),
}

fn not_a_fn_span(item: &TokenStream) -> Span {
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Struct(s)) => s.struct_token.span,
        Ok(syn::Item::Enum(e)) => e.enum_token.span,
        Ok(syn::Item::Impl(i)) => i.impl_token.span,
        Ok(syn::Item::Mod(m)) => m.mod_token.span,
        Ok(syn::Item::Trait(t)) => t.trait_token.span,
        Ok(syn::Item::Const(c)) => c.const_token.span,
        Ok(syn::Item::Static(s)) => s.static_token.span,
        Ok(syn::Item::Type(t)) => t.type_token.span,
        Ok(syn::Item::Use(u)) => u.use_token.span,
        Ok(other) => other.span(),
        Err(_) => match syn::parse2::<syn::TraitItemFn>(item.clone()) {
            Ok(f) => f.sig.fn_token.span,
            Err(_) => Span::call_site(),
        },
    }
}

/// Removes `#[saga_id]` from parameters; returns the marked parameter's name.
fn take_saga_id_params(
    func: &mut ItemFn,
    args: &StepArgs,
    errors: &mut Errors,
) -> Option<syn::Ident> {
    let mut found: Option<syn::Ident> = None;
    for input in func.sig.inputs.iter_mut() {
        let (attrs, pat) = match input {
            FnArg::Typed(t) => (&mut t.attrs, Some(&*t.pat)),
            FnArg::Receiver(r) => (&mut r.attrs, None),
        };
        let Some(pos) = attrs.iter().position(|a| a.path().is_ident("saga_id")) else {
            continue;
        };
        let attr = attrs.remove(pos);
        if !matches!(attr.meta, syn::Meta::Path(_)) {
            errors.push_at(attr.meta.span(), "`#[saga_id]` takes no arguments");
        }
        let ident = match pat {
            Some(Pat::Ident(p)) => Some(p.ident.clone()),
            Some(other) => {
                errors.push_at(other.span(), "`#[saga_id]` needs a parameter bound to a plain name, e.g. `#[saga_id] saga_id: &str`");
                None
            }
            None => {
                errors.push_at(attr.span(), "`#[saga_id]` cannot mark `self`; implement `saga_tracker::SagaContext` for the type instead");
                None
            }
        };
        if args.saga_id.is_some() {
            errors.push_at(attr.span(), "two saga id sources: remove either this `#[saga_id]` or `saga_id = ...` in the attribute");
        } else if found.is_some() {
            errors.push_at(attr.span(), "only one parameter can be marked `#[saga_id]`");
        } else if let Some(ident) = ident {
            found = Some(ident);
        }
    }
    found
}

pub(crate) const ID_SOURCES_HELP: &str = "give the saga id in one of three ways:\n  1. `saga_id = <expr over the arguments>` in the attribute, e.g. #[saga_step(OrderSaga, ReserveStock, saga_id = cmd.saga_id)]\n  2. mark a parameter `#[saga_id]`, e.g. `fn reserve(#[saga_id] saga_id: &str, ...)`\n  3. pass an argument whose type implements `saga_tracker::SagaContext`";

fn id_source(
    func: &ItemFn,
    args: &StepArgs,
    param: Option<&syn::Ident>,
    attr: &str,
    errors: &mut Errors,
) -> Option<IdSource> {
    if let Some(expr) = &args.saga_id {
        return Some(IdSource::Expr(expr.clone()));
    }
    if let Some(ident) = param {
        return Some(IdSource::Param(ident.clone()));
    }
    let probes: Vec<TokenStream> = func
        .sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Receiver(r) => Some(quote_spanned! { r.self_token.span=> self }),
            FnArg::Typed(t) => match &*t.pat {
                Pat::Ident(p) if p.subpat.is_none() => {
                    let ident = &p.ident;
                    Some(quote! { #ident })
                }
                _ => None,
            },
        })
        .collect();
    if probes.is_empty() {
        errors.push_at(func.sig.ident.span(), format!("#[{attr}] has no saga id source: this fn has no argument to take it from; {ID_SOURCES_HELP}"));
        return None;
    }
    Some(IdSource::Context(probes))
}

fn generate(
    kind: Kind,
    mut func: ItemFn,
    args: &StepArgs,
    saga: &syn::Path,
    step: &syn::Ident,
    id_source: IdSource,
) -> TokenStream {
    let rt = quote! { ::saga_tracker::__private };
    let fn_ident = func.sig.ident.clone();
    let fn_name = fn_ident.to_string();
    let is_method = func.sig.receiver().is_some();
    // A hidden marker type (same ident, type namespace) lets `saga_service!` check the wiring. Associated fns
    // (a receiver, `Self` in the signature, or `method`) cannot get one: an impl block holds no structs.
    let free_fn = !is_method && !args.method && !body::mentions_self(&func.sig);
    let (kind_tokens, compensation) = match kind {
        Kind::Step => (quote! { #rt::HandlerKind::Step }, false),
        Kind::Compensation => (quote! { #rt::HandlerKind::Compensation }, true),
    };
    let line = quote_spanned! { fn_ident.span()=> ::core::line!() };
    let step_span = step.span();
    let saga_alias = quote! { __SagaTrackerSaga };
    let index_const = quote_spanned! { step_span=> __SAGA_TRACKER_STEP_INDEX };
    let desc_const = quote! { __SAGA_TRACKER_DESCRIPTOR };

    let compensation_check = (kind == Kind::Compensation).then(|| {
        let saga_str = path_string(saga);
        let message = format!("step `{saga_str}::{step}` is declared without a compensation, so it cannot have a #[saga_compensation] handler");
        let label = format!("`{step}` has no compensation in the declaration of `{saga_str}`");
        let note = format!("mark the step `#[step(compensable)]` in the `{saga_str}` declaration, or use #[saga_step] if this is the step itself");
        let assertion = crate::errors::respan(quote! { let _ = __saga_tracker_assert::<#saga_alias>; }, step_span);
        quote! {
            const _: () = {
                #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
                trait __SagaTrackerCompensable {}
                impl<S: ?Sized + #rt::HasCompensation<#index_const>> __SagaTrackerCompensable for S {}
                fn __saga_tracker_assert<T: ?Sized + __SagaTrackerCompensable>() {}
                #assertion
            };
        }
    });

    let defs = quote! {
        #[allow(non_camel_case_types)]
        type #saga_alias = #saga;
        const #index_const: u16 = #saga_alias::#step as u16;
        const #desc_const: #rt::StepDescriptor = #rt::StepDescriptor::of::<#saga_alias>(
            #index_const, #kind_tokens, ::core::module_path!(), #fn_name, #is_method, ::core::file!(), #line,
        );
        #[allow(unsafe_code)]
        const _: () = {
            #rt::inventory::submit! { #desc_const }
        };
        #compensation_check
    };

    let descriptor_ref = if free_fn {
        quote! { <#fn_ident as #rt::HandlerDescriptor>::DESCRIPTOR }
    } else {
        quote! { &#desc_const }
    };

    let ids = ids_tokens(&rt, args, id_source, &func.sig.ident);
    let new_body = body::wrap(&rt, &func, args, &ids, &descriptor_ref);
    let body_defs = if free_fn {
        TokenStream::new()
    } else {
        defs.clone()
    };
    let block = syn::parse_quote! {
        {
            #body_defs
            #new_body
        }
    };
    *func.block = block;

    if !free_fn {
        return quote! { #func };
    }
    let vis = &func.vis;
    quote! {
        #func

        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code, missing_docs)]
        #vis struct #fn_ident {}

        const _: () = {
            #defs
            impl #rt::StepHandler<#saga_alias, #index_const, #compensation> for #fn_ident {}
            impl #rt::HandlerDescriptor for #fn_ident {
                const DESCRIPTOR: &'static #rt::StepDescriptor = &#desc_const;
            }
        };
    }
}

fn ids_tokens(
    rt: &TokenStream,
    args: &StepArgs,
    source: IdSource,
    fn_ident: &syn::Ident,
) -> TokenStream {
    let mut ids = match source {
        IdSource::Expr(expr) => {
            quote_spanned! { expr.span()=> #rt::StepIds::new(#rt::saga_id(&(#expr))) }
        }
        IdSource::Param(ident) => quote! { #rt::StepIds::new(#rt::saga_id(&#ident)) },
        IdSource::Context(probes) => {
            let mut list = quote! { () };
            for probe in probes.iter().rev() {
                list = quote! { ((&#rt::Probe(&#probe)).saga_context_probe(), #list) };
            }
            // Spanned at the fn name: "no saga id source" points there.
            let call = crate::errors::respan(quote! { #rt::context_ids(#list) }, fn_ident.span());
            quote! {
                {
                    #[allow(unused_imports)]
                    use #rt::{ProbeFound as _, ProbeNotFound as _};
                    #call
                }
            }
        }
    };
    if let Some(expr) = &args.order_id {
        ids = quote! { #ids.order_id(#rt::order_id(&(#expr))) };
    }
    if let Some(expr) = &args.attempt {
        ids = quote! { #ids.attempt(#rt::attempt(&(#expr))) };
    }
    for (key, expr) in &args.metadata {
        let key = key.to_string();
        ids = quote! { #ids.metadata(#key, &(#expr)) };
    }
    ids
}

fn path_string(path: &syn::Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let joined = segments.join("::");
    if path.leading_colon.is_some() {
        format!("::{joined}")
    } else {
        joined
    }
}
