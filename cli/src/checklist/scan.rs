//! Reading one source file with syn: saga declarations, annotated handlers, `saga_service!` routes and every
//! function (for the un-annotated-handler checks). Nothing is compiled or expanded.

use std::path::{Path, PathBuf};

use heck::ToSnakeCase;
use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Attribute, Expr, Ident, Lit, Token};

/// A file and line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    /// The source file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
}

impl Loc {
    fn at(file: &Path, span: Span) -> Loc {
        Loc {
            file: file.to_path_buf(),
            line: span.start().line.max(1),
        }
    }
}

/// One step of a saga declaration.
#[derive(Debug, Clone)]
pub struct StepDecl {
    /// The variant, e.g. `ReserveStock`.
    pub ident: String,
    /// The wire name, e.g. `reserve_stock`.
    pub wire: String,
    /// `#[step(compensable)]`.
    pub compensable: bool,
    /// Where the variant is.
    pub loc: Loc,
}

/// A `#[derive(Saga)]` enum.
#[derive(Debug, Clone)]
pub struct SagaDecl {
    /// The enum's name: what `#[saga_step(OrderSaga, ..)]` refers to.
    pub ident: String,
    /// `#[saga(name = "..")]`, default the ident.
    pub wire: String,
    /// The variants, in order.
    pub steps: Vec<StepDecl>,
    /// Where the enum is.
    pub loc: Loc,
}

/// Which attribute a handler carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HandlerKind {
    /// `#[saga_step]`.
    Step,
    /// `#[saga_compensation]`.
    Compensation,
}

impl HandlerKind {
    /// The attribute's name.
    pub fn attribute(self) -> &'static str {
        match self {
            HandlerKind::Step => "saga_step",
            HandlerKind::Compensation => "saga_compensation",
        }
    }
}

/// How an annotation names its step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepRef {
    /// A variant ident, e.g. `ReserveStock`.
    Ident(String),
    /// A string: the wire name, e.g. `"reserve_stock"`.
    Wire(String),
}

impl std::fmt::Display for StepRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepRef::Ident(s) => f.write_str(s),
            StepRef::Wire(s) => write!(f, "\"{s}\""),
        }
    }
}

/// A `#[saga_step(..)]` or `#[saga_compensation(..)]` attribute, read.
#[derive(Debug, Clone)]
pub struct Annotation {
    /// Which attribute.
    pub kind: HandlerKind,
    /// The saga type (last path segment).
    pub saga: String,
    /// The step.
    pub step: StepRef,
}

/// A function (free, inherent or trait method with a body).
#[derive(Debug, Clone)]
pub struct FnInfo {
    /// The function name.
    pub name: String,
    /// The module path inside the crate (file modules and inline `mod`s).
    pub module: Vec<String>,
    /// The `impl` block's type, for methods.
    pub impl_type: Option<String>,
    /// Every identifier in the parameter types (`&mut sqlx::Transaction<'_, Postgres>` →
    /// `sqlx`, `Transaction`, `Postgres`).
    pub param_types: Vec<String>,
    /// The saga annotations it carries (well-formed ones).
    pub annotations: Vec<Annotation>,
    /// True when it carries a saga attribute, even an unreadable one.
    pub has_saga_attribute: bool,
    /// `#[test]` and friends.
    pub is_test: bool,
    /// Where its name is.
    pub loc: Loc,
}

impl FnInfo {
    /// `module::Type::name`, for titles and ids.
    pub fn qualified(&self) -> String {
        let mut parts = self.module.clone();
        parts.extend(self.impl_type.clone());
        parts.push(self.name.clone());
        parts.join("::")
    }
}

/// One entry of a `saga_service!` block.
#[derive(Debug, Clone)]
pub struct Route {
    /// The service's name in the block.
    pub service: String,
    /// `step` or `compensate`.
    pub kind: HandlerKind,
    /// The saga type (the segment before the step).
    pub saga: String,
    /// The step variant (the last segment).
    pub step: String,
    /// The handler's path segments, e.g. `["handlers", "reserve_stock"]`.
    pub handler: Vec<String>,
    /// Where the entry is.
    pub loc: Loc,
}

