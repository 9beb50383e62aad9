//! Which model a config runs, and in which scope: a distillation config (`model` in the mmrazor
//! scope with an `architecture`) is reduced to its student.
//!
//! Upstream, prediction only ever runs `self.architecture`
//! (`mmrazor/models/algorithms/base.py: BaseAlgorithm._predict`), so building the student alone
//! gives the same detections; the teacher is never built and `teacher_ckpt` never read. A
//! `cfg_path` student is resolved like mmengine's `get_model` (offline, through the config roots),
//! with the algorithm's `data_preprocessor` copied into it.

use serde_json::Value as Json;

use super::SpecError;
use crate::config::{Config, ConfigRoots};
use crate::scoped::{BuildScope, Registries, ScopeOrigin};

/// Registry payload of the MMRazor algorithms whose prediction is their `architecture`'s.
/// Registered in the mmrazor scope like upstream, so `type` resolves with mmengine's scope rules
/// and `mmcompat registry` lists them.
pub struct PredictsWithArchitecture;

static PREDICTS_WITH_ARCHITECTURE: PredictsWithArchitecture = PredictsWithArchitecture;

macro_rules! register_distill_algorithms {
    ($($name:literal),* $(,)?) => {$(
        crate::register_type!(
            scope: "mmrazor",
            kind: "model",
            name: $name,
            payload: &PREDICTS_WITH_ARCHITECTURE
        );
    )*};
}

// mmrazor/models/algorithms/distill/configurable/*.py and data_free_distillation.py.
register_distill_algorithms!(
    "SingleTeacherDistill",
    "FpnTeacherDistill",
    "OverhaulFeatureDistillation",
    "SelfDistill",
    "DAFLDataFreeDistillation",
    "DataFreeDistillation",
);

/// Registry payload of the MMRazor algorithms whose weights are not a plain detector's: refused
/// before any checkpoint is opened, naming what would work instead.
#[derive(Debug)]
pub struct RefuseWithHint {
    /// `pruning`, `pruned deploy`, `NAS` or `quantisation`.
    pub kind: &'static str,
    /// What would work instead (MMRazor's own export tools).
    pub hint: &'static str,
}

// mmrazor/models/algorithms/pruning/*.py and implementations/pruning/group_fisher/algorithm.py:
// the state dict is `architecture.*` with UNPRUNED shapes plus `mutator.units.N.mutable_channel.mask`;
// prediction runs the masked (dynamic) ops, so the plain architecture would give other outputs.
pub static PRUNING: RefuseWithHint = RefuseWithHint {
    kind: "pruning",
    hint:
        "export the pruned model with MMRazor's tools/pruning/get_static_model_from_algorithm.py; \
           its deploy config (`GroupFisherDeploySubModel` / `sub_model`) rebuilds narrowed layers \
           from the fix_subnet JSON, which mmcompat does not support yet",
};

// implementations/pruning/group_fisher/prune_{deploy_,}sub_model.py and registry.py `sub_model`:
// the channel counts of the narrowed layers live only in the fix_subnet JSON/dict.
pub static PRUNED_DEPLOY: RefuseWithHint = RefuseWithHint {
    kind: "pruned-deploy / subnet",
    hint: "mmcompat cannot rebuild an architecture from a fix_subnet (narrowed channels or chosen \
           candidates); run it with MMRazor + MMDeploy",
};

// mmrazor/models/algorithms/nas/*.py: a supernet whose state dict holds every candidate op
// (`..._candidates.<op>.`, mutables/mutable_module/one_shot_mutable_module.py).
pub static NAS: RefuseWithHint = RefuseWithHint {
    kind: "NAS (supernet)",
    hint: "export the searched subnet with MMRazor's tools/model_converters/convert_supernet2subnet.py \
           and deploy it through `sub_model`; mmcompat runs only plain detectors, not searchable \
           supernets",
};

// mmrazor/models/algorithms/quantization/mm_architecture.py: fake-quantised fx graphs under
// `qmodels.`; the float `architecture.` alone would not give the quantised model's outputs.
pub static QUANTISATION: RefuseWithHint = RefuseWithHint {
    kind: "quantisation",
    hint:
        "deploy the quantised model with MMRazor's tools/model_converters/convert_quant_ckpt.py + \
           MMDeploy, or run the float model it was calibrated from (its own config and checkpoint)",
};

macro_rules! register_refused_algorithms {
    ($payload:ident: $($name:literal),* $(,)?) => {$(
        crate::register_type!(scope: "mmrazor", kind: "model", name: $name, payload: &$payload);
    )*};
}

// The names of mmrazor 1.0.0's MODELS registry (dumped by
// tests/fixtures/generate/make_razor_mmdet_refs.py into tests/fixtures/razor_mmdet/students.json).
register_refused_algorithms!(PRUNING: "ItePruneAlgorithm", "GroupFisherAlgorithm", "DCFF", "DMCP", "SlimmableNetwork");
register_refused_algorithms!(PRUNED_DEPLOY: "GroupFisherDeploySubModel", "GroupFisherSubModel", "sub_model");
register_refused_algorithms!(NAS: "SPOS", "DSNAS", "Darts", "AutoSlim", "BigNAS", "Autoformer");
register_refused_algorithms!(QUANTISATION: "MMArchitectureQuant");

