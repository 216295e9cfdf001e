//! The link-time registry of annotated handlers: every `#[saga_step]` and `#[saga_compensation]` function
//! registers a static [`StepDescriptor`], so a service can list and verify at start-up what it records (R13).
//!
//! ```
//! for d in saga_tracker::registry::descriptors() {
//!     println!("{} {}.{} -> {} ({}:{})", d.kind, d.saga_type, d.step, d.fn_path(), d.file, d.line);
//! }
//! ```

use std::fmt;

use crate::saga::Saga;

/// Whether a handler runs a step or its compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HandlerKind {
    /// `#[saga_step]`: records STARTED, then SUCCEEDED or FAILED.
    Step,
    /// `#[saga_compensation]`: records COMPENSATION_STARTED, then COMPENSATED or COMPENSATION_FAILED.
    Compensation,
}

impl HandlerKind {
    /// `"step"` or `"compensation"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HandlerKind::Step => "step",
            HandlerKind::Compensation => "compensation",
        }
    }
}

impl fmt::Display for HandlerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one annotated handler records, and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepDescriptor {
    /// The saga type's wire name.
    pub saga_type: &'static str,
    /// The step's wire name.
    pub step: &'static str,
    /// The step's enum variant.
    pub variant: &'static str,
    /// Step or compensation.
    pub kind: HandlerKind,
    /// `module_path!()` where the handler is defined.
    pub module_path: &'static str,
    /// The handler's name (for a method, the method name).
    pub fn_name: &'static str,
    /// Whether the handler is a method (takes `self`); methods are listed under their module, not their type.
    pub is_method: bool,
    /// The source file.
    pub file: &'static str,
    /// The line of the handler's `fn`.
    pub line: u32,
    /// The step's position in the saga's declaration order, from 0 (schema v2 `stepIndex`).
    pub step_index: u16,
    /// How many steps the saga declares (schema v2 `stepCount`; 0 only for a handler that is not annotated).
    pub step_count: u16,
    /// Whether the step declares a compensation (schema v2 `compensable`).
    pub compensable: bool,
}

impl StepDescriptor {
    /// The descriptor of step `index` of saga `S` (used by the generated code).
    #[allow(clippy::too_many_arguments)]
    pub const fn of<S: Saga>(
        index: u16,
        kind: HandlerKind,
        module_path: &'static str,
        fn_name: &'static str,
        is_method: bool,
        file: &'static str,
        line: u32,
    ) -> StepDescriptor {
        let decl = &S::STEPS[index as usize];
        StepDescriptor {
            saga_type: S::NAME,
            step: decl.name,
            variant: decl.variant,
            kind,
            module_path,
            fn_name,
            is_method,
            file,
            line,
            step_index: index,
            // `#[derive(Saga)]` rejects more than 65535 steps.
            step_count: S::STEPS.len() as u16,
            compensable: decl.compensable,
        }
    }

    /// `module::fn_name` (for a method: `module::<impl>::method`).
    pub fn fn_path(&self) -> String {
        if self.is_method {
            format!("{}::<impl>::{}", self.module_path, self.fn_name)
        } else {
            format!("{}::{}", self.module_path, self.fn_name)
        }
    }

    /// True when `other` describes the same handler (same saga, step, kind and function).
    pub fn same_handler(&self, other: &StepDescriptor) -> bool {
        self.saga_type == other.saga_type
            && self.step == other.step
            && self.kind == other.kind
            && self.module_path == other.module_path
            && self.fn_name == other.fn_name
    }
}

impl fmt::Display for StepDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}.{} by {} at {}:{}",
            self.kind,
            self.saga_type,
            self.step,
            self.fn_path(),
            self.file,
            self.line
        )
    }
}

inventory::collect!(StepDescriptor);

/// Every registered handler in this binary, sorted by saga type, step, kind and path.
pub fn descriptors() -> Vec<&'static StepDescriptor> {
    let mut all: Vec<&'static StepDescriptor> =
        inventory::iter::<StepDescriptor>.into_iter().collect();
    all.sort_by(|a, b| {
        (
            a.saga_type,
            a.step,
            a.kind,
            a.module_path,
            a.fn_name,
            a.line,
        )
            .cmp(&(
                b.saga_type,
                b.step,
                b.kind,
                b.module_path,
                b.fn_name,
                b.line,
            ))
    });
    all
}

