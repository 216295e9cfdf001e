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
    /// How many steps the saga declares (schema v2 `stepCount`; 0 only for [`UNANNOTATED`]).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDescriptor {
    /// The service type's name, e.g. `ProductService`.
    pub name: &'static str,
    /// The wired handlers, in declaration order.
    pub handlers: &'static [&'static StepDescriptor],
}

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
    /// Checks at start-up that every wired handler is in the link-time registry.
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

/// Implemented by the hidden marker type `#[saga_step]` emits next to a free handler fn (same ident, type
/// namespace): "this fn is the annotated handler of step `STEP` of saga `S`" (`COMPENSATION`: of its compensation).
/// `saga_service!` requires it of every handler it wires.
#[doc(hidden)]
pub trait StepHandler<S: Saga, const STEP: u16, const COMPENSATION: bool> {}

/// The descriptor of a handler marker (`saga_service!` lists its handlers' descriptors through it).
#[doc(hidden)]
pub trait HandlerDescriptor {
    /// The handler's descriptor.
    const DESCRIPTOR: &'static StepDescriptor;
}

/// Implemented by `#[derive(Saga)]` for every step declared `#[step(compensable)]`.
#[doc(hidden)]
pub trait HasCompensation<const STEP: u16> {}

/// Implemented by `#[derive(Saga)]` for every step declared without a compensation.
#[doc(hidden)]
pub trait WithoutCompensation<const STEP: u16> {}

/// The descriptor `saga_service!` gives a wired name that is not an annotated handler (the build fails anyway).
#[doc(hidden)]
pub const UNANNOTATED: StepDescriptor = StepDescriptor {
    saga_type: "",
    step: "",
    variant: "",
    kind: HandlerKind::Step,
    module_path: "",
    fn_name: "",
    is_method: false,
    file: "",
    line: 0,
    step_index: 0,
    step_count: 0,
    compensable: false,
};
