//! `mmcompat inspect <ckpt> [--json]`: a summary of a checkpoint that reads no tensor bytes.
//!
//! # JSON schema (`InspectReport::to_json`)
//! ```text
//! {
//!   "path": string,                      // as given
//!   "format": "torch-zip" | "torch-legacy" | "safetensors",
//!   "top_level_keys": [string],          // file order; tensor names for a bare state dict
//!   "sections": {                        // file order; see `checkpoint` module doc for the rule
//!     "<name>": {                        // "state_dict", "ema_state_dict", "model" or "<root>"
//!       "tensors": int,                  // number of tensor entries
//!       "parameters": int,               // sum of element counts
//!       "bytes": int,                    // sum of element count × dtype size (logical bytes)
//!       "prefixes": {string: int},       // first dotted component of each key → count, first-seen order
//!       "dtypes": {string: int}          // torch dtype name → tensor count, sorted by name
//!     }
//!   },
//!   "dtypes": {string: int},             // dtype census over all sections, sorted by name
//!   "meta": any,                         // `Checkpoint::meta_json()`: JSON-like `meta`, null if absent
//!   "opaque_globals": [string],          // sorted `module.name` of globals kept as opaque data
//!   "module_trees": [                    // only when a top-level value is a pickled nn.Module
//!     {"key": string,                    //   (Ultralytics .pt): its walk, see `module_tree`
//!      "class": string,                  //   root class, e.g. ultralytics.nn.tasks.DetectionModel
//!      "modules": int, "tensors": int,   //   modules walked, state_dict() entries
//!      "classes": {string: int},         //   class → module count, first-seen order
//!      "error": string | null}           //   why the walk stopped (then no section)
//!   ],
//!   "adapters": [                        // only after `detect_adapters` (the CLI always runs it):
//!     {"name": string, "level": "low" | "high" | "raw", "reason": string}  // those that apply
//!   ]
//! }
//! ```

use super::module_tree;
use super::{Checkpoint, Format, Value};
use crate::adapter::{AdapterSet, CheckpointView};
use indexmap::IndexMap;
use serde_json::{json, Map, Value as J};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Summary of one section.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionSummary {
    pub name: String,
    pub tensors: usize,
    pub parameters: u64,
    pub bytes: u64,
    /// First dotted component of each key → count, in order of first appearance.
    pub prefixes: IndexMap<String, usize>,
    /// dtype name → tensor count.
    pub dtypes: BTreeMap<String, usize>,
}

/// The walk of a pickled module tree at a top-level key (classes named, never imported).
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleTreeSummary {
    pub key: String,
    pub class: String,
    pub modules: usize,
    pub tensors: usize,
    /// Class → module count, in order of first appearance.
    pub classes: IndexMap<String, usize>,
    /// Why the walk failed (the key then forms no section).
    pub error: Option<String>,
}

/// An adapter that detects itself on the checkpoint (no config given).
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterDetection {
    pub name: String,
    pub level: String,
    pub reason: String,
}

/// What `mmcompat inspect` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectReport {
    pub path: String,
    pub format: Format,
    pub top_level_keys: Vec<String>,
    pub sections: Vec<SectionSummary>,
    /// dtype name → tensor count over all sections.
    pub dtypes: BTreeMap<String, usize>,
    pub meta: J,
    pub opaque_globals: Vec<String>,
    pub module_trees: Vec<ModuleTreeSummary>,
    /// `None` until [`InspectReport::detect_adapters`] ran.
    pub adapters: Option<Vec<AdapterDetection>>,
}

fn module_trees(root: &Value) -> Vec<ModuleTreeSummary> {
    let Value::Dict(d) = root else {
        return Vec::new();
    };
    d.items
        .iter()
        .filter(|(_, v)| module_tree::is_module(v))
        .map(|(k, v)| {
            let class = match v {
                Value::Opaque(o) => o.class(),
                _ => String::new(),
            };
            match module_tree::walk(v) {
                Ok(tree) => ModuleTreeSummary {
                    key: k.key_string(),
                    class,
                    modules: tree.modules.len(),
                    tensors: tree.state_dict.len(),
                    classes: tree
                        .class_counts()
                        .into_iter()
                        .map(|(c, n)| (c.to_owned(), n))
                        .collect(),
                    error: None,
                },
                Err(e) => ModuleTreeSummary {
                    key: k.key_string(),
                    class,
                    modules: 0,
                    tensors: 0,
                    classes: IndexMap::new(),
                    error: Some(e.to_string()),
                },
            }
        })
        .collect()
}

