//! Library side of `mmcompat export --format mmdet|safetensors` (issue 16): the model a config
//! runs (a distillation config's student) as a package a stock mmdet/mmyolo install loads, with no
//! mmcompat, no MMRazor and no `_base_` tree:
//!
//! * `mmdet` → a folder with `<name>.py` (the config flattened into one file of literals, see
//!   [`flatten`] and [`python`]) and `<name>.pth` (mmengine's `{'meta', 'state_dict'}` layout,
//!   [`write_pth`]) that `mmdet.apis.init_detector(<name>.py, <name>.pth)` loads strictly;
//!   `<name>` is the stem of the config file the keys came from (the student's config for a
//!   `cfg_path` student).
//! * `safetensors` → one file: the same state dict, and in the header's `__metadata__`
//!   (all values are strings, as the format requires):
//!   - `format`: `"pt"` (what Hugging Face tools expect);
//!   - `meta`: the checkpoint's `meta` as JSON, `dataset_meta` kept and `cfg` = the flattened
//!     config's Python source (what `convert` writes, so `detect --weights F` finds the config);
//!   - `mmcompat.config`: the flattened config as JSON (`json.dumps(Config.fromfile(<name>.py)
//!     .to_dict())`: tuples become lists).
//!
//! The weights go through **the** weights path (`adapter::fit_checkpoint`), as `convert` and
//! `detect` do. Both outputs are byte-for-byte deterministic for a given input (fixed zip
//! timestamps; safetensors `__metadata__` keys sorted), so their hashes can be pinned by tests.
//! This module never links libtorch; the CLI passes the model's expected keys when it can.

pub mod flatten;
pub mod python;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use flatten::{flatten_config, FlatConfig};
pub use python::python_source;

use crate::adapter::chain::ExpectedKeys;
use crate::adapter::{
    fit_checkpoint, AdapterError, AdapterOptions, AdapterSet, ChainChoice, CheckpointView,
    EmaChoice, FitError, FitRequest, Report,
};
use crate::checkpoint::{write_pth, Checkpoint, CheckpointError, TensorData};
use crate::config::{Config, ConfigError, ConfigRoots};
use crate::spec::SpecError;

/// `__metadata__` key of the flattened config as JSON in an exported `.safetensors`.
pub const SAFETENSORS_CONFIG_KEY: &str = "mmcompat.config";
/// `__metadata__` key of the checkpoint meta (JSON) in an exported `.safetensors`.
pub const SAFETENSORS_META_KEY: &str = "meta";

/// The package formats (ONNX is the backend's: `mmcompat::export::onnx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageFormat {
    /// A folder with `<name>.py` + `<name>.pth`.
    Mmdet,
    /// One `.safetensors` file with the config in its metadata.
    Safetensors,
}

