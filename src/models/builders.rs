//! Building model components by registered type name, with mmengine's scope rules
//! (`mmengine/registry/registry.py: Registry.get`, `build_functions.py: build_from_cfg`):
//! `type='mmdet.CSPNeXt'` looks in scope `mmdet`; a bare name looks in the default scope in effect
//! (then its parent, mmengine's root, which has no detection models); `_scope_` in a dict switches
//! the default scope for that object and everything it builds.
//!
//! Lookup goes through the core's scoped registries (`mmcompat_registry::scoped`); every builder
//! is submitted there with `register_type!` (kind `model`). [`MODEL_BUILDERS`] lists the same
//! entries as plain const data.

use std::sync::OnceLock;

use mmcompat_registry::register_type;
use mmcompat_registry::scoped::{Registries, RegistryError};
use serde_json::Value;

use super::backbone::cspnext::CspNext;
use super::cfg::{join, type_of};
use super::detector::{build_detector_from, Backbone, Head, Neck};
use super::heads::rtmdet_mmdet::MmdetSepBnHead;
use super::heads::rtmdet_mmyolo::MmyoloRtmdetHead;
use super::necks::cspnext_pafpn_mmdet::MmdetPafpn;
use super::necks::cspnext_pafpn_mmyolo::MmyoloPafpn;
use super::param::Ctx;
use super::ModelError;

pub use super::detector::build_detector;

/// What a builder produced.
pub enum Component {
    Detector(Box<super::detector::DetectorParts>),
    Backbone(Backbone),
    Neck(Neck),
    Head(Head),
    /// `RTMDetSepBNHeadModule`: only meaningful inside mmyolo's `RTMDetHead`, which builds it.
    HeadModule,
}

impl Component {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Component::Detector(_) => "detector",
            Component::Backbone(_) => "backbone",
            Component::Neck(_) => "neck",
            Component::Head(_) => "bbox head",
            Component::HeadModule => "head module",
        }
    }
}

pub use mmcompat_registry::scoped::BuildScope;

/// A builder: (scope in effect, where to put the weights, the config dict, its config path).
pub type BuildFn = fn(&BuildScope, &Ctx, &Value, &str) -> Result<Component, ModelError>;

/// Every model type the tch backend builds, keyed by (scope, type name) as registered upstream.
/// Each entry is also submitted to the core's scoped registries (`register_type!`, kind `model`),
/// through which [`resolve`] looks types up with mmengine's scope rules.
pub const MODEL_BUILDERS: &[(&str, &str, BuildFn)] = &[
    ("mmyolo", "YOLODetector", B_YOLO_DETECTOR),
    ("mmdet", "RTMDet", B_RTMDET),
    ("mmyolo", "CSPNeXt", B_CSPNEXT_MMYOLO),
    ("mmdet", "CSPNeXt", B_CSPNEXT_MMDET),
    ("mmyolo", "CSPNeXtPAFPN", B_PAFPN_MMYOLO),
    ("mmdet", "CSPNeXtPAFPN", B_PAFPN_MMDET),
    ("mmyolo", "RTMDetHead", B_HEAD_MMYOLO),
    ("mmdet", "RTMDetSepBNHead", B_HEAD_MMDET),
    ("mmyolo", "RTMDetSepBNHeadModule", B_HEAD_MODULE),
];

const B_YOLO_DETECTOR: BuildFn =
    |s, c, v, p| build_detector_from(s, c, v, p, super::Flavour::Mmyolo);
const B_RTMDET: BuildFn = |s, c, v, p| build_detector_from(s, c, v, p, super::Flavour::Mmdet);
const B_CSPNEXT_MMYOLO: BuildFn = |_, c, v, p| {
    Ok(Component::Backbone(Backbone::CspNext(
        CspNext::build_mmyolo(c, v, p)?,
    )))
};
const B_CSPNEXT_MMDET: BuildFn = |_, c, v, p| {
    Ok(Component::Backbone(Backbone::CspNext(
        CspNext::build_mmdet(c, v, p)?,
    )))
};
const B_PAFPN_MMYOLO: BuildFn =
    |_, c, v, p| Ok(Component::Neck(Neck::Mmyolo(MmyoloPafpn::build(c, v, p)?)));
const B_PAFPN_MMDET: BuildFn =
    |_, c, v, p| Ok(Component::Neck(Neck::Mmdet(MmdetPafpn::build(c, v, p)?)));
const B_HEAD_MMYOLO: BuildFn = build_mmyolo_head;
const B_HEAD_MMDET: BuildFn = |_, c, v, p| {
    Ok(Component::Head(Head::Mmdet(MmdetSepBnHead::build(
        c, v, p,
    )?)))
};
const B_HEAD_MODULE: BuildFn = |_, _, _, _| Ok(Component::HeadModule);

