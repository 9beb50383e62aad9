//! The checkpoint adapter contract: an adapter looks at a checkpoint's *description* (sections,
//! keys, dtypes, shapes, meta — never tensor bytes) and returns a [`Plan`] (pure data). The host
//! resolves plans into a [`ResolvedMapping`] and applies the few tensor ops lazily, when writing or
//! loading. So plans can come from three sources with the same power: linked crates
//! ([`register_adapter!`](crate::register_adapter!) + `inventory`), dynamic libraries (`crate::plugin`, C ABI + JSON) and
//! declarative TOML files ([`declarative`]).
//!
//! What this module must never do: read tensor bytes to decide anything, or depend on libtorch.

pub mod chain;
pub mod declarative;
pub mod fit;
pub mod keymap;
pub mod plan;
pub mod report;
mod set;
pub mod tensor;

pub use chain::{choose_chain, Chain, ExpectedKeys, NoFit};
pub use fit::{fit_checkpoint, ChainChoice, Fit, FitError, FitRequest, FittedTensor};
pub use keymap::{class_count_mismatch, plan_by_key, widen_to_f32, KeyFate};
pub use plan::{
    resolve_chain, DroppedKey, MappedTensor, Op, Plan, RenameRule, ResolvedMapping, TensorOp,
};
pub use report::Report;
pub use set::{user_adapter_dir, AdapterSet, AdapterSource};
pub use tensor::apply_tensor_ops;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::DType;

/// The section name of a bare state dict (the top level of the file is the state dict).
/// Same spelling as the checkpoint reader's `ROOT_SECTION`.
pub const ROOT_SECTION: &str = "<root>";

/// One tensor as an adapter sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorEntry {
    pub key: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// What an adapter may look at: plain data, independent of the checkpoint reader.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointView {
    /// Keys of the top-level dict, in file order (`meta`, `state_dict`, `message_hub`, ...).
    pub top_level_keys: Vec<String>,
    /// Each state dict of the file (`state_dict`, `ema_state_dict`, [`ROOT_SECTION`]...) with its
    /// tensors in file order.
    pub sections: IndexMap<String, Vec<TensorEntry>>,
    /// `meta` as JSON (`Null` when absent).
    #[serde(default)]
    pub meta: serde_json::Value,
}

/// The fixture listing format (`tests/fixtures/checkpoints/*.keys.json`).
#[derive(Deserialize)]
struct KeysJson {
    #[serde(default)]
    top_level_keys: Vec<String>,
    #[serde(default)]
    sections: IndexMap<String, Vec<KeysJsonTensor>>,
    #[serde(default)]
    meta: serde_json::Value,
}

#[derive(Deserialize)]
struct KeysJsonTensor {
    name: String,
    shape: Vec<usize>,
    dtype: String,
}