impl InspectReport {
    pub fn from_checkpoint(ck: &Checkpoint, path: impl std::fmt::Display) -> InspectReport {
        let mut all = BTreeMap::new();
        let sections = ck
            .sections()
            .iter()
            .map(|s| {
                let mut prefixes: IndexMap<String, usize> = IndexMap::new();
                let mut dtypes = BTreeMap::new();
                let (mut parameters, mut bytes) = (0u64, 0u64);
                for (k, t) in &s.tensors {
                    let first = k.split('.').next().unwrap_or(k).to_string();
                    *prefixes.entry(first).or_default() += 1;
                    *dtypes.entry(t.dtype.torch_name().to_string()).or_default() += 1;
                    *all.entry(t.dtype.torch_name().to_string()).or_default() += 1;
                    let n = t.numel().unwrap_or(0) as u64;
                    parameters += n;
                    bytes += n * t.dtype.size() as u64;
                }
                SectionSummary {
                    name: s.name.clone(),
                    tensors: s.tensors.len(),
                    parameters,
                    bytes,
                    prefixes,
                    dtypes,
                }
            })
            .collect();
        InspectReport {
            path: path.to_string(),
            format: ck.format(),
            top_level_keys: ck.top_level_keys(),
            sections,
            dtypes: all,
            meta: ck.meta_json(),
            opaque_globals: ck.opaque_globals().iter().cloned().collect(),
            module_trees: module_trees(ck.root()),
            adapters: None,
        }
    }

