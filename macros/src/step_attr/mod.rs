//! `#[saga_step]` and `#[saga_compensation]`: wrap a handler fn so every call records its saga events.

mod body;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use saga_tracker_syntax::StepArgs;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat};

use crate::errors::{Errors, into_compile_errors, respan};

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
            let mut out = into_compile_errors(errors);
            out.extend(item);
            return out;
        }
    };
    let args = match syn::parse2::<StepArgs>(args) {
        Ok(args) => Some(args),
        Err(err) => {
            errors.push(err);
            None
        }
    };
    if let Some(constness) = &func.sig.constness {
        errors.push_at(
            constness.span,
            format!(
                "#[{attr}] cannot be applied to a `const fn`: recording a step happens at run time; remove `const`"
            ),
        );
    }
    if let Some(track) = func
        .attrs
        .iter()
        .find(|a| a.path().is_ident("track_caller"))
    {
        errors.push_at(
            track.meta.span(),
            format!(
                "remove #[track_caller]: the body of a #[{attr}] fn runs inside the step guard (a closure or an async block), where #[track_caller] has no effect"
            ),
        );
    }
    if func.sig.asyncness.is_none()
        && let Some(span) = body::returns_impl_future(&func.sig)
    {
        errors.push_at(
            span,
            format!(
                "a #[{attr}] fn that returns a future is written as an `async fn`: `async fn {}(..) -> Output`, so the step is recorded when the future completes",
                func.sig.ident
            ),
        );
    }
    let outbox = args
        .as_ref()
        .and_then(|args| args.outbox.as_ref())
        .and_then(|param| outbox_param(&mut func, param, attr, &mut errors));
    let saga_id_param = take_saga_id_params(&mut func, args.as_ref(), &mut errors);
    let id_source = args
        .as_ref()
        .and_then(|args| id_source(&func, args, saga_id_param.as_ref(), attr, &mut errors));

    let (Some(args), Some(id_source), true) = (args, id_source, errors.is_empty()) else {
        // On an error, still emit the original fn so IDEs keep working.
        let mut out = into_compile_errors(errors);
        out.extend(quote! { #func });
        return out;
    };
    generate(kind, func, &args, id_source, outbox)
}

/// Checks the parameter `outbox = <param>` names (it exists, is a `&mut` reference, the fn is async) and makes its
/// binding `mut` (the generated code reborrows it around the body). Returns the attribute's token, which the
/// generated type check is spanned at, and whether the user's binding was `mut` already.
fn outbox_param(
    func: &mut ItemFn,
    param: &syn::Ident,
    attr: &str,
    errors: &mut Errors,
) -> Option<(syn::Ident, bool)> {
    const WRITE: &str =
        "`tx: &mut sqlx::Transaction<'_, Postgres>` or `conn: &mut sqlx::PgConnection`";
    let is_async = func.sig.asyncness.is_some();
    let typed = func.sig.inputs.iter_mut().find_map(|input| match input {
        FnArg::Typed(t) => match &mut *t.pat {
            Pat::Ident(p) if p.ident == *param => Some((p, &*t.ty)),
            _ => None,
        },
        FnArg::Receiver(_) => None,
    });
    let Some((pat, ty)) = typed else {
        errors.push_at(
            param.span(),
            format!("`outbox = {param}` names no parameter of this fn: add the transaction as a parameter, {WRITE}, and name it here"),
        );
        return None;
    };
    let ok_type = matches!(ty, syn::Type::Reference(r) if r.mutability.is_some());
    if !ok_type {
        errors.push_at(
            ty.span(),
            format!("the `outbox` parameter `{param}` is the transaction the step's events are written into: declare it {WRITE}"),
        );
    }
    if !is_async {
        errors.push_at(
            param.span(),
            format!("#[{attr}(.., outbox = {param})] writes into the transaction with `.await`: make the fn an `async fn`"),
        );
    }
    if pat.by_ref.is_some() || pat.subpat.is_some() {
        errors.push_at(
            pat.ident.span(),
            format!("the `outbox` parameter is bound to a plain name: `{param}: &mut ...`"),
        );
    }
    let ok = ok_type && is_async && pat.by_ref.is_none() && pat.subpat.is_none();
    let user_mut = pat.mutability.is_some();
    if ok && !user_mut {
        pat.mutability = Some(syn::Token![mut](pat.ident.span()));
    }
    ok.then(|| (param.clone(), user_mut))
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
    args: Option<&StepArgs>,
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
        if args.is_some_and(|a| a.saga_id.is_some()) {
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
    id_source: IdSource,
    outbox: Option<(syn::Ident, bool)>,
) -> TokenStream {
    let rt = quote! { ::saga_tracker::__private };
    let saga = &args.saga;
    let step = &args.step;
    let fn_ident = func.sig.ident.clone();
    let fn_name = fn_ident.unraw().to_string();
    let is_method = func.sig.receiver().is_some();
    // A fn that may be wired (no receiver, no `Self` in its signature, no `method`) is keyed by where it is
    // defined, for `saga_service!` (see `saga_tracker::registry::HandlerKey`). Everything generated lives inside
    // the fn's body: it takes no name of the user's and is valid in a module, an impl and a trait alike.
    let keyed = !is_method && args.method.is_none() && !body::mentions_self(&func.sig);
    let (kind_tokens, handler_trait) = match kind {
        Kind::Step => (quote! { #rt::HandlerKind::Step }, quote! { StepHandler }),
        Kind::Compensation => (
            quote! { #rt::HandlerKind::Compensation },
            quote! { CompensationHandler },
        ),
    };
    let line = quote_spanned! { fn_ident.span()=> ::core::line!() };
    let step_span = step.span();
    let saga_span = saga.span();
    let index_const = quote_spanned! { step_span=> __SAGA_TRACKER_STEP_INDEX };
    let desc_const = quote! { __SAGA_TRACKER_DESCRIPTOR };
    let index_value = respan(quote! { #saga::#step as ::core::primitive::u16 }, step_span);
    // Spanned at the saga type: "`X` is not a saga declaration" points there.
    let descriptor_of = respan(quote! { #rt::StepDescriptor::of::<#saga> }, saga_span);

    let compensation_check = (kind == Kind::Compensation).then(|| {
        respan(
            quote! { const _: () = #rt::compensable::<#saga, { #index_const }>(); },
            step_span,
        )
    });
    // The impl's local type keeps it within the orphan rules (the saga type may be another crate's) and apart
    // from every other handler's impl.
    let key_impl = keyed.then(|| {
        // Spanned at the saga type: "`X` is not a saga declaration" points there.
        let handler_impl = respan(
            quote! { impl #rt::#handler_trait<#saga, { #index_const }, __SagaTrackerHandler> },
            saga_span,
        );
        quote! {
            #[allow(dead_code)]
            pub struct __SagaTrackerHandler;
            #handler_impl
                for #rt::HandlerKey<{ #rt::handler_key(::core::module_path!(), #fn_name) }>
            {
                const DESCRIPTOR: &'static #rt::StepDescriptor = &#desc_const;
            }
        }
    });

    let defs = quote! {
        const #index_const: ::core::primitive::u16 = #index_value;
        const #desc_const: #rt::StepDescriptor = #descriptor_of(
            #index_const, #kind_tokens, ::core::module_path!(), #fn_name, #is_method, ::core::file!(), #line,
        );
        #rt::inventory::submit! { #desc_const }
        #compensation_check
        #key_impl
    };
    let descriptor_ref = quote! { &#desc_const };

    let ids = ids_tokens(&rt, args, id_source, &func.sig.ident);
    let new_body = body::wrap(&rt, &func, args, &ids, &descriptor_ref, outbox.as_ref());
    let block = syn::parse_quote! {
        {
            #defs
            #new_body
        }
    };
    *func.block = block;
    quote! { #func }
}

fn ids_tokens(
    rt: &TokenStream,
    args: &StepArgs,
    source: IdSource,
    fn_ident: &syn::Ident,
) -> TokenStream {
    let mut ids = match source {
        IdSource::Expr(expr) => {
            quote_spanned! { expr.span()=> #rt::StepIds::new(#rt::raw_saga_id(&(#expr))) }
        }
        IdSource::Param(ident) => quote! { #rt::StepIds::new(#rt::raw_saga_id(&#ident)) },
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
        let value = quote_spanned! { expr.span()=> #rt::metadata_value(&(#expr)) };
        ids = quote! { #ids.metadata(#key, #value) };
    }
    ids
}
