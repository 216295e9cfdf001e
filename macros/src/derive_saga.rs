//! `#[derive(Saga)]`: the saga declaration.

use std::collections::HashMap;

use heck::ToSnakeCase;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitStr};

use crate::errors::Errors;

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(err) => return err.to_compile_error(),
    };
    let mut errors = Errors::default();
    let ident = &input.ident;
    let mut saga_name = LitStr::new(&ident.to_string(), ident.span());

    for attr in input.attrs.iter().filter(|a| a.path().is_ident("saga")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let value: LitStr = meta.value()?.parse()?;
                if value.value().trim().is_empty() {
                    return Err(syn::Error::new(
                        value.span(),
                        "the saga's wire name must not be empty",
                    ));
                }
                saga_name = value;
                Ok(())
            } else {
                Err(meta.error("unknown key in #[saga(...)]; expected `name = \"...\"`"))
            }
        });
        if let Err(err) = result {
            errors.push(err);
        }
    }
    if !input.generics.params.is_empty() {
        errors.push_at(
            input.generics.span(),
            "a saga declaration cannot be generic",
        );
    }

    let data = match &input.data {
        Data::Enum(data) => data,
        Data::Struct(s) => {
            errors.push_at(
                s.struct_token.span,
                "#[derive(Saga)] needs an enum whose variants are the saga's steps",
            );
            return errors.into_compile_errors();
        }
        Data::Union(u) => {
            errors.push_at(
                u.union_token.span,
                "#[derive(Saga)] needs an enum whose variants are the saga's steps",
            );
            return errors.into_compile_errors();
        }
    };
    if data.variants.is_empty() {
        errors.push_at(
            ident.span(),
            "a saga needs at least one step: add a variant per step",
        );
    }
    if data.variants.len() > usize::from(u16::MAX) {
        errors.push_at(ident.span(), "a saga can have at most 65535 steps");
    }

    let mut steps = Vec::new();
    let mut index_arms = Vec::new();
    let mut comp_impls = Vec::new();
    let mut seen: HashMap<String, proc_macro2::Span> = HashMap::new();
    for (index, variant) in data.variants.iter().enumerate() {
        let v = &variant.ident;
        if !matches!(variant.fields, Fields::Unit) {
            errors.push_at(
                variant.fields.span(),
                "a saga step is a unit variant: remove the fields",
            );
        }
        if let Some((eq, _)) = &variant.discriminant {
            errors.push_at(eq.span, "a saga step cannot have an explicit discriminant: the declaration order is the step index");
        }
        let mut name = LitStr::new(&v.to_string().to_snake_case(), v.span());
        let mut compensable = false;
        for attr in variant.attrs.iter().filter(|a| a.path().is_ident("step")) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("compensable") {
                    compensable = true;
                    Ok(())
                } else if meta.path.is_ident("name") {
                    let value: LitStr = meta.value()?.parse()?;
                    if value.value().trim().is_empty() {
                        return Err(syn::Error::new(
                            value.span(),
                            "a step's wire name must not be empty",
                        ));
                    }
                    name = value;
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown key in #[step(...)]; expected `compensable` or `name = \"...\"`",
                    ))
                }
            });
            if let Err(err) = result {
                errors.push(err);
            }
        }
        if let Some(_first) = seen.insert(name.value(), name.span()) {
            errors.push_at(
                name.span(),
                format!(
                    "two steps of this saga have the wire name `{}`",
                    name.value()
                ),
            );
        }
        let variant_str = v.to_string();
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
    if !errors.is_empty() {
        return errors.into_compile_errors();
    }
    quote! {
        impl ::saga_tracker::Saga for #ident {
            const NAME: &'static str = #saga_name;
            const STEPS: &'static [::saga_tracker::StepDecl] = &[#(#steps),*];
            fn index(&self) -> u16 {
                match self {
                    #(#index_arms,)*
                }
            }
        }
        #(#comp_impls)*
    }
}
