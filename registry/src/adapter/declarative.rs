//! Declarative adapters: a TOML file of rules, no compiled code.
//!
//! ```toml
//! [adapter]
//! name = "torch.compile_orig_mod"
//! scope = "mmengine"
//! description = "strip torch.compile's `_orig_mod.` prefix"
//! [adapter.detect]            # all given rules must hold; no table = low confidence
//! any_key_prefix = ["_orig_mod.", "module._orig_mod."]
//! top_level_keys = ["state_dict"]
//! [[op]]
//! select = "state_dict"       # the section to take (first op only; default: what mmengine loads)
//! [[op]]
//! drop = "teacher\\."          # anchored regex
//! reason = "teacher weights"
//! [[op]]
//! keep = "architecture\\."
//! [[op]]
//! strip_prefix = "_orig_mod."
//! [[op]]
//! rename = "neck\\.out_convs\\."
//! to = "neck.out_layers."
//! ```
//! Validation at load: unknown keys and ops are errors (serde `deny_unknown_fields`), every regex
//! compiles, constant rename targets are unique; at run time, rules that matched nothing are
//! listed in the report ("unused rule").

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::plan::anchored;
use super::{
    AdapterError, AdapterOptions, CheckpointAdapter, CheckpointView, Confidence, Op, Plan,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    adapter: Header,
    #[serde(default, rename = "op")]
    ops: Vec<RawOp>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
    #[serde(default = "default_scope")]
    scope: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    detect: Option<Detect>,
}

