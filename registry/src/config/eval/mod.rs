//! A safe evaluator for the Python subset that OpenMMLab configs use. It interprets the AST of
//! `rustpython-parser`; it never imports, opens, calls or executes anything outside this module.
//!
//! Mirrors what `eval(codeobj, {'_base_': base_cfg_dict})` does in mmengine
//! (`mmengine/config/config.py: Config._file2dict`): dicts and lists are shared references
//! (`Rc<RefCell<..>>`) so in-place edits such as `model = _base_.model; model.backbone.depth = 7`
//! or `_base_.train_pipeline[2].update(...)` behave as in Python, `ConfigDict` semantics
//! (attribute access, recursive `update`, `pop` default `None`, `_hook` copies on assignment) are
//! kept apart from plain `dict` semantics. What the corpus needs was found by walking the AST of
//! all 1172 shipped configs (see tests/fixtures/config-corpus/REPORT.md).
//!
//! Layout: [`object`] holds the value model (`Obj`, `PyDict`, `ConfigDict` hooks, equality),
//! [`format`] Python's `repr`/`str` and string formatting, [`stmt`] statements and assignment,
//! [`expr`] expression evaluation, [`calls`] calls and builtins, [`methods`] `dict`/`list`/`str`
//! methods, [`ops`] binary operators and comparisons. This file holds the interpreter state and
//! error locations.

mod calls;
mod expr;
mod format;
pub mod limits;
mod methods;
mod object;
mod ops;
mod stmt;

use std::collections::HashMap;
use std::path::Path;

use indexmap::IndexMap;
use rustpython_parser::ast::Ranged;

use super::error::{ConfigError, Location};

// What the loader uses, at the paths it used before the split.
pub(crate) use format::repr;
pub(crate) use object::{
    config_dict_from, container_len, deep_copy, leaf_clone, new_dict, new_list, skey, Deep,
    DictRef, Key, Obj, PyDict,
};

type R<T> = Result<T, ConfigError>;

/// Interpreter state for one config file.
pub(crate) struct Interp<'a> {
    path: &'a Path,
    src: &'a str,
    line_starts: Vec<usize>,
    pub globals: IndexMap<String, Obj>,
    locals: Vec<HashMap<String, Obj>>,
}

const BUILTINS: &[&str] = &[
    "dict",
    "list",
    "tuple",
    "set",
    "range",
    "len",
    "enumerate",
    "int",
    "float",
    "str",
    "bool",
    "round",
    "hasattr",
    "getattr",
    "min",
    "max",
    "sum",
    "abs",
    "zip",
    "sorted",
    "reversed",
    "any",
    "all",
    "isinstance",
];

/// Standard-library modules a config may `import` (bound as names, never really imported; mmengine
/// drops modules from the result). Only the functions listed in `module_attr` are usable.
const IMPORTABLE: &[&str] = &["math", "copy", "os", "os.path"];

impl<'a> Interp<'a> {
    pub(crate) fn new(path: &'a Path, src: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Interp {
            path,
            src,
            line_starts,
            globals: IndexMap::new(),
            locals: Vec::new(),
        }
    }

    pub(crate) fn location(&self, offset: usize) -> (Location, String) {
        location_in(self.path, self.src, &self.line_starts, offset)
    }

    fn err(
        &self,
        node: &impl Ranged,
        kind: &'static str,
        message: impl Into<String>,
    ) -> ConfigError {
        let (at, snippet) = self.location(node.start().to_usize());
        ConfigError::Eval {
            at,
            kind,
            message: message.into(),
            snippet,
        }
    }

    /// The error for the limit hit recorded on this thread (see [`limits`]), located at `node`.
    fn limit_error(&self, node: &impl Ranged) -> ConfigError {
        let (at, snippet) = self.location(node.start().to_usize());
        let hit = limits::hit().unwrap_or(limits::Hit {
            limit: "depth",
            max: limits::current().depth,
            what: "nesting".into(),
        });
        ConfigError::LimitExceeded {
            at: at.to_string(),
            limit: hit.limit,
            max: hit.max,
            what: hit.what,
            snippet,
        }
    }

    /// `r`, unless a limit was hit while computing it: then the limit error at `node` (an inner
    /// node's limit error, which is more precise, is kept).
    fn bounded<T>(&self, node: &impl Ranged, r: R<T>) -> R<T> {
        match r {
            Err(e @ ConfigError::LimitExceeded { .. }) => Err(e),
            _ if limits::pending() => Err(self.limit_error(node)),
            r => r,
        }
    }

    fn unsupported(&self, node: &impl Ranged, what: impl Into<String>) -> ConfigError {
        let (at, snippet) = self.location(node.start().to_usize());
        ConfigError::Unsupported {
            at,
            what: what.into(),
            snippet,
        }
    }
}

fn module_attr(module: &str, attr: &str) -> Option<Obj> {
    Some(match (module, attr) {
        ("math", "pi") => Obj::Float(std::f64::consts::PI),
        ("math", "e") => Obj::Float(std::f64::consts::E),
        ("math", "inf") => Obj::Float(f64::INFINITY),
        ("math", "sqrt") => Obj::Builtin("math.sqrt"),
        ("math", "ceil") => Obj::Builtin("math.ceil"),
        ("math", "floor") => Obj::Builtin("math.floor"),
        ("math", "log") => Obj::Builtin("math.log"),
        ("math", "log2") => Obj::Builtin("math.log2"),
        ("math", "exp") => Obj::Builtin("math.exp"),
        ("copy", "deepcopy") => Obj::Builtin("copy.deepcopy"),
        ("copy", "copy") => Obj::Builtin("copy.copy"),
        ("os", "path") => Obj::Module("os.path".into()),
        ("os.path", "join") => Obj::Builtin("os.path.join"),
        _ => return None,
    })
}

/// 1-based line/column of a byte offset, plus the source line with a caret under the column.
pub(crate) fn location_in(
    path: &Path,
    src: &str,
    line_starts: &[usize],
    offset: usize,
) -> (Location, String) {
    let offset = offset.min(src.len());
    let line_idx = match line_starts.binary_search(&offset) {
        Ok(i) => i,
        Err(i) => i.saturating_sub(1),
    };
    let start = line_starts.get(line_idx).copied().unwrap_or(0);
    let end = src[start..]
        .find('\n')
        .map(|i| start + i)
        .unwrap_or(src.len());
    let line = &src[start..end];
    let col = src
        .get(start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(0);
    let snippet = format!("    {}\n    {}^", line.trim_end(), " ".repeat(col));
    (
        Location {
            path: path.to_path_buf(),
            line: line_idx + 1,
            col: col + 1,
        },
        snippet,
    )
}

pub(crate) fn line_starts(src: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(src.match_indices('\n').map(|(i, _)| i + 1));
    v
}
