//! `detect --model NAME`: a metafile name or alias (`rtmdet-t`,
//! `rtmdet_tiny_syncbn_fast_8xb32-300e_coco`, `kd_tiny_rtmdet_s_neck_300e_coco`) to a config file
//! and weights, as `DetInferencer(model=NAME)` does (`mmengine/infer/infer.py:
//! BaseInferencer.__init__` → `_load_model_from_metafile`): the config from the packages'
//! metafiles (`mmcompat_registry::model_zoo`), the weights from `--weights` when given (mmengine:
//! "the weights defined in metafile will be ignored"), else the metafile's URL through the
//! torch.hub cache (`mmcompat::download`). A distillation entry's published checkpoint is a
//! distillation checkpoint: the adapters `detect` chooses from take the student out of it.

use std::path::PathBuf;

use anyhow::{bail, Result};
use mmcompat_registry::adapter::AdapterSet;
use mmcompat_registry::config::{Config, ConfigRoots};
use mmcompat_registry::model_zoo::{ModelIndex, DEFAULT_PACKAGES};

use super::cfg::CfgOptionsArgs;
use super::{AdapterArgs, ConfigRootArgs};

/// The packages searched for a name: the `--scope` one first, then mmdet, mmyolo, mmrazor.
fn search_order(scope: Option<&str>) -> Vec<&str> {
    let mut order: Vec<&str> = Vec::new();
    if let Some(s) = scope {
        order.push(s);
    }
    for p in DEFAULT_PACKAGES {
        if !order.contains(p) {
            order.push(p);
        }
    }
    order
}

/// `(config, weights)` for `detect`: from `--model NAME` when given, else the flags as they are.
fn detect_inputs(
    model: Option<&str>,
    config: Option<PathBuf>,
    weights: Option<PathBuf>,
    scope: Option<&str>,
    roots: &ConfigRoots,
) -> Result<(Option<PathBuf>, PathBuf)> {
    let Some(name) = model else {
        let Some(weights) = weights else {
            bail!("detect needs --weights CKPT (with or without --config), or --model NAME");
        };
        return Ok((config, weights));
    };
    let entry = ModelIndex::lookup(roots, &search_order(scope), name)?;
    eprintln!(
        "model {name}: {} ({} metafile {})",
        entry.config.display(),
        entry.package,
        entry.metafile.display()
    );
    let weights = match weights {
        Some(w) => w,
        None => match &entry.weights {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                mmcompat::download::cached_weights(url)?
            }
            Some(path) => PathBuf::from(path),
            None => bail!(
                "model {name} ({}) has no `Weights` in {}: pass --weights CKPT",
                entry.name,
                entry.metafile.display()
            ),
        },
    };
    tracing::info!(model = name, config = %entry.config.display(), weights = %weights.display(), "model resolved");
    Ok((Some(entry.config), weights))
}

/// Which model to run and how its checkpoint is read: the flags `detect`, `serve` and `export`
/// share (one definition, so the three resolve a model identically).
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// The model config (.py or .toml); a distillation config runs its student. Default: the
    /// training config the checkpoint carries (meta.cfg, written by mmengine's Runner); stderr
    /// says when it is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A model name from the packages' metafiles, as DetInferencer(model=NAME) takes: a config
    /// name (rtmdet_tiny_syncbn_fast_8xb32-300e_coco) or an alias (rtmdet-t). Its config, and its
    /// published weights from the torch.hub cache ($TORCH_HOME/hub/checkpoints), downloaded with
    /// a hash check when absent.
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    pub model: Option<String>,
    /// The checkpoint (.pth or .safetensors; distillation, EMA, DDP, mmdet/mmyolo and foreign
    /// layouts). With --model: instead of the published weights.
    #[arg(long, required_unless_present = "model")]
    pub weights: Option<PathBuf>,
    /// Scope for type resolution (default: the config's default_scope).
    #[arg(long)]
    pub scope: Option<String>,
    /// Use these adapters in order instead of choosing automatically (repeatable).
    #[arg(long = "adapter", value_name = "NAME")]
    pub adapter: Vec<String>,
    #[command(flatten)]
    pub adapters: AdapterArgs,
    #[command(flatten)]
    pub roots: ConfigRootArgs,
    #[command(flatten)]
    pub cfg_options: CfgOptionsArgs,
}

/// [`ModelArgs`] resolved: the config that runs (a path, or the loaded config when
/// `--cfg-options` or the checkpoint's meta.cfg made one), the weights and the config roots.
pub struct ResolvedModelArgs {
    pub config: PathBuf,
    pub loaded_config: Option<Config>,
    pub weights: PathBuf,
    pub roots: ConfigRoots,
    pub adapter_set: AdapterSet,
}

impl ModelArgs {
    /// `--model` to config + weights ([`detect_inputs`]), then the config `detect` runs
    /// (`cfg::detect_config`), the roots and the adapter set.
    pub fn resolve(&self) -> Result<ResolvedModelArgs> {
        let roots = self.roots.roots()?;
        let (config, weights) = detect_inputs(
            self.model.as_deref(),
            self.config.clone(),
            self.weights.clone(),
            self.scope.as_deref(),
            &roots,
        )?;
        let (config, loaded_config) =
            super::cfg::detect_config(config, &weights, &roots, &self.cfg_options)?;
        Ok(ResolvedModelArgs {
            config,
            loaded_config,
            weights,
            roots,
            adapter_set: self.adapters.adapter_set()?,
        })
    }
}

/// How the model runs: the flags `detect` and `serve` share.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Load even when some weights are missing (warns with the coverage %).
    #[arg(long)]
    pub non_strict: bool,
    /// fp16 weights and activations (CUDA only).
    #[arg(long)]
    pub half: bool,
    /// Fold batch norms into the preceding convolutions: faster; outputs then differ from
    /// PyTorch's by float32 rounding (the default runs conv → BN exactly as PyTorch does).
    #[arg(long)]
    pub fold_bn: bool,
    /// Refuse images whose header declares more pixels (default 2^30, as OpenCV's
    /// CV_IO_MAX_IMAGE_PIXELS): a guard against decompression bombs.
    #[arg(long, value_name = "N", default_value_t = mmcompat::preprocess::DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
}

/// The `DetectOptions` of a model and how it runs (`inputs`: the images, empty for `serve`).
pub fn detect_options(
    model: &ModelArgs,
    run: RunArgs,
    inputs: Vec<PathBuf>,
) -> Result<mmcompat::inferencer::DetectOptions> {
    let r = model.resolve()?;
    let mut opts = mmcompat::inferencer::DetectOptions::new(r.config, r.weights, inputs);
    opts.loaded_config = r.loaded_config;
    opts.scope = model.scope.clone();
    opts.adapter_chain = model.adapter.clone();
    opts.adapter_set = Some(std::sync::Arc::new(r.adapter_set));
    opts.adapter_options.extra = model.adapters.extra_options();
    opts.config_roots = Some(r.roots);
    opts.device = run.device;
    opts.strict = !run.non_strict;
    opts.half = run.half;
    opts.fold_bn = run.fold_bn;
    opts.max_image_pixels = run.max_image_pixels;
    Ok(opts)
}
