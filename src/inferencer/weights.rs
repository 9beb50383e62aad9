//! The checkpoint's tensors, renamed by the adapter chain that makes them fit the model: a thin
//! tch-side shell around the core's one weights path (`mmcompat_registry::adapter::fit`), which
//! chooses the chain, does the strict key check and applies the tensor ops.

use std::path::Path;

use tch::Tensor;

use super::InferError;
use crate::models::load::{kind_of, model_state_dict};
use crate::models::Detector;
use crate::registry::adapter::{
    fit_checkpoint, AdapterOptions, AdapterSet, ChainChoice, CheckpointView, FitError, FitRequest,
};
use crate::registry::checkpoint::Checkpoint;
use crate::registry::config::Config;

/// Named tensors for the model and the adapter chain that produced the names.
pub(super) type AdaptedTensors = (Vec<(String, Tensor)>, Vec<String>);

/// The checkpoint's tensors renamed by the adapter chain that makes them fit the model. `set`:
/// the user's adapter set; `None` = built-ins + `$XDG_CONFIG_HOME/mmcompat/adapters/*.toml`.
/// `chain`: forced adapter names (empty = automatic).
#[allow(clippy::too_many_arguments)]
pub(super) fn adapted_tensors(
    ck: &Checkpoint,
    weights: &Path,
    config: &Config,
    detector: &Detector,
    set: Option<&AdapterSet>,
    chain: &[String],
    options: &AdapterOptions,
    strict: bool,
) -> Result<AdaptedTensors, InferError> {
    let adapter_err = |source| InferError::Adapter {
        path: weights.to_path_buf(),
        source: Box::new(source),
    };
    let default_set;
    let set = match set {
        Some(s) => s,
        None => {
            default_set = AdapterSet::with_user_adapters(&[]).map_err(adapter_err)?;
            &default_set
        }
    };
    let expected = model_state_dict(detector.expected_key_details());
    let config_json = config.to_json();
    let choice = ChainChoice::from_names(chain);
    let view = CheckpointView::from_checkpoint(ck);
    let fit_err = |e: FitError| match e {
        FitError::Adapter(source) => adapter_err(source),
        FitError::Checkpoint(source) => InferError::Checkpoint {
            path: weights.to_path_buf(),
            source: Box::new(source),
        },
        FitError::NoFit(nofit) => InferError::WeightsDoNotFit {
            weights: weights.to_path_buf(),
            config: config.path().to_path_buf(),
            report: nofit.to_string(),
        },
        other => InferError::Input(format!("checkpoint {}: {other}", weights.display())),
    };
    let fit = fit_checkpoint(
        &view,
        set,
        FitRequest {
            expected: Some(&expected),
            chain: &choice,
            options,
            strict,
            config: Some(&config_json),
        },
    )
    .map_err(fit_err)?;
    let mut out = Vec::with_capacity(fit.chain.mapping.tensors.len());
    for t in fit.tensors(ck) {
        let t = t.map_err(fit_err)?;
        let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        let tensor = Tensor::f_from_data_size(&t.bytes, &shape, kind_of(t.dtype)).map_err(|e| {
            InferError::Input(format!(
                "checkpoint {}: tensor `{}`: {e}",
                weights.display(),
                t.key
            ))
        })?;
        out.push((t.key, tensor));
    }
    Ok((out, fit.chain.adapters))
}
