//! The human report of an adaptation: deterministic (sorted groups, fixed examples), short (counts
//! per prefix, never one line per key), snapshot-tested for every built-in adapter.

use std::collections::BTreeMap;
use std::fmt;

use super::{CheckpointView, ResolvedMapping};

/// Keys are grouped by their first `PREFIX_DEPTH` dotted components (`architecture.backbone`,
/// `neck.reduce_layers`): deep enough to show what moved, short enough to stay a screenful.
pub const PREFIX_DEPTH: usize = 2;
/// How many rename examples a report shows.
pub const RENAME_EXAMPLES: usize = 4;

/// `a.b.c.d` → `a.b` (or the whole key when shorter; the last component is the parameter name,
/// so a 2-component key `steps`/`neck.weight` groups under itself).
pub fn key_prefix(key: &str, depth: usize) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    let keep = depth.min(parts.len().saturating_sub(1)).max(1);
    parts[..keep.min(parts.len())].join(".")
}

fn count_by_prefix<'a>(keys: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for k in keys {
        *out.entry(key_prefix(k, PREFIX_DEPTH)).or_insert(0) += 1;
    }
    out
}

/// What an adaptation did, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub adapters: Vec<String>,
    pub section: String,
    pub sections_available: Vec<(String, usize)>,
    pub notes: Vec<String>,
    pub before: BTreeMap<String, usize>,
    pub before_total: usize,
    pub after: BTreeMap<String, usize>,
    pub after_total: usize,
    pub renamed: usize,
    pub rename_examples: Vec<(String, String)>,
    /// (prefix, reason) → count.
    pub dropped: BTreeMap<(String, String), usize>,
    pub dropped_total: usize,
    /// tensor op description → count.
    pub tensor_ops: BTreeMap<String, usize>,
    pub unused_ops: Vec<String>,
}

impl Report {
    pub fn new(view: &CheckpointView, mapping: &ResolvedMapping) -> Report {
        let source = view.section(&mapping.section).unwrap_or_default();
        let renamed: Vec<(String, String)> = mapping
            .tensors
            .iter()
            .filter(|t| !t.source_key.is_empty()) // constants (plan.rs: Op::Constant) are no renames
            .filter(|t| t.key != t.source_key || t.section != mapping.section)
            .map(|t| (t.source_key.clone(), t.key.clone()))
            .collect();
        // Examples spread over the list (first, evenly spaced, last): stable and representative.
        let mut rename_examples = Vec::new();
        if !renamed.is_empty() {
            let n = RENAME_EXAMPLES.min(renamed.len());
            let mut idx: Vec<usize> = (0..n)
                .map(|i| {
                    if n == 1 {
                        0
                    } else {
                        i * (renamed.len() - 1) / (n - 1)
                    }
                })
                .collect();
            idx.dedup();
            rename_examples = idx.into_iter().map(|i| renamed[i].clone()).collect();
        }
        let mut dropped = BTreeMap::new();
        for d in &mapping.dropped {
            let prefix = if d.section == mapping.section {
                key_prefix(&d.key, PREFIX_DEPTH)
            } else {
                format!("{}:{}", d.section, key_prefix(&d.key, PREFIX_DEPTH))
            };
            *dropped.entry((prefix, d.reason.clone())).or_insert(0) += 1;
        }
        let mut tensor_ops = BTreeMap::new();
        for t in &mapping.tensors {
            for op in &t.ops {
                *tensor_ops.entry(op.to_string()).or_insert(0) += 1;
            }
        }
        Report {
            adapters: mapping.adapters.clone(),
            section: mapping.section.clone(),
            sections_available: view
                .sections
                .iter()
                .map(|(n, t)| (n.clone(), t.len()))
                .collect(),
            notes: mapping.notes.clone(),
            before: count_by_prefix(source.iter().map(|e| e.key.as_str())),
            before_total: source.len(),
            after: count_by_prefix(mapping.tensors.iter().map(|t| t.key.as_str())),
            after_total: mapping.tensors.len(),
            renamed: renamed.len(),
            rename_examples,
            dropped_total: mapping.dropped.len(),
            dropped,
            tensor_ops,
            unused_ops: mapping.unused_ops.clone(),
        }
    }

    pub fn render(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.adapters.is_empty() {
            writeln!(f, "adapters: none (identity)")?;
        } else {
            writeln!(f, "adapters: {}", self.adapters.join(" → "))?;
        }
        let avail: Vec<String> = self
            .sections_available
            .iter()
            .map(|(n, c)| format!("{n} ({c})"))
            .collect();
        writeln!(
            f,
            "section used: {} (checkpoint sections: {})",
            self.section,
            avail.join(", ")
        )?;
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        let width = self
            .before
            .keys()
            .chain(self.after.keys())
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(
                self.dropped
                    .keys()
                    .map(|(p, _)| p.len() + 2)
                    .max()
                    .unwrap_or(0),
            )
            .max(8);
        writeln!(f, "before: {} tensors", self.before_total)?;
        for (p, c) in &self.before {
            writeln!(f, "  {p:<width$} {c:>6}")?;
        }
        writeln!(f, "after: {} tensors", self.after_total)?;
        for (p, c) in &self.after {
            writeln!(f, "  {p:<width$} {c:>6}")?;
        }
        writeln!(f, "renamed: {} keys", self.renamed)?;
        for (from, to) in &self.rename_examples {
            writeln!(f, "  {from} → {to}")?;
        }
        writeln!(f, "dropped: {} keys", self.dropped_total)?;
        for ((p, reason), c) in &self.dropped {
            writeln!(f, "  {:<width$} {c:>6}  {reason}", format!("{p}.*"))?;
        }
        if self.tensor_ops.is_empty() {
            writeln!(f, "tensor ops: none")?;
        } else {
            writeln!(f, "tensor ops:")?;
            for (op, c) in &self.tensor_ops {
                writeln!(f, "  {op} × {c}")?;
            }
        }
        for u in &self.unused_ops {
            writeln!(f, "unused rule: {u}")?;
        }
        Ok(())
    }
}
