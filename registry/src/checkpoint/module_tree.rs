//! Whole pickled `torch.nn.Module` trees (an Ultralytics `.pt` holds `{'model': DetectionModel}`),
//! read without running them: the safe unpickler keeps each module as an inert [`Opaque`] value
//! (class name + the `__dict__` BUILD gave it), and this module walks those dicts to the flat state
//! dict `module.state_dict()` would return, keyed by module path (`model.0.conv.weight`).
//!
//! It mirrors `torch/nn/modules/module.py: Module.state_dict` / `_save_to_state_dict`: per module
//! its `_parameters` (in order, `None` skipped), then its `_buffers` (in order, `None` and the names
//! in `_non_persistent_buffers_set` skipped), then each child of `_modules` (in order, `None`
//! skipped) under `<path>.<name>.`. `get_extra_state` is user code and is never consulted.
//!
//! What it must never do: import, call or otherwise give meaning to the classes it names; a class
//! name is only reported (`ultralytics.nn.modules.block.C2f`).

use indexmap::IndexMap;

use super::tensor::TensorInfo;
use super::value::{Opaque, Value};

/// Deepest module nesting walked (real detectors nest about 6 deep; a hostile file cannot make
/// the walk recurse without bound).
pub const MAX_MODULE_DEPTH: usize = 64;

/// One module of the tree: its path (`""` for the root, `model.2.m.0`) and class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleNode {
    pub path: String,
    /// `module.name` of its class, as the pickle names it (never imported).
    pub class: String,
}

/// A walked module tree.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleTree {
    /// Every module, root first, in `named_modules()` order (shared modules listed at each path).
    pub modules: Vec<ModuleNode>,
    /// What `state_dict()` would return: key → tensor, in its order.
    pub state_dict: IndexMap<String, TensorInfo>,
}

impl ModuleTree {
    /// The root module's class.
    pub fn class(&self) -> &str {
        self.modules.first().map_or("", |m| m.class.as_str())
    }

    /// Class name → number of modules of that class, by first appearance.
    pub fn class_counts(&self) -> IndexMap<&str, usize> {
        let mut out: IndexMap<&str, usize> = IndexMap::new();
        for m in &self.modules {
            *out.entry(m.class.as_str()).or_default() += 1;
        }
        out
    }
}

/// Why a value could not be walked as a module tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleTreeError {
    #[error("`{path}` ({class}) is not a pickled torch.nn.Module: its state has no `_modules`/`_parameters` dicts")]
    NotAModule { path: String, class: String },
    #[error("module `{path}` ({class}): `{field}` is {found}, expected a dict")]
    BadField {
        path: String,
        class: String,
        field: &'static str,
        found: String,
    },
    #[error("module `{path}` ({class}): `{field}.{name}` is {found}, expected a tensor or None")]
    NotATensor {
        path: String,
        class: String,
        field: &'static str,
        name: String,
        found: String,
    },
    #[error("module `{path}` is nested deeper than {MAX_MODULE_DEPTH} modules")]
    TooDeep { path: String },
}

/// The `__dict__` of a pickled module: an opaque object whose BUILD state is a dict with
/// `_modules` and `_parameters` (every `nn.Module.__init__` sets both).
pub fn module_state(v: &Value) -> Option<(&Opaque, &Value)> {
    let Value::Opaque(o) = v else { return None };
    let state = o.state.as_ref()?;
    (state.get("_modules").is_some() && state.get("_parameters").is_some()).then_some((o, state))
}

/// Whether `v` is a pickled `nn.Module`.
pub fn is_module(v: &Value) -> bool {
    module_state(v).is_some()
}

/// Walks a pickled module to its module list and state dict.
pub fn walk(v: &Value) -> Result<ModuleTree, ModuleTreeError> {
    let mut tree = ModuleTree {
        modules: Vec::new(),
        state_dict: IndexMap::new(),
    };
    walk_into(v, "", 0, &mut tree)?;
    Ok(tree)
}