/// The registered handlers of one saga type.
pub fn descriptors_of(saga_type: &str) -> Vec<&'static StepDescriptor> {
    descriptors()
        .into_iter()
        .filter(|d| d.saga_type == saga_type)
        .collect()
}

/// Whether `descriptor`'s handler is in the link-time registry.
pub fn is_registered(descriptor: &StepDescriptor) -> bool {
    inventory::iter::<StepDescriptor>
        .into_iter()
        .any(|d| d.same_handler(descriptor))
}

/// A service declared with `saga_service!`: its name and the handlers it wires.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDescriptor {
    /// The service type's name, e.g. `ProductService`.
    pub name: &'static str,
    /// The wired handlers, in declaration order.
    pub handlers: &'static [&'static StepDescriptor],
}

impl PartialEq for ServiceDescriptor {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.handlers == other.handlers
    }
}

impl Eq for ServiceDescriptor {}

/// Why [`ServiceDescriptor::verify`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A wired handler is missing from the link-time registry (the platform dropped `inventory` constructors).
    #[error(
        "service {service}: handler {handler} is wired but not in the saga-tracker registry; its events would still be recorded, but the release checklist cannot see it"
    )]
    NotRegistered {
        /// The service.
        service: &'static str,
        /// The handler.
        handler: String,
    },
}

impl ServiceDescriptor {
    /// Checks at start-up that every wired handler is in the link-time registry (that it is the annotated fn
    /// is checked at compile time).
    pub fn verify(&self) -> Result<(), VerifyError> {
        for handler in self.handlers {
            if !is_registered(handler) {
                return Err(VerifyError::NotRegistered {
                    service: self.name,
                    handler: handler.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// "This is the annotated `#[saga_step]` handler of step `STEP` of saga `S`", implemented for the
/// [`HandlerKey`] of the fn (where it is defined) by the attribute; `L` is a type local to the fn's body, so
/// the impl breaks no orphan rule and two fns never conflict. `saga_service!` requires it of every `step` entry.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "the fn wired to this `step` entry is not annotated with #[saga_step] for it",
    label = "annotate this fn #[saga_step({S}, <the step of this entry>, saga_id = ...)]",
    note = "a handler records its saga events only when annotated with the saga type and step of the entry it is wired to",
    note = "a handler is wired by its path to the module where it is defined (`reserve_stock`, `stock::reserve_stock`, `super::reserve_stock`, `crate::stock::reserve_stock`), not by a name brought in with `use`"
)]
pub trait StepHandler<S: Saga, const STEP: u16, L> {
    /// The handler's descriptor.
    const DESCRIPTOR: &'static StepDescriptor;
}

/// "This is the annotated `#[saga_compensation]` handler of step `STEP` of saga `S`" (see [`StepHandler`]).
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "the fn wired to this `compensate` entry is not annotated with #[saga_compensation] for it",
    label = "annotate this fn #[saga_compensation({S}, <the step of this entry>, saga_id = ...)]",
    note = "a compensation records its saga events only when annotated with the saga type and step of the entry it is wired to",
    note = "a handler is wired by its path to the module where it is defined (`release_stock`, `stock::release_stock`, `super::release_stock`, `crate::stock::release_stock`), not by a name brought in with `use`"
)]
pub trait CompensationHandler<S: Saga, const STEP: u16, L> {
    /// The handler's descriptor.
    const DESCRIPTOR: &'static StepDescriptor;
}

/// The key of a handler fn: a hash of the path of the module it is defined in and its name ([`handler_key`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct HandlerKey<const KEY: u64>;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const fn fnv(mut hash: u64, bytes: &[u8], from: usize, to: usize) -> u64 {
    let mut i = from;
    while i < to {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The key of fn `name` defined in module `module_path` (the attribute passes `module_path!()`).
#[doc(hidden)]
pub const fn handler_key(module_path: &str, name: &str) -> u64 {
    let module = module_path.as_bytes();
    let hash = fnv(FNV_OFFSET, module, 0, module.len());
    let hash = fnv(hash, b"::", 0, 2);
    fnv(hash, name.as_bytes(), 0, name.len())
}

/// The key of the fn a service names by `segments` (leading `::` when `absolute`), written in module
/// `module_path`: `self`, `super` and `crate` are resolved against the module's path, any other segment is a
/// module below it (or, after `::`, a crate).
#[doc(hidden)]
pub const fn wired_key(module_path: &str, segments: &[&str], absolute: bool) -> u64 {
    let module = module_path.as_bytes();
    // The base module is `module[..end]`.
    let mut end = if absolute { 0 } else { module.len() };
    let mut first = 0;
    while first < segments.len() && !absolute {
        let segment = segments[first];
        if str_eq(segment, "self") {
        } else if str_eq(segment, "super") {
            // Up one module: cut at the last `::`.
            let mut cut = end;
            while cut >= 2 && !(module[cut - 1] == b':' && module[cut - 2] == b':') {
                cut -= 1;
            }
            assert!(
                cut >= 2,
                "too many leading `super`s in a wired handler's path"
            );
            end = cut - 2;
        } else if str_eq(segment, "crate") && first == 0 {
            let mut cut = 0;
            while cut < module.len() && module[cut] != b':' {
                cut += 1;
            }
            end = cut;
        } else {
            break;
        }
        first += 1;
    }
    let mut hash = fnv(FNV_OFFSET, module, 0, end);
    let mut i = first;
    while i < segments.len() {
        if end > 0 || i > first {
            hash = fnv(hash, b"::", 0, 2);
        }
        let segment = segments[i].as_bytes();
        hash = fnv(hash, segment, 0, segment.len());
        i += 1;
    }
    hash
}

/// Checks that a `step` entry's handler is annotated for it and gives its descriptor (generated code).
#[doc(hidden)]
pub const fn wired_step<S: Saga, const STEP: u16, H: StepHandler<S, STEP, L>, L>()
-> &'static StepDescriptor {
    H::DESCRIPTOR
}

/// Checks that a `compensate` entry's handler is annotated for it and gives its descriptor (generated code).
#[doc(hidden)]
pub const fn wired_compensation<S: Saga, const STEP: u16, H: CompensationHandler<S, STEP, L>, L>()
-> &'static StepDescriptor {
    H::DESCRIPTOR
}

/// Implemented by `#[derive(Saga)]` for every step declared `#[step(compensable)]`.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` declares this step without a compensation, so it cannot have a #[saga_compensation] handler",
    label = "this step has no compensation in the declaration of `{Self}`",
    note = "mark the step `#[step(compensable)]` in the declaration of `{Self}`, or use #[saga_step] if this fn is the step itself"
)]
pub trait HasCompensation<const STEP: u16> {}

