//! [`InferencerBuilder`]: the options of an [`Inferencer`], all but config and weights defaulted.

use std::path::PathBuf;
use std::sync::Arc;

use super::{InferError, Inferencer};
use crate::preprocess::DEFAULT_MAX_IMAGE_PIXELS;
use crate::registry::adapter::{AdapterOptions, AdapterSet};
use crate::registry::config::{Config, ConfigRoots};

/// Builder of an [`Inferencer`] (all options but config and weights have defaults).
#[derive(Debug, Clone)]
pub struct InferencerBuilder {
    pub(super) config: Option<PathBuf>,
    /// A config already loaded (e.g. from a checkpoint's `meta.cfg`, or with `--cfg-options`
    /// merged); wins over `config`.
    pub(super) loaded_config: Option<Config>,
    pub(super) weights: Option<PathBuf>,
    pub(super) scope: Option<String>,
    pub(super) device: String,
    pub(super) config_roots: Option<ConfigRoots>,
    pub(super) half: bool,
    pub(super) fold_bn: bool,
    pub(super) strict: bool,
    /// Forced chain (adapter names in order); empty = automatic.
    pub(super) adapter_chain: Vec<String>,
    /// The user's adapter set; `None` = built-ins + the XDG folder. `Arc`: the builder is `Clone`
    /// and adapters (dynamic libraries included) are not.
    pub(super) adapter_set: Option<Arc<AdapterSet>>,
    pub(super) adapter_options: AdapterOptions,
    /// Decoding refuses images declaring more pixels (decompression-bomb guard).
    pub(super) max_image_pixels: u64,
}

impl Default for InferencerBuilder {
    fn default() -> Self {
        InferencerBuilder {
            config: None,
            loaded_config: None,
            weights: None,
            scope: None,
            device: "cpu".into(),
            config_roots: None,
            half: false,
            fold_bn: false,
            strict: true,
            adapter_chain: Vec::new(),
            adapter_set: None,
            adapter_options: AdapterOptions::default(),
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}

impl InferencerBuilder {
    /// The model config (`.py` as mmengine reads it, `.toml`, `.json`).
    pub fn config(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = Some(path.into());
        self
    }

    /// A config already loaded and resolved, instead of a path: e.g.
    /// `Config::from_checkpoint` (the training config a checkpoint carries) or a config with
    /// `Config::merge_cfg_options` applied. Errors then name `config.path()`.
    pub fn loaded_config(mut self, config: Config) -> Self {
        self.loaded_config = Some(config);
        self
    }

    /// The checkpoint (plain, EMA, KD/MMRazor, DDP-wrapped, ... through the adapters).
    pub fn weights(mut self, path: impl Into<PathBuf>) -> Self {
        self.weights = Some(path.into());
        self
    }

    /// Default scope for unqualified types (DetInferencer's `scope`), e.g. `mmyolo`. Without it the
    /// config's `default_scope` is used.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// `cpu`, `cuda` or `cuda:N` (default `cpu`).
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = device.into();
        self
    }

    /// Where `pkg::path` config references are looked up (default: `MMCOMPAT_CONFIG_ROOTS`, then
    /// the configs of the packages installed in `python3`).
    pub fn config_roots(mut self, roots: ConfigRoots) -> Self {
        self.config_roots = Some(roots);
        self
    }

    /// fp16 forward pass (CUDA only).
    pub fn half(mut self, half: bool) -> Self {
        self.half = half;
        self
    }

    /// Fold batch norms into the convolutions at load time (default: off). Saves a pass over
    /// every feature map, but the raw outputs then differ from the Python model's by up to ~7e-4
    /// relative (measured on the fixtures) instead of matching it within float32 noise.
    pub fn fold_bn(mut self, fold: bool) -> Self {
        self.fold_bn = fold;
        self
    }

    /// Strict loading (default): every expected key with its shape, nothing left over.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Force this adapter chain (names, in order) instead of choosing automatically.
    pub fn adapter_chain(mut self, names: Vec<String>) -> Self {
        self.adapter_chain = names;
        self
    }

    /// The adapters to choose from (e.g. `AdapterSet::with_user_adapters(&files)` to add your own
    /// TOML or dynamic adapters). Default: the built-ins + `$XDG_CONFIG_HOME/mmcompat/adapters/
    /// *.toml`, the set every `mmcompat` command uses.
    pub fn adapters(mut self, set: impl Into<Arc<AdapterSet>>) -> Self {
        self.adapter_set = Some(set.into());
        self
    }

    /// Options handed to the adapters (EMA choice, free-form options).
    pub fn adapter_options(mut self, options: AdapterOptions) -> Self {
        self.adapter_options = options;
        self
    }

    /// Largest `width * height` an image file may declare (default 2^30, OpenCV's
    /// `CV_IO_MAX_IMAGE_PIXELS`); checked on the header, before any pixel buffer is allocated.
    pub fn max_image_pixels(mut self, max_pixels: u64) -> Self {
        self.max_image_pixels = max_pixels;
        self
    }

    pub fn build(self) -> Result<Inferencer, InferError> {
        Inferencer::from_builder(self)
    }
}
