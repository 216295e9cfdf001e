//! The wrapped body: the guard, then the user's block run under `run_sync` (sync) or `catch_body` (async).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{ItemFn, ReturnType, Signature, Type};

use crate::errors::respan;
use saga_tracker_syntax::StepArgs;

pub(super) fn wrap(
    rt: &TokenStream,
    func: &ItemFn,
    args: &StepArgs,
    ids: &TokenStream,
    descriptor: &TokenStream,
    outbox: Option<&(syn::Ident, bool)>,
) -> TokenStream {
    let block = &func.block;
    let mut inferred = InferImplTrait(false);
    let (ret, ret_span) = match &func.sig.output {
        ReturnType::Default => (quote! { () }, func.sig.ident.span()),
        ReturnType::Type(_, ty) => {
            let mut ty = (**ty).clone();
            inferred.visit_type_mut(&mut ty);
            (quote! { #ty }, ty.span())
        }
    };
    let plain_ret = ret.clone();
    // The outcome type is spanned at the return type, so "cannot report failure" points there.
    let ret = quote_spanned! { ret_span=> #ret };
    let classifier = match &args.error_kind {
        // Checked at the user's expression against the step's error type (unless the return type holds an
        // `impl Trait`, which cannot be named here).
        Some(expr) if !inferred.0 => {
            quote_spanned! { expr.span()=> #rt::error_kind_for::<#plain_ret, _, _>(#expr) }
        }
        Some(expr) => quote_spanned! { expr.span()=> #rt::ClassifyWith(#expr) },
        None => quote! { #rt::DefaultKind },
    };
    let guard = quote! {
        let __saga_tracker_guard = #rt::StepGuard::start(#descriptor, #ids);
    };
    // Everything but the user's block and classifier is spanned at the return type: an unsuitable return
    // type gets one error, there.
    let describe = respan(quote! { __saga_tracker_guard, }, ret_span);
    if let Some((attr_token, user_mut)) = outbox {
        return wrap_in_tx(
            rt, func, ids, descriptor, attr_token, *user_mut, &ret, ret_span, classifier,
        );
    }
    if func.sig.asyncness.is_some() {
        // The body's value is bound with the declared type, so a type error in it points at the user's code.
        let out = respan(quote! { let __saga_tracker_out: #ret = }, ret_span);
        let catch_body = respan(quote! { #rt::catch_body::<#ret, _> }, ret_span);
        let finish = respan(quote! { #rt::finish_async::<#ret, _> }, ret_span);
        let result = respan(quote! { , __saga_tracker_result }, ret_span);
        let finish_args = parens(quote! { #describe #classifier #result }, ret_span);
        quote! {
            #guard
            let __saga_tracker_result = #catch_body(async move {
                #out #block;
                __saga_tracker_out
            }).await;
            #finish #finish_args
        }
    } else {
        // The guard is made inside `run_sync_with` and stays there (not moved: a copy of it saved per call).
        let run = respan(quote! { #rt::run_sync_with::<#ret, _, _> }, ret_span);
        let closure = respan(quote! { , move || }, ret_span);
        let start = respan(quote! { , }, ret_span);
        let run_args = parens(
            quote! { #descriptor #start #ids #start #classifier #closure #block },
            ret_span,
        );
        quote! { #run #run_args }
    }
}

/// `outbox = tx`: STARTED into `tx` before the body, SUCCEEDED into it after an `Ok`, FAILED (an `Err`, a
/// panic) outside it, through the runtime's outbox API. The body gets a reborrow of `tx`, so `tx` is still there
/// to finish the step.
#[allow(clippy::too_many_arguments)]
fn wrap_in_tx(
    rt: &TokenStream,
    func: &ItemFn,
    ids: &TokenStream,
    descriptor: &TokenStream,
    attr_token: &syn::Ident,
    user_mut: bool,
    ret: &TokenStream,
    ret_span: proc_macro2::Span,
    classifier: TokenStream,
) -> TokenStream {
    let block = &func.block;
    // The parameter as the body names it, and the check of its type spanned at the attribute's token.
    let param = func
        .sig
        .inputs
        .iter()
        .find_map(|input| match input {
            syn::FnArg::Typed(t) => match &*t.pat {
                syn::Pat::Ident(p) if p.ident == *attr_token => Some(p.ident.clone()),
                _ => None,
            },
            syn::FnArg::Receiver(_) => None,
        })
        .unwrap_or_else(|| attr_token.clone());
    let conn = respan(quote! { #rt::outbox_conn(&mut #param) }, attr_token.span());
    let out = respan(quote! { let __saga_tracker_out: #ret = }, ret_span);
    let catch_body = respan(quote! { #rt::catch_body::<#ret, _> }, ret_span);
    let finish = respan(quote! { #rt::finish_in_tx::<#ret, _> }, ret_span);
    // The body's binding is as mutable as the user declared it.
    let mutability = user_mut.then(|| quote! { mut });
    quote! {
        let __saga_tracker_step = #rt::start_in_tx(#conn, #descriptor, #ids).await;
        let __saga_tracker_result = {
            let #mutability #param = &mut *#param;
            #catch_body(async move {
                #out #block;
                __saga_tracker_out
            }).await
        };
        #finish(__saga_tracker_step, #conn, #classifier, __saga_tracker_result).await
    }
}

/// `impl Trait` cannot be named in the body: let inference find it (`Result<impl Display, E>` → `Result<_, E>`).
struct InferImplTrait(bool);

impl VisitMut for InferImplTrait {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(t) = ty {
            self.0 = true;
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: syn::Token![_](t.impl_token.span),
            });
            return;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

/// Whether the signature mentions `Self` (then the fn is an associated fn of an impl or trait).
pub(super) fn mentions_self(sig: &Signature) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_ident(&mut self, ident: &'ast proc_macro2::Ident) {
            if ident == "Self" {
                self.0 = true;
            }
        }
    }
    let mut finder = Finder(false);
    finder.visit_signature(sig);
    finder.0
}

/// `( tokens )` with the parentheses spanned at `span`.
fn parens(tokens: TokenStream, span: proc_macro2::Span) -> proc_macro2::Group {
    let mut group = proc_macro2::Group::new(proc_macro2::Delimiter::Parenthesis, tokens);
    group.set_span(span);
    group
}

/// The span of a `impl Future<..>` return type (a hand-written async fn), if the signature has one.
pub(super) fn returns_impl_future(sig: &Signature) -> Option<proc_macro2::Span> {
    let ReturnType::Type(_, ty) = &sig.output else {
        return None;
    };
    let Type::ImplTrait(t) = &**ty else {
        return None;
    };
    t.bounds
        .iter()
        .any(|b| match b {
            syn::TypeParamBound::Trait(tb) => tb
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Future" || s.ident == "IntoFuture"),
            _ => false,
        })
        .then(|| ty.span())
}