/// What one file holds.
#[derive(Debug, Default)]
pub struct FileScan {
    /// `#[derive(Saga)]` enums.
    pub sagas: Vec<SagaDecl>,
    /// Every function.
    pub functions: Vec<FnInfo>,
    /// Every `saga_service!` entry.
    pub routes: Vec<Route>,
    /// Saga attributes or macros that could not be read: where and why.
    pub problems: Vec<(Loc, String)>,
}

/// A file that does not parse.
#[derive(Debug, Clone)]
pub struct ParseFailure {
    /// Where the parser stopped.
    pub loc: Loc,
    /// The column (1-based).
    pub column: usize,
    /// The parser's message.
    pub message: String,
}

/// Parses `source` (the text of `file`, whose module path is `module`).
pub fn scan_source(
    file: &Path,
    module: Vec<String>,
    source: &str,
) -> Result<FileScan, ParseFailure> {
    let parsed = syn::parse_file(source).map_err(|e| {
        let start = e.span().start();
        ParseFailure {
            loc: Loc {
                file: file.to_path_buf(),
                line: start.line.max(1),
            },
            column: start.column + 1,
            message: e.to_string(),
        }
    })?;
    let mut scanner = Scanner {
        file,
        module,
        impl_type: Vec::new(),
        out: FileScan::default(),
    };
    scanner.visit_file(&parsed);
    Ok(scanner.out)
}

fn last_segment(path: &syn::Path) -> String {
    path.segments
        .last()
        .map(|s| s.ident.unraw().to_string())
        .unwrap_or_default()
}

fn is_cfg_test(attr: &Attribute) -> bool {
    attr.path().is_ident("cfg")
        && attr
            .parse_args::<syn::Meta>()
            .is_ok_and(|m| m.path().is_ident("test"))
}

fn is_test_attr(attr: &Attribute) -> bool {
    matches!(
        last_segment(attr.path()).as_str(),
        "test" | "rstest" | "test_case"
    )
}

fn derives_saga(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .any(|a| {
            a.parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated)
                .is_ok_and(|paths| paths.iter().any(|p| last_segment(p) == "Saga"))
        })
}

/// Skips the value of an attribute key this checker does not know.
fn skip_unknown(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip_unknown(&inner))?;
    }
    Ok(())
}

fn lit_str(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<String> {
    Ok(meta.value()?.parse::<syn::LitStr>()?.value())
}

/// One argument of `#[saga_step(..)]`: `key = value` or a positional expression.
enum Arg {
    Named(Ident, Expr),
    Positional(Expr),
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let fork = input.fork();
        if fork.call(Ident::parse_any).is_ok() && fork.peek(Token![=]) && !fork.peek(Token![==]) {
            let key = input.call(Ident::parse_any)?;
            input.parse::<Token![=]>()?;
            return Ok(Arg::Named(key, input.parse()?));
        }
        Ok(Arg::Positional(input.parse()?))
    }
}

fn expr_name(expr: &Expr) -> Option<StepRef> {
    match expr {
        Expr::Path(p) => Some(StepRef::Ident(last_segment(&p.path))),
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(StepRef::Wire(s.value())),
        _ => None,
    }
}

fn parse_annotation(attr: &Attribute, kind: HandlerKind) -> Result<Annotation, String> {
    let syn::Meta::List(list) = &attr.meta else {
        return Err(format!(
            "#[{}] needs the saga type and the step, e.g. #[{}(OrderSaga, ReserveStock)]",
            kind.attribute(),
            kind.attribute()
        ));
    };
    let args = list
        .parse_args_with(Punctuated::<Arg, Token![,]>::parse_terminated)
        .map_err(|e| format!("#[{}(..)] cannot be read: {e}", kind.attribute()))?;
    let (mut saga, mut step) = (None, None);
    let mut positional = 0;
    for arg in &args {
        match arg {
            Arg::Named(key, value) => match key.to_string().as_str() {
                "type" | "saga" => saga = expr_name(value),
                "step" => step = expr_name(value),
                _ => {}
            },
            Arg::Positional(value) => {
                match positional {
                    0 => saga = expr_name(value),
                    1 => step = expr_name(value),
                    _ => {}
                }
                positional += 1;
            }
        }
    }
    let saga = match saga {
        Some(StepRef::Ident(s) | StepRef::Wire(s)) => s,
        None => {
            return Err(format!(
                "#[{}(..)] does not name the saga type",
                kind.attribute()
            ));
        }
    };
    let step = step.ok_or_else(|| format!("#[{}(..)] does not name the step", kind.attribute()))?;
    Ok(Annotation { kind, saga, step })
}

