//! Scoped type registries: resolve a config's `type='...'` the way mmengine's `Registry.get` does,
//! without global state.
//!
//! mmengine keeps one registry *tree* per kind (`MODELS`, `TRANSFORMS`, `TASK_UTILS`, ...;
//! `mmengine/registry/root.py:14-67`). The root node has scope `mmengine`; every OpenMMLab package
//! adds one child node per tree (`mmdet/registry.py:35-121`, `mmyolo/registry.py:32-103`,
//! `mmrazor/registry/registry.py:58-105`). mmyolo and mmrazor are children of the *root*, siblings
//! of mmdet, which is why mmyolo configs write `type='mmdet.PackDetInputs'`.
//!
//! Unlike mmengine, the current scope is a value ([`BuildScope`]) that the builder passes down,
//! never a process-wide `DefaultScope`. Entries are const data submitted with `inventory`
//! ([`register_type!`](crate::register_type!)); the payload is opaque here (the backend stores its builder functions in
//! it and downcasts), so this module never knows about libtorch.
//!
//! What this module must never do: fall back to importing Python paths (mmengine's
//! `get_object_from_string`, `registry.py:498-508`) — a name is either registered or an error.

mod render;
mod upstream;

pub use render::{render_registry, render_registry_json, AdapterListing, RegistryListing};
pub use upstream::{upstream_catalogue, UpstreamCatalogue};

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;

/// One statically registered type: const data, submitted with [`register_type!`](crate::register_type!).
///
/// `payload` is whatever the registering crate wants to find again (for the backend, a builder
/// function); the core never looks inside it.
#[derive(Clone, Copy)]
pub struct TypeRegistration {
    /// Package scope (`mmdet`, `mmyolo`, `mmrazor`, `mmengine`).
    pub scope: &'static str,
    /// Registry kind (one of [`KINDS`], e.g. `model`, `transform`, `task_util`).
    pub kind: &'static str,
    /// Type name as configs spell it (`CSPNeXt`).
    pub name: &'static str,
    pub payload: &'static (dyn Any + Sync),
    /// `module_path!()` of the registration, reported on duplicates.
    pub location: &'static str,
}

impl fmt::Debug for TypeRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypeRegistration")
            .field("scope", &self.scope)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl TypeRegistration {
    /// The payload as `T`, if it is one.
    pub fn payload<T: Any>(&self) -> Option<&'static T> {
        let payload: &'static dyn Any = self.payload;
        payload.downcast_ref::<T>()
    }
}

inventory::collect!(TypeRegistration);

/// Registers a type statically:
/// `register_type!(scope: "mmyolo", kind: "model", name: "CSPNeXt", payload: &BUILDER);`
#[macro_export]
macro_rules! register_type {
    (scope: $s:expr, kind: $k:expr, name: $n:expr, payload: $p:expr) => {
        $crate::inventory::submit! {
            $crate::scoped::TypeRegistration {
                scope: $s, kind: $k, name: $n, payload: $p, location: module_path!()
            }
        }
    };
}

/// The root scope of every tree (`mmengine/registry/root.py`).
pub const ROOT_SCOPE: &str = "mmengine";

/// The OpenMMLab scope tree `(scope, parent)`: mmdet, mmyolo and mmrazor are siblings under the
/// root (`mmyolo/registry.py:59` passes `parent=MMENGINE_MODELS`, not mmdet's).
pub const OPENMMLAB_SCOPES: &[(&str, Option<&str>)] = &[
    (ROOT_SCOPE, None),
    ("mmdet", Some(ROOT_SCOPE)),
    ("mmyolo", Some(ROOT_SCOPE)),
    ("mmrazor", Some(ROOT_SCOPE)),
];

