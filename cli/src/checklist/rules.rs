//! The checks: from what the scanner found in all crates together, one checklist item per fact.

use std::collections::BTreeMap;

use super::config::{HandlerPatterns, Package};
use super::report::{Item, Section};
use super::scan::{FileScan, FnInfo, HandlerKind, Loc, ParseFailure, SagaDecl, StepRef};
use crate::paths;

/// One scanned file of one package.
pub struct ScannedFile {
    /// Index into the package list.
    pub package: usize,
    /// The file.
    pub path: std::path::PathBuf,
    /// What it holds, or where it failed to parse.
    pub result: Result<FileScan, ParseFailure>,
}

fn loc(l: &Loc) -> String {
    format!("{}:{}", paths::display(&l.file), l.line)
}

/// A function of some package.
struct Func<'a> {
    package: usize,
    info: &'a FnInfo,
}

/// Glob with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Why `f` looks like a handler under `patterns`, if it does.
pub fn pattern_reason(patterns: &HandlerPatterns, f: &FnInfo) -> Option<String> {
    let module = f.module.join("::");
    for pattern in &patterns.modules {
        if f.module.iter().any(|m| glob_match(pattern, m)) || glob_match(pattern, &module) {
            return Some(format!(
                "it is in module `{module}` (pattern modules = `{pattern}`)"
            ));
        }
    }
    for pattern in &patterns.names {
        if glob_match(pattern, &f.name) {
            return Some(format!("its name matches `{pattern}`"));
        }
    }
    for pattern in &patterns.param_types {
        let wanted = pattern.rsplit("::").next().unwrap_or(pattern);
        if f.param_types.iter().any(|t| t == wanted) {
            return Some(format!("it takes a `{pattern}` parameter"));
        }
    }
    None
}

/// The saga `name` refers to: by enum ident, else by wire name.
fn find_saga<'a>(sagas: &[(usize, &'a SagaDecl)], name: &str) -> Option<&'a SagaDecl> {
    sagas
        .iter()
        .find(|(_, s)| s.ident == name)
        .or_else(|| sagas.iter().find(|(_, s)| s.wire == name))
        .map(|(_, s)| *s)
}

fn find_step(saga: &SagaDecl, step: &StepRef) -> Option<usize> {
    saga.steps.iter().position(|s| match step {
        StepRef::Ident(i) => &s.ident == i,
    })
}

type StepKey = (String, usize);

/// Every item of the checklist.
pub fn evaluate(packages: &[Package], files: &[ScannedFile]) -> Vec<Item> {
    let mut items = Vec::new();
    let scans: Vec<(usize, &FileScan)> = files
        .iter()
        .filter_map(|f| f.result.as_ref().ok().map(|s| (f.package, s)))
        .collect();
    owners(packages, &scans, &mut items);
    sources(packages, files, &mut items);
    for (_, scan) in &scans {
        for (l, reason) in &scan.problems {
            items.push(
                Item::new(
                    Section::Handler,
                    format!("unreadable:{}", loc(l)),
                    false,
                    "saga annotation or macro can be read",
                    reason.clone(),
                )
                .at(loc(l)),
            );
        }
    }
    let sagas: Vec<(usize, &SagaDecl)> = scans
        .iter()
        .flat_map(|(p, s)| s.sagas.iter().map(move |d| (*p, d)))
        .collect();
    let funcs: Vec<Func<'_>> = scans
        .iter()
        .flat_map(|(p, s)| {
            s.functions.iter().map(move |f| Func {
                package: *p,
                info: f,
            })
        })
        .collect();

    declarations(packages, &sagas, &mut items);

    // Resolve every annotation to a declared step.
    let mut handlers: BTreeMap<(HandlerKind, StepKey), Vec<&Func<'_>>> = BTreeMap::new();
    for func in &funcs {
        for a in &func.info.annotations {
            let what = match a.kind {
                HandlerKind::Step => "step handler",
                HandlerKind::Compensation => "compensation",
            };
            let id = format!(
                "{}:{}:{}",
                a.kind.attribute(),
                packages[func.package].name,
                func.info.qualified()
            );
            let title = format!(
                "{what} `{}` → {}::{}",
                func.info.qualified(),
                a.saga,
                a.step
            );
            let item = match find_saga(&sagas, &a.saga) {
                None => Item::new(
                    Section::Handler,
                    id,
                    false,
                    title,
                    format!("no saga `{}` is declared in the crates checked", a.saga),
                ),
                Some(saga) => match find_step(saga, &a.step) {
                    None => Item::new(
                        Section::Handler,
                        id,
                        false,
                        title,
                        format!("saga `{}` declares no step {}", saga.ident, a.step),
                    ),
                    Some(i)
                        if a.kind == HandlerKind::Compensation && !saga.steps[i].compensable =>
                    {
                        Item::new(
                            Section::Handler,
                            id,
                            false,
                            title,
                            format!(
                                "step {}::{} is not declared `#[step(compensable)]`",
                                saga.ident, saga.steps[i].ident
                            ),
                        )
                    }
                    Some(i) => {
                        handlers
                            .entry((a.kind, (saga.ident.clone(), i)))
                            .or_default()
                            .push(func);
                        Item::new(
                            Section::Handler,
                            id,
                            true,
                            title,
                            format!("records `{}` of saga `{}`", saga.steps[i].wire, saga.wire),
                        )
                    }
                },
            };
            items.push(item.at(loc(&func.info.loc)));
        }
    }

    coverage(&sagas, &handlers, &mut items);
    let routed_failures = routes(packages, &scans, &sagas, &funcs, &mut items);
    unannotated(packages, &funcs, &routed_failures, &mut items);
    items
}

