//! The one weights path: a checkpoint, an adapter set and (when a model is known) the model's
//! expected keys in; the chosen adapter chain, its report, the one strict key check and the
//! output tensors (bytes + dtype + shape, after the tensor ops) out. `mmcompat convert`,
//! `mmcompat detect` / `Inferencer` and `inspect --config` all go through [`fit_checkpoint`], so
//! the chain choice, the strict check and `num_batches_tracked` handling exist once.
//!
//! This module never links libtorch: the backend turns [`FittedTensor`]s into its own tensors.

use std::borrow::Cow;

use super::chain::{apply_named, choose_chain, explain_mismatch, Chain, KeyMismatch, NoFit};
use super::{
    apply_tensor_ops, AdapterError, AdapterOptions, AdapterSet, CheckpointView, ExpectedKeys,
    Level, Report, TensorOp,
};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::DType;

pub use super::chain::{is_bn_counter, BN_COUNTER_SUFFIX};

/// The model's state dict as PyTorch lists it, from its parameters and buffers (name → shape, in
/// model order): every batch norm (`<p>.running_mean`) also gets its scalar
/// `<p>.num_batches_tracked`, so that a checkpoint carrying it has no unexpected key, while one
/// without it has no missing key ([`KeyMismatch`] ignores missing counters).
pub fn expected_state_dict(params: impl IntoIterator<Item = (String, Vec<usize>)>) -> ExpectedKeys {
    let mut expected = ExpectedKeys::new();
    for (k, shape) in params {
        let counter = k
            .strip_suffix(".running_mean")
            .map(|p| format!("{p}.{BN_COUNTER_SUFFIX}"));
        expected.insert(k, shape);
        if let Some(c) = counter {
            expected.insert(c, Vec::new());
        }
    }
    expected
}

/// How the adapter chain is chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ChainChoice {
    /// With expected keys: the first chain (identity, one adapter, two) that fits them exactly.
    /// Without: greedily the adapters that detect themselves with high confidence.
    #[default]
    Automatic,
    /// These adapters in this order (`--adapter NAME`...).
    Forced(Vec<String>),
}

impl ChainChoice {
    /// `Automatic` for an empty list, else `Forced`.
    pub fn from_names(names: &[String]) -> ChainChoice {
        if names.is_empty() {
            ChainChoice::Automatic
        } else {
            ChainChoice::Forced(names.to_vec())
        }
    }
}

/// Everything [`fit_checkpoint`] needs besides the checkpoint and the adapter set.
#[derive(Debug, Clone, Copy)]
pub struct FitRequest<'a> {
    /// The model's state dict keys and shapes (see [`expected_state_dict`]); `None` when no model
    /// is known (`convert` without `--config` on a backend-less build).
    pub expected: Option<&'a ExpectedKeys>,
    pub chain: &'a ChainChoice,
    pub options: &'a AdapterOptions,
    /// Strict: the output keys must equal `expected` (shapes included), else
    /// [`FitError::NoFit`] with the grouped report. Non-strict: the closest chain, with a warning
    /// that gives the coverage (mmengine's `load_checkpoint(strict=False)`).
    pub strict: bool,
    /// The resolved config as JSON (`default_scope` set), for adapter detection.
    pub config: Option<&'a serde_json::Value>,
}

/// The outcome of [`fit_checkpoint`].
#[derive(Debug, Clone)]
pub struct Fit {
    pub chain: Chain,
    /// Whether the chain was chosen automatically (else forced by the caller).
    pub automatic: bool,
    /// What the chain did (renames, drops, notes), for `convert`'s output and logs.
    pub report: Report,
    /// The strict key check of the chain's output against the expected keys (empty when it
    /// fits); `None` without expected keys.
    pub mismatch: Option<KeyMismatch>,
    /// Expected keys that are required (all but the batch-norm counters), for coverage.
    pub required: usize,
}

/// One output tensor: its state-dict key, element type, shape and bytes (after the ops).
#[derive(Debug, Clone)]
pub struct FittedTensor<'c> {
    pub key: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: Cow<'c, [u8]>,
}

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Strict and no chain (or not the forced one) gives the expected keys.
    #[error("{0}")]
    NoFit(Box<NoFit>),
    #[error(
        "several adapters apply with high confidence: {}; choose with --adapter NAME",
        .candidates.iter().map(|(n, r)| format!("{n} ({r})")).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous { candidates: Vec<(String, String)> },
    #[error("the adapter plan refers to {section}:{key}, which the checkpoint does not have; the adapter's plan is stale for this checkpoint")]
    MissingTensor { section: String, key: String },
}

impl Fit {
    /// Whether the output matches the expected keys exactly (true without expected keys).
    pub fn fits(&self) -> bool {
        self.mismatch.as_ref().is_none_or(KeyMismatch::fits)
    }

    /// Percentage of the required expected keys the output provides with the right shape.
    pub fn coverage(&self) -> f64 {
        let Some(m) = &self.mismatch else {
            return 100.0;
        };
        if self.required == 0 {
            return 100.0;
        }
        let bad = m.missing.len() + m.shape_mismatch.len();
        100.0 * self.required.saturating_sub(bad) as f64 / self.required as f64
    }