impl CheckpointView {
    /// Reads a key listing written by the fixture generator
    /// (`{"format", "top_level_keys", "sections": {name: [{"name","shape","dtype"}]}, "meta"}`).
    pub fn from_keys_json(path: impl AsRef<Path>) -> Result<CheckpointView, AdapterError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| AdapterError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        CheckpointView::from_keys_json_str(&text).map_err(|detail| AdapterError::BadListing {
            path: path.to_path_buf(),
            detail,
        })
    }

    /// [`CheckpointView::from_keys_json`] on a string.
    pub fn from_keys_json_str(text: &str) -> Result<CheckpointView, String> {
        let raw: KeysJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut sections = IndexMap::new();
        for (name, tensors) in raw.sections {
            let mut entries = Vec::with_capacity(tensors.len());
            for t in tensors {
                let dtype = DType::parse(&t.dtype).ok_or_else(|| {
                    format!(
                        "section {name}, key {}: unknown dtype `{}`",
                        t.name, t.dtype
                    )
                })?;
                entries.push(TensorEntry {
                    key: t.name,
                    dtype,
                    shape: t.shape,
                });
            }
            sections.insert(name, entries);
        }
        Ok(CheckpointView {
            top_level_keys: raw.top_level_keys,
            sections,
            meta: raw.meta,
        })
    }

    /// The description of an opened checkpoint (no tensor bytes read).
    pub fn from_checkpoint(ck: &crate::checkpoint::Checkpoint) -> CheckpointView {
        let sections = ck
            .sections()
            .iter()
            .map(|s| {
                let entries = s
                    .tensors
                    .iter()
                    .map(|(k, t)| TensorEntry {
                        key: k.clone(),
                        dtype: t.dtype,
                        shape: t.shape.clone(),
                    })
                    .collect();
                (s.name.clone(), entries)
            })
            .collect();
        CheckpointView {
            top_level_keys: ck.top_level_keys(),
            sections,
            meta: ck.meta_json(),
        }
    }

    pub fn section(&self, name: &str) -> Option<&[TensorEntry]> {
        self.sections.get(name).map(Vec::as_slice)
    }

    /// The section mmengine's `load_checkpoint` would use: `state_dict` if present, else the whole
    /// file (`mmengine/runner/checkpoint.py: _load_checkpoint_to_model`).
    pub fn default_section(&self) -> Option<&str> {
        if self.sections.contains_key("state_dict") {
            Some("state_dict")
        } else if self.sections.contains_key(ROOT_SECTION) {
            Some(ROOT_SECTION)
        } else {
            self.sections.keys().next().map(String::as_str)
        }
    }

    /// Whether any key of `section` starts with `prefix`.
    pub fn any_key_starts_with(&self, section: &str, prefix: &str) -> bool {
        self.section(section)
            .is_some_and(|t| t.iter().any(|e| e.key.starts_with(prefix)))
    }

    /// Section names, for error messages.
    pub fn section_names(&self) -> Vec<String> {
        self.sections.keys().cloned().collect()
    }
}

/// How sure an adapter is that it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    None,
    Low,
    High,
}

/// An adapter's answer to "do you apply?", with the reason (shown in reports and errors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confidence {
    pub level: Level,
    pub reason: String,
}

impl Confidence {
    pub fn none(reason: impl Into<String>) -> Confidence {
        Confidence {
            level: Level::None,
            reason: reason.into(),
        }
    }
    pub fn low(reason: impl Into<String>) -> Confidence {
        Confidence {
            level: Level::Low,
            reason: reason.into(),
        }
    }
    pub fn high(reason: impl Into<String>) -> Confidence {
        Confidence {
            level: Level::High,
            reason: reason.into(),
        }
    }
    pub fn applies(&self) -> bool {
        self.level > Level::None
    }
}

/// Which weights of an EMAHook checkpoint to use (`mmengine/hooks/ema_hook.py`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmaChoice {
    /// `state_dict` as is: what init_detector, DetInferencer and MMRazor's converter load. With
    /// EMAHook on, it holds the EMA weights (swapped in by `_swap_ema_state_dict`).
    #[default]
    Default,
    /// The EMA weights explicitly (`--ema`): `state_dict`, but it is an error if the checkpoint
    /// has no `ema_state_dict` (then `state_dict` holds raw weights and there is no EMA).
    Ema,
    /// The raw (non-averaged) training weights (`--no-ema`): `ema_state_dict`'s `module.*`.
    Raw,
}

/// Options every adapter receives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterOptions {
    #[serde(default)]
    pub ema: EmaChoice,
    /// Free-form `key=value` options for third-party adapters.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

