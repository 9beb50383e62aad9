//! The spec stage: from a resolved config to the complete typed description of what will run —
//! the model (every component's resolved type and typed arguments), its data preprocessor, the
//! test pipeline, `test_cfg` and the class names the config gives. Distillation configs are
//! reduced to their student here ([`student`]).
//!
//! It runs before any checkpoint byte is read, so every mistake in a config (a misspelt key, an
//! unsupported type, a missing section) is reported first, with the key path, the upstream type
//! and the closest valid name. One parse mechanism serves every section ([`parse::parse_section`]).
//!
//! Never: link libtorch, read a checkpoint, build a model.

pub mod data_preprocessor;
mod error;
pub mod layers;
pub mod model;
pub mod models;
pub mod parse;
pub mod pipeline;
mod render;
pub mod student;
pub mod test_cfg;

pub use data_preprocessor::DataPreprocessorSpec;
pub use error::SpecError;
pub use model::{ComponentKind, ComponentSpec};
pub use parse::parse_section;
pub use pipeline::{TestPipeline, Transform};
pub use student::{inference_scope, resolve_model, ResolvedModel};
pub use test_cfg::{NmsCfg, TestCfg};

use crate::scoped::BuildScope;

/// The model tree of a `model` dict built in `scope` (`DetInferencer(scope=...)`): the root must
/// be a detector.
pub fn model_spec(
    model: &serde_json::Value,
    scope: &BuildScope,
) -> Result<ComponentSpec, SpecError> {
    model::component_spec(
        model::registries()?,
        scope,
        model,
        "model",
        Some(ComponentKind::Detector),
    )
}

/// The complete typed description of what an inference runs, built from a config before any
/// checkpoint is read (`mmcompat config FILE --spec`, and the first step of every `Inferencer`).
#[derive(Debug)]
pub struct InferenceSpec {
    /// The scope the model is built in (explicit > `default_scope` > `mmdet`).
    pub scope: BuildScope,
    /// `Some(algorithm type)` when the config was a distillation config reduced to its student.
    pub distillation: Option<String>,
    /// The model tree (every component's resolved type and typed arguments).
    pub model: ComponentSpec,
    /// `model.data_preprocessor` (the algorithm's for a distillation config).
    pub data_preprocessor: DataPreprocessorSpec,
    /// `test_dataloader.dataset.pipeline` (the student config's when the config has none).
    pub test_pipeline: TestPipeline,
    /// `model.test_cfg`, what `predict_by_feat` reads.
    pub test_cfg: TestCfg,
    /// `test_dataloader.dataset.metainfo.classes` of the config (or the student's); the
    /// checkpoint's `meta.dataset_meta` wins over it at load time, as in DetInferencer.
    pub config_classes: Option<Vec<String>>,
}

impl InferenceSpec {
    /// Resolves `config` (distillation → student, scope precedence), then parses every section.
    /// `scope` is the caller's explicit scope (`--scope`), if any.
    pub fn from_config(
        config: &crate::config::Config,
        scope: Option<&str>,
        roots: &crate::config::ConfigRoots,
    ) -> Result<InferenceSpec, SpecError> {
        let resolved = resolve_model(config, scope, roots)?;
        let model = model_spec(&resolved.model, &resolved.scope)?;
        let section = |key: &str| resolved.model.get(key).filter(|v| !v.is_null());
        let data_preprocessor =
            DataPreprocessorSpec::parse(section("data_preprocessor"), "model.data_preprocessor")?;
        let test_cfg = match section("test_cfg") {
            Some(v) => TestCfg::parse(v, "model.test_cfg")?,
            None => {
                return Err(SpecError::Missing {
                    path: "model.test_cfg".into(),
                    message:
                        "the model has no test_cfg (predict_by_feat reads nms_pre, score_thr, \
                              nms, max_per_img)"
                            .into(),
                })
            }
        };
        // DetInferencer reads the given config's test_dataloader; a distillation config often has
        // none of its own, then the student config's applies.
        let configs = [Some(config), resolved.student_config.as_ref()];
        let lookup = |key: &str| configs.iter().flatten().find_map(|c| c.get(key));
        const PIPELINE: &str = "test_dataloader.dataset.pipeline";
        let pipeline = lookup(PIPELINE).ok_or_else(|| SpecError::Missing {
            path: PIPELINE.into(),
            message: "no test pipeline (DetInferencer builds it from test_dataloader)".into(),
        })?;
        let test_pipeline = TestPipeline::parse(&pipeline.to_json(), PIPELINE)?;
        let config_classes = lookup("test_dataloader.dataset.metainfo.classes").and_then(|v| {
            v.to_json()
                .as_array()?
                .iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect()
        });
        Ok(InferenceSpec {
            scope: resolved.scope,
            distillation: resolved.distillation,
            model,
            data_preprocessor,
            test_pipeline,
            test_cfg,
            config_classes,
        })
    }

    /// JSON view of the whole spec (`mmcompat config FILE --spec --json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "scope": self.scope.name(),
            "scope_origin": self.scope.origin().to_string(),
            "distillation": self.distillation,
            "model": self.model.to_json(),
            "data_preprocessor": serde_json::to_value(&self.data_preprocessor).unwrap_or_default(),
            "test_pipeline": serde_json::to_value(&self.test_pipeline).unwrap_or_default(),
            "test_cfg": serde_json::to_value(&self.test_cfg).unwrap_or_default(),
            "config_classes": self.config_classes,
        })
    }
}
