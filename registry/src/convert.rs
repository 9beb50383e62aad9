//! Library side of `mmcompat convert <ckpt> -o <out.pth | out.safetensors>`: read a checkpoint
//! safely, choose or apply adapters, write a clean `{meta, state_dict}` checkpoint that the stock
//! `mmdet.apis.init_detector(student_cfg, out)` loads with no missing and no unexpected keys.
//!
//! `meta` is kept (mmyolo's `rtmdet_to_mmyolo.py` loses it, MMRazor's converter keeps the
//! distillation config in it); when the student config is known, `meta.cfg` is rewritten to it, so
//! that `DetInferencer(weights=out)` without a config rebuilds the student, not the distillation
//! algorithm (behaviour.md §3.4, "Trap"). Tensor bytes are read only for the tensors written.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::adapter::chain::ExpectedKeys;
use crate::adapter::{
    fit_checkpoint, AdapterError, AdapterOptions, AdapterSet, ChainChoice, CheckpointView,
    EmaChoice, FitError, FitRequest, Report,
};
use crate::checkpoint::{write_pth, write_safetensors, Checkpoint, CheckpointError, TensorData};
use crate::config::Config;

/// What `mmcompat convert` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// The student's resolved config (`--config`), used for adapter detection and `meta.cfg`.
    pub config: Option<Config>,
    /// Adapters to apply in this order (`--adapter NAME`...); empty = choose automatically.
    pub adapters: Vec<String>,
    /// Extra adapter files (`--adapters FILE`: `.toml` declarative or a dynamic library).
    pub adapter_files: Vec<PathBuf>,
    /// Also load `$XDG_CONFIG_HOME/mmcompat/adapters/*.toml`.
    pub user_adapters: bool,
    /// Scope for detection (`--scope`), overriding the config's `default_scope`.
    pub scope: Option<String>,
    /// `--ema` / `--no-ema`.
    pub ema: EmaChoice,
    /// `--adapter-option KEY=VALUE` ([`AdapterOptions::extra`]).
    pub extra: std::collections::BTreeMap<String, String>,
    /// The model's expected keys, when a backend can say; then the chain must match them.
    pub expected: Option<ExpectedKeys>,
}

/// Output container, from the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    Pth,
    Safetensors,
}

impl OutFormat {
    pub fn from_path(path: &Path) -> OutFormat {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
        {
            OutFormat::Safetensors
        } else {
            OutFormat::Pth
        }
    }
}

/// What was done.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub input: PathBuf,
    pub output: PathBuf,
    pub format: OutFormat,
    pub adapters: Vec<String>,
    /// Whether the chain was chosen automatically (else given with `--adapter`).
    pub automatic: bool,
    pub report: Report,
    pub tensors: usize,
    pub bytes: u64,
    /// `meta.cfg` replaced by the student config.
    pub meta_cfg_rewritten: bool,
}

impl fmt::Display for ConvertReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} → {} ({:?}, {} tensors, {} bytes)",
            self.input.display(),
            self.output.display(),
            self.format,
            self.tensors,
            self.bytes
        )?;
        writeln!(
            f,
            "chain chosen {}",
            if self.automatic {
                "automatically"
            } else {
                "by --adapter"
            }
        )?;
        f.write_str(&self.report.render())?;
        if self.meta_cfg_rewritten {
            writeln!(f, "meta.cfg: rewritten to the student config")?;
        } else {
            writeln!(
                f,
                "meta.cfg: kept (pass --config to store the student config)"
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// Choosing or applying the chain failed (no fit, ambiguity, a plan stale for this file).
    #[error(transparent)]
    Fit(#[from] FitError),
}

/// Converts with the adapters linked into this binary (plus `options.adapter_files`, and the
/// user folder when `options.user_adapters`).
pub fn run(
    ckpt_path: impl AsRef<Path>,
    out_path: impl AsRef<Path>,
    options: &ConvertOptions,
) -> Result<ConvertReport, ConvertError> {
    let set = if options.user_adapters {
        AdapterSet::with_user_adapters(&options.adapter_files)?
    } else {
        let mut set = AdapterSet::from_inventory()?;
        for f in &options.adapter_files {
            set.load_path(f)?;
        }
        set
    };
    run_with(ckpt_path, out_path, options, &set)
}

/// The config as adapters see it (JSON), with `--scope` as its `default_scope`.
fn config_json(options: &ConvertOptions) -> Option<serde_json::Value> {
    let mut j = options.config.as_ref().map(Config::to_json)?;
    if let (Some(scope), Some(obj)) = (&options.scope, j.as_object_mut()) {
        obj.insert(
            "default_scope".to_owned(),
            serde_json::Value::String(scope.clone()),
        );
    }
    Some(j)
}

/// [`run`] with a given adapter set.
pub fn run_with(
    ckpt_path: impl AsRef<Path>,
    out_path: impl AsRef<Path>,
    options: &ConvertOptions,
    set: &AdapterSet,
) -> Result<ConvertReport, ConvertError> {
    let (ckpt_path, out_path) = (ckpt_path.as_ref(), out_path.as_ref());
    let ck = Checkpoint::open(ckpt_path)?;
    let view = CheckpointView::from_checkpoint(&ck);
    let config = config_json(options);
    let adapter_options = AdapterOptions {
        ema: options.ema,
        extra: options.extra.clone(),
    };
    let choice = ChainChoice::from_names(&options.adapters);
    let fit = fit_checkpoint(
        &view,
        set,
        FitRequest {
            expected: options.expected.as_ref(),
            chain: &choice,
            options: &adapter_options,
            strict: true,
            config: config.as_ref(),
        },
    )?;

    let tensors: Vec<(String, TensorData<'_>)> = fit
        .tensors(&ck)
        .map(|t| t.map(|t| (t.key, TensorData::new(t.dtype, t.shape, t.bytes))))
        .collect::<Result<_, _>>()?;

    let mut meta = match view.meta.clone() {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let meta_cfg_rewritten = match &options.config {
        Some(cfg) => {
            meta.insert(
                "cfg".to_owned(),
                serde_json::Value::String(python_config_text(cfg)),
            );
            true
        }
        None => false,
    };
    let meta = serde_json::Value::Object(meta);
    let format = OutFormat::from_path(out_path);
    match format {
        OutFormat::Pth => write_pth(out_path, &tensors, Some(&meta))?,
        OutFormat::Safetensors => write_safetensors(out_path, &tensors, Some(&meta))?,
    }
    let bytes = std::fs::metadata(out_path).map(|m| m.len()).unwrap_or(0);
    tracing::info!(input = %ckpt_path.display(), output = %out_path.display(), adapters = ?fit.chain.adapters, "converted");
    Ok(ConvertReport {
        input: ckpt_path.to_path_buf(),
        output: out_path.to_path_buf(),
        format,
        adapters: fit.chain.adapters.clone(),
        automatic: fit.automatic,
        report: fit.report.clone(),
        tensors: tensors.len(),
        bytes,
        meta_cfg_rewritten,
    })
}

/// The config as Python source, one `name = value` per top-level key: what `meta['cfg']` holds
/// (mmengine stores `cfg.pretty_text`, `runner.py: save_checkpoint`) and what
/// `Config.fromstring(text, '.py')` reads back. Tuples stay tuples.
pub fn python_config_text(cfg: &Config) -> String {
    let mut out = String::new();
    for (k, v) in cfg.tree() {
        out.push_str(k);
        out.push_str(" = ");
        out.push_str(&crate::export::python::one_line(v));
        out.push('\n');
    }
    out
}