/// The scope inference starts in — the one precedence rule for every caller: the explicit scope
/// (`--scope`, `Inferencer::builder().scope()`, DetInferencer's `scope=`), else the config's
/// `default_scope`, else `mmdet` (DetInferencer's default `scope='mmdet'`).
pub fn inference_scope(explicit: Option<&str>, config: &Config) -> BuildScope {
    let default_scope = config.get("default_scope").and_then(|v| v.as_str());
    match (explicit, default_scope) {
        (None, None) => BuildScope::with_origin("mmdet", ScopeOrigin::InferencerDefault),
        (e, d) => BuildScope::new(e, d),
    }
}

/// The model dict to build, its scope, and where it came from.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub model: Json,
    pub scope: BuildScope,
    /// The student's own config, for a `cfg_path` student (its test pipeline and metainfo are the
    /// fallback when the distillation config has none).
    pub student_config: Option<Config>,
    /// `Some(algorithm type)` for a distillation config.
    pub distillation: Option<String>,
}

/// Whether `type_name` (built in `dict_scope` under `outer`) resolves to an algorithm that
/// predicts with its architecture.
fn predicts_with_architecture(
    regs: &Registries,
    type_name: &str,
    dict_scope: Option<&str>,
    outer: &BuildScope,
) -> bool {
    regs.resolve("model", type_name, dict_scope, outer)
        .is_ok_and(|(found, _)| found.payload::<PredictsWithArchitecture>().is_some())
}

/// The model dict to build and its scope; distillation configs reduced to the student.
pub fn resolve_model(
    config: &Config,
    explicit_scope: Option<&str>,
    roots: &ConfigRoots,
) -> Result<ResolvedModel, SpecError> {
    let scope = inference_scope(explicit_scope, config);
    let model = config
        .get("model")
        .ok_or_else(|| SpecError::Missing {
            path: "model".into(),
            message: "the config has no `model`".into(),
        })?
        .to_json();
    let type_name = model
        .get("type")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let model_scope = model
        .get("_scope_")
        .and_then(Json::as_str)
        .map(str::to_string);
    let type_scope = type_name.split_once('.').map(|(s, _)| s.to_string());
    let in_razor = type_scope
        .as_deref()
        .or(model_scope.as_deref())
        .unwrap_or(scope.name())
        == "mmrazor";
    if in_razor {
        let regs = super::model::registries()?;
        if let Ok((found, _)) = regs.resolve("model", &type_name, model_scope.as_deref(), &scope) {
            if let Some(r) = found.payload::<RefuseWithHint>() {
                return Err(SpecError::RefusedAlgorithm {
                    path: "model.type".into(),
                    algorithm: type_name,
                    kind: r.kind,
                    hint: r.hint,
                });
            }
        }
    }
    let Some(arch) = model.get("architecture").filter(|_| in_razor) else {
        return Ok(ResolvedModel {
            model,
            scope,
            student_config: None,
            distillation: None,
        });
    };
    let regs = super::model::registries()?;
    if !predicts_with_architecture(regs, &type_name, model_scope.as_deref(), &scope) {
        tracing::warn!(algorithm = %type_name, "mmrazor algorithm not known to predict through its architecture; using the architecture anyway");
    }
    // BaseAlgorithm: `data_preprocessor` of the algorithm if given, else the architecture's.
    let algo_dp = model
        .get("data_preprocessor")
        .filter(|v| !v.is_null())
        .cloned();
    let (mut student, student_scope, student_config) = if arch.get("cfg_path").is_some() {
        let m = config.resolve_cfg_path("model.architecture", roots)?;
        (m.model.to_json(), m.scope, Some(m.config))
    } else if arch.get("type").is_some() {
        let s = arch
            .get("_scope_")
            .and_then(Json::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| scope.name().to_string());
        (arch.clone(), s, None)
    } else {
        return Err(SpecError::Missing {
            path: "model.architecture".into(),
            message: "neither `cfg_path` nor `type`: cannot tell which student to build".into(),
        });
    };
    if let (Some(dp), Some(obj)) = (algo_dp, student.as_object_mut()) {
        obj.insert("data_preprocessor".into(), dp);
    }
    // An explicit scope wins, as DetInferencer's init_default_scope does (`_scope_` keys inside
    // the student config still switch scope where they appear); otherwise the scope `get_model`
    // builds the student in (its package).
    let scope = match explicit_scope {
        Some(_) => scope,
        None => BuildScope::with_origin(&student_scope, ScopeOrigin::DefaultScope),
    };
    Ok(ResolvedModel {
        model: student,
        scope,
        student_config,
        distillation: Some(type_name),
    })
}
