//! The link-time registry of annotated handlers: every `#[saga_step]` and `#[saga_compensation]` function
//! registers a static [`StepDescriptor`], so a service can list and verify at start-up what it records (R13).
//!
//! ```
//! for d in saga_tracker::registry::descriptors() {
//!     println!("{} {}.{} -> {} ({}:{})", d.kind, d.saga_type, d.step, d.fn_path(), d.file, d.line);
//! }
//! ```

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;

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
#[derive(Debug, Clone, Copy)]
pub struct ServiceDescriptor {
    /// The service type's name, e.g. `ProductService`.
    pub name: &'static str,
    /// The wired handlers, in declaration order.
    pub handlers: &'static [&'static StepDescriptor],
    /// For each wired handler, the fn the service names and the fn the annotation is on (same order as
    /// `handlers`); [`ServiceDescriptor::verify`] checks that they are the same fn.
    #[doc(hidden)]
    pub identities: &'static [HandlerIdentity],
}

impl PartialEq for ServiceDescriptor {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.handlers == other.handlers
    }
}

impl Eq for ServiceDescriptor {}

/// The fn a service wires, and the fn its annotation marker belongs to (generated by `saga_service!`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct HandlerIdentity {
    /// The handler's path as written in the service.
    pub path: &'static str,
    /// The type of the annotated fn the marker was found for (`None`: generic fn, or no marker).
    pub annotated: fn() -> Option<TypeId>,
    /// The type of the fn value the service names.
    pub wired: fn() -> TypeId,
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
    /// The fn the service names is not the annotated fn whose marker the compile-time check found (for example
    /// a local un-annotated fn shadowing a glob-imported annotated fn of the same name).
    #[error(
        "service {service}: `{path}` is wired as {handler}, but the fn that path names is not annotated (an annotated fn of the same name was found through an import); annotate the wired fn, or wire the annotated one by its full path"
    )]
    NotAnnotated {
        /// The service.
        service: &'static str,
        /// The handler path as written in the service.
        path: &'static str,
        /// The annotated handler the marker belongs to.
        handler: String,
    },
}

impl ServiceDescriptor {
    /// Checks at start-up that every wired fn is the annotated fn (so it records its events) and is in the
    /// link-time registry.
    pub fn verify(&self) -> Result<(), VerifyError> {
        for (n, handler) in self.handlers.iter().enumerate() {
            if let Some(identity) = self.identities.get(n)
                && let Some(annotated) = (identity.annotated)()
                && annotated != (identity.wired)()
            {
                return Err(VerifyError::NotAnnotated {
                    service: self.name,
                    path: identity.path,
                    handler: handler.to_string(),
                });
            }
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

/// "This is the annotated `#[saga_step]` handler of step `STEP` of saga `S`". The attribute implements it for
/// `dyn <hidden marker trait>` beside a free handler fn; `saga_service!` requires it of every `step` entry.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "the fn wired to this `step` entry is not annotated with #[saga_step] for it",
    label = "annotate this fn #[saga_step({S}, <the step of this entry>, saga_id = ...)]",
    note = "a handler records its saga events only when annotated with the saga type and step of the entry it is wired to",
    note = "an annotated fn that shares its name with a module or type in scope is found through its path: wire it as `module::fn_name`"
)]
pub trait StepHandler<S: Saga, const STEP: u16> {}

/// "This is the annotated `#[saga_compensation]` handler of step `STEP` of saga `S`" (see [`StepHandler`]).
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "the fn wired to this `compensate` entry is not annotated with #[saga_compensation] for it",
    label = "annotate this fn #[saga_compensation({S}, <the step of this entry>, saga_id = ...)]",
    note = "a compensation records its saga events only when annotated with the saga type and step of the entry it is wired to",
    note = "an annotated fn that shares its name with a module or type in scope is found through its path: wire it as `module::fn_name`"
)]
pub trait CompensationHandler<S: Saga, const STEP: u16> {}

/// The descriptor of a handler marker (`saga_service!` lists its handlers' descriptors through it).
#[doc(hidden)]
pub trait HandlerDescriptor {
    /// The handler's descriptor.
    const DESCRIPTOR: &'static StepDescriptor;
    /// The type of the annotated fn (`None` for a generic fn, or for [`Unannotated`]).
    fn handler_type() -> Option<TypeId>;
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

/// Checks that a `step` entry's handler is annotated for it (generated code).
#[doc(hidden)]
pub const fn wired_step<
    S: Saga,
    const STEP: u16,
    H: ?Sized + StepHandler<S, STEP>,
    F: FnOnce() -> Marked<H>,
>(
    _lookup: &F,
) {
}

/// Checks that a `compensate` entry's handler is annotated for it (generated code).
#[doc(hidden)]
pub const fn wired_compensation<
    S: Saga,
    const STEP: u16,
    H: ?Sized + CompensationHandler<S, STEP>,
    F: FnOnce() -> Marked<H>,
>(
    _lookup: &F,
) {
}

/// Checks that step `STEP` of `S` has a compensation (generated code of `#[saga_compensation]`).
#[doc(hidden)]
pub const fn compensable<S: ?Sized + HasCompensation<STEP>, const STEP: u16>() {}

/// Checks that step `STEP` of `S` has no compensation (generated code of `saga_service!`, for a step whose
/// compensation the service does not wire).
#[doc(hidden)]
pub const fn without_compensation<S: ?Sized + WithoutCompensation<STEP>, const STEP: u16>() {}

/// The receiver of the method-call lookup `saga_service!` uses to find a handler's marker: the attribute's
/// hidden trait is implemented for `HandlerProbe`, the service's fallback for `&HandlerProbe`, so the marker
/// wins when it is in scope.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct HandlerProbe;

/// What the lookup found: `Marked<dyn marker>` for an annotated fn, `Marked<Unannotated>` otherwise.
#[doc(hidden)]
pub struct Marked<T: ?Sized>(PhantomData<fn() -> *const T>);

impl<T: ?Sized> Marked<T> {
    /// The value.
    pub const NEW: Marked<T> = Marked(PhantomData);
}

/// The marker `saga_service!` finds for a wired fn that is not annotated (the build fails anyway).
#[doc(hidden)]
pub struct Unannotated;

impl HandlerDescriptor for Unannotated {
    const DESCRIPTOR: &'static StepDescriptor = &UNANNOTATED;
    fn handler_type() -> Option<TypeId> {
        None
    }
}

/// The descriptor behind a marker lookup (`saga_service!`'s `DESCRIPTOR`).
#[doc(hidden)]
pub const fn descriptor_of<H: ?Sized + HandlerDescriptor, F: FnOnce() -> Marked<H>>(
    _lookup: &F,
) -> &'static StepDescriptor {
    H::DESCRIPTOR
}

/// The annotated fn's type behind a marker lookup.
#[doc(hidden)]
pub const fn handler_type_of<H: ?Sized + HandlerDescriptor, F: FnOnce() -> Marked<H>>(
    _lookup: &F,
) -> fn() -> Option<TypeId> {
    H::handler_type
}

/// The type id of a value (the generated code passes a fn item).
#[doc(hidden)]
pub fn type_id_of_val<T: 'static>(_value: &T) -> TypeId {
    TypeId::of::<T>()
}

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
