//! The model part of the spec: a tree of [`ComponentSpec`]s, one per `type=` dict that the Python
//! model builds (detector, backbone, neck, heads, head modules), each with its resolved registry
//! entry and its typed arguments.
//!
//! A model family declares each upstream type once, with [`register_component!`](crate::register_component!): its registry
//! scope and name, its [`ComponentKind`] and the typed-arguments struct (or a parse function when
//! the component builds nested components, like a detector or mmyolo's `RTMDetHead`). Resolution
//! follows mmengine (`build_from_cfg`): `_scope_` switches the scope for a dict's subtree,
//! `scope.Type` looks in that scope, a bare name in the current scope then its parents.
//!
//! Never: build tensors or know how a component computes; that is the backend's (`src/models`).

use std::any::Any;
use std::fmt;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::parse::{parse_section, type_of};
use super::SpecError;
use crate::scoped::{BuildScope, Registries, RegistryError};

/// What a component is, i.e. which slot of its parent it can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// `YOLODetector`, `RTMDet`, `SingleStageDetector` subclasses, two-stage detectors.
    Detector,
    Backbone,
    Neck,
    /// A dense (single-stage / RPN) head: `bbox_head` or `rpn_head`.
    DenseHead,
    /// mmyolo's `head_module` of a head (`RTMDetSepBNHeadModule`), built by its head.
    HeadModule,
    /// A two-stage detector's `roi_head`.
    RoiHead,
}

impl ComponentKind {
    pub fn describe(self) -> &'static str {
        match self {
            ComponentKind::Detector => "detector",
            ComponentKind::Backbone => "backbone",
            ComponentKind::Neck => "neck",
            ComponentKind::DenseHead => "dense head",
            ComponentKind::HeadModule => "head module",
            ComponentKind::RoiHead => "RoI head",
        }
    }
}

/// Typed arguments of a component: any serialisable struct (printed by `config --spec`).
pub trait ComponentArgs: Any + fmt::Debug + Send + Sync {
    fn to_json(&self) -> Value;
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + fmt::Debug + Send + Sync + Serialize> ComponentArgs for T {
    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One built-by-registry component of the model.
#[derive(Debug)]
pub struct ComponentSpec {
    /// Where it sits in the config (`model.bbox_head.head_module`).
    pub path: String,
    /// Registry scope it resolved in (`mmyolo`).
    pub scope: &'static str,
    /// Registered type name (`RTMDetSepBNHeadModule`).
    pub type_name: &'static str,
    pub kind: ComponentKind,
    /// The scope its nested components are built in (mmengine: the dict's `_scope_`, else the
    /// scope in effect).
    pub build_scope: BuildScope,
    pub args: Box<dyn ComponentArgs>,
    /// Nested components by their argument name (`backbone`, `neck`, `bbox_head`, `head_module`).
    pub children: Vec<(String, ComponentSpec)>,
}

impl ComponentSpec {
    /// `scope.Type`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.scope, self.type_name)
    }

    /// The typed arguments as `T`; an error (not a panic) when a backend registered a builder
    /// for another argument type.
    pub fn args<T: Any>(&self) -> Result<&T, SpecError> {
        self.args
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| SpecError::Invalid {
                path: self.path.clone(),
                type_name: self.qualified_name(),
                message: format!(
                    "internal: arguments are not {} (backend and spec registrations disagree)",
                    std::any::type_name::<T>()
                ),
            })
    }

    /// The nested component `name`, if the config has one.
    pub fn child(&self, name: &str) -> Option<&ComponentSpec> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }

    /// The nested component `name`, required.
    pub fn require_child(&self, name: &str) -> Result<&ComponentSpec, SpecError> {
        self.child(name).ok_or_else(|| SpecError::Missing {
            path: format!("{}.{name}", self.path),
            message: format!("{} needs a `{name}`", self.qualified_name()),
        })
    }

    /// JSON view: `{"type": "scope.Type", "kind", "args", <child>: {...}}` (`config --spec`).
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), Value::String(self.qualified_name()));
        m.insert(
            "kind".into(),
            serde_json::to_value(self.kind).unwrap_or(Value::Null),
        );
        m.insert("args".into(), self.args.to_json());
        for (name, c) in &self.children {
            m.insert(name.clone(), c.to_json());
        }
        Value::Object(m)
    }
}

/// What parsing a component's dict gives: its typed arguments and nested components.
pub type Parsed = (Box<dyn ComponentArgs>, Vec<(String, ComponentSpec)>);

/// Parses a component's dict into its typed arguments and nested components.
pub type ParseFn = fn(&ComponentCtx<'_>, &Value, &str) -> Result<Parsed, SpecError>;

/// Registry payload of a model type the spec stage knows (submitted with [`register_component!`](crate::register_component!)).
pub struct ComponentDecl {
    pub kind: ComponentKind,
    pub parse: ParseFn,
}

/// The parse of a leaf component: its arguments struct `T`, no nested components.
pub fn parse_leaf<T: DeserializeOwned + ComponentArgs>(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let args: T = parse_section(value, ctx.type_name, path)?;
    Ok((Box::new(args), Vec::new()))
}

/// Declares an upstream model type to the spec stage, in its registry scope:
/// `register_component!(scope: "mmyolo", name: "CSPNeXt", kind: Backbone, args: MmyoloCspNextCfg);`
/// or, for a component with nested components, `parse: my_parse_fn` instead of `args:`.
#[macro_export]
macro_rules! register_component {
    (scope: $s:literal, name: $n:literal, kind: $k:ident, args: $t:ty) => {
        $crate::register_component!(scope: $s, name: $n, kind: $k,
            parse: $crate::spec::model::parse_leaf::<$t>);
    };
    (scope: $s:literal, name: $n:literal, kind: $k:ident, parse: $f:expr) => {
        const _: () = {
            static DECL: $crate::spec::model::ComponentDecl = $crate::spec::model::ComponentDecl {
                kind: $crate::spec::model::ComponentKind::$k,
                parse: $f,
            };
            $crate::register_type!(scope: $s, kind: "model", name: $n, payload: &DECL);
        };
    };
}

/// Where a component is being parsed: the scope in effect and the resolved type.
pub struct ComponentCtx<'a> {
    pub registries: &'a Registries,
    /// The scope nested components are built in.
    pub scope: &'a BuildScope,
    /// `scope.Type` of the component being parsed.
    pub type_name: &'a str,
}

