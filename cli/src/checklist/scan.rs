//! Reading one source file with syn: saga declarations, annotated handlers, `saga_service!` routes and every
//! function (for the un-annotated-handler checks). Nothing is compiled or expanded.

use std::path::{Path, PathBuf};

use proc_macro2::Span;
use saga_tracker_syntax::{RouteKind, ServiceDecl, StepArgs};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Attribute, Token};

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

/// How an annotation names its step (the grammar, `saga_tracker_syntax::StepArgs`, allows a variant only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepRef {
    /// A variant ident, e.g. `ReserveStock`.
    Ident(String),
}

impl std::fmt::Display for StepRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepRef::Ident(s) => f.write_str(s),
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

/// Reads a `#[saga_step(..)]` / `#[saga_compensation(..)]` attribute with the macros' own parser; on an error,
/// every problem with its line.
fn parse_annotation(
    attr: &Attribute,
    kind: HandlerKind,
) -> Result<Annotation, Vec<(Span, String)>> {
    let tokens = match &attr.meta {
        syn::Meta::List(list) => list.tokens.clone(),
        _ => proc_macro2::TokenStream::new(),
    };
    let args: StepArgs = syn::parse2(tokens).map_err(|e| split(e, attr.span()))?;
    Ok(Annotation {
        kind,
        saga: last_segment(&args.saga),
        step: StepRef::Ident(args.step.unraw().to_string()),
    })
}

/// Each error of a combined `syn::Error`, at its own span (`fallback` for one without a line).
fn split(error: syn::Error, fallback: Span) -> Vec<(Span, String)> {
    error
        .into_iter()
        .map(|e| {
            let span = if e.span().start().line > 0 {
                e.span()
            } else {
                fallback
            };
            (span, e.to_string())
        })
        .collect()
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
                Err(problems) => self.problems(problems),
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

    fn problems(&mut self, problems: Vec<(Span, String)>) {
        for (span, message) in problems {
            self.out.problems.push((Loc::at(self.file, span), message));
        }
    }

    /// Reads a `#[derive(Saga)]` item with the macro's own parser.
    fn record_saga(&mut self, input: syn::DeriveInput) {
        let decl = match saga_tracker_syntax::SagaDecl::from_input(&input) {
            Ok(decl) => decl,
            Err(e) => {
                let problems = split(e, input.ident.span());
                self.problems(problems);
                return;
            }
        };
        let steps = decl
            .steps
            .iter()
            .map(|step| StepDecl {
                ident: step.ident.unraw().to_string(),
                wire: step.name.value(),
                compensable: step.compensable,
                loc: Loc::at(self.file, step.ident.span()),
            })
            .collect();
        self.out.sagas.push(SagaDecl {
            ident: decl.ident.unraw().to_string(),
            wire: decl.name.value(),
            steps,
            loc: Loc::at(self.file, decl.ident.span()),
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
            self.record_saga(item.clone().into());
        }
        syn::visit::visit_item_enum(self, item);
    }

    fn visit_item_struct(&mut self, item: &'ast syn::ItemStruct) {
        if derives_saga(&item.attrs) {
            self.record_saga(item.clone().into());
        }
        syn::visit::visit_item_struct(self, item);
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
        match mac.parse_body::<ServiceDecl>() {
            Ok(service) => {
                for route in service.routes {
                    self.out.routes.push(Route {
                        service: service.ident.unraw().to_string(),
                        kind: match route.kind {
                            RouteKind::Step => HandlerKind::Step,
                            RouteKind::Compensate => HandlerKind::Compensation,
                        },
                        saga: last_segment(&route.saga),
                        step: route.step.unraw().to_string(),
                        handler: route
                            .handler
                            .segments
                            .iter()
                            .map(|s| s.ident.unraw().to_string())
                            .collect(),
                        loc: Loc::at(self.file, route.keyword.span()),
                    });
                }
            }
            Err(e) => {
                let problems = split(e, mac.path.span());
                self.problems(problems);
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

    /// Every trybuild case (tests/ui) goes through this parser: the pass cases and the fail cases marked
    /// `// syntax: accepted` have no problem; a fail case marked `// syntax: rejected` has some, and the compiler
    /// reported each of them, with the same message on the same line (the macros use the same parsers).
    #[test]
    fn ui_cases_agree_with_the_compiler() {
        let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui");
        let mut checked = 0;
        for dir in ["pass", "fail"] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(ui.join(dir))
                .expect("tests/ui is there")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                .collect();
            files.sort();
            for file in files {
                let name = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                let source = std::fs::read_to_string(&file).expect("readable");
                let problems = scan_source(&file, vec![], &source)
                    .expect("every case is valid Rust")
                    .problems;
                let rejected = source.starts_with("// syntax: rejected");
                assert!(
                    dir == "pass" || rejected || source.starts_with("// syntax: accepted"),
                    "{name}: a fail case starts with `// syntax: accepted` or `// syntax: rejected`"
                );
                if !rejected {
                    assert!(
                        problems.is_empty(),
                        "{dir}/{name}: the checklist rejects what the compiler's macros accept: {problems:?}"
                    );
                } else {
                    assert!(
                        !problems.is_empty(),
                        "{name}: the compiler rejects its syntax, the checklist does not"
                    );
                    let stderr = std::fs::read_to_string(file.with_extension("stderr"))
                        .expect("committed .stderr");
                    for (loc, message) in &problems {
                        let expected =
                            format!("error: {message}\n  --> ui/fail/{name}:{}:", loc.line);
                        let expected_short =
                            format!("error: {message}\n --> ui/fail/{name}:{}:", loc.line);
                        assert!(
                            stderr.contains(&expected) || stderr.contains(&expected_short),
                            "{name}: the checklist reports `{message}` at line {}, the compiler does not",
                            loc.line
                        );
                    }
                }
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} cases found");
    }
}
