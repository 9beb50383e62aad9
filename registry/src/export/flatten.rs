//! A resolved config reduced to what a stock mmdet/mmyolo install needs to run the model:
//! `init_detector(cfg, ckpt)` + `inference_detector` (`mmdet/apis/inference.py`), with no
//! `_base_`, no `pkg::` reference and, for a distillation config, no MMRazor.
//!
//! * Plain config: the evaluated tree as it is (mmengine already merged every `_base_`), with
//!   `default_scope` set to the scope the model is built in.
//! * Distillation config (`model` an MMRazor algorithm with an `architecture`): the student's
//!   own config (`architecture.cfg_path`, resolved as mmengine's `get_model` does) or, for an
//!   inline architecture, the distillation config; `model` becomes the student dict that
//!   `spec::student::resolve_model` builds (the algorithm's `data_preprocessor` copied in, as
//!   `BaseAlgorithm` does), `default_scope` the student's scope, and `test_dataloader` /
//!   `test_pipeline` the distillation config's when it has them (what `inference_detector` on the
//!   algorithm used). Top-level keys that still name MMRazor types (hooks such as
//!   `StopDistillHook`) are dropped and reported: loading the file must not need mmrazor.
//!
//! Never reads a checkpoint; the spec stage's rules decide what "the student" is.

use indexmap::IndexMap;

use super::ExportError;
use crate::config::{Config, ConfigRoots, Value};
use crate::spec::student::resolve_model;

/// The flattened config and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatConfig {
    /// Top-level names in order; `default_scope` and `model` always present.
    pub tree: IndexMap<String, Value>,
    /// The scope the model is built in (written as `default_scope`).
    pub scope: String,
    /// The MMRazor algorithm type, for a distillation config.
    pub distillation: Option<String>,
    /// Where the top-level keys came from: the student's config file (a `cfg_path` student) or
    /// the given config.
    pub source: std::path::PathBuf,
    /// Top-level keys left out because they name MMRazor types.
    pub dropped: Vec<String>,
}

impl FlatConfig {
    /// As a [`Config`] named `path` (for [`Config::to_json`] and the spec stage).
    pub fn to_config(&self, path: impl Into<std::path::PathBuf>) -> Config {
        Config::from_tree(path, self.tree.clone())
    }
}

/// Flattens `config` (see the module docs). `explicit_scope` is `--scope`.
pub fn flatten_config(
    config: &Config,
    explicit_scope: Option<&str>,
    roots: &ConfigRoots,
) -> Result<FlatConfig, ExportError> {
    // The spec stage decides whether this is a distillation config and which scope applies.
    let resolved = resolve_model(config, explicit_scope, roots)?;
    let scope = resolved.scope.name().to_string();
    let (mut tree, source) = match &resolved.distillation {
        None => (config.tree().clone(), config.path().to_path_buf()),
        Some(_) => student_tree(config, roots)?,
    };
    if resolved.distillation.is_some() {
        for key in ["test_dataloader", "test_pipeline"] {
            if let Some(v) = config.tree().get(key) {
                tree.insert(key.to_string(), v.clone());
            }
        }
    }
    // `default_scope` first, as mmengine's default_runtime puts it near the top; init_detector
    // reads it (`init_default_scope(config.get('default_scope', 'mmdet'))`).
    tree.shift_remove("default_scope");
    tree.shift_insert(0, "default_scope".into(), Value::Str(scope.clone()));

    let mut dropped = Vec::new();
    if resolved.distillation.is_some() {
        tree.retain(|k, v| {
            let keep = k == "model" || k == "default_scope" || !names_mmrazor(v);
            if !keep {
                dropped.push(k.clone());
            }
            keep
        });
    }
    check_self_contained(&tree)?;
    Ok(FlatConfig {
        tree,
        scope,
        distillation: resolved.distillation,
        source,
        dropped,
    })
}

/// The student's tree: its own config with `model` = the student dict.
fn student_tree(
    config: &Config,
    roots: &ConfigRoots,
) -> Result<(IndexMap<String, Value>, std::path::PathBuf), ExportError> {
    let arch = config
        .get("model.architecture")
        .ok_or_else(|| ExportError::Unsupported {
            what: "a distillation config without `model.architecture`".into(),
        })?;
    let (mut tree, mut student, source) = if arch.get("cfg_path").is_some() {
        let m = config.resolve_cfg_path("model.architecture", roots)?;
        let source = m.config.path().to_path_buf();
        (m.config.into_tree(), m.model, source)
    } else {
        (
            config.tree().clone(),
            arch.clone(),
            config.path().to_path_buf(),
        )
    };
    // mmrazor/models/algorithms/base.py: BaseAlgorithm.__init__ builds the algorithm's
    // data_preprocessor when given and the architecture runs with it; the spec stage does the same.
    if let (Some(dp), Value::Dict(s)) = (config.get("model.data_preprocessor"), &mut student) {
        if *dp != Value::None {
            s.insert("data_preprocessor".into(), dp.clone());
        }
    }
    tree.insert("model".into(), student);
    Ok((tree, source))
}

/// Whether `v` mentions an MMRazor type (`type='mmrazor.X'` or `_scope_='mmrazor'`).
fn names_mmrazor(v: &Value) -> bool {
    match v {
        Value::Dict(d) => d.iter().any(|(k, x)| {
            let scoped = match (k.as_str(), x) {
                ("_scope_", Value::Str(s)) => s == "mmrazor",
                ("type", Value::Str(s)) => s.starts_with("mmrazor."),
                _ => false,
            };
            scoped || names_mmrazor(x)
        }),
        Value::List(items) | Value::Tuple(items) => items.iter().any(names_mmrazor),
        _ => false,
    }
}

/// Every top-level name can be assigned in Python and nothing points into another package's
/// config tree (`pkg::path` strings) or to MMRazor in the model.
fn check_self_contained(tree: &IndexMap<String, Value>) -> Result<(), ExportError> {
    for (k, v) in tree {
        // mmengine keeps only names not starting with `__` (`Config._file2dict`).
        if !super::python::is_identifier(k) || k.starts_with("__") {
            return Err(ExportError::TopLevelName { name: k.clone() });
        }
        if let Some((path, s)) = package_reference(v, k) {
            return Err(ExportError::PackageReference {
                key: path,
                value: s.to_string(),
            });
        }
    }
    if let Some(model) = tree.get("model") {
        if names_mmrazor(model) {
            return Err(ExportError::Unsupported {
                what: "a student model that itself names MMRazor types".into(),
            });
        }
    }
    Ok(())
}

/// The first string of the form `pkg::dir/file.py` (what mmengine resolves through a package's
/// `.mim/configs`), with its dotted key path.
fn package_reference<'v>(v: &'v Value, path: &str) -> Option<(String, &'v str)> {
    match v {
        Value::Str(s) => {
            let (pkg, rest) = s.split_once("::")?;
            let is_pkg =
                !pkg.is_empty() && pkg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            (is_pkg && rest.ends_with(".py")).then(|| (path.to_string(), s.as_str()))
        }
        Value::Dict(d) => d
            .iter()
            .find_map(|(k, x)| package_reference(x, &format!("{path}.{k}"))),
        Value::List(items) | Value::Tuple(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| package_reference(x, &format!("{path}.{i}"))),
        _ => None,
    }
}
