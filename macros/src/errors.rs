//! Error helpers: every problem of one item is collected ([`Errors`]), and generated tokens can be spanned at
//! one user token ([`respan`]) so a diagnostic about them points there.

pub(crate) use saga_tracker_syntax::Errors;

/// The collected errors as `compile_error!`s (nothing when there are none).
pub(crate) fn into_compile_errors(errors: Errors) -> proc_macro2::TokenStream {
    errors
        .into_error()
        .map(|e| e.to_compile_error())
        .unwrap_or_default()
}

/// `tokens` with every span (recursively) set to `span`, so a diagnostic about them points at one user token.
pub(crate) fn respan(
    tokens: proc_macro2::TokenStream,
    span: proc_macro2::Span,
) -> proc_macro2::TokenStream {
    use proc_macro2::{Group, TokenTree};
    tokens
        .into_iter()
        .map(|tt| match tt {
            TokenTree::Group(g) => {
                let mut new = Group::new(g.delimiter(), respan(g.stream(), span));
                new.set_span(span);
                TokenTree::Group(new)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}