fn handler_kind(attr: &Attribute) -> Option<HandlerKind> {
    match last_segment(attr.path()).as_str() {
        "saga_step" => Some(HandlerKind::Step),
        "saga_compensation" => Some(HandlerKind::Compensation),
        _ => None,
    }
}

/// Identifiers in a type, e.g. for `param-types` patterns.
struct TypeIdents(Vec<String>);

impl<'ast> Visit<'ast> for TypeIdents {
    fn visit_path_segment(&mut self, segment: &'ast syn::PathSegment) {
        self.0.push(segment.ident.to_string());
        syn::visit::visit_path_segment(self, segment);
    }
}

/// The body of `saga_service! { .. }`: one or more services.
struct ServiceBlock(Vec<(Ident, Vec<RouteEntry>)>);

struct RouteEntry {
    kind: HandlerKind,
    step: syn::Path,
    handler: syn::Path,
    span: Span,
}

impl Parse for ServiceBlock {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut services = Vec::new();
        while !input.is_empty() {
            input.call(Attribute::parse_outer)?;
            input.parse::<syn::Visibility>()?;
            let name: Ident = input.parse()?;
            let content;
            syn::braced!(content in input);
            let mut entries = Vec::new();
            while !content.is_empty() {
                content.call(Attribute::parse_outer)?;
                let keyword: Ident = content.parse()?;
                let kind = match keyword.to_string().as_str() {
                    "step" => HandlerKind::Step,
                    "compensate" | "compensation" => HandlerKind::Compensation,
                    other => {
                        return Err(syn::Error::new(
                            keyword.span(),
                            format!("expected `step` or `compensate`, found `{other}`"),
                        ));
                    }
                };
                let step: syn::Path = content.parse()?;
                if step.segments.len() < 2 {
                    return Err(syn::Error::new(step.span(), "expected `SagaType::Step`"));
                }
                content.parse::<Token![=>]>()?;
                let handler: syn::Path = content.parse()?;
                entries.push(RouteEntry {
                    kind,
                    step,
                    handler,
                    span: keyword.span(),
                });
                if !content.is_empty() {
                    content.parse::<Token![,]>()?;
                }
            }
            services.push((name, entries));
            if input.peek(Token![,]) {
                input.parse::<Token![,]>()?;
            } else if input.peek(Token![;]) {
                input.parse::<Token![;]>()?;
            }
        }
        Ok(ServiceBlock(services))
    }
}

struct Scanner<'f> {
    file: &'f Path,
    module: Vec<String>,
    impl_type: Vec<Option<String>>,
    out: FileScan,
}