/// Each package names its data owner; so does each `saga_service!` service (its own `service-owners` entry
/// or the package's owner). A package without an owner passes only when it declares services and all of
/// them name one.
fn owners(packages: &[Package], scans: &[(usize, &FileScan)], items: &mut Vec<Item>) {
    const HOW: &str =
        "set `owner = \"...\"` in [package.metadata.saga-tracker] or saga-tracker.toml";
    for (index, p) in packages.iter().enumerate() {
        let at = format!("{}:{}", paths::display(&p.owner_file), p.owner_line);
        let mut services: Vec<(&str, &Loc)> = scans
            .iter()
            .filter(|(package, _)| *package == index)
            .flat_map(|(_, scan)| scan.routes.iter().map(|r| (r.service.as_str(), &r.loc)))
            .collect();
        services.sort_by_key(|(name, _)| *name);
        services.dedup_by_key(|(name, _)| *name);
        let all_services_named = !services.is_empty()
            && services
                .iter()
                .all(|(name, _)| p.service_owners.contains_key(*name));
        let title = format!("`{}` names its data owner", p.name);
        let id = format!("owner:{}", p.name);
        let item = match &p.owner {
            Some(owner) => Item::new(
                Section::Owner,
                id,
                true,
                title,
                format!("owner = \"{owner}\""),
            ),
            None if all_services_named => Item::new(
                Section::Owner,
                id,
                true,
                title,
                "no package owner; every service names its own",
            ),
            None => Item::new(Section::Owner, id, false, title, format!("missing: {HOW}")),
        };
        items.push(item.at(at.clone()));
        for (service, service_loc) in &services {
            let title = format!("service `{service}` names its data owner");
            let id = format!("owner:{}:{service}", p.name);
            let item = match (p.service_owners.get(*service), &p.owner) {
                (Some(owner), _) => Item::new(
                    Section::Owner,
                    id,
                    true,
                    title,
                    format!("service-owners.{service} = \"{owner}\""),
                ),
                (None, Some(owner)) => Item::new(
                    Section::Owner,
                    id,
                    true,
                    title,
                    format!("the package owner \"{owner}\""),
                ),
                (None, None) => Item::new(
                    Section::Owner,
                    id,
                    false,
                    title,
                    format!("missing: {HOW}, or `service-owners = {{ {service} = \"...\" }}`"),
                ),
            };
            items.push(item.at(loc(service_loc)));
        }
        for service in p.service_owners.keys() {
            if !services.iter().any(|(name, _)| name == service) {
                items.push(
                    Item::new(
                        Section::Owner,
                        format!("owner:{}:{service}", p.name),
                        false,
                        format!("service `{service}` names its data owner"),
                        format!("`service-owners` names `{service}`, but no saga_service! in `{}` declares it", p.name),
                    )
                    .at(at.clone()),
                );
            }
        }
    }
}

fn sources(packages: &[Package], files: &[ScannedFile], items: &mut Vec<Item>) {
    for (index, p) in packages.iter().enumerate() {
        let mine: Vec<&ScannedFile> = files.iter().filter(|f| f.package == index).collect();
        let parsed = mine.iter().filter(|f| f.result.is_ok()).count();
        items.push(
            Item::new(
                Section::Source,
                format!("sources:{}", p.name),
                !mine.is_empty(),
                format!("`{}` sources read", p.name),
                if mine.is_empty() {
                    format!("no .rs file under {}", paths::display(&p.src_dir))
                } else {
                    format!("{parsed} of {} files parsed", mine.len())
                },
            )
            .at(paths::display(&p.src_dir)),
        );
        for f in mine {
            if let Err(e) = &f.result {
                items.push(
                    Item::new(
                        Section::Source,
                        format!("parse:{}", paths::display(&f.path)),
                        false,
                        format!("`{}` parses", paths::display(&f.path)),
                        format!(
                            "{} (column {}); the other files were still checked",
                            e.message, e.column
                        ),
                    )
                    .at(loc(&e.loc)),
                );
            }
        }
    }
}