impl ComponentCtx<'_> {
    /// A mmyolo head's result: its arguments and its `head_module`, which it builds with
    /// `MODELS.build` in the scope in effect (`mmyolo/models/dense_heads/yolov5_head.py:
    /// YOLOv5Head.__init__`, and every head derived from it).
    pub fn with_head_module(
        &self,
        args: Box<dyn ComponentArgs>,
        head_module: &Value,
        path: &str,
    ) -> Result<Parsed, SpecError> {
        let module = self.child(
            head_module,
            &super::parse::join(path, "head_module"),
            ComponentKind::HeadModule,
        )?;
        Ok((args, vec![("head_module".to_string(), module)]))
    }

    /// Parses the nested component at `path` (a dict with a `type`), which must be a `kind`.
    pub fn child(
        &self,
        value: &Value,
        path: &str,
        kind: ComponentKind,
    ) -> Result<ComponentSpec, SpecError> {
        component_spec(self.registries, self.scope, value, path, Some(kind))
    }
}

/// The scoped registries of this binary (inventory registrations, built once).
pub fn registries() -> Result<&'static Registries, SpecError> {
    static REGS: OnceLock<Result<Registries, RegistryError>> = OnceLock::new();
    REGS.get_or_init(Registries::from_inventory)
        .as_ref()
        .map_err(|e| SpecError::Registry {
            path: "model registry".into(),
            source: Box::new(e.clone()),
        })
}

/// The detector families mmcompat runs, named after their registered dense heads (`YOLOXHead` →
/// `YOLOX`, mmdet's `RTMDetSepBNHead` → `RTMDet`) with the scopes that have them:
/// `RTMDet (mmdet, mmyolo), YOLOv5 (mmyolo), ...`. Derived from the registrations, so a new family
/// appears here by registering its head.
pub fn supported_families(registries: &Registries) -> Vec<String> {
    let mut families: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (scope, _) in registries.scopes() {
        for reg in registries.entries("model", scope) {
            let is_head = reg
                .payload::<ComponentDecl>()
                .is_some_and(|d| d.kind == ComponentKind::DenseHead);
            if is_head {
                let family = reg.name.trim_end_matches("Head").trim_end_matches("SepBN");
                families
                    .entry(family.to_string())
                    .or_default()
                    .push(reg.scope.to_string());
            }
        }
    }
    families
        .into_iter()
        .map(|(family, scopes)| format!("{family} ({})", scopes.join(", ")))
        .collect()
}

/// An upstream model type mmcompat does not implement: the lookup error also names the families
/// it does run (issue 13: "naming the type and the families that are supported").
fn name_supported_families(registries: &Registries, e: RegistryError) -> RegistryError {
    match e {
        RegistryError::NotFound(mut nf)
            if nf.registered_in.is_empty() && !nf.upstream_in.is_empty() =>
        {
            nf.implemented = supported_families(registries);
            RegistryError::NotFound(nf)
        }
        other => other,
    }
}

/// Resolves and parses the component dict `value` at `path` under `scope`; `expected` is the kind
/// its slot needs (`None`: any).
pub fn component_spec(
    registries: &Registries,
    scope: &BuildScope,
    value: &Value,
    path: &str,
    expected: Option<ComponentKind>,
) -> Result<ComponentSpec, SpecError> {
    let Some(ty) = type_of(value) else {
        return Err(SpecError::Missing {
            path: path.to_string(),
            message: format!(
                "a dict with a string `type` is needed to build this {}, got {value}",
                expected.map_or("component", ComponentKind::describe)
            ),
        });
    };
    let inner = scope.enter_dict(value);
    let reg = registries
        .lookup("model", ty, &inner)
        .map_err(|e| SpecError::Registry {
            path: path.to_string(),
            source: Box::new(name_supported_families(registries, e)),
        })?;
    let Some(decl) = reg.payload::<ComponentDecl>() else {
        return Err(SpecError::Unsupported {
            path: path.to_string(),
            what: format!("model type {}.{}", reg.scope, reg.name),
            hint: format!(
                "it is registered (at {}) but is not a model component mmcompat can build",
                reg.location
            ),
        });
    };
    if let Some(want) = expected {
        if decl.kind != want {
            return Err(SpecError::WrongComponent {
                path: path.to_string(),
                type_name: format!("{}.{}", reg.scope, reg.name),
                got: decl.kind.describe(),
                expected: want.describe(),
            });
        }
    }
    let qualified = format!("{}.{}", reg.scope, reg.name);
    let ctx = ComponentCtx {
        registries,
        scope: &inner,
        type_name: &qualified,
    };
    let (args, children) = (decl.parse)(&ctx, value, path)?;
    Ok(ComponentSpec {
        path: path.to_string(),
        scope: reg.scope,
        type_name: reg.name,
        kind: decl.kind,
        build_scope: inner.clone(),
        args,
        children,
    })
}