/// Registry kinds: our identifier and mmengine's registry name (`root.py:14-67`), which
/// mmengine's error messages print (`mmdet::task util registry`).
pub const KINDS: &[(&str, &str)] = &[
    ("runner", "runner"),
    ("runner_constructor", "runner constructor"),
    ("loop", "loop"),
    ("hook", "hook"),
    ("strategy", "strategy"),
    ("dataset", "dataset"),
    ("data_sampler", "data sampler"),
    ("transform", "transform"),
    ("model", "model"),
    ("model_wrapper", "model_wrapper"),
    ("weight_initializer", "weight initializer"),
    ("optimizer", "optimizer"),
    ("optim_wrapper", "optim_wrapper"),
    ("optim_wrapper_constructor", "optimizer wrapper constructor"),
    ("param_scheduler", "parameter scheduler"),
    ("metric", "metric"),
    ("evaluator", "evaluator"),
    ("task_util", "task util"),
    ("visualizer", "visualizer"),
    ("vis_backend", "vis_backend"),
    ("log_processor", "log_processor"),
    ("inferencer", "inferencer"),
    ("function", "function"),
];

/// Our kind identifier for a kind given either way (`task_util` or mmengine's `task util`).
pub fn canonical_kind(kind: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(ours, theirs)| *ours == kind || *theirs == kind)
        .map(|(ours, _)| *ours)
}

/// Where the current scope of a build came from (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeOrigin {
    /// `_scope_` in a dict being built (applies to that dict's whole subtree).
    ScopeKey,
    /// Given by the caller, like `DetInferencer(scope='mmyolo')`.
    Explicit,
    /// The config's `default_scope`.
    DefaultScope,
    /// Nothing given: DetInferencer's default `scope='mmdet'`.
    InferencerDefault,
    /// Nothing said anything: the root scope.
    Root,
}

impl fmt::Display for ScopeOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScopeOrigin::ScopeKey => "`_scope_` of the dict being built",
            ScopeOrigin::Explicit => "the scope given by the caller",
            ScopeOrigin::DefaultScope => "the config's `default_scope`",
            ScopeOrigin::InferencerDefault => "DetInferencer's default scope (no scope given)",
            ScopeOrigin::Root => "the root scope (no scope given)",
        })
    }
}

/// The scope a build runs in, passed down explicitly (mmengine uses the global `DefaultScope`).
///
/// Precedence, as the real mmengine behaves (`registry/tests/data/registry_semantics.json`, case
/// "DetInferencer(scope='mmyolo') with `_scope_='mmrazor'`"):
/// 1. `_scope_` in the dict being built, for its whole subtree ([`BuildScope::enter`];
///    `build_functions.py:94-95` → `switch_scope_and_registry` → `overwrite_default_scope`);
/// 2. the caller's explicit scope (DetInferencer's `scope=` *replaces* the config's
///    `default_scope`, `mmdet/apis/det_inferencer.py:86-100`);
/// 3. the config's `default_scope`;
/// 4. the root scope `mmengine` (`Runner` uses `cfg.get('default_scope', 'mmengine')`).
///
/// A `type='mmdet.X'` prefix does NOT change the scope of X's nested builds (only `_scope_` does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildScope {
    scope: String,
    origin: ScopeOrigin,
}

impl BuildScope {
    /// The starting scope of a build from the caller's explicit scope and the config's
    /// `default_scope` (the explicit one wins).
    pub fn new(explicit: Option<&str>, default_scope: Option<&str>) -> BuildScope {
        match (explicit, default_scope) {
            (Some(s), _) => BuildScope::with_origin(s, ScopeOrigin::Explicit),
            (None, Some(s)) => BuildScope::with_origin(s, ScopeOrigin::DefaultScope),
            (None, None) => BuildScope::root(),
        }
    }

    /// The root scope `mmengine`.
    pub fn root() -> BuildScope {
        BuildScope::with_origin(ROOT_SCOPE, ScopeOrigin::Root)
    }

    pub fn with_origin(scope: &str, origin: ScopeOrigin) -> BuildScope {
        BuildScope {
            scope: scope.to_owned(),
            origin,
        }
    }

    /// The scope for building a dict whose `_scope_` is `dict_scope` (and its whole subtree).
    pub fn enter(&self, dict_scope: Option<&str>) -> BuildScope {
        match dict_scope {
            Some(s) => BuildScope::with_origin(s, ScopeOrigin::ScopeKey),
            None => self.clone(),
        }
    }

