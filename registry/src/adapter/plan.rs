//! Plans (what an adapter returns: data, serialisable) and their resolution against a checkpoint
//! view into an ordered key mapping the host applies.
//!
//! Every pattern is a regex anchored at the START of the key (we compile `^(?:pattern)`), so a
//! rename can never touch the middle of a key — the bug of MMRazor's
//! `tools/model_converters/convert_kd_ckpt_to_student.py` (`key.replace('architecture.', '')`)
//! and of mmyolo's `rtmdet_to_mmyolo.py` (`key.replace('.0', '.2')`). Add `$` for a full match.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{AdapterError, CheckpointView, TensorEntry};
use crate::DType;

/// What an adapter wants done with a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The adapter that made the plan.
    pub adapter: String,
    /// Which section (state dict) of the checkpoint to take.
    pub section: String,
    /// Applied in order to every key of the section.
    #[serde(default)]
    pub ops: Vec<Op>,
    /// Lines for the report (e.g. which EMA weights were used and why).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One step of a plan. Patterns are anchored at the start of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Keep only keys matching `pattern`; the others are dropped with `reason`.
    Keep {
        pattern: String,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Drop keys matching `pattern`, with the reason the report shows.
    Drop { pattern: String, reason: String },
    /// Remove `prefix` from keys that start with it (only at the start).
    StripPrefix { prefix: String },
    /// Replace the matched start of the key by `to` (regex replacement syntax: `${1}`).
    Rename { pattern: String, to: String },
    /// An `if/elif` chain of renames: each key is renamed by the FIRST rule that matches, at
    /// most once (like mmyolo's converters), so a renamed key is never matched again.
    RenameFirst { rules: Vec<RenameRule> },
    /// Permute the dimensions of matching tensors.
    Transpose { pattern: String, perm: Vec<usize> },
    /// Change the element type of matching tensors.
    Cast { pattern: String, dtype: DType },
    /// Split matching tensors into `into.len()` equal chunks along `dim`; chunk `i` gets the key
    /// `pattern` → `into[i]` (regex replacement of the matched start).
    Split {
        pattern: String,
        dim: usize,
        into: Vec<String>,
    },
    /// Add a tensor that the checkpoint does not hold, every element `fill`, at the end of the
    /// output (converters that write identity parameters, e.g. mmyolo's `yolov7_to_mmyolo.py`
    /// adding ImplicitA zeros / ImplicitM ones). An integer fill is exact in every dtype. The
    /// output has no source key (`MappedTensor::source_key` is empty; its first op is
    /// [`TensorOp::Fill`]).
    Constant {
        key: String,
        dtype: DType,
        shape: Vec<usize>,
        fill: i32,
        reason: String,
    },
}

impl Op {
    /// One-line description for reports and errors.
    pub fn describe(&self) -> String {
        match self {
            Op::Keep { pattern, .. } => format!("keep ^{pattern}"),
            Op::Drop { pattern, reason } => format!("drop ^{pattern} ({reason})"),
            Op::StripPrefix { prefix } => format!("strip prefix `{prefix}`"),
            Op::Rename { pattern, to } => format!("rename ^{pattern} → {to}"),
            Op::RenameFirst { rules } => format!(
                "rename (first match) {}",
                rules
                    .iter()
                    .map(|r| format!("^{} → {}", r.pattern, r.to))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Op::Transpose { pattern, perm } => format!("transpose ^{pattern} {perm:?}"),
            Op::Cast { pattern, dtype } => format!("cast ^{pattern} to {dtype}"),
            Op::Split { pattern, dim, into } => {
                format!("split ^{pattern} along dim {dim} into {}", into.join(", "))
            }
            Op::Constant {
                key,
                dtype,
                shape,
                fill,
                reason,
            } => format!("add {key} {dtype} {shape:?} filled with {fill} ({reason})"),
        }
    }

    fn pattern(&self) -> Option<&str> {
        match self {
            Op::StripPrefix { .. } | Op::RenameFirst { .. } | Op::Constant { .. } => None,
            Op::Keep { pattern, .. }
            | Op::Drop { pattern, .. }
            | Op::Rename { pattern, .. }
            | Op::Transpose { pattern, .. }
            | Op::Cast { pattern, .. }
            | Op::Split { pattern, .. } => Some(pattern),
        }
    }
}

/// One rule of [`Op::RenameFirst`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameRule {
    pub pattern: String,
    pub to: String,
}