/// What to export, besides the checkpoint, config and output path.
#[derive(Debug, Clone, Default)]
pub struct PackageOptions {
    /// Adapters to apply in this order (`--adapter NAME`...); empty = choose automatically.
    pub adapters: Vec<String>,
    /// `--ema` / `--no-ema` (the EMA weights by default where the checkpoint has them).
    pub ema: EmaChoice,
    /// `--adapter-option KEY=VALUE` ([`AdapterOptions::extra`]).
    pub extra: std::collections::BTreeMap<String, String>,
    /// `--scope`, overriding the config's `default_scope`.
    pub scope: Option<String>,
    /// The model's state dict keys and shapes, when a backend can say (then the chain must fit
    /// them exactly, as `detect`'s strict load does).
    pub expected: Option<ExpectedKeys>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct PackageReport {
    pub format: PackageFormat,
    /// The config file (`.py`, mmdet format) then the weights file, or the one safetensors file.
    pub files: Vec<PathBuf>,
    /// Where the flattened config's keys came from (the student's config for a distillation).
    pub config_source: PathBuf,
    pub scope: String,
    pub distillation: Option<String>,
    /// Top-level config keys left out because they name MMRazor types.
    pub dropped_keys: Vec<String>,
    pub adapters: Vec<String>,
    pub automatic: bool,
    pub report: Report,
    pub tensors: usize,
}

impl fmt::Display for PackageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            writeln!(f, "wrote {}", file.display())?;
        }
        match &self.distillation {
            Some(algo) => writeln!(
                f,
                "config: the student of {algo} ({}), default_scope '{}'",
                self.config_source.display(),
                self.scope
            )?,
            None => writeln!(
                f,
                "config: {}, default_scope '{}'",
                self.config_source.display(),
                self.scope
            )?,
        }
        if !self.dropped_keys.is_empty() {
            writeln!(
                f,
                "config: left out (they name MMRazor types): {}",
                self.dropped_keys.join(", ")
            )?;
        }
        writeln!(
            f,
            "weights: {} tensors, chain chosen {}",
            self.tensors,
            if self.automatic {
                "automatically"
            } else {
                "by --adapter"
            }
        )?;
        f.write_str(&self.report.render())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error(transparent)]
    Fit(#[from] FitError),
    /// A top-level config name a `.py` file cannot assign (or mmengine would drop).
    #[error("config key `{name}` cannot be written as a Python assignment (not an identifier, or starts with `__`); rename it with --cfg-options or in the config")]
    TopLevelName { name: String },
    /// A `pkg::path.py` string survived resolution: the flattened file would still need that
    /// package's config tree.
    #[error("config key `{key}` still refers to another package's config (`{value}`); the exported config must be self-contained: replace it with the resolved value (e.g. --cfg-options {key}=...)")]
    PackageReference { key: String, value: String },
    #[error("cannot export {what}")]
    Unsupported { what: String },
    #[error("{path}: {detail}")]
    Output { path: PathBuf, detail: String },
}

/// The flattened config's `.py` text: a header saying where it came from, then the literals.
pub fn flat_config_source(flat: &FlatConfig) -> String {
    let mut header = vec![
        "Exported by mmcompat (`mmcompat export --format mmdet`): self-contained, base configs merged."
            .to_string(),
    ];
    if let Some(algo) = &flat.distillation {
        header.push(format!(
            "The student of an MMRazor {algo} config; loads without mmrazor."
        ));
    }
    if !flat.dropped.is_empty() {
        header.push(format!(
            "Left out (MMRazor types): {}.",
            flat.dropped.join(", ")
        ));
    }
    python_source(&header, &flat.tree)
}

/// The package's base name: the stem of the config the keys came from (`ckpt.pth:meta.cfg` for
/// a config stored in a checkpoint gives `ckpt`).
fn package_name(source: &Path) -> String {
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let before_colon = name.split(':').next().unwrap_or_default();
    let stem = Path::new(before_colon)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem.is_empty() {
        "model".into()
    } else {
        stem
    }
}

