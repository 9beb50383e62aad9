//! OpenMMLab config files loaded the way `mmengine.Config.fromfile` (0.10.7) loads them, without
//! executing anything.
//!
//! A `.py` config is parsed with a real Python parser and the small subset of Python that configs
//! use is *evaluated* by `eval` (literals, containers, `dict()`, names, attribute and subscript
//! access, operators, f-strings / `%` / `.format`, comprehensions, conditionals, `hasattr`,
//! `getattr`, `len`, `range`, `enumerate`, `round`, `int`, ...). Imports of arbitrary modules,
//! calls of unknown functions, `exec`, lambdas, classes: a [`ConfigError::Unsupported`] naming
//! file:line:col — never executed. `loader` reproduces `_file2dict` (bases, `pkg::` paths,
//! `_scope_` injection, merge, `_delete_`, placeholders). `.toml` is first class
//! ([`toml_codec`] documents the lossless encoding of `None` and tuples), `.json` is read too.
//!
//! Parser choice: `rustpython-parser` 0.4 (crates.io, MIT, the parser of RustPython, full
//! Python 3.11 grammar, byte ranges on every node so errors get line:col). The alternatives:
//! `ruff_python_parser` is not published as a usable crate (crates.io holds only placeholder
//! 0.0.x versions that need an unreleased toolchain), and `python-parser`/`rustpython-parser` 0.3
//! are older grammars. Built with `num-bigint` instead of the default `malachite` to compile
//! faster; config integers beyond 64 bits are refused with an error.
//!
//! Package config roots (`pkg::dir/file.py`): see [`roots`] (`--config-root PKG=DIR`,
//! `MMCOMPAT_CONFIG_ROOTS`, discovery through `python3`).

pub mod embedded;
pub mod error;
pub(crate) mod eval;
pub(crate) mod loader;
pub mod options;
pub mod roots;
mod suggest;
pub mod toml_codec;
pub mod value;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

pub use error::{ConfigError, Location};
pub use eval::limits::{default_limits, set_default_limits, Limits};
pub use roots::{ConfigRoots, CONFIG_ROOTS_ENV};
pub use value::Value;

/// Forgets the parsed ASTs kept across loads (each file text is parsed once per process; bases
/// like `_base_/default_runtime.py` are shared by hundreds of configs). For benchmarks of a cold
/// pass and for long-running processes that want the memory back.
pub fn clear_parse_cache() {
    loader::clear_parse_cache()
}

const LOADER_STACK_BYTES: usize = 256 << 20;

/// A resolved config: the top-level names of the file after inheritance, in insertion order.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    path: PathBuf,
    tree: IndexMap<String, Value>,
}

impl Config {
    /// `mmengine.Config.fromfile(path)` (with `import_custom_modules=False`: `custom_imports` and
    /// `default_scope` stay plain values). `.py`, `.toml` and `.json` files.
    /// Bounded by [`default_limits`] (see [`Limits`]).
    pub fn from_file(path: impl AsRef<Path>, roots: &ConfigRoots) -> Result<Config, ConfigError> {
        Config::from_file_with_limits(path, roots, &default_limits())
    }

    /// [`Config::from_file`] with explicit [`Limits`].
    pub fn from_file_with_limits(
        path: impl AsRef<Path>,
        roots: &ConfigRoots,
        limits: &Limits,
    ) -> Result<Config, ConfigError> {
        Config::load(path.as_ref(), None, roots, limits)
    }

    /// A config from its text, as if read from `path` (whose extension selects the syntax and
    /// whose folder relative `_base_` files are found in). For fuzzing and for configs that do
    /// not live in a file.
    pub fn from_text(
        path: impl AsRef<Path>,
        text: &str,
        roots: &ConfigRoots,
        limits: &Limits,
    ) -> Result<Config, ConfigError> {
        Config::load(path.as_ref(), Some(text), roots, limits)
    }

    fn load(
        path: &Path,
        text: Option<&str>,
        roots: &ConfigRoots,
        limits: &Limits,
    ) -> Result<Config, ConfigError> {
        // The evaluator recurses over expressions and containers; a dedicated thread with a large
        // (lazily committed) stack keeps its depth limit (`Limits::depth`) far from the 2 MiB
        // default of non-main threads, whatever thread the caller is on.
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("mmcompat-config".into())
                .stack_size(LOADER_STACK_BYTES)
                .spawn_scoped(s, || {
                    let _budget = eval::limits::install(*limits);
                    let abs = loader::abspath(path);
                    let r = (|| {
                        let mut loader = loader::Loader::new(roots);
                        let dict = match text {
                            None => loader.file2dict(path)?,
                            Some(text) => {
                                let ext = abs.extension().and_then(|e| e.to_str()).unwrap_or("");
                                loader.file2dict_at(&abs, ext, text.to_string())?
                            }
                        };
                        let tree = loader::finish(&dict, &abs)?;
                        Ok(Config {
                            path: abs.clone(),
                            tree,
                        })
                    })();
                    tracing::debug!(file = %abs.display(), steps = eval::limits::steps_used(), "config evaluated");
                    // A helper that ran out of budget stops quietly; the load still fails.
                    match (r, loader::pending_limit(&abs)) {
                        (Err(e @ ConfigError::LimitExceeded { .. }), _) => Err(e),
                        (_, Some(limit)) => Err(limit),
                        (r, None) => r,
                    }
                })
                .map_err(|source| ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                })?
                .join()
                .unwrap_or_else(|_| {
                    Err(ConfigError::LoaderPanicked {
                        path: path.to_path_buf(),
                    })
                })
        })
    }

    /// A config from an already resolved tree (e.g. built in code).
    pub fn from_tree(path: impl Into<PathBuf>, tree: IndexMap<String, Value>) -> Config {
        Config {
            path: path.into(),
            tree,
        }
    }

    /// The (absolute) file this config was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tree(&self) -> &IndexMap<String, Value> {
        &self.tree
    }

    pub fn into_tree(self) -> IndexMap<String, Value> {
        self.tree
    }

    /// The whole config as one dict value.
    pub fn to_value(&self) -> Value {
        Value::Dict(self.tree.clone())
    }

    /// Dotted-path access: `get("model.backbone.depth")`, `get("train_pipeline.0.type")`,
    /// `get("model.neck.in_channels[0]")`.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let steps = value::split_path(path);
        let (first, rest) = steps.split_first()?;
        let mut cur = self.tree.get(first.as_str())?;
        for s in rest {
            cur = cur.child(s)?;
        }
        Some(cur)
    }

    /// Equals `json.loads(json.dumps(Config.fromfile(f).to_dict(), sort_keys=True))`: tuples as
    /// lists, insertion order kept (key order does not matter for `serde_json::Value` equality).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.tree
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    /// TOML text that [`Config::from_file`] reads back into the same tree (see [`toml_codec`]).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml_codec::to_toml(&self.tree)
    }

    /// Resolves an MMRazor `cfg_path` dict found at `key_path` of this config (e.g.
    /// `model.architecture`), see [`load_cfg_path`].
    pub fn resolve_cfg_path(
        &self,
        key_path: &str,
        roots: &ConfigRoots,
    ) -> Result<CfgPathModel, ConfigError> {
        let v = self.get(key_path).ok_or_else(|| {
            ConfigError::CfgPath(format!(
                "{}: no '{key_path}' in the config",
                self.path.display()
            ))
        })?;
        load_cfg_path_at(v, roots, &self.path, &format!("{key_path}.cfg_path"))
    }
}