/// A tensor operation the host applies to the bytes (closed set, see `tensor.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TensorOp {
    Transpose {
        perm: Vec<usize>,
    },
    Cast {
        dtype: DType,
    },
    /// Chunk `index` of `chunks` equal chunks along `dim` (`torch.chunk` with an even split).
    Split {
        dim: usize,
        chunks: usize,
        index: usize,
    },
    /// A new tensor of the mapped dtype and shape, every element `value` (see [`Op::Constant`]);
    /// only as the first op, and it reads no source bytes.
    Fill {
        value: i32,
    },
}

impl std::fmt::Display for TensorOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorOp::Transpose { perm } => write!(f, "transpose{perm:?}"),
            TensorOp::Cast { dtype } => write!(f, "cast({dtype})"),
            TensorOp::Split { dim, chunks, index } => {
                write!(f, "split(dim={dim}, chunk {index}/{chunks})")
            }
            TensorOp::Fill { value } => write!(f, "constant({value})"),
        }
    }
}

/// One output tensor: where it comes from and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappedTensor {
    /// The key in the adapted state dict.
    pub key: String,
    /// Section and key in the original checkpoint.
    pub section: String,
    pub source_key: String,
    /// Applied in order to the source tensor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<TensorOp>,
    /// Element type and shape after the ops.
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// A source key left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedKey {
    pub section: String,
    pub key: String,
    pub reason: String,
    pub adapter: String,
}

/// The result of resolving one or more plans against a checkpoint view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedMapping {
    /// Adapters applied, in order (empty = identity).
    pub adapters: Vec<String>,
    /// The section the output was taken from.
    pub section: String,
    pub tensors: Vec<MappedTensor>,
    pub dropped: Vec<DroppedKey>,
    /// Ops that matched no key (`adapter: op`), a hint that a rule is stale or misspelt.
    pub unused_ops: Vec<String>,
    pub notes: Vec<String>,
}

pub(crate) fn anchored(adapter: &str, index: usize, pattern: &str) -> Result<Regex, AdapterError> {
    Regex::new(&format!("^(?:{pattern})")).map_err(|e| AdapterError::BadPattern {
        adapter: adapter.to_owned(),
        index,
        pattern: pattern.to_owned(),
        detail: e.to_string(),
    })
}

struct Work {
    key: String,
    source_key: String,
    ops: Vec<TensorOp>,
    dtype: DType,
    shape: Vec<usize>,
}

impl Plan {
    /// Compiles every pattern (an invalid regex is an error naming the op).
    pub fn validate(&self) -> Result<(), AdapterError> {
        for (i, op) in self.ops.iter().enumerate() {
            if let Some(p) = op.pattern() {
                anchored(&self.adapter, i, p)?;
            }
            if let Op::RenameFirst { rules } = op {
                for r in rules {
                    anchored(&self.adapter, i, &r.pattern)?;
                }
            }
        }
        Ok(())
    }