impl Scanner<'_> {
    fn record_fn(&mut self, attrs: &[Attribute], sig: &syn::Signature) {
        let mut annotations = Vec::new();
        let mut has_saga_attribute = false;
        for attr in attrs {
            let Some(kind) = handler_kind(attr) else {
                continue;
            };
            has_saga_attribute = true;
            match parse_annotation(attr, kind) {
                Ok(annotation) => annotations.push(annotation),
                Err(reason) => self
                    .out
                    .problems
                    .push((Loc::at(self.file, attr.span()), reason)),
            }
        }
        let mut idents = TypeIdents(Vec::new());
        for input in &sig.inputs {
            if let syn::FnArg::Typed(typed) = input {
                idents.visit_type(&typed.ty);
            }
        }
        self.out.functions.push(FnInfo {
            name: sig.ident.unraw().to_string(),
            module: self.module.clone(),
            impl_type: self.impl_type.last().cloned().flatten(),
            param_types: idents.0,
            annotations,
            has_saga_attribute,
            is_test: attrs.iter().any(is_test_attr),
            loc: Loc::at(self.file, sig.ident.span()),
        });
    }

    fn record_saga(&mut self, item: &syn::ItemEnum) {
        let ident = item.ident.unraw().to_string();
        let mut wire = ident.clone();
        for attr in item.attrs.iter().filter(|a| a.path().is_ident("saga")) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    wire = lit_str(&meta)?;
                    Ok(())
                } else {
                    skip_unknown(&meta)
                }
            });
            if let Err(e) = result {
                self.out.problems.push((
                    Loc::at(self.file, attr.span()),
                    format!("#[saga(..)] on {ident} cannot be read: {e}"),
                ));
            }
        }
        let mut steps = Vec::new();
        for variant in &item.variants {
            let step_ident = variant.ident.unraw().to_string();
            let mut step = StepDecl {
                wire: step_ident.to_snake_case(),
                ident: step_ident,
                compensable: false,
                loc: Loc::at(self.file, variant.ident.span()),
            };
            for attr in variant.attrs.iter().filter(|a| a.path().is_ident("step")) {
                let result = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("compensable") {
                        step.compensable = true;
                        Ok(())
                    } else if meta.path.is_ident("name") {
                        step.wire = lit_str(&meta)?;
                        Ok(())
                    } else {
                        skip_unknown(&meta)
                    }
                });
                if let Err(e) = result {
                    self.out.problems.push((
                        Loc::at(self.file, attr.span()),
                        format!("#[step(..)] on {ident}::{} cannot be read: {e}", step.ident),
                    ));
                }
            }
            steps.push(step);
        }
        self.out.sagas.push(SagaDecl {
            ident,
            wire,
            steps,
            loc: Loc::at(self.file, item.ident.span()),
        });
    }
}