    /// [`BuildScope::enter`] with the `_scope_` string of a JSON dict, if it has one.
    pub fn enter_dict(&self, dict: &serde_json::Value) -> BuildScope {
        self.enter(dict.get("_scope_").and_then(|v| v.as_str()))
    }

    pub fn name(&self) -> &str {
        &self.scope
    }

    pub fn origin(&self) -> ScopeOrigin {
        self.origin
    }
}

impl fmt::Display for BuildScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.scope, self.origin)
    }
}

/// Splits `scope.Type` at the FIRST dot (`Registry.split_scope_key`, `registry.py:182-202`).
pub fn split_scope_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('.') {
        Some((scope, rest)) => (Some(scope), rest),
        None => (None, key),
    }
}

/// Registry errors; every variant says what would fix it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("{}", not_found_message(.0))]
    NotFound(Box<NotFound>),
    #[error(
        "`{name}` is registered twice in the {scope}::{kind} registry: at {first} and at {second}; \
         remove one of the registrations or register one of them in another scope"
    )]
    Duplicate {
        kind: String,
        scope: String,
        name: String,
        first: String,
        second: String,
    },
    #[error(
        "unknown scope `{scope}`{}; known scopes: {}{}",
        context_suffix(.context), .known.join(", "), did_you_mean(.suggestions)
    )]
    UnknownScope {
        scope: String,
        context: String,
        known: Vec<String>,
        suggestions: Vec<String>,
    },
    #[error(
        "unknown registry kind `{kind}`{}; known kinds: {}{}",
        context_suffix(.context), .known.join(", "), did_you_mean(.suggestions)
    )]
    UnknownKind {
        kind: String,
        context: String,
        known: Vec<String>,
        suggestions: Vec<String>,
    },
    #[error("scope `{scope}` already exists with parent {existing:?}; cannot add it with parent {requested:?}")]
    ScopeExists {
        scope: String,
        existing: Option<String>,
        requested: Option<String>,
    },
}

fn context_suffix(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!(" ({context})")
    }
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!(
            "; did you mean {}?",
            suggestions
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Everything known about a failed lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub kind: String,
    /// The key as written (`mmdet.CSPNeXt`).
    pub type_name: String,
    /// The scope the lookup ran in.
    pub current_scope: String,
    /// Scopes whose own entries were searched, in order.
    pub searched: Vec<String>,
    /// Scopes where the bare name IS registered (in this kind) with mmcompat.
    pub registered_in: Vec<String>,
    /// Scopes where the real OpenMMLab packages register the bare name (this kind), from the
    /// upstream catalogue: the type exists upstream, mmcompat just does not implement it.
    pub upstream_in: Vec<String>,
    /// Kinds where the bare name is registered instead (a transform used as a model...).
    pub other_kinds: Vec<String>,
    /// Closest registered names reachable from the current scope.
    pub suggestions: Vec<String>,
    /// What mmcompat does run instead, filled in by the caller that knows it (the spec stage
    /// names the supported detector families for an upstream model type it lacks); empty here.
    pub implemented: Vec<String>,
}

fn not_found_message(nf: &NotFound) -> String {
    let (_, bare) = split_scope_key(&nf.type_name);
    let mut msg = format!(
        "`{}` is not a registered {} type in scope {} (searched {})",
        nf.type_name,
        nf.kind,
        nf.current_scope,
        if nf.searched.is_empty() {
            "nothing: unknown scope prefix".to_owned()
        } else {
            nf.searched.join(" → ")
        }
    );
    if !nf.registered_in.is_empty() {
        let scopes = nf.registered_in.join(" and ");
        let writes: Vec<String> = nf
            .registered_in
            .iter()
            .map(|s| format!("`{s}.{bare}`"))
            .collect();
        msg.push_str(&format!(
            "; `{bare}` is registered in {scopes}; write {} or pass scope {}",
            writes.join(" or "),
            nf.registered_in.join(" or ")
        ));
    } else if !nf.upstream_in.is_empty() {
        msg.push_str(&format!(
            "; `{bare}` is an {} {} type that mmcompat does not implement",
            nf.upstream_in.join("/"),
            nf.kind
        ));
        if !nf.implemented.is_empty() {
            msg.push_str(&format!(
                " (supported families: {})",
                nf.implemented.join(", ")
            ));
        }
    }
    if !nf.other_kinds.is_empty() {
        msg.push_str(&format!(
            "; `{bare}` is registered as a {} type, not a {}",
            nf.other_kinds.join("/"),
            nf.kind
        ));
    }
    msg.push_str(&did_you_mean(&nf.suggestions));
    msg
}