// The payloads must be statics: the registry keeps `&'static` references to them.
static P_YOLO_DETECTOR: BuildFn = B_YOLO_DETECTOR;
static P_RTMDET: BuildFn = B_RTMDET;
static P_CSPNEXT_MMYOLO: BuildFn = B_CSPNEXT_MMYOLO;
static P_CSPNEXT_MMDET: BuildFn = B_CSPNEXT_MMDET;
static P_PAFPN_MMYOLO: BuildFn = B_PAFPN_MMYOLO;
static P_PAFPN_MMDET: BuildFn = B_PAFPN_MMDET;
static P_HEAD_MMYOLO: BuildFn = B_HEAD_MMYOLO;
static P_HEAD_MMDET: BuildFn = B_HEAD_MMDET;
static P_HEAD_MODULE: BuildFn = B_HEAD_MODULE;
register_type!(scope: "mmyolo", kind: "model", name: "YOLODetector", payload: &P_YOLO_DETECTOR);
register_type!(scope: "mmdet", kind: "model", name: "RTMDet", payload: &P_RTMDET);
register_type!(scope: "mmyolo", kind: "model", name: "CSPNeXt", payload: &P_CSPNEXT_MMYOLO);
register_type!(scope: "mmdet", kind: "model", name: "CSPNeXt", payload: &P_CSPNEXT_MMDET);
register_type!(scope: "mmyolo", kind: "model", name: "CSPNeXtPAFPN", payload: &P_PAFPN_MMYOLO);
register_type!(scope: "mmdet", kind: "model", name: "CSPNeXtPAFPN", payload: &P_PAFPN_MMDET);
register_type!(scope: "mmyolo", kind: "model", name: "RTMDetHead", payload: &P_HEAD_MMYOLO);
register_type!(scope: "mmdet", kind: "model", name: "RTMDetSepBNHead", payload: &P_HEAD_MMDET);
register_type!(scope: "mmyolo", kind: "model", name: "RTMDetSepBNHeadModule", payload: &P_HEAD_MODULE);

fn build_mmyolo_head(s: &BuildScope, c: &Ctx, v: &Value, p: &str) -> Result<Component, ModelError> {
    // RTMDetHead builds `head_module` with MODELS.build under the scope in effect.
    let hm = v.get("head_module").unwrap_or(&Value::Null);
    let hpath = join(p, "head_module");
    let inner = scope_for(s, hm);
    let (scope, name, _) = resolve(&inner, hm, &hpath)?;
    if (scope, name) != ("mmyolo", "RTMDetSepBNHeadModule") {
        return Err(ModelError::Unsupported {
            what: format!("head_module type {scope}.{name}"),
            path: hpath,
            hint: "mmyolo RTMDetHead is implemented with RTMDetSepBNHeadModule only".into(),
        });
    }
    Ok(Component::Head(Head::Mmyolo(MmyoloRtmdetHead::build(
        c, v, p,
    )?)))
}

/// The scope a dict builds under: its `_scope_` if present, else the one in effect.
pub fn scope_for(current: &BuildScope, cfg: &Value) -> BuildScope {
    current.enter_dict(cfg)
}

fn registries() -> Result<&'static Registries, ModelError> {
    static REGS: OnceLock<Result<Registries, RegistryError>> = OnceLock::new();
    REGS.get_or_init(Registries::from_inventory)
        .as_ref()
        .map_err(|e| ModelError::Invalid {
            path: "model registry".into(),
            message: e.to_string(),
        })
}

/// Resolves `cfg.type` under `scope` (mmengine `Registry.get` rules, through the core's scoped
/// registries) to a registered builder: `(scope, name, fn)`.
pub fn resolve(
    scope: &BuildScope,
    cfg: &Value,
    path: &str,
) -> Result<(&'static str, &'static str, BuildFn), ModelError> {
    let Some(ty) = type_of(cfg) else {
        return Err(ModelError::Invalid {
            path: path.to_string(),
            message: format!("`type` is required to build this section, got {cfg}"),
        });
    };
    let reg = registries()?
        .lookup("model", ty, scope)
        .map_err(|e| ModelError::Registry {
            path: path.to_string(),
            source: Box::new(e),
        })?;
    match reg.payload::<BuildFn>() {
        Some(f) => Ok((reg.scope, reg.name, *f)),
        None => Err(ModelError::Unsupported {
            what: format!(
                "model type {}.{} (registered at {})",
                reg.scope, reg.name, reg.location
            ),
            path: path.to_string(),
            hint: "it is registered, but not as a tch model builder".into(),
        }),
    }
}

/// Builds the component described by `cfg` (honouring `_scope_` and `scope.Type`).
pub fn build_component(
    scope: &BuildScope,
    ctx: &Ctx,
    cfg: &Value,
    path: &str,
) -> Result<Component, ModelError> {
    let inner = scope_for(scope, cfg);
    let (_, _, f) = resolve(&inner, cfg, path)?;
    f(&inner, ctx, cfg, path)
}
