//! Turning named tensors (from any checkpoint reader) into a model's `VarStore`, with
//! PyTorch-`load_state_dict`-like accounting: missing, unexpected and mis-shaped keys, grouped by
//! prefix for the report, and the aliases of shared convolutions (`share_conv`). The key check
//! itself is the core's (`mmcompat_registry::adapter::chain::KeyMismatch`, the one the adapter
//! chain is chosen with); this file adds only what is tch-side: aliases and the copy.
//!
//! Strict mode changes nothing unless everything matches. Non-strict mode mirrors
//! `mmengine.runner.load_checkpoint(strict=False)`: what matches is copied, the rest reported.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use mmcompat_registry::adapter::chain::{ExpectedKeys, KeyMismatch};
use mmcompat_registry::adapter::fit::{expected_state_dict, is_bn_counter};
use mmcompat_registry::checkpoint::{Checkpoint, TensorInfo};
use mmcompat_registry::DType;
use tch::{nn, Kind, Tensor};

use crate::models::{ExpectedKey, ModelError};

/// A key present on both sides with different shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    pub expected: Vec<i64>,
    pub found: Vec<i64>,
}

/// Outcome of [`load_named_tensors`].
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub strict: bool,
    /// Expected state-dict names (aliases included).
    pub expected: usize,
    /// Expected names found with the right shape.
    pub matched: usize,
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub shape_mismatch: Vec<ShapeMismatch>,
    /// Aliases of shared tensors absent from the input while their canonical name was present
    /// (harmless: the tensor is one and the same).
    pub aliases_absent: usize,
    /// `num_batches_tracked` buffers skipped.
    pub skipped_num_batches_tracked: usize,
}

impl LoadReport {
    /// Fraction of expected keys loaded, in percent.
    pub fn coverage(&self) -> f64 {
        if self.expected == 0 {
            return 100.0;
        }
        100.0 * (self.matched + self.aliases_absent) as f64 / self.expected as f64
    }

    /// True when every expected key was loaded and nothing was left over.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.shape_mismatch.is_empty()
    }

    /// Counts per prefix (the first `depth` dotted components), sorted by prefix.
    pub fn group(names: &[String], depth: usize) -> Vec<(String, usize)> {
        let mut g: BTreeMap<String, usize> = BTreeMap::new();
        for n in names {
            let prefix: Vec<&str> = n.split('.').take(depth).collect();
            *g.entry(prefix.join(".")).or_default() += 1;
        }
        g.into_iter().collect()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "loaded {}/{} expected keys ({:.1}% coverage){}",
            self.matched + self.aliases_absent,
            self.expected,
            self.coverage(),
            if self.strict { "" } else { " [non-strict]" }
        )?;
        let section = |f: &mut fmt::Formatter<'_>, title: &str, names: &[String]| -> fmt::Result {
            if names.is_empty() {
                return Ok(());
            }
            writeln!(f, "{title}: {}", names.len())?;
            for (prefix, n) in LoadReport::group(names, 2) {
                writeln!(f, "  {prefix}.* ({n})")?;
            }
            for name in names.iter().take(5) {
                writeln!(f, "    e.g. {name}")?;
            }
            Ok(())
        };
        section(f, "missing keys", &self.missing)?;
        section(f, "unexpected keys", &self.unexpected)?;
        if !self.shape_mismatch.is_empty() {
            writeln!(f, "shape mismatches: {}", self.shape_mismatch.len())?;
            for m in self.shape_mismatch.iter().take(10) {
                writeln!(
                    f,
                    "  {}: model {:?}, checkpoint {:?}",
                    m.name, m.expected, m.found
                )?;
            }
        }
        Ok(())
    }
}