/// Adapter errors; each says what would fix it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AdapterError {
    #[error("adapter {adapter}: the checkpoint has no section `{section}` (sections: {}){}", .available.join(", "), hint_suffix(.hint))]
    MissingSection {
        adapter: String,
        section: String,
        available: Vec<String>,
        hint: String,
    },
    #[error("adapter {adapter} does not apply: {reason}")]
    NotApplicable { adapter: String, reason: String },
    #[error("adapter {adapter}: op #{index} has an invalid pattern `{pattern}`: {detail}")]
    BadPattern {
        adapter: String,
        index: usize,
        pattern: String,
        detail: String,
    },
    /// `key` includes the tensor's shape (`backbone.w [2, 3]`).
    #[error("adapter {adapter}: op #{index} ({op}) cannot apply to `{key}`: {detail}")]
    BadTensorOp {
        adapter: String,
        index: usize,
        op: String,
        key: String,
        detail: String,
    },
    #[error(
        "adapter {adapter}: {} output keys are produced twice, e.g. `{}` from {}; make the renames produce unique keys",
        .duplicates.len(),
        .duplicates.first().map(|d| d.0.as_str()).unwrap_or_default(),
        .duplicates.first().map(|d| d.1.join(" and ")).unwrap_or_default()
    )]
    DuplicateOutputs {
        adapter: String,
        duplicates: Vec<(String, Vec<String>)>,
    },
    #[error("tensor op {op} on {dtype} {shape:?} ({len} bytes): {detail}")]
    Bytes {
        op: String,
        dtype: DType,
        shape: Vec<usize>,
        len: usize,
        detail: String,
    },
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("{path}: not a checkpoint key listing: {detail}")]
    BadListing { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    BadAdapterFile { path: PathBuf, detail: String },
    #[error("adapter `{name}` is defined twice: by {first} and by {second}; rename one of them")]
    DuplicateAdapter {
        name: String,
        first: String,
        second: String,
    },
    #[error("no adapter named `{name}`; known adapters: {}{}", .known.join(", "), did_you_mean(.suggestions))]
    UnknownAdapter {
        name: String,
        known: Vec<String>,
        suggestions: Vec<String>,
    },
    #[error("no adapter reads the option `{key}`; options the adapters read: {}{}", if .known.is_empty() { "none".to_string() } else { .known.join(", ") }, did_you_mean(.suggestions))]
    UnknownOption {
        key: String,
        known: Vec<String>,
        suggestions: Vec<String>,
    },
    #[error("plugin {path}: {detail}")]
    Plugin { path: PathBuf, detail: String },
    #[error("adapter {adapter}: {detail}")]
    Other { adapter: String, detail: String },
    /// See [`CheckpointAdapter::refuse`].
    #[error("{adapter}: refusing this checkpoint: {reason}")]
    Refused { adapter: String, reason: String },
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!("; {hint}")
    }
}

