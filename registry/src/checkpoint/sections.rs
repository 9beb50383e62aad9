//! Sections: the state dicts of a file (`state_dict`, `ema_state_dict`, `model`, or the top level).

use indexmap::IndexMap;

use super::tensor::TensorInfo;
use super::value::Value;

/// Name of the section formed by a bare state dict (top level of the file).
pub const ROOT_SECTION: &str = "<root>";

/// Top-level keys that hold a state dict, in the order mmengine writes them.
pub const SECTION_KEYS: [&str; 3] = ["state_dict", "ema_state_dict", "model"];

/// One state dict of the file: key → tensor description, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub name: String,
    pub tensors: IndexMap<String, TensorInfo>,
}

/// Ultralytics trainer checkpoints keep the EMA model (a pickled module) under `ema`
/// (`ultralytics/engine/trainer.py: save_model`); only a module there forms a section.
pub const MODULE_EMA_KEY: &str = "ema";

/// The section of a pickled module tree (none when it does not walk or holds no tensor).
fn module_section(name: &str, v: &Value) -> Option<Section> {
    match super::module_tree::walk(v) {
        Ok(tree) if !tree.state_dict.is_empty() => Some(Section {
            name: name.to_string(),
            tensors: tree.state_dict,
        }),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(section = name, error = %e, "module tree not walked");
            None
        }
    }
}

pub(super) fn find_sections(root: &Value) -> Vec<Section> {
    let Value::Dict(d) = root else {
        return Vec::new();
    };
    let collect = |v: &Value| -> IndexMap<String, TensorInfo> {
        v.tensor_leaves()
            .into_iter()
            .map(|(k, t)| (k, t.clone()))
            .collect()
    };
    let mut out = Vec::new();
    for (k, v) in &d.items {
        if k.as_str() == Some(MODULE_EMA_KEY) {
            out.extend(module_section(MODULE_EMA_KEY, v));
            continue;
        }
        let Some(name) = k.as_str().filter(|n| SECTION_KEYS.contains(n)) else {
            continue;
        };
        if super::module_tree::is_module(v) {
            // A whole pickled nn.Module (Ultralytics `.pt`): its walked state_dict().
            out.extend(module_section(name, v));
        } else if matches!(v, Value::Dict(_)) {
            let tensors = collect(v);
            if !tensors.is_empty() {
                out.push(Section {
                    name: name.to_string(),
                    tensors,
                });
            }
        }
    }
    if out.is_empty() {
        let tensors = collect(root);
        if !tensors.is_empty() {
            out.push(Section {
                name: ROOT_SECTION.to_string(),
                tensors,
            });
        }
    }
    out
}