    /// Resolves the plan against `view`: the ordered output keys with their sources and tensor
    /// ops, the dropped keys with reasons. Two outputs with one key is an error.
    pub fn resolve(&self, view: &CheckpointView) -> Result<ResolvedMapping, AdapterError> {
        let entries = view
            .section(&self.section)
            .ok_or_else(|| AdapterError::MissingSection {
                adapter: self.adapter.clone(),
                section: self.section.clone(),
                available: view.section_names(),
                hint: String::new(),
            })?;
        let mut work: Vec<Work> = entries
            .iter()
            .map(|e| Work {
                key: e.key.clone(),
                source_key: e.key.clone(),
                ops: Vec::new(),
                dtype: e.dtype,
                shape: e.shape.clone(),
            })
            .collect();
        let mut dropped = Vec::new();
        let mut unused_ops = Vec::new();
        let drop = |w: &Work, reason: String, dropped: &mut Vec<DroppedKey>| {
            dropped.push(DroppedKey {
                section: self.section.clone(),
                key: w.source_key.clone(),
                reason,
                adapter: self.adapter.clone(),
            });
        };
        for (index, op) in self.ops.iter().enumerate() {
            let re = match op.pattern() {
                Some(p) => Some(anchored(&self.adapter, index, p)?),
                None => None,
            };
            let matches = |k: &str| re.as_ref().is_some_and(|r| r.is_match(k));
            let mut used = 0usize;
            match op {
                Op::Keep { pattern, reason } => {
                    let before = std::mem::take(&mut work);
                    for w in before {
                        if matches(&w.key) {
                            used += 1;
                            work.push(w);
                        } else {
                            let why = reason
                                .clone()
                                .unwrap_or_else(|| format!("not matched by keep ^{pattern}"));
                            drop(&w, why, &mut dropped);
                        }
                    }
                }
                Op::Drop { reason, .. } => {
                    let before = std::mem::take(&mut work);
                    for w in before {
                        if matches(&w.key) {
                            used += 1;
                            drop(&w, reason.clone(), &mut dropped);
                        } else {
                            work.push(w);
                        }
                    }
                }
                Op::StripPrefix { prefix } => {
                    for w in &mut work {
                        if let Some(rest) = w.key.strip_prefix(prefix.as_str()) {
                            w.key = rest.to_owned();
                            used += 1;
                        }
                    }
                }
                Op::Rename { to, .. } => {
                    if let Some(re) = &re {
                        for w in &mut work {
                            if re.is_match(&w.key) {
                                w.key = re.replacen(&w.key, 1, to.as_str()).into_owned();
                                used += 1;
                            }
                        }
                    }
                }
                Op::RenameFirst { rules } => {
                    let compiled = rules
                        .iter()
                        .map(|r| anchored(&self.adapter, index, &r.pattern).map(|re| (re, r)))
                        .collect::<Result<Vec<_>, _>>()?;
                    let mut rule_used = vec![false; compiled.len()];
                    for w in &mut work {
                        if let Some((i, (re, r))) = compiled
                            .iter()
                            .enumerate()
                            .find(|(_, (re, _))| re.is_match(&w.key))
                        {
                            w.key = re.replacen(&w.key, 1, r.to.as_str()).into_owned();
                            rule_used[i] = true;
                            used += 1;
                        }
                    }
                    if used > 0 {
                        for (r, u) in rules.iter().zip(rule_used) {
                            if !u {
                                unused_ops.push(format!(
                                    "{}: op #{index} rule ^{} → {}",
                                    self.adapter, r.pattern, r.to
                                ));
                            }
                        }
                    }
                }
                Op::Transpose { perm, .. } => {
                    for w in &mut work {
                        if matches(&w.key) {
                            let shape = transposed_shape(&w.shape, perm)
                                .map_err(|detail| self.tensor_err(index, op, w, detail))?;
                            w.shape = shape;
                            w.ops.push(TensorOp::Transpose { perm: perm.clone() });
                            used += 1;
                        }
                    }
                }
                Op::Cast { dtype, .. } => {
                    for w in &mut work {
                        if matches(&w.key) {
                            w.dtype = *dtype;
                            w.ops.push(TensorOp::Cast { dtype: *dtype });
                            used += 1;
                        }
                    }
                }
                Op::Split { dim, into, .. } => {
                    let before = std::mem::take(&mut work);
                    for w in before {
                        let Some(re) = re.as_ref().filter(|r| r.is_match(&w.key)) else {
                            work.push(w);
                            continue;
                        };
                        used += 1;
                        let shape = split_shape(&w.shape, *dim, into.len())
                            .map_err(|detail| self.tensor_err(index, op, &w, detail))?;
                        for (i, to) in into.iter().enumerate() {
                            let mut ops = w.ops.clone();
                            ops.push(TensorOp::Split {
                                dim: *dim,
                                chunks: into.len(),
                                index: i,
                            });
                            work.push(Work {
                                key: re.replacen(&w.key, 1, to.as_str()).into_owned(),
                                source_key: w.source_key.clone(),
                                ops,
                                dtype: w.dtype,
                                shape: shape.clone(),
                            });
                        }
                    }
                }
                Op::Constant {
                    key,
                    dtype,
                    shape,
                    fill,
                    ..
                } => {
                    work.push(Work {
                        key: key.clone(),
                        source_key: String::new(),
                        ops: vec![TensorOp::Fill { value: *fill }],
                        dtype: *dtype,
                        shape: shape.clone(),
                    });
                    used += 1;
                }
            }
            if used == 0 {
                unused_ops.push(format!("{}: op #{index} {}", self.adapter, op.describe()));
            }
        }
        let tensors: Vec<MappedTensor> = work
            .into_iter()
            .map(|w| MappedTensor {
                key: w.key,
                section: self.section.clone(),
                source_key: w.source_key,
                ops: w.ops,
                dtype: w.dtype,
                shape: w.shape,
            })
            .collect();
        check_duplicates(&self.adapter, &tensors)?;
        Ok(ResolvedMapping {
            adapters: vec![self.adapter.clone()],
            section: self.section.clone(),
            tensors,
            dropped,
            unused_ops,
            notes: self.notes.clone(),
        })
    }

