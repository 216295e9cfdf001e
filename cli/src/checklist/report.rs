//! Checklist items and their two renderings: a Markdown checklist for people and JSON for CI.

use serde::Serialize;

use super::config::Package;
use crate::paths;

/// The sections of the checklist, in print order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// Each service names its data owner.
    Owner,
    /// Every source file was read.
    Source,
    /// Saga declarations.
    Saga,
    /// Every declared step has exactly one handler.
    Step,
    /// Every compensable step has exactly one compensation.
    Compensation,
    /// Every annotation refers to a declared step.
    Handler,
    /// Every routed handler is annotated.
    Route,
    /// Functions that look like handlers are annotated.
    Unannotated,
}

impl Section {
    fn heading(self) -> &'static str {
        match self {
            Section::Owner => "Data owners",
            Section::Source => "Source files",
            Section::Saga => "Saga declarations",
            Section::Step => "Every declared step has exactly one step handler",
            Section::Compensation => "Every compensable step has exactly one compensation",
            Section::Handler => "Annotated handlers",
            Section::Route => "Routed handlers (saga_service!) are annotated",
            Section::Unannotated => "Handler-like functions without annotation",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// A stable identifier, e.g. `step:OrderSaga::ReserveStock`.
    pub id: String,
    /// The section.
    pub section: Section,
    /// Passed?
    pub ok: bool,
    /// One line saying what is checked.
    pub title: String,
    /// `path:line`, when the item has a place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The evidence or the reason it fails.
    pub detail: String,
}

impl Item {
    /// A new item.
    pub fn new(
        section: Section,
        id: impl Into<String>,
        ok: bool,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Item {
            id: id.into(),
            section,
            ok,
            title: title.into(),
            location: None,
            detail: detail.into(),
        }
    }

    /// With a location.
    pub fn at(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }
}

#[derive(Serialize)]
struct JsonPackage<'a> {
    name: &'a str,
    manifest: String,
    owner: Option<&'a str>,
}

#[derive(Serialize)]
struct Summary {
    items: usize,
    passed: usize,
    failed: usize,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    ok: bool,
    summary: Summary,
    packages: Vec<JsonPackage<'a>>,
    items: &'a [Item],
}

fn summary(items: &[Item]) -> Summary {
    let failed = items.iter().filter(|i| !i.ok).count();
    Summary {
        items: items.len(),
        passed: items.len() - failed,
        failed,
    }
}

/// The JSON document: `{ok, summary, packages, items: [{id, section, ok, title, location?, detail}]}`.
pub fn json(packages: &[Package], items: &[Item]) -> String {
    let report = JsonReport {
        ok: items.iter().all(|i| i.ok),
        summary: summary(items),
        packages: packages
            .iter()
            .map(|p| JsonPackage {
                name: &p.name,
                manifest: paths::display(&p.manifest),
                owner: p.owner.as_deref(),
            })
            .collect(),
        items,
    };
    // Serializing plain data to a String cannot fail; fall back to an explicit document if it ever did.
    serde_json::to_string_pretty(&report)
        .unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":{:?}}}", e.to_string()))
}

/// The Markdown checklist: a heading per section and `- [x] ✓` / `- [ ] ✗` per item.
pub fn markdown(packages: &[Package], items: &[Item]) -> String {
    use std::fmt::Write;
    let s = summary(items);
    let mut out = String::from("# Release checklist: saga tracker events recorded\n\n");
    if s.failed == 0 {
        let _ = writeln!(out, "**✓ PASSED**: all {} items pass.\n", s.items);
    } else {
        let _ = writeln!(
            out,
            "**✗ FAILED**: {} of {} items fail.\n",
            s.failed, s.items
        );
    }
    let _ = writeln!(out, "Crates checked:\n");
    for p in packages {
        let owner = p
            .owner
            .as_deref()
            .map_or_else(|| "no owner named".to_owned(), |o| format!("owner {o}"));
        let _ = writeln!(
            out,
            "- `{}` ({owner}), `{}`",
            p.name,
            paths::display(&p.manifest)
        );
    }
    let mut sections: Vec<Section> = items.iter().map(|i| i.section).collect();
    sections.sort();
    sections.dedup();
    for section in sections {
        let _ = writeln!(out, "\n## {}\n", section.heading());
        for item in items.iter().filter(|i| i.section == section) {
            let mark = if item.ok { "- [x] ✓" } else { "- [ ] ✗" };
            let _ = write!(out, "{mark} {}", item.title);
            if let Some(location) = &item.location {
                let _ = write!(out, " (`{location}`)");
            }
            if !item.detail.is_empty() {
                let _ = write!(out, ": {}", item.detail);
            }
            out.push('\n');
        }
    }
    out
}