/// All registries: the scope tree and, per kind, the entries per scope.
#[derive(Debug, Clone)]
pub struct Registries {
    /// scope → parent, sorted by scope.
    scopes: BTreeMap<String, Option<String>>,
    /// kind → scope → name → entry.
    entries: BTreeMap<&'static str, BTreeMap<String, BTreeMap<String, TypeRegistration>>>,
}

impl Default for Registries {
    fn default() -> Self {
        Registries::new()
    }
}

impl Registries {
    /// Empty registries over the OpenMMLab scope tree ([`OPENMMLAB_SCOPES`]).
    pub fn new() -> Registries {
        let scopes = OPENMMLAB_SCOPES
            .iter()
            .map(|(s, p)| ((*s).to_owned(), p.map(str::to_owned)))
            .collect();
        Registries {
            scopes,
            entries: BTreeMap::new(),
        }
    }

    /// Every `register_type!` submission linked into this binary.
    ///
    /// Remember that a plugin crate that is never referenced is dropped by the linker together
    /// with its registrations (rust-notes.md §4): the binary must reference it.
    pub fn from_inventory() -> Result<Registries, RegistryError> {
        let mut regs = Registries::new();
        let mut all: Vec<&TypeRegistration> =
            inventory::iter::<TypeRegistration>.into_iter().collect();
        // inventory's order is unspecified; sort so that duplicate errors are deterministic.
        all.sort_by_key(|r| (r.kind, r.scope, r.name, r.location));
        for reg in all {
            regs.add(*reg)?;
        }
        Ok(regs)
    }

    /// Adds a scope under `parent` (None = a new root). Adding an existing scope with the same
    /// parent is a no-op.
    pub fn add_scope(&mut self, scope: &str, parent: Option<&str>) -> Result<(), RegistryError> {
        if let Some(existing) = self.scopes.get(scope) {
            if existing.as_deref() == parent {
                return Ok(());
            }
            return Err(RegistryError::ScopeExists {
                scope: scope.to_owned(),
                existing: existing.clone(),
                requested: parent.map(str::to_owned),
            });
        }
        if let Some(p) = parent {
            self.check_scope(p, &format!("parent of scope `{scope}`"))?;
        }
        self.scopes
            .insert(scope.to_owned(), parent.map(str::to_owned));
        Ok(())
    }

    /// Adds one entry (programmatic registration, e.g. for tests).
    /// Duplicate name in one scope and kind → [`RegistryError::Duplicate`]
    /// (mmengine: `KeyError("{name} is already registered ...")`, `registry.py:586-613`).
    pub fn add(&mut self, reg: TypeRegistration) -> Result<(), RegistryError> {
        let context = format!("registration of `{}` at {}", reg.name, reg.location);
        let kind = self.check_kind(reg.kind, &context)?;
        self.check_scope(reg.scope, &context)?;
        let names = self
            .entries
            .entry(kind)
            .or_default()
            .entry(reg.scope.to_owned())
            .or_default();
        if let Some(first) = names.get(reg.name) {
            return Err(RegistryError::Duplicate {
                kind: kind.to_owned(),
                scope: reg.scope.to_owned(),
                name: reg.name.to_owned(),
                first: first.location.to_owned(),
                second: reg.location.to_owned(),
            });
        }
        names.insert(reg.name.to_owned(), reg);
        Ok(())
    }