/// What `mmengine.hub.get_model(**dict(cfg_path='pkg::rel.py', ...))` would build, offline.
#[derive(Debug, Clone, PartialEq)]
pub struct CfgPathModel {
    /// The package's config (`<root of pkg>/rel.py`), fully resolved.
    pub config: Config,
    /// The model dict handed to `MODELS.build`: `config.model`, with the config's top-level
    /// `data_preprocessor` copied into it and the extra keys of the `cfg_path` dict applied as
    /// defaults only (`build_from_cfg`: `args.setdefault(k, v)`).
    pub model: Value,
    /// The scope the model is built in: the model's `_scope_` if set, else the package
    /// (`get_model` runs inside `DefaultScope.overwrite_default_scope(package)`).
    pub scope: String,
}

/// MMRazor's `architecture=dict(cfg_path='mmyolo::rtmdet/x.py', pretrained=False, ...)`:
/// `mmrazor/registry/registry.py: build_razor_model_from_cfg` -> `mmengine/hub/hub.py: get_model`.
/// Offline: the package's configs come from the [`ConfigRoots`]; nothing is installed or
/// downloaded (`pretrained=True` is ignored here: loading weights is the caller's business).
pub fn load_cfg_path(dict: &Value, roots: &ConfigRoots) -> Result<CfgPathModel, ConfigError> {
    load_cfg_path_at(dict, roots, Path::new("<cfg_path>"), "cfg_path")
}

/// [`load_cfg_path`] for the dict at `key` of the config `file` (named in the errors).
fn load_cfg_path_at(
    dict: &Value,
    roots: &ConfigRoots,
    file: &Path,
    key: &str,
) -> Result<CfgPathModel, ConfigError> {
    let Value::Dict(d) = dict else {
        return Err(ConfigError::CfgPath(format!(
            "expected a dict with 'cfg_path', got a {}",
            dict.type_name()
        )));
    };
    let Some(Value::Str(cfg_path)) = d.get("cfg_path") else {
        return Err(ConfigError::CfgPath(
            "the dict has no string 'cfg_path'".into(),
        ));
    };
    let (scope, rel) = loader::split_package_path(cfg_path, file)?;
    let dirs = roots.dirs(&scope);
    if dirs.is_empty() {
        return Err(ConfigError::PackageNotAvailable {
            file: file.to_path_buf(),
            package: roots::package_name(&scope).unwrap_or(&scope).to_string(),
            tried: roots.tried(&scope),
            scope,
            reference: cfg_path.clone(),
        });
    }
    let file = dirs
        .iter()
        .map(|d| d.join(&rel))
        .find(|p| p.is_file())
        .ok_or_else(|| ConfigError::CfgPathNotFound {
            file: file.to_path_buf(),
            missing: Box::new(error::MissingCfgPath {
                key: key.to_string(),
                reference: cfg_path.clone(),
                package: roots::package_name(&scope).unwrap_or(&scope).to_string(),
                tried: dirs.iter().map(|d| d.join(&rel)).collect(),
                did_you_mean: suggest::closest_config(&dirs, &rel).map(|r| format!("{scope}::{r}")),
            }),
        })?;
    let config = Config::from_file(&file, roots)?;
    let Some(Value::Dict(model)) = config.tree.get("model") else {
        return Err(ConfigError::CfgPath(format!(
            "{}: no 'model' dict",
            file.display()
        )));
    };
    let mut model = model.clone();
    if let Some(dp) = config.tree.get("data_preprocessor") {
        model.insert("data_preprocessor".into(), dp.clone());
    }
    for (k, v) in d {
        if k == "cfg_path" || k == "pretrained" {
            continue;
        }
        model.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let scope = match model.get("_scope_") {
        Some(Value::Str(s)) => s.clone(),
        _ => scope,
    };
    Ok(CfgPathModel {
        config,
        model: Value::Dict(model),
        scope,
    })
}