fn did_you_mean(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(
            "; did you mean {}?",
            s.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// A checkpoint adapter. Implementations must be cheap to construct and deterministic.
pub trait CheckpointAdapter: Send + Sync {
    /// Unique name, `scope.what` (`mmrazor.kd_student`).
    fn name(&self) -> &str;
    /// The package scope the adapter belongs to (for `mmcompat registry`).
    fn scope(&self) -> &str;
    /// One line for listings.
    fn description(&self) -> &str;
    /// Whether the adapter applies to this checkpoint (and, when known, the resolved config).
    fn detect(&self, view: &CheckpointView, config: Option<&serde_json::Value>) -> Confidence;
    /// The plan for this checkpoint.
    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError>;
    /// `Some(why)` when the checkpoint must not be loaded whatever the chain, because the model it
    /// holds is not the plain one its keys would fit (an MMRazor pruning / NAS / quantisation
    /// checkpoint): [`fit_checkpoint`] then fails with [`AdapterError::Refused`], from the key
    /// listing alone, before any tensor is read.
    fn refuse(&self, _view: &CheckpointView) -> Option<String> {
        None
    }
    /// The keys of [`AdapterOptions::extra`] this adapter reads (`yolov7.variant`): what
    /// `--adapter-option KEY=VALUE` accepts ([`AdapterSet::check_options`] refuses other keys,
    /// so a misspelt option is an error rather than silently ignored).
    fn option_keys(&self) -> &[&'static str] {
        &[]
    }
}

/// A statically linked adapter: const data submitted with [`register_adapter!`](crate::register_adapter!).
pub struct AdapterRegistration {
    pub name: &'static str,
    pub scope: &'static str,
    pub make: fn() -> Box<dyn CheckpointAdapter>,
    /// `module_path!()` of the registration.
    pub location: &'static str,
}

inventory::collect!(AdapterRegistration);

/// `register_adapter!(name: "mmengine.ddp", scope: "mmengine", make: || Box::new(Ddp));`
#[macro_export]
macro_rules! register_adapter {
    (name: $n:expr, scope: $s:expr, make: $m:expr) => {
        $crate::inventory::submit! {
            $crate::adapter::AdapterRegistration { name: $n, scope: $s, make: $m, location: module_path!() }
        }
    };
}

/// The weights an adapter starts from, honouring [`AdapterOptions::ema`] the way mmengine's
/// EMAHook lays checkpoints out (`mmengine/hooks/ema_hook.py: before_save_checkpoint`,
/// `_swap_ema_state_dict`): `state_dict` holds the EMA weights, `ema_state_dict` the raw ones under
/// `module.` plus the `steps` counter. Every built-in adapter starts its plan with this, so
/// `--no-ema` works with any of them and the report always says which weights were used.
///
/// Returns the section, the ops that normalise it (drop `steps`, strip `module.` when the section
/// is a raw `ema_state_dict`), and the report note.
pub fn select_weights(
    view: &CheckpointView,
    options: &AdapterOptions,
    adapter: &str,
) -> Result<(String, Vec<Op>, Vec<String>), AdapterError> {
    let has_ema = view.sections.contains_key("ema_state_dict");
    let default =
        view.default_section()
            .map(str::to_owned)
            .ok_or_else(|| AdapterError::MissingSection {
                adapter: adapter.to_owned(),
                section: "state_dict".to_owned(),
                available: view.section_names(),
                hint: "the checkpoint holds no tensors".to_owned(),
            })?;
    match options.ema {
        EmaChoice::Default if has_ema => Ok((
            default.clone(),
            Vec::new(),
            vec![format!(
                "weights: {default} = the EMA weights (EMAHook swapped them in; what init_detector loads); \
                 the raw weights are in ema_state_dict (--no-ema)"
            )],
        )),
        EmaChoice::Default => Ok((default.clone(), Vec::new(), vec![format!("weights: {default} (no ema_state_dict: trained without EMAHook)")])),
        EmaChoice::Ema if has_ema => {
            Ok((default.clone(), Vec::new(), vec![format!("weights: {default} = the EMA weights (--ema)")]))
        }
        EmaChoice::Ema => Err(AdapterError::NotApplicable {
            adapter: adapter.to_owned(),
            reason: format!(
                "--ema asked for EMA weights but the checkpoint has no ema_state_dict (trained without EMAHook), so \
                 {default} holds the raw weights; drop --ema"
            ),
        }),
        EmaChoice::Raw if has_ema => {
            let raw = view.section("ema_state_dict").unwrap_or_default();
            let mut ops = Vec::new();
            if raw.iter().any(|e| e.key == "steps") {
                ops.push(Op::Drop { pattern: "steps$".to_owned(), reason: "EMA step counter of BaseAveragedModel".to_owned() });
            }
            if raw.iter().any(|e| e.key.starts_with("module.")) {
                ops.push(Op::StripPrefix { prefix: "module.".to_owned() });
            }
            Ok((
                "ema_state_dict".to_owned(),
                ops,
                vec!["weights: ema_state_dict = the raw (non-EMA) training weights (--no-ema)".to_owned()],
            ))
        }
        EmaChoice::Raw => Ok((
            default.clone(),
            Vec::new(),
            vec![format!("weights: {default} (--no-ema: no ema_state_dict, so {default} already holds the raw weights)")],
        )),
    }
}
