//! A saga declaration: `#[derive(Saga)]` on a fieldless enum whose variants are the steps.
//!
//! ```text
//! #[derive(Saga)]
//! #[saga(name = "OrderSaga")]          // optional: the wire name (default: the enum's name)
//! pub enum OrderSaga {
//!     #[step(compensable)]              // the step has a compensation
//!     ReserveStock,
//!     #[step(name = "confirm")]         // optional: the step's wire name (default: snake_case of the variant)
//!     ConfirmOrder,
//! }
//! ```

use std::collections::HashMap;

use heck::ToSnakeCase;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitStr};

use crate::errors::Errors;

/// One step of a saga declaration.
#[derive(Clone)]
pub struct StepDecl {
    /// The variant, e.g. `ReserveStock`.
    pub ident: Ident,
    /// The wire name, e.g. `reserve_stock`.
    pub name: LitStr,
    /// `#[step(compensable)]`.
    pub compensable: bool,
}

/// A parsed `#[derive(Saga)]` declaration.
#[derive(Clone)]
pub struct SagaDecl {
    /// The enum.
    pub ident: Ident,
    /// The wire name: `#[saga(name = "..")]`, default the enum's name.
    pub name: LitStr,
    /// The steps, in declaration order (the order is the step index).
    pub steps: Vec<StepDecl>,
}

impl Parse for SagaDecl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        SagaDecl::from_input(&input.parse()?)
    }
}

impl SagaDecl {
    /// Reads the declaration from the derive input, reporting every problem at once.
    pub fn from_input(input: &DeriveInput) -> syn::Result<SagaDecl> {
        let mut errors = Errors::default();
        let ident = &input.ident;
        let mut name = LitStr::new(&ident.to_string(), ident.span());
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("saga")) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    name = wire_name(meta.value()?.parse()?, "the saga's")?;
                    Ok(())
                } else {
                    Err(meta.error("unknown key in #[saga(..)]; the only key is `name = \"...\"`"))
                }
            });
            if let Err(err) = result {
                errors.push(err);
            }
        }
        if !input.generics.params.is_empty() {
            errors.push_at(
                input.generics.span(),
                "a saga declaration cannot be generic: remove the parameters",
            );
        }
        let data = match &input.data {
            Data::Enum(data) => data,
            Data::Struct(s) => {
                errors.push_at(
                    s.struct_token.span,
                    "#[derive(Saga)] needs an enum whose variants are the saga's steps: write `enum`",
                );
                return Err(errors
                    .into_error()
                    .unwrap_or_else(|| unreachable_error(ident)));
            }
            Data::Union(u) => {
                errors.push_at(
                    u.union_token.span,
                    "#[derive(Saga)] needs an enum whose variants are the saga's steps: write `enum`",
                );
                return Err(errors
                    .into_error()
                    .unwrap_or_else(|| unreachable_error(ident)));
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
        let mut seen: HashMap<String, ()> = HashMap::new();
        for variant in &data.variants {
            let v = &variant.ident;
            if !matches!(variant.fields, Fields::Unit) {
                errors.push_at(
                    variant.fields.span(),
                    "a saga step is a unit variant: remove the fields",
                );
            }
            if let Some((eq, _)) = &variant.discriminant {
                errors.push_at(
                    eq.span,
                    "a saga step cannot have an explicit discriminant (the declaration order is the step index): remove `= ...`",
                );
            }
            let mut step = StepDecl {
                ident: v.clone(),
                name: LitStr::new(&v.to_string().to_snake_case(), v.span()),
                compensable: false,
            };
            for attr in variant.attrs.iter().filter(|a| a.path().is_ident("step")) {
                let result = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("compensable") {
                        step.compensable = true;
                        Ok(())
                    } else if meta.path.is_ident("name") {
                        step.name = wire_name(meta.value()?.parse()?, "a step's")?;
                        Ok(())
                    } else {
                        Err(meta.error(
                            "unknown key in #[step(..)]; expected `compensable` or `name = \"...\"`",
                        ))
                    }
                });
                if let Err(err) = result {
                    errors.push(err);
                }
            }
            if seen.insert(step.name.value(), ()).is_some() {
                errors.push_at(
                    step.name.span(),
                    format!(
                        "two steps of this saga have the wire name `{}`: give one another `#[step(name = \"...\")]`",
                        step.name.value()
                    ),
                );
            }
            steps.push(step);
        }
        errors.finish(SagaDecl {
            ident: ident.clone(),
            name,
            steps,
        })
    }
}

fn wire_name(value: LitStr, whose: &str) -> syn::Result<LitStr> {
    if value.value().trim().is_empty() {
        return Err(syn::Error::new(
            value.span(),
            format!("{whose} wire name must not be empty"),
        ));
    }
    Ok(value)
}

fn unreachable_error(ident: &Ident) -> syn::Error {
    syn::Error::new(ident.span(), "#[derive(Saga)] needs an enum")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_compensable_steps() {
        let d: SagaDecl = syn::parse_str(
            "#[saga(name = \"Orders\")] enum OrderSaga { #[step(compensable)] ReserveStock, #[step(name = \"confirm\")] ConfirmOrder }",
        )
        .expect("parses");
        assert_eq!(d.name.value(), "Orders");
        assert_eq!(d.steps[0].name.value(), "reserve_stock");
        assert!(d.steps[0].compensable);
        assert_eq!(d.steps[1].name.value(), "confirm");
    }

    #[test]
    fn every_problem_at_once() {
        let Err(e) = syn::parse_str::<SagaDecl>(
            "#[saga(nme = \"x\")] enum S { A(u8), #[step(bogus)] B = 3 }",
        ) else {
            panic!("parsed")
        };
        assert_eq!(e.into_iter().count(), 4);
    }
}