    fn check_kind(&self, kind: &str, context: &str) -> Result<&'static str, RegistryError> {
        canonical_kind(kind).ok_or_else(|| {
            let known: Vec<String> = KINDS.iter().map(|(k, _)| (*k).to_owned()).collect();
            RegistryError::UnknownKind {
                kind: kind.to_owned(),
                context: context.to_owned(),
                suggestions: closest(kind, known.iter().map(String::as_str), 2),
                known,
            }
        })
    }

    fn check_scope(&self, scope: &str, context: &str) -> Result<(), RegistryError> {
        if self.scopes.contains_key(scope) {
            return Ok(());
        }
        let known: Vec<String> = self.scopes.keys().cloned().collect();
        Err(RegistryError::UnknownScope {
            scope: scope.to_owned(),
            context: context.to_owned(),
            suggestions: closest(scope, known.iter().map(String::as_str), 2),
            known,
        })
    }

    /// Known scopes with their parents in tree order: each root, then its children depth-first,
    /// siblings sorted by name (`mmengine`, `mmdet`, `mmrazor`, `mmyolo`).
    pub fn scopes(&self) -> Vec<(&str, Option<&str>)> {
        fn walk<'a>(
            regs: &'a Registries,
            scope: &'a str,
            out: &mut Vec<(&'a str, Option<&'a str>)>,
        ) {
            out.push((scope, regs.parent(scope)));
            for child in regs.children_of(scope) {
                walk(regs, child, out);
            }
        }
        let mut out = Vec::with_capacity(self.scopes.len());
        for (root, _) in self.scopes.iter().filter(|(_, p)| p.is_none()) {
            walk(self, root, &mut out);
        }
        out
    }

    /// Entries of one kind and scope, sorted by name.
    pub fn entries(&self, kind: &str, scope: &str) -> impl Iterator<Item = &TypeRegistration> {
        canonical_kind(kind)
            .and_then(|k| self.entries.get(k))
            .and_then(|scopes| scopes.get(scope))
            .into_iter()
            .flat_map(|names| names.values())
    }

    /// Kinds that have at least one entry, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.keys().copied()
    }

    fn parent(&self, scope: &str) -> Option<&str> {
        self.scopes.get(scope).and_then(|p| p.as_deref())
    }

    fn root_of<'a>(&'a self, mut scope: &'a str) -> &'a str {
        while let Some(p) = self.parent(scope) {
            scope = p;
        }
        scope
    }

    fn children_of<'a>(&'a self, scope: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.scopes
            .iter()
            .filter(move |(_, p)| p.as_deref() == Some(scope))
            .map(|(s, _)| s.as_str())
    }

    fn local(&self, kind: &str, scope: &str, name: &str) -> Option<&TypeRegistration> {
        self.entries.get(kind)?.get(scope)?.get(name)
    }

    /// mmengine's `Registry.get(key)` called on node `node` (`registry.py:440-496`), minus the
    /// Python-path fallback. `searched` records every node whose own entries were looked at.
    fn get_in<'a>(
        &'a self,
        kind: &str,
        node: &str,
        key: &str,
        searched: &mut Vec<String>,
    ) -> Option<&'a TypeRegistration> {
        let (scope, real_key) = split_scope_key(key);
        if scope.is_none() || scope == Some(node) {
            searched.push(node.to_owned());
            if let Some(found) = self.local(kind, node, real_key) {
                return Some(found);
            }
            // Only an unscoped key walks the ancestors (`registry.py:458-466`); `mmdet.X` looked
            // up in mmdet stays local.
            if scope.is_none() {
                let mut parent = self.parent(node);
                while let Some(p) = parent {
                    searched.push(p.to_owned());
                    if let Some(found) = self.local(kind, p, real_key) {
                        return Some(found);
                    }
                    parent = self.parent(p);
                }
            }
            return None;
        }
        let scope = scope.unwrap_or_default();
        // Foreign scope: a child of this node first (`:484-487`), else through the root when the
        // root is that scope or has it as a child (`:488-496`), else nothing.
        if self.children_of(node).any(|c| c == scope) {
            return self.get_in(kind, scope, real_key, searched);
        }
        let root = self.root_of(node);
        if scope == root || self.children_of(root).any(|c| c == scope) {
            return self.get_in(kind, root, key, searched);
        }
        None
    }

    /// Resolves `type_name` of registry `kind` in the build's current scope.
    pub fn lookup(
        &self,
        kind: &str,
        type_name: &str,
        scope: &BuildScope,
    ) -> Result<&TypeRegistration, RegistryError> {
        let kind = self.check_kind(kind, &format!("looking up `{type_name}`"))?;
        self.check_scope(
            scope.name(),
            &format!("{}, looking up `{type_name}`", scope),
        )?;
        let mut searched = Vec::new();
        if let Some(found) = self.get_in(kind, scope.name(), type_name, &mut searched) {
            return Ok(found);
        }
        Err(RegistryError::NotFound(Box::new(self.explain_not_found(
            kind,
            type_name,
            scope.name(),
            searched,
        ))))
    }

    /// One step of `build_from_cfg` (`build_functions.py:86-106`): the dict's `_scope_` (if any)
    /// becomes the current scope, `type_name` is looked up in it, and the returned scope is the one
    /// to build the dict's nested configs in.
    pub fn resolve(
        &self,
        kind: &str,
        type_name: &str,
        dict_scope: Option<&str>,
        outer: &BuildScope,
    ) -> Result<(&TypeRegistration, BuildScope), RegistryError> {
        let scope = outer.enter(dict_scope);
        let found = self.lookup(kind, type_name, &scope)?;
        Ok((found, scope))
    }

    fn explain_not_found(
        &self,
        kind: &'static str,
        type_name: &str,
        current: &str,
        searched: Vec<String>,
    ) -> NotFound {
        let bare = type_name.rsplit('.').next().unwrap_or(type_name);
        let registered_in: Vec<String> = self
            .entries
            .get(kind)
            .into_iter()
            .flat_map(|scopes| scopes.iter())
            .filter(|(_, names)| names.contains_key(bare))
            .map(|(s, _)| s.clone())
            .collect();
        let upstream_in = upstream_catalogue().scopes_of(kind, bare);
        let other_kinds: Vec<String> = self
            .entries
            .iter()
            .filter(|(k, scopes)| {
                **k != kind && scopes.values().any(|names| names.contains_key(bare))
            })
            .map(|(k, _)| (*k).to_owned())
            .collect();
        // Suggestions: names reachable from the searched scopes, then anywhere in this kind.
        let mut candidates: Vec<&str> = Vec::new();
        if let Some(scopes) = self.entries.get(kind) {
            for names in scopes.values() {
                candidates.extend(names.keys().map(String::as_str));
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let suggestions = if registered_in.is_empty() {
            closest(bare, candidates.into_iter(), 3)
        } else {
            Vec::new()
        };
        NotFound {
            kind: kind.to_owned(),
            type_name: type_name.to_owned(),
            current_scope: current.to_owned(),
            searched,
            registered_in,
            upstream_in,
            other_kinds,
            suggestions,
            implemented: Vec::new(),
        }
    }
}

/// Up to `n` names closest to `word` (normalised Levenshtein ≥ 0.5, or a case-insensitive
/// substring match), best first.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
    n: usize,
) -> Vec<String> {
    let lower = word.to_lowercase();
    let mut scored: Vec<(f64, &str)> = candidates
        .filter(|c| *c != word)
        .filter_map(|c| {
            let cl = c.to_lowercase();
            let mut score = strsim::normalized_levenshtein(&lower, &cl);
            if !lower.is_empty() && (cl.contains(&lower) || lower.contains(&cl)) {
                score = score.max(0.6);
            }
            (score >= 0.5).then_some((score, c))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(n)
        .map(|(_, c)| c.to_owned())
        .collect()
}