fn default_scope() -> String {
    "custom".to_owned()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Detect {
    /// Some key of the selected section starts with one of these.
    #[serde(default)]
    any_key_prefix: Vec<String>,
    /// All of these top-level keys exist.
    #[serde(default)]
    top_level_keys: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOp {
    select: Option<String>,
    keep: Option<String>,
    drop: Option<String>,
    strip_prefix: Option<String>,
    rename: Option<String>,
    to: Option<String>,
    reason: Option<String>,
}

/// An adapter read from a TOML file.
#[derive(Debug, Clone)]
pub struct TomlAdapter {
    path: PathBuf,
    name: String,
    scope: String,
    description: String,
    detect: Option<Detect>,
    section: Option<String>,
    ops: Vec<Op>,
}

impl TomlAdapter {
    pub fn from_path(path: impl AsRef<Path>) -> Result<TomlAdapter, AdapterError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| AdapterError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        TomlAdapter::from_str_at(&text, path)
    }

    /// Parses `text` as if read from `path` (for messages).
    pub fn from_str_at(text: &str, path: &Path) -> Result<TomlAdapter, AdapterError> {
        let bad = |detail: String| AdapterError::BadAdapterFile {
            path: path.to_path_buf(),
            detail,
        };
        let file: File = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let name = file.adapter.name.clone();
        let mut section = None;
        let mut ops = Vec::new();
        let mut constant_targets: Vec<(String, usize)> = Vec::new();
        for (i, raw) in file.ops.iter().enumerate() {
            let n = i + 1;
            let actions = [
                &raw.select,
                &raw.keep,
                &raw.drop,
                &raw.strip_prefix,
                &raw.rename,
            ]
            .iter()
            .filter(|a| a.is_some())
            .count();
            if actions != 1 {
                return Err(bad(format!(
                    "[[op]] #{n} must have exactly one of select, keep, drop, strip_prefix, rename (has {actions})"
                )));
            }
            if raw.to.is_some() && raw.rename.is_none() {
                return Err(bad(format!("[[op]] #{n}: `to` only goes with `rename`")));
            }
            if let Some(s) = &raw.select {
                if i != 0 {
                    return Err(bad(format!("[[op]] #{n}: `select` must be the first op")));
                }
                section = Some(s.clone());
                continue;
            }
            let op = if let Some(p) = &raw.keep {
                Op::Keep {
                    pattern: p.clone(),
                    reason: raw.reason.clone(),
                }
            } else if let Some(p) = &raw.drop {
                Op::Drop {
                    pattern: p.clone(),
                    reason: raw
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("dropped by {}", name)),
                }
            } else if let Some(p) = &raw.strip_prefix {
                Op::StripPrefix { prefix: p.clone() }
            } else if let Some(p) = &raw.rename {
                let to = raw
                    .to
                    .clone()
                    .ok_or_else(|| bad(format!("[[op]] #{n}: `rename` needs `to`")))?;
                if !to.contains('$') {
                    if let Some((_, first)) = constant_targets.iter().find(|(t, _)| *t == to) {
                        return Err(bad(format!(
                            "[[op]] #{n}: rename target `{to}` is already produced by op #{first}"
                        )));
                    }
                    constant_targets.push((to.clone(), n));
                }
                Op::Rename {
                    pattern: p.clone(),
                    to,
                }
            } else {
                return Err(bad(format!("[[op]] #{n}: no action")));
            };
            ops.push(op);
        }
        let adapter = TomlAdapter {
            path: path.to_path_buf(),
            name,
            scope: file.adapter.scope,
            description: file.adapter.description,
            detect: file.adapter.detect,
            section,
            ops,
        };
        // Compile every regex now, so a typo fails at load time with the file name.
        for (i, op) in adapter.ops.iter().enumerate() {
            if let Op::Keep { pattern, .. }
            | Op::Drop { pattern, .. }
            | Op::Rename { pattern, .. } = op
            {
                anchored(&adapter.name, i, pattern).map_err(|e| bad(e.to_string()))?;
            }
        }
        for p in adapter.detect.iter().flat_map(|d| &d.any_key_prefix) {
            if p.is_empty() {
                return Err(bad(
                    "[adapter.detect] any_key_prefix entries must not be empty".to_owned(),
                ));
            }
        }
        Ok(adapter)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn section_for(&self, view: &CheckpointView) -> Option<String> {
        self.section
            .clone()
            .or_else(|| view.default_section().map(str::to_owned))
    }
}

impl CheckpointAdapter for TomlAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn scope(&self) -> &str {
        &self.scope
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn detect(&self, view: &CheckpointView, _config: Option<&serde_json::Value>) -> Confidence {
        let Some(detect) = &self.detect else {
            return Confidence::low(format!(
                "{} has no [adapter.detect] rules",
                self.path.display()
            ));
        };
        let Some(section) = self.section_for(view) else {
            return Confidence::none("the checkpoint has no state dict");
        };
        if let Some(missing) = detect
            .top_level_keys
            .iter()
            .find(|k| !view.top_level_keys.contains(k))
        {
            return Confidence::none(format!("no top-level key `{missing}`"));
        }
        if !detect.any_key_prefix.is_empty() {
            match detect
                .any_key_prefix
                .iter()
                .find(|p| view.any_key_starts_with(&section, p))
            {
                Some(p) => {
                    return Confidence::high(format!("{section} has keys starting with `{p}`"))
                }
                None => {
                    return Confidence::none(format!(
                        "no key of {section} starts with {}",
                        detect
                            .any_key_prefix
                            .iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ))
                }
            }
        }
        Confidence::high(format!(
            "top-level keys {} present",
            detect.top_level_keys.join(", ")
        ))
    }

    fn plan(&self, view: &CheckpointView, _options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let section = self
            .section_for(view)
            .ok_or_else(|| AdapterError::MissingSection {
                adapter: self.name.clone(),
                section: self
                    .section
                    .clone()
                    .unwrap_or_else(|| "state_dict".to_owned()),
                available: view.section_names(),
                hint: String::new(),
            })?;
        Ok(Plan {
            adapter: self.name.clone(),
            section,
            ops: self.ops.clone(),
            notes: vec![format!("rules from {}", self.path.display())],
        })
    }
}
