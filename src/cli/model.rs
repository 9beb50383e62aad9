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
use mmcompat_registry::config::ConfigRoots;
use mmcompat_registry::model_zoo::{ModelIndex, DEFAULT_PACKAGES};

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
pub fn detect_inputs(
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