    fn tensor_err(&self, index: usize, op: &Op, w: &Work, detail: String) -> AdapterError {
        AdapterError::BadTensorOp {
            adapter: self.adapter.clone(),
            index,
            op: op.describe(),
            key: format!("{} {:?}", w.source_key, w.shape),
            detail,
        }
    }
}

fn check_duplicates(adapter: &str, tensors: &[MappedTensor]) -> Result<(), AdapterError> {
    let mut by_key: IndexMap<&str, Vec<String>> = IndexMap::new();
    for t in tensors {
        by_key
            .entry(t.key.as_str())
            .or_default()
            .push(format!("{}:{}", t.section, t.source_key));
    }
    let duplicates: Vec<(String, Vec<String>)> = by_key
        .into_iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(k, s)| (k.to_owned(), s))
        .collect();
    if duplicates.is_empty() {
        Ok(())
    } else {
        Err(AdapterError::DuplicateOutputs {
            adapter: adapter.to_owned(),
            duplicates,
        })
    }
}

pub(crate) fn transposed_shape(shape: &[usize], perm: &[usize]) -> Result<Vec<usize>, String> {
    let mut seen = vec![false; shape.len()];
    if perm.len() != shape.len() {
        return Err(format!(
            "permutation {perm:?} has {} dims, the tensor {}",
            perm.len(),
            shape.len()
        ));
    }
    let mut out = Vec::with_capacity(perm.len());
    for &p in perm {
        match (shape.get(p), seen.get_mut(p)) {
            (Some(&d), Some(s)) if !*s => {
                *s = true;
                out.push(d);
            }
            _ => {
                return Err(format!(
                    "{perm:?} is not a permutation of 0..{}",
                    shape.len()
                ))
            }
        }
    }
    Ok(out)
}

pub(crate) fn split_shape(
    shape: &[usize],
    dim: usize,
    chunks: usize,
) -> Result<Vec<usize>, String> {
    let Some(&n) = shape.get(dim) else {
        return Err(format!("dim {dim} out of range for {} dims", shape.len()));
    };
    if chunks == 0 || n % chunks != 0 {
        return Err(format!(
            "size {n} of dim {dim} does not split into {chunks} equal chunks"
        ));
    }
    let mut out = shape.to_vec();
    out[dim] = n / chunks;
    Ok(out)
}

impl ResolvedMapping {
    /// The identity mapping of one section (no adapter).
    pub fn identity(view: &CheckpointView, section: &str) -> Result<ResolvedMapping, AdapterError> {
        Plan {
            adapter: "identity".to_owned(),
            section: section.to_owned(),
            ops: Vec::new(),
            notes: Vec::new(),
        }
        .resolve(view)
        .map(|mut m| {
            m.adapters.clear();
            m
        })
    }

