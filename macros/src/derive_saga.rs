//! `#[derive(Saga)]`: the saga declaration (grammar: `saga_tracker_syntax::SagaDecl`).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use saga_tracker_syntax::SagaDecl;
use syn::DeriveInput;

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let decl = match syn::parse2::<DeriveInput>(input).and_then(|i| SagaDecl::from_input(&i)) {
        Ok(decl) => decl,
        Err(err) => return err.to_compile_error(),
    };
    let ident = &decl.ident;
    let saga_name = &decl.name;
    let mut steps = Vec::new();
    let mut index_arms = Vec::new();
    let mut comp_impls = Vec::new();
    for (index, step) in decl.steps.iter().enumerate() {
        let v = &step.ident;
        let variant_str = v.to_string();
        let name = &step.name;
        let compensable = step.compensable;
        let index = u16::try_from(index).unwrap_or(u16::MAX);
        steps.push(quote! {
            ::saga_tracker::StepDecl { variant: #variant_str, name: #name, compensable: #compensable }
        });
        index_arms.push(quote! { #ident::#v => #index });
        let marker = if compensable {
            quote_spanned! { v.span()=> ::saga_tracker::__private::HasCompensation<#index> }
        } else {
            quote_spanned! { v.span()=> ::saga_tracker::__private::WithoutCompensation<#index> }
        };
        comp_impls.push(quote! { impl #marker for #ident {} });
    }
    quote! {
        impl ::saga_tracker::Saga for #ident {
            const NAME: &'static ::core::primitive::str = #saga_name;
            const STEPS: &'static [::saga_tracker::StepDecl] = &[#(#steps),*];
            fn index(&self) -> ::core::primitive::u16 {
                match self {
                    #(#index_arms,)*
                }
            }
        }
        #(#comp_impls)*
    }
}