/// Exports `ckpt` with `config` (a distillation config exports its student) to `out`: a folder
/// for [`PackageFormat::Mmdet`], a file for [`PackageFormat::Safetensors`]. Checks everything
/// (config flattening, adapter fit) before writing anything.
pub fn export_package(
    ckpt_path: &Path,
    config: &Config,
    roots: &ConfigRoots,
    out: &Path,
    format: PackageFormat,
    options: &PackageOptions,
    set: &AdapterSet,
) -> Result<PackageReport, ExportError> {
    let flat = flatten_config(config, options.scope.as_deref(), roots)?;
    let source = flat_config_source(&flat);

    let ck = Checkpoint::open(ckpt_path)?;
    let view = CheckpointView::from_checkpoint(&ck);
    // Adapters see the config the user gave (a distillation config tells the MMRazor adapter what
    // to unwrap), with the scope the model is built in, as `detect` passes it.
    let mut config_json = config.to_json();
    if let Some(obj) = config_json.as_object_mut() {
        obj.insert("default_scope".into(), flat.scope.clone().into());
    }
    let choice = ChainChoice::from_names(&options.adapters);
    let adapter_options = AdapterOptions {
        ema: options.ema,
        extra: options.extra.clone(),
    };
    let fit = fit_checkpoint(
        &view,
        set,
        FitRequest {
            expected: options.expected.as_ref(),
            chain: &choice,
            options: &adapter_options,
            strict: true,
            config: Some(&config_json),
        },
    )?;
    let tensors: Vec<(String, TensorData<'_>)> = fit
        .tensors(&ck)
        .map(|t| t.map(|t| (t.key, TensorData::new(t.dtype, t.shape, t.bytes))))
        .collect::<Result<_, _>>()?;

    // mmdet/apis/inference.py: init_detector reads `meta.dataset_meta` (else `meta.CLASSES`);
    // DetInferencer(weights=...) without a config reads `meta.cfg`: make it the flattened one.
    let mut meta = match view.meta.clone() {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    meta.insert("cfg".into(), source.clone().into());
    let meta = serde_json::Value::Object(meta);

    let out_err = |path: &Path, detail: String| ExportError::Output {
        path: path.to_path_buf(),
        detail,
    };
    let files = match format {
        PackageFormat::Mmdet => {
            if out.is_file() {
                return Err(out_err(
                    out,
                    "is a file; --format mmdet writes a folder (<name>.py + <name>.pth)".into(),
                ));
            }
            std::fs::create_dir_all(out).map_err(|e| out_err(out, e.to_string()))?;
            let name = package_name(&flat.source);
            let py = out.join(format!("{name}.py"));
            let pth = out.join(format!("{name}.pth"));
            std::fs::write(&py, &source).map_err(|e| out_err(&py, e.to_string()))?;
            write_pth(&pth, &tensors, Some(&meta))?;
            vec![py, pth]
        }
        PackageFormat::Safetensors => {
            if out.is_dir() {
                return Err(out_err(
                    out,
                    "is a folder; --format safetensors writes one file (e.g. -o model.safetensors)"
                        .into(),
                ));
            }
            let config_json = flat.to_config(config.path()).to_json().to_string();
            let metadata = BTreeMap::from([
                ("format".to_string(), "pt".to_string()),
                (SAFETENSORS_META_KEY.to_string(), meta.to_string()),
                (SAFETENSORS_CONFIG_KEY.to_string(), config_json),
            ]);
            write_safetensors_sorted(out, &tensors, &metadata)?;
            vec![out.to_path_buf()]
        }
    };
    tracing::info!(input = %ckpt_path.display(), output = %out.display(), adapters = ?fit.chain.adapters, "exported");
    Ok(PackageReport {
        format,
        files,
        config_source: flat.source.clone(),
        scope: flat.scope.clone(),
        distillation: flat.distillation.clone(),
        dropped_keys: flat.dropped.clone(),
        adapters: fit.chain.adapters.clone(),
        automatic: fit.automatic,
        report: fit.report.clone(),
        tensors: tensors.len(),
    })
}

/// A `.safetensors` with several `__metadata__` entries, written deterministically: the
/// `safetensors` crate serialises its metadata `HashMap` in random order, so the header is
/// re-serialised with the metadata keys sorted (same content, same length, so the padding and
/// every data offset stay valid).
fn write_safetensors_sorted(
    path: &Path,
    tensors: &[(String, TensorData<'_>)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), ExportError> {
    let err = |detail: String| ExportError::Output {
        path: path.to_path_buf(),
        detail,
    };
    let md: std::collections::HashMap<String, String> = metadata.clone().into_iter().collect();
    let views = tensors.iter().map(|(n, t)| (n.as_str(), t));
    let mut bytes = safetensors::serialize(views, &Some(md)).map_err(|e| err(format!("{e:?}")))?;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length prefix")) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).map_err(|e| err(e.to_string()))?;
    let mut parsed: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(header.trim_end()).map_err(|e| err(e.to_string()))?;
    if let Some(m) = parsed.get_mut("__metadata__") {
        *m = serde_json::to_value(metadata).map_err(|e| err(e.to_string()))?;
    }
    // `__metadata__` first, as the crate writes it; tensors keep the crate's order.
    let mut ordered = serde_json::Map::new();
    if let Some(m) = parsed.shift_remove("__metadata__") {
        ordered.insert("__metadata__".into(), m);
    }
    ordered.extend(parsed);
    let mut text = serde_json::to_string(&ordered).map_err(|e| err(e.to_string()))?;
    if text.len() > n {
        return Err(err(format!(
            "re-serialised safetensors header is {} bytes, the original {n}",
            text.len()
        )));
    }
    text.extend(std::iter::repeat_n(' ', n - text.len()));
    bytes[8..8 + n].copy_from_slice(text.as_bytes());
    std::fs::write(path, &bytes).map_err(|e| err(e.to_string()))
}