fn declarations(packages: &[Package], sagas: &[(usize, &SagaDecl)], items: &mut Vec<Item>) {
    if sagas.is_empty() {
        items.push(Item::new(
            Section::Saga,
            "sagas:any",
            false,
            "at least one saga is declared",
            "no `#[derive(Saga)]` enum in the crates checked; pass the shared saga crate with --manifest-path",
        ));
    }
    for (i, (package, saga)) in sagas.iter().enumerate() {
        let earlier = sagas[..i].iter().find(|(_, s)| s.ident == saga.ident);
        let steps: Vec<String> = saga
            .steps
            .iter()
            .map(|s| {
                if s.compensable {
                    format!("{} (compensable)", s.wire)
                } else {
                    s.wire.clone()
                }
            })
            .collect();
        let title = format!(
            "saga `{}` declared in `{}`",
            saga.ident, packages[*package].name
        );
        let item = match earlier {
            Some((_, first)) => Item::new(
                Section::Saga,
                format!("saga:{}#{}", saga.ident, i),
                false,
                title,
                format!(
                    "declared twice: also at {}; handlers cannot be matched unambiguously",
                    loc(&first.loc)
                ),
            ),
            None => Item::new(
                Section::Saga,
                format!("saga:{}", saga.ident),
                true,
                title,
                format!("wire name `{}`; steps: {}", saga.wire, steps.join(", ")),
            ),
        };
        items.push(item.at(loc(&saga.loc)));
    }
}