/// Copies `tensors` into `vs` following `keys` (see the module docs).
pub fn load_named_tensors(
    vs: &nn::VarStore,
    keys: &[ExpectedKey],
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    strict: bool,
) -> Result<LoadReport, ModelError> {
    let mut input: HashMap<String, Tensor> = HashMap::new();
    let mut order: Vec<(String, Vec<usize>)> = Vec::new();
    for (name, t) in tensors {
        if input.contains_key(&name) {
            return Err(ModelError::DuplicateTensor(name));
        }
        order.push((name.clone(), dims(&t.size())));
        input.insert(name, t);
    }
    // The missing/unexpected/shape accounting is the core's (the same check the adapter chain
    // passed), with the batch norms' `num_batches_tracked` expected but never required; only the
    // aliases of shared convolutions are told apart here.
    let expected = model_state_dict(keys);
    let mismatch = KeyMismatch::of(
        order.iter().map(|(n, s)| (n.as_str(), s.as_slice())),
        &expected,
    );
    let mut report = LoadReport {
        strict,
        expected: keys.len(),
        unexpected: mismatch.unexpected,
        skipped_num_batches_tracked: order.iter().filter(|(n, _)| is_bn_counter(n)).count(),
        ..Default::default()
    };
    let alias_of: HashMap<&str, &str> = keys
        .iter()
        .filter_map(|k| Some((k.name.as_str(), k.alias_of.as_deref()?)))
        .collect();
    for name in mismatch.missing {
        match alias_of.get(name.as_str()) {
            Some(canonical) if input.contains_key(*canonical) => report.aliases_absent += 1,
            _ => report.missing.push(name),
        }
    }
    report.shape_mismatch = mismatch
        .shape_mismatch
        .into_iter()
        .filter(|(name, _, _)| !is_bn_counter(name))
        .map(|(name, expected, found)| ShapeMismatch {
            name,
            expected: expected.iter().map(|&d| d as i64).collect(),
            found: found.iter().map(|&d| d as i64).collect(),
        })
        .collect();
    report.matched =
        keys.len() - report.missing.len() - report.aliases_absent - report.shape_mismatch.len();

    // Value chosen for every canonical (stored) tensor.
    let mut chosen: HashMap<&str, &Tensor> = HashMap::new();
    for k in keys {
        let Some(t) = input.get(&k.name).filter(|t| t.size() == k.shape) else {
            continue;
        };
        let target = k.alias_of.as_deref().unwrap_or(&k.name);
        if let Some(prev) = chosen.get(target) {
            // Several names of one shared tensor: upstream copies each in module order into the
            // same Parameter, so the last wins; differing values mean a corrupted checkpoint.
            let diff = max_abs_diff(prev, t)?;
            if diff != 0.0 {
                let err = ModelError::SharedWeightsDiffer {
                    canonical: target.to_string(),
                    alias: k.name.clone(),
                    max_abs_diff: diff,
                };
                if strict {
                    return Err(err);
                }
                tracing::warn!(
                    "{err}; using `{}` as PyTorch's load_state_dict would",
                    k.name
                );
            }
        }
        chosen.insert(target, t);
    }
    if strict && !report.is_complete() {
        return Err(ModelError::StrictLoad(Box::new(report)));
    }
    let mut vars = vs.variables();
    tch::no_grad(|| -> Result<(), ModelError> {
        for (name, src) in &chosen {
            let Some(dst) = vars.get_mut(*name) else {
                // Every canonical expected key is a VarStore variable by construction.
                return Err(ModelError::Invalid {
                    path: (*name).to_string(),
                    message: "internal: expected key without a variable".into(),
                });
            };
            let src = src.f_to_kind(dst.kind())?;
            dst.f_copy_(&src)?;
        }
        Ok(())
    })?;
    if !report.is_complete() {
        tracing::warn!("non-strict load: {report}");
    }
    Ok(report)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64, ModelError> {
    let d = a
        .f_to_kind(Kind::Double)?
        .f_to_device(tch::Device::Cpu)?
        .f_sub(&b.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?)?
        .f_abs()?
        .f_max()?;
    Ok(d.f_double_value(&[])?)
}

/// The model's state dict keys and shapes as the core's weights path expects them (aliases of
/// shared convolutions included, `num_batches_tracked` of every batch norm added by the core).
pub fn model_state_dict(keys: &[ExpectedKey]) -> ExpectedKeys {
    expected_state_dict(keys.iter().map(|k| (k.name.clone(), dims(&k.shape))))
}

/// A libtorch size as a checkpoint shape (libtorch sizes are never negative).
fn dims(size: &[i64]) -> Vec<usize> {
    size.iter().map(|&d| d.max(0) as usize).collect()
}

/// libtorch element type of a checkpoint dtype.
pub fn kind_of(dtype: DType) -> Kind {
    match dtype {
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F64 => Kind::Double,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    }
}

/// One checkpoint tensor as an owned CPU `Tensor`. The byte length is checked against
/// dtype × shape first (`Tensor::f_from_data_size` would read past a short buffer).
pub fn tensor_from_checkpoint(
    ck: &Checkpoint,
    name: &str,
    info: &TensorInfo,
) -> Result<Tensor, ModelError> {
    let bytes = ck.tensor_bytes(info)?;
    let expected = info.nbytes();
    if expected != Some(bytes.len()) {
        return Err(ModelError::BadTensorBytes {
            name: name.to_string(),
            expected: expected.unwrap_or(usize::MAX),
            got: bytes.len(),
        });
    }
    let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_data_size(
        &bytes,
        &shape,
        kind_of(info.dtype),
    )?)
}

/// Every tensor of the checkpoint section `section` (`state_dict`, `ema_state_dict`, `<root>`),
/// in file order, as `(name, tensor)` pairs for [`load_named_tensors`] / `Detector::load`.
/// Names whose prefix is `strip_prefix` keep only the rest; with a prefix, other names are
/// dropped (e.g. `architecture.` selects a distillation student).
pub fn section_tensors(
    ck: &Checkpoint,
    section: &str,
    strip_prefix: Option<&str>,
) -> Result<Vec<(String, Tensor)>, ModelError> {
    let Some(sec) = ck.section(section) else {
        return Err(ModelError::NoSection {
            section: section.to_string(),
            available: ck
                .sections()
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let mut out = Vec::with_capacity(sec.tensors.len());
    for (name, info) in &sec.tensors {
        let key = match strip_prefix {
            Some(p) => match name.strip_prefix(p) {
                Some(rest) => rest.to_string(),
                None => continue,
            },
            None => name.clone(),
        };
        out.push((key, tensor_from_checkpoint(ck, name, info)?));
    }
    Ok(out)
}