fn describe(v: &Value) -> String {
    match v {
        Value::Opaque(o) => format!("an object of {}", o.class()),
        Value::Recursion => "a reference back to an enclosing module (a cycle)".into(),
        other => {
            let j = other.to_json().to_string();
            if j.len() > 60 {
                format!("{}…", j.chars().take(60).collect::<String>())
            } else {
                j
            }
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn walk_into(
    v: &Value,
    path: &str,
    depth: usize,
    tree: &mut ModuleTree,
) -> Result<(), ModuleTreeError> {
    if depth > MAX_MODULE_DEPTH {
        return Err(ModuleTreeError::TooDeep {
            path: path.to_owned(),
        });
    }
    let Some((o, state)) = module_state(v) else {
        return Err(ModuleTreeError::NotAModule {
            path: path.to_owned(),
            class: match v {
                Value::Opaque(o) => o.class(),
                other => describe(other),
            },
        });
    };
    let class = o.class();
    tree.modules.push(ModuleNode {
        path: path.to_owned(),
        class: class.clone(),
    });
    let field = |name: &'static str| -> Result<Option<&[(Value, Value)]>, ModuleTreeError> {
        match state.get(name) {
            None => Ok(None),
            Some(Value::Dict(d)) => Ok(Some(&d.items)),
            Some(other) => Err(ModuleTreeError::BadField {
                path: path.to_owned(),
                class: class.clone(),
                field: name,
                found: describe(other),
            }),
        }
    };
    let non_persistent: Vec<&str> = state
        .get("_non_persistent_buffers_set")
        .and_then(Value::as_seq)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, items) in [
        ("_parameters", field("_parameters")?),
        ("_buffers", field("_buffers")?),
    ] {
        for (k, t) in items.unwrap_or_default() {
            let key = k.key_string();
            match t {
                Value::None => {}
                _ if name == "_buffers" && non_persistent.contains(&key.as_str()) => {}
                Value::Tensor(t) => {
                    tree.state_dict.insert(join(path, &key), (**t).clone());
                }
                other => {
                    return Err(ModuleTreeError::NotATensor {
                        path: path.to_owned(),
                        class: class.clone(),
                        field: name,
                        name: key,
                        found: describe(other),
                    })
                }
            }
        }
    }
    for (k, child) in field("_modules")?.unwrap_or_default() {
        if matches!(child, Value::None) {
            continue;
        }
        walk_into(child, &join(path, &k.key_string()), depth + 1, tree)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::value::Dict;

    fn dict(items: Vec<(&str, Value)>) -> Value {
        Value::Dict(Box::new(Dict {
            items: items
                .into_iter()
                .map(|(k, v)| (Value::Str(k.into()), v))
                .collect(),
            ordered: true,
            attributes: None,
        }))
    }

    fn module(class: &str, modules: Vec<(&str, Value)>) -> Value {
        Value::Opaque(Box::new(Opaque {
            module: "pkg".into(),
            name: class.into(),
            state: Some(dict(vec![
                ("_parameters", dict(vec![("weight", Value::None)])),
                ("_buffers", dict(vec![])),
                ("_modules", dict(modules)),
            ])),
            ..Opaque::default()
        }))
    }

    #[test]
    fn none_children_and_parameters_are_skipped_and_paths_compose() {
        let leaf = module("Leaf", vec![]);
        let root = module(
            "Root",
            vec![("a", leaf.clone()), ("gone", Value::None), ("b", leaf)],
        );
        let tree = walk(&root).unwrap();
        let paths: Vec<_> = tree.modules.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["", "a", "b"]);
        assert_eq!(tree.class(), "pkg.Root");
        assert!(tree.state_dict.is_empty());
    }

    #[test]
    fn a_cycle_is_an_error_naming_the_path() {
        let root = module("Root", vec![("loop", Value::Recursion)]);
        let e = walk(&root).unwrap_err();
        assert!(
            matches!(&e, ModuleTreeError::NotAModule { path, .. } if path == "loop"),
            "{e}"
        );
    }
}
