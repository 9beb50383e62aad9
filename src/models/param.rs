//! Naming of parameters: a thin wrapper over `tch::nn::Path` that also records, in module order,
//! every state-dict name the model expects (with its shape) and the aliases of shared tensors.
//!
//! Paths are composed one component at a time (`Path::sub` panics on names containing `.`), so
//! the names follow the Python module tree by construction.

use std::cell::RefCell;
use std::rc::Rc;

use tch::{nn, Tensor};

/// One expected state-dict entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedKey {
    pub name: String,
    pub shape: Vec<i64>,
    /// For an alias of a shared tensor (mmdet/mmyolo `share_conv`): the name of the tensor that
    /// is actually stored (level 0's).
    pub alias_of: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct KeyLog {
    pub keys: Vec<ExpectedKey>,
}

/// A position in the module tree.
#[derive(Clone)]
pub struct Ctx<'a> {
    path: nn::Path<'a>,
    log: Rc<RefCell<KeyLog>>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(path: nn::Path<'a>, log: Rc<RefCell<KeyLog>>) -> Self {
        Ctx { path, log }
    }

    /// The child module `name` (one component, e.g. `stage1` or `0`).
    pub fn sub(&self, name: impl ToString) -> Ctx<'a> {
        Ctx {
            path: self.path.sub(name),
            log: self.log.clone(),
        }
    }

    /// Full dotted name of `leaf` under this module.
    pub fn name(&self, leaf: &str) -> String {
        self.path.path(leaf)
    }

    /// Registers the parameter or persistent buffer `leaf` with `shape` (zero-initialised, no
    /// gradient: this is an inference-only model) and records it as expected.
    pub fn param(&self, leaf: &str, shape: &[i64]) -> Tensor {
        self.log.borrow_mut().keys.push(ExpectedKey {
            name: self.name(leaf),
            shape: shape.to_vec(),
            alias_of: None,
        });
        self.path.zeros_no_train(leaf, shape)
    }

    /// Records `leaf` as another state-dict name of the tensor stored under `canonical`.
    pub fn alias(&self, leaf: &str, canonical: &str, shape: &[i64]) {
        self.log.borrow_mut().keys.push(ExpectedKey {
            name: self.name(leaf),
            shape: shape.to_vec(),
            alias_of: Some(canonical.to_string()),
        });
    }
}