fn coverage(
    sagas: &[(usize, &SagaDecl)],
    handlers: &BTreeMap<(HandlerKind, StepKey), Vec<&Func<'_>>>,
    items: &mut Vec<Item>,
) {
    for (i, (_, saga)) in sagas.iter().enumerate() {
        if sagas[..i].iter().any(|(_, s)| s.ident == saga.ident) {
            continue;
        }
        for (index, step) in saga.steps.iter().enumerate() {
            let mut kinds = vec![HandlerKind::Step];
            if step.compensable {
                kinds.push(HandlerKind::Compensation);
            }
            for kind in kinds {
                let found = handlers
                    .get(&(kind, (saga.ident.clone(), index)))
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let (section, id, what) = match kind {
                    HandlerKind::Step => (
                        Section::Step,
                        format!("step:{}::{}", saga.ident, step.ident),
                        "step handler",
                    ),
                    HandlerKind::Compensation => (
                        Section::Compensation,
                        format!("compensation:{}::{}", saga.ident, step.ident),
                        "compensation",
                    ),
                };
                let title = format!(
                    "{}::{} (`{}`) has exactly one {what}",
                    saga.ident, step.ident, step.wire
                );
                let list = |fs: &[&Func<'_>]| {
                    fs.iter()
                        .map(|f| format!("`{}` at {}", f.info.qualified(), loc(&f.info.loc)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let (ok, detail) = match found.len() {
                    0 => (
                        false,
                        format!(
                            "missing: no #[{}({}, {})] function in the crates checked",
                            kind.attribute(),
                            saga.ident,
                            step.ident
                        ),
                    ),
                    1 => (true, list(found)),
                    n => (false, format!("duplicate: {n} handlers: {}", list(found))),
                };
                items.push(Item::new(section, id, ok, title, detail).at(loc(&step.loc)));
            }
        }
    }
}

/// Checks `saga_service!` routes; returns the functions that failed a route check (not flagged again).
fn routes<'a>(
    packages: &[Package],
    scans: &[(usize, &FileScan)],
    sagas: &[(usize, &SagaDecl)],
    funcs: &'a [Func<'a>],
    items: &mut Vec<Item>,
) -> Vec<*const FnInfo> {
    let mut flagged = Vec::new();
    for (package, scan) in scans {
        for route in &scan.routes {
            let what = match route.kind {
                HandlerKind::Step => "step",
                HandlerKind::Compensation => "compensate",
            };
            let handler = route.handler.join("::");
            let id = format!(
                "route:{}:{what}:{}::{}",
                route.service, route.saga, route.step
            );
            let title = format!(
                "`{}` routes {what} {}::{} to `{handler}`",
                route.service, route.saga, route.step
            );
            let target = find_saga(sagas, &route.saga).and_then(|s| {
                find_step(s, &StepRef::Ident(route.step.clone())).map(|i| (s.ident.clone(), i))
            });
            let Some((saga_ident, step_index)) = target else {
                items.push(
                    Item::new(
                        Section::Route,
                        id,
                        false,
                        title,
                        format!("no declared step {}::{}", route.saga, route.step),
                    )
                    .at(loc(&route.loc)),
                );
                continue;
            };
            let Some(name) = route.handler.last() else {
                continue;
            };
            let qualifiers: Vec<&String> = route.handler[..route.handler.len() - 1]
                .iter()
                .filter(|s| !matches!(s.as_str(), "crate" | "self" | "super" | "Self"))
                .collect();
            let mut candidates: Vec<&Func<'_>> =
                funcs.iter().filter(|f| &f.info.name == name).collect();
            if candidates.iter().any(|f| f.package == *package) {
                candidates.retain(|f| f.package == *package);
            }
            if let Some(q) = qualifiers.last() {
                let narrowed: Vec<&Func<'_>> = candidates
                    .iter()
                    .copied()
                    .filter(|f| {
                        f.info.module.last() == Some(*q) || f.info.impl_type.as_ref() == Some(*q)
                    })
                    .collect();
                if !narrowed.is_empty() {
                    candidates = narrowed;
                }
            }
            let matches_route = |f: &Func<'_>| {
                f.info.annotations.iter().any(|a| {
                    a.kind == route.kind
                        && find_saga(sagas, &a.saga).is_some_and(|s| {
                            s.ident == saga_ident && find_step(s, &a.step) == Some(step_index)
                        })
                })
            };
            let item = if let Some(good) = candidates.iter().find(|f| matches_route(f)) {
                Item::new(
                    Section::Route,
                    id,
                    true,
                    title,
                    format!(
                        "`{}` at {} is annotated",
                        good.info.qualified(),
                        loc(&good.info.loc)
                    ),
                )
            } else if let Some(first) = candidates.first() {
                for c in &candidates {
                    flagged.push(c.info as *const FnInfo);
                }
                let found: Vec<String> = first
                    .info
                    .annotations
                    .iter()
                    .map(|a| format!("#[{}({}, {})]", a.kind.attribute(), a.saga, a.step))
                    .collect();
                let detail = if found.is_empty() {
                    format!(
                        "routed handler `{}` at {} has no #[{}({}, {})]: its events are not recorded",
                        first.info.qualified(),
                        loc(&first.info.loc),
                        route.kind.attribute(),
                        route.saga,
                        route.step
                    )
                } else {
                    format!(
                        "routed handler `{}` at {} is annotated {} instead of #[{}({}, {})]",
                        first.info.qualified(),
                        loc(&first.info.loc),
                        found.join(", "),
                        route.kind.attribute(),
                        route.saga,
                        route.step
                    )
                };
                Item::new(Section::Route, id, false, title, detail)
            } else {
                Item::new(
                    Section::Route,
                    id,
                    false,
                    title,
                    format!(
                        "function `{name}` not found in the sources of {}; pass its crate with --manifest-path",
                        packages
                            .iter()
                            .map(|p| format!("`{}`", p.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            };
            items.push(item.at(loc(&route.loc)));
        }
    }
    flagged
}

fn unannotated(
    packages: &[Package],
    funcs: &[Func<'_>],
    already: &[*const FnInfo],
    items: &mut Vec<Item>,
) {
    for (index, p) in packages.iter().enumerate() {
        if p.patterns.is_empty() {
            continue;
        }
        let mut flagged = 0;
        for f in funcs.iter().filter(|f| f.package == index) {
            if f.info.has_saga_attribute
                || f.info.is_test
                || already.contains(&(f.info as *const FnInfo))
            {
                continue;
            }
            if let Some(reason) = pattern_reason(&p.patterns, f.info) {
                flagged += 1;
                items.push(
                    Item::new(
                        Section::Unannotated,
                        format!("unannotated:{}:{}", p.name, f.info.qualified()),
                        false,
                        format!(
                            "handler-like function `{}` is annotated",
                            f.info.qualified()
                        ),
                        format!("no #[saga_step]/#[saga_compensation], but {reason}"),
                    )
                    .at(loc(&f.info.loc)),
                );
            }
        }
        if flagged == 0 {
            items.push(Item::new(
                Section::Unannotated,
                format!("unannotated:{}", p.name),
                true,
                format!("every handler-like function in `{}` is annotated", p.name),
                "no un-annotated function matches the configured handler patterns",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("handle_*", "handle_refund"));
        assert!(!glob_match("handle_*", "on_refund"));
        assert!(glob_match("*::handlers", "api::handlers"));
        assert!(glob_match("h?ndle", "handle"));
        assert!(glob_match("*", ""));
    }
}