    /// The output tensors in plan order, each read (only now) and passed through its ops.
    pub fn tensors<'c>(
        &'c self,
        ck: &'c Checkpoint,
    ) -> impl Iterator<Item = Result<FittedTensor<'c>, FitError>> + 'c {
        self.chain.mapping.tensors.iter().map(move |t| {
            if matches!(t.ops.first(), Some(TensorOp::Fill { .. })) {
                // plan.rs: Op::Constant — a new tensor, nothing to read.
                let (dtype, shape, bytes) =
                    apply_tensor_ops(t.dtype, &t.shape, Cow::Borrowed(&[]), &t.ops)?;
                return Ok(FittedTensor {
                    key: t.key.clone(),
                    dtype,
                    shape,
                    bytes,
                });
            }
            let info = ck
                .section(&t.section)
                .and_then(|s| s.tensors.get(&t.source_key))
                .ok_or_else(|| FitError::MissingTensor {
                    section: t.section.clone(),
                    key: t.source_key.clone(),
                })?;
            let bytes = ck.tensor_bytes(info)?;
            let (dtype, shape, bytes) = apply_tensor_ops(info.dtype, &info.shape, bytes, &t.ops)?;
            Ok(FittedTensor {
                key: t.key.clone(),
                dtype,
                shape,
                bytes,
            })
        })
    }
}

/// Chooses (or applies the forced) adapter chain, applies it to the key listing and does the one
/// strict key check. Tensor bytes are read later, by [`Fit::tensors`].
pub fn fit_checkpoint(
    view: &CheckpointView,
    set: &AdapterSet,
    req: FitRequest<'_>,
) -> Result<Fit, FitError> {
    // A key no adapter reads would change nothing: refuse it rather than ignore a typo.
    set.check_options(req.options)?;
    // Before any chain is tried: a refused checkpoint must not fit silently (an unpruned
    // `architecture.*` would match the plain model's keys).
    for (a, _) in set.iter() {
        if let Some(reason) = a.refuse(view) {
            return Err(AdapterError::Refused {
                adapter: a.name().to_owned(),
                reason,
            }
            .into());
        }
    }
    let (chain, automatic) = match (req.chain, req.expected) {
        (ChainChoice::Forced(names), _) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            (
                apply_named(view, &names, set, req.options, req.config)?,
                false,
            )
        }
        (ChainChoice::Automatic, Some(expected)) => {
            match choose_chain(view, req.config, expected, set, req.options) {
                Ok(chain) => (chain, true),
                Err(nofit) if req.strict => return Err(FitError::NoFit(Box::new(nofit))),
                Err(nofit) => {
                    // Non-strict: the closest chain tried (identity first on ties).
                    let best = nofit
                        .attempts
                        .first()
                        .map(|a| a.adapters.clone())
                        .unwrap_or_default();
                    let names: Vec<&str> = best.iter().map(String::as_str).collect();
                    (
                        apply_named(view, &names, set, req.options, req.config)?,
                        true,
                    )
                }
            }
        }
        (ChainChoice::Automatic, None) => (greedy_chain(view, req.config, set, req.options)?, true),
    };
    let mismatch = req
        .expected
        .map(|expected| KeyMismatch::between(&chain.mapping, expected));
    if let (Some(m), Some(expected)) = (&mismatch, req.expected) {
        if !m.fits() && req.strict {
            // The grouped missing/unexpected report, naming the adapters that would have fitted.
            return Err(FitError::NoFit(Box::new(explain_mismatch(
                view,
                &chain.mapping,
                req.config,
                expected,
                set,
                req.options,
            ))));
        }
    }
    let required = req
        .expected
        .map_or(0, |e| e.keys().filter(|k| !is_bn_counter(k)).count());
    let fit = Fit {
        report: Report::new(view, &chain.mapping),
        chain,
        automatic,
        mismatch,
        required,
    };
    if !fit.fits() {
        tracing::warn!(
            coverage = format!("{:.1}%", fit.coverage()),
            chain = %fit.chain.adapters.join(" → "),
            "non-strict: the checkpoint does not match the model's keys\n{}",
            fit.mismatch.as_ref().map(KeyMismatch::render).unwrap_or_default()
        );
    }
    if !fit.chain.adapters.is_empty() {
        tracing::info!(chain = %fit.chain.adapters.join(" → "), "checkpoint adapters applied");
    }
    Ok(fit)
}

/// Without expected keys: repeatedly take the one adapter that detects itself with HIGH
/// confidence on the current keys (e.g. `mmrazor.kd_student`, then a layout adapter when the
/// config names the other layout's model). Two high candidates at once is an error.
pub fn greedy_chain(
    view: &CheckpointView,
    config: Option<&serde_json::Value>,
    set: &AdapterSet,
    options: &AdapterOptions,
) -> Result<Chain, FitError> {
    let mut names: Vec<String> = Vec::new();
    let mut chain = apply_named(view, &[], set, options, config)?;
    for _ in 0..4 {
        let current = chain.mapping.as_view(view);
        let high: Vec<(String, String)> = set
            .iter()
            .filter(|(a, _)| !names.iter().any(|n| n == a.name()))
            .filter_map(|(a, _)| {
                let c = a.detect(&current, config);
                (c.level == Level::High).then(|| (a.name().to_owned(), c.reason))
            })
            .collect();
        match high.len() {
            0 => break,
            1 => names.push(high[0].0.clone()),
            _ => return Err(FitError::Ambiguous { candidates: high }),
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        chain = apply_named(view, &refs, set, options, config)?;
    }
    Ok(chain)
}