    /// The checkpoint as the next adapter of a chain sees it: `view` with the resolved section
    /// replaced by the output keys.
    pub fn as_view(&self, view: &CheckpointView) -> CheckpointView {
        let mut out = view.clone();
        let entries: Vec<TensorEntry> = self
            .tensors
            .iter()
            .map(|t| TensorEntry {
                key: t.key.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
            })
            .collect();
        out.sections.insert(self.section.clone(), entries);
        out
    }

    /// Composes `self` (applied first) with `next`, resolved against `self.as_view(..)`.
    pub fn then(self, next: ResolvedMapping) -> Result<ResolvedMapping, AdapterError> {
        let first: BTreeMap<&str, &MappedTensor> =
            self.tensors.iter().map(|t| (t.key.as_str(), t)).collect();
        let from_first = next.section == self.section;
        let mut tensors = Vec::with_capacity(next.tensors.len());
        for t in &next.tensors {
            match first.get(t.source_key.as_str()).filter(|_| from_first) {
                Some(src) => {
                    let mut ops = src.ops.clone();
                    ops.extend(t.ops.iter().cloned());
                    tensors.push(MappedTensor {
                        key: t.key.clone(),
                        section: src.section.clone(),
                        source_key: src.source_key.clone(),
                        ops,
                        dtype: t.dtype,
                        shape: t.shape.clone(),
                    });
                }
                None => tensors.push(t.clone()),
            }
        }
        let mut dropped = if from_first {
            self.dropped.clone()
        } else {
            Vec::new()
        };
        if !from_first {
            // The first adapter's output is discarded entirely: report its section as dropped.
            dropped.extend(self.tensors.iter().map(|t| DroppedKey {
                section: t.section.clone(),
                key: t.source_key.clone(),
                reason: format!(
                    "section {} not used by {}",
                    self.section,
                    next.adapters.join(" → ")
                ),
                adapter: next.adapters.join(" → "),
            }));
        }
        for d in &next.dropped {
            match first.get(d.key.as_str()).filter(|_| from_first) {
                Some(src) => dropped.push(DroppedKey {
                    section: src.section.clone(),
                    key: src.source_key.clone(),
                    reason: d.reason.clone(),
                    adapter: d.adapter.clone(),
                }),
                None => dropped.push(d.clone()),
            }
        }
        let mut adapters = self.adapters;
        adapters.extend(next.adapters);
        let mut unused_ops = self.unused_ops;
        unused_ops.extend(next.unused_ops);
        let mut notes = self.notes;
        notes.extend(next.notes);
        Ok(ResolvedMapping {
            adapters,
            section: next.section,
            tensors,
            dropped,
            unused_ops,
            notes,
        })
    }

    /// Output keys in order.
    pub fn keys(&self) -> Vec<&str> {
        self.tensors.iter().map(|t| t.key.as_str()).collect()
    }

    /// `key dtype [shape]` per output tensor, one per line (for snapshots and `--dry-run`).
    pub fn key_listing(&self) -> String {
        let mut out = String::new();
        for t in &self.tensors {
            let ops = if t.ops.is_empty() {
                String::new()
            } else {
                format!(
                    "  <- {}",
                    t.ops
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            out.push_str(&format!("{} {} {:?}{}\n", t.key, t.dtype, t.shape, ops));
        }
        out
    }
}

/// Resolves a chain of plans made on successive views: `plans[0]` on `view`, `plans[1]` on the
/// result, ... Each plan is produced by the caller from the previous view (see `chain.rs`).
pub fn resolve_chain(
    view: &CheckpointView,
    plans: &[Plan],
) -> Result<ResolvedMapping, AdapterError> {
    let mut current_view = view.clone();
    let mut acc: Option<ResolvedMapping> = None;
    for plan in plans {
        let m = plan.resolve(&current_view)?;
        current_view = m.as_view(&current_view);
        acc = Some(match acc {
            None => m,
            Some(prev) => prev.then(m)?,
        });
    }
    match acc {
        Some(m) => Ok(m),
        None => {
            let section = view
                .default_section()
                .unwrap_or(super::ROOT_SECTION)
                .to_owned();
            ResolvedMapping::identity(view, &section)
        }
    }
}