impl<'ast> Visit<'ast> for Scanner<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.attrs.iter().any(is_cfg_test) {
            return;
        }
        if item.content.is_some() {
            self.module.push(item.ident.unraw().to_string());
            syn::visit::visit_item_mod(self, item);
            self.module.pop();
        }
    }

    fn visit_item_enum(&mut self, item: &'ast syn::ItemEnum) {
        if derives_saga(&item.attrs) {
            self.record_saga(item);
        }
        syn::visit::visit_item_enum(self, item);
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if item.attrs.iter().any(is_cfg_test) {
            return;
        }
        self.record_fn(&item.attrs, &item.sig);
        self.impl_type.push(None);
        syn::visit::visit_item_fn(self, item);
        self.impl_type.pop();
    }

    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        if item.attrs.iter().any(is_cfg_test) {
            return;
        }
        let ty = match &*item.self_ty {
            syn::Type::Path(p) => Some(last_segment(&p.path)),
            _ => None,
        };
        self.impl_type.push(ty);
        syn::visit::visit_item_impl(self, item);
        self.impl_type.pop();
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if item.attrs.iter().any(is_cfg_test) {
            return;
        }
        self.record_fn(&item.attrs, &item.sig);
        syn::visit::visit_impl_item_fn(self, item);
    }

    fn visit_item_trait(&mut self, item: &'ast syn::ItemTrait) {
        self.impl_type.push(Some(item.ident.unraw().to_string()));
        syn::visit::visit_item_trait(self, item);
        self.impl_type.pop();
    }

    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        if item.default.is_some() {
            self.record_fn(&item.attrs, &item.sig);
        }
        syn::visit::visit_trait_item_fn(self, item);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if last_segment(&mac.path) != "saga_service" {
            return;
        }
        match mac.parse_body::<ServiceBlock>() {
            Ok(ServiceBlock(services)) => {
                for (name, entries) in services {
                    for entry in entries {
                        let n = entry.step.segments.len();
                        let handler = entry
                            .handler
                            .segments
                            .iter()
                            .map(|s| s.ident.unraw().to_string())
                            .collect();
                        self.out.routes.push(Route {
                            service: name.unraw().to_string(),
                            kind: entry.kind,
                            saga: entry.step.segments[n - 2].ident.unraw().to_string(),
                            step: entry.step.segments[n - 1].ident.unraw().to_string(),
                            handler,
                            loc: Loc::at(self.file, entry.span),
                        });
                    }
                }
            }
            Err(e) => {
                let line = e.span().start().line;
                let loc = if line > 0 {
                    Loc {
                        file: self.file.to_path_buf(),
                        line,
                    }
                } else {
                    Loc::at(self.file, mac.path.span())
                };
                self.out
                    .problems
                    .push((loc, format!("saga_service! cannot be read: {e}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(src: &str) -> FileScan {
        scan_source(Path::new("x.rs"), vec![], src).expect("parses")
    }

    #[test]
    fn saga_declaration_with_names_and_compensable_steps() {
        let s = scan(
            r#"
#[derive(Debug, saga_tracker::Saga)]
#[saga(name = "Orders")]
pub enum OrderSaga {
    #[step(compensable)]
    ReserveStock,
    #[step(name = "confirm")]
    ConfirmOrder,
}"#,
        );
        let saga = &s.sagas[0];
        assert_eq!(
            (saga.ident.as_str(), saga.wire.as_str(), saga.loc.line),
            ("OrderSaga", "Orders", 4)
        );
        assert_eq!(saga.steps[0].wire, "reserve_stock");
        assert!(saga.steps[0].compensable);
        assert_eq!(saga.steps[1].wire, "confirm");
        assert!(!saga.steps[1].compensable);
        assert_eq!(saga.steps[1].loc.line, 8);
    }

    #[test]
    fn positional_and_keyword_annotations_on_free_fns_and_methods() {
        let s = scan(
            r#"
#[saga_step(OrderSaga, ReserveStock, saga_id = cmd.saga_id)]
async fn reserve(cmd: &Cmd) {}
struct S;
impl S {
    #[saga_tracker::saga_compensation(type = sagas::OrderSaga, step = ReserveStock)]
    async fn release(&self, tx: &mut sqlx::Transaction<'_, Postgres>) {}
}"#,
        );
        let reserve = &s.functions[0];
        assert_eq!(reserve.annotations[0].saga, "OrderSaga");
        assert_eq!(
            reserve.annotations[0].step,
            StepRef::Ident("ReserveStock".into())
        );
        let release = &s.functions[1];
        assert_eq!(release.impl_type.as_deref(), Some("S"));
        assert_eq!(release.annotations[0].kind, HandlerKind::Compensation);
        assert_eq!(release.annotations[0].saga, "OrderSaga");
        assert!(release.param_types.contains(&"Transaction".to_owned()));
    }

    #[test]
    fn service_routes_are_read_with_lines() {
        let s = scan(
            r#"
saga_tracker::saga_service! {
    /// doc
    pub ProductService {
        step OrderSaga::ReserveStock => handlers::reserve_stock,
        compensate OrderSaga::ReserveStock => release_stock,
    }
}"#,
        );
        assert_eq!(s.routes.len(), 2);
        assert_eq!(s.routes[0].handler, vec!["handlers", "reserve_stock"]);
        assert_eq!(s.routes[0].loc.line, 5);
        assert_eq!(s.routes[1].kind, HandlerKind::Compensation);
    }

    #[test]
    fn unreadable_attribute_and_macro_are_problems_not_failures() {
        let s = scan("#[saga_step]\nfn a() {}\nsaga_service! { S { go A::B => c } }\n");
        assert_eq!(s.problems.len(), 2, "{:?}", s.problems);
        assert!(s.functions[0].has_saga_attribute);
    }

    #[test]
    fn test_modules_are_skipped() {
        let s = scan("#[cfg(test)]\nmod tests { fn handle_x() {} }\nfn real() {}");
        assert_eq!(s.functions.len(), 1);
    }

    #[test]
    fn parse_failure_has_a_line() {
        let err = scan_source(Path::new("bad.rs"), vec![], "fn ok() {}\nfn broken( {\n")
            .expect_err("must fail");
        assert!(err.loc.line >= 2, "{err:?}");
    }
}