    /// Records which adapters of `set` detect themselves on `ck` (without a config: what a
    /// plain `detect --weights` would consider).
    pub fn detect_adapters(&mut self, ck: &Checkpoint, set: &AdapterSet) {
        let view = CheckpointView::from_checkpoint(ck);
        let found = set
            .iter()
            .filter_map(|(a, _)| {
                let c = a.detect(&view, None);
                c.applies().then(|| AdapterDetection {
                    name: a.name().to_owned(),
                    level: serde_json::to_value(c.level)
                        .ok()
                        .and_then(|l| l.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    reason: c.reason,
                })
            })
            .collect();
        self.adapters = Some(found);
    }

    /// The documented JSON object (see the module doc).
    pub fn to_json(&self) -> J {
        let mut sections = Map::new();
        for s in &self.sections {
            sections.insert(
                s.name.clone(),
                json!({
                    "tensors": s.tensors,
                    "parameters": s.parameters,
                    "bytes": s.bytes,
                    "prefixes": s.prefixes,
                    "dtypes": s.dtypes,
                }),
            );
        }
        let mut out = json!({
            "path": self.path,
            "format": self.format.as_str(),
            "top_level_keys": self.top_level_keys,
            "sections": sections,
            "dtypes": self.dtypes,
            "meta": self.meta,
            "opaque_globals": self.opaque_globals,
        });
        if let Some(obj) = out.as_object_mut() {
            if !self.module_trees.is_empty() {
                let trees: Vec<J> = self
                    .module_trees
                    .iter()
                    .map(|t| {
                        json!({"key": t.key, "class": t.class, "modules": t.modules,
                               "tensors": t.tensors, "classes": t.classes, "error": t.error})
                    })
                    .collect();
                obj.insert("module_trees".into(), J::Array(trees));
            }
            if let Some(adapters) = &self.adapters {
                let list: Vec<J> = adapters
                    .iter()
                    .map(|a| json!({"name": a.name, "level": a.level, "reason": a.reason}))
                    .collect();
                obj.insert("adapters".into(), J::Array(list));
            }
        }
        out
    }

    /// Human-readable text, one fact per line.
    pub fn render_human(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "{}", self.path);
        let _ = writeln!(o, "format: {}", self.format);
        let keys = if self.top_level_keys.len() > 12 {
            format!(
                "{} keys ({}, ...)",
                self.top_level_keys.len(),
                self.top_level_keys[..6].join(", ")
            )
        } else {
            self.top_level_keys.join(", ")
        };
        let _ = writeln!(o, "top-level keys: {keys}");
        if self.sections.is_empty() {
            let _ = writeln!(o, "sections: none (no state dict found)");
        }
        for s in &self.sections {
            let _ = writeln!(
                o,
                "section {}: {} tensors, {} parameters, {}",
                s.name,
                s.tensors,
                group_digits(s.parameters),
                human_bytes(s.bytes)
            );
            let prefixes: Vec<String> =
                s.prefixes.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(o, "  prefixes: {}", prefixes.join(", "));
            let _ = writeln!(o, "  dtypes: {}", census(&s.dtypes));
        }
        if !self.dtypes.is_empty() {
            let _ = writeln!(o, "dtypes: {}", census(&self.dtypes));
        }
        let _ = writeln!(o, "meta: {}", meta_summary(&self.meta));
        if self.opaque_globals.is_empty() {
            let _ = writeln!(o, "opaque globals: none");
        } else {
            let _ = writeln!(o, "opaque globals: {}", self.opaque_globals.join(", "));
        }
        for t in &self.module_trees {
            match &t.error {
                None => {
                    let _ = writeln!(
                        o,
                        "module tree {}: {} ({} modules, {} state_dict entries; classes named, not imported)",
                        t.key, t.class, t.modules, t.tensors
                    );
                    let classes: Vec<String> =
                        t.classes.iter().map(|(c, n)| format!("{c} {n}")).collect();
                    let _ = writeln!(o, "  classes: {}", classes.join(", "));
                }
                Some(e) => {
                    let _ = writeln!(o, "module tree {}: {} (not walked: {e})", t.key, t.class);
                }
            }
        }
        match &self.adapters {
            None => {}
            Some(a) if a.is_empty() => {
                let _ = writeln!(o, "adapters: none detects itself (the keys load as they are, or pass --config to check)");
            }
            Some(a) => {
                for d in a {
                    let _ = writeln!(o, "adapter {} applies ({}): {}", d.name, d.level, d.reason);
                }
            }
        }
        o
    }
}

fn census(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `dataset_meta` classes, epoch/iter, `*_version` entries, config text size.
fn meta_summary(meta: &J) -> String {
    let Some(m) = meta.as_object() else {
        return if meta.is_null() {
            "none".into()
        } else {
            format!("{meta}")
        };
    };
    if m.is_empty() {
        return "empty".into();
    }
    let mut parts = Vec::new();
    if let Some(classes) = m
        .get("dataset_meta")
        .and_then(|d| d.get("classes"))
        .and_then(J::as_array)
    {
        let first: Vec<String> = classes
            .iter()
            .take(5)
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
            .collect();
        let more = if classes.len() > 5 { ", ..." } else { "" };
        parts.push(format!(
            "{} classes ({}{more})",
            classes.len(),
            first.join(", ")
        ));
    }
    for k in ["epoch", "iter"] {
        if let Some(v) = m.get(k) {
            parts.push(format!("{k} {v}"));
        }
    }
    for (k, v) in m {
        if let Some(name) = k.strip_suffix("_version") {
            parts.push(format!(
                "{name} {}",
                v.as_str().map_or_else(|| v.to_string(), str::to_string)
            ));
        }
    }
    if let Some(cfg) = m.get("cfg").and_then(J::as_str) {
        parts.push(format!("config text {} lines", cfg.lines().count()));
    }
    let others: Vec<&str> = m
        .keys()
        .map(String::as_str)
        .filter(|k| {
            !matches!(*k, "dataset_meta" | "epoch" | "iter" | "cfg") && !k.ends_with("_version")
        })
        .collect();
    if !others.is_empty() {
        parts.push(format!("other keys: {}", others.join(", ")));
    }
    parts.join("; ")
}