/// Implemented by `#[derive(Saga)]` for every step declared without a compensation.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` declares this step with a compensation, but the service handles the step without wiring its compensation",
    label = "compensable step: the service must also list `compensate {Self}::<this step> => release_fn`",
    note = "add `compensate {Self}::<this step> => release_fn,` where `release_fn` is annotated with #[saga_compensation({Self}, <this step>)]"
)]
pub trait WithoutCompensation<const STEP: u16> {}

/// Checks that step `STEP` of `S` has a compensation (generated code of `#[saga_compensation]`).
#[doc(hidden)]
pub const fn compensable<S: ?Sized + HasCompensation<STEP>, const STEP: u16>() {}

/// Checks that step `STEP` of `S` has no compensation (generated code of `saga_service!`, for a step whose
/// compensation the service does not wire).
#[doc(hidden)]
pub const fn without_compensation<S: ?Sized + WithoutCompensation<STEP>, const STEP: u16>() {}

#[cfg(test)]
mod tests {
    use super::{handler_key, wired_key};

    #[test]
    fn a_wired_path_has_the_key_of_the_fn_defined_there() {
        let f = handler_key("app::stock", "reserve");
        assert_eq!(wired_key("app::stock", &["reserve"], false), f);
        assert_eq!(wired_key("app::stock", &["self", "reserve"], false), f);
        assert_eq!(wired_key("app", &["stock", "reserve"], false), f);
        assert_eq!(
            wired_key("app::wiring", &["super", "stock", "reserve"], false),
            f
        );
        assert_eq!(
            wired_key("app::a::b", &["super", "super", "stock", "reserve"], false),
            f
        );
        assert_eq!(
            wired_key("app::wiring::deep", &["crate", "stock", "reserve"], false),
            f
        );
        assert_eq!(wired_key("other::x", &["app", "stock", "reserve"], true), f);
        // An import does not change where a fn is defined.
        assert_ne!(wired_key("app::wiring", &["reserve"], false), f);
        assert_ne!(wired_key("app::stock", &["reserve2"], false), f);
        assert_ne!(handler_key("app::stoc", "kreserve"), f);
    }
}
