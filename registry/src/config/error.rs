//! Errors of config loading. Every variant names the file (and position when there is one) and,
//! where a fix is obvious, says what would fix it.

use std::path::PathBuf;

/// A position in a config file, 1-based line and column (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.col)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{at}: syntax error: {message}\n{snippet}")]
    Syntax {
        at: Location,
        message: String,
        /// The offending source line and a caret under the column.
        snippet: String,
    },

    /// Python that a config may not contain: it would have to be executed (unknown call, import of
    /// an arbitrary module, `exec`, a lambda, ...). Never executed.
    #[error("{at}: not supported in a config (nothing is executed): {what}\n{snippet}")]
    Unsupported {
        at: Location,
        what: String,
        snippet: String,
    },

    #[error("{at}: NameError: name '{name}' is not defined{}\n{snippet}", did_you_mean.as_ref().map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default())]
    UndefinedName {
        at: Location,
        name: String,
        did_you_mean: Option<String>,
        snippet: String,
    },

    /// A Python runtime error the real interpreter would raise too (`KeyError`, `TypeError`,
    /// `AttributeError`, `IndexError`, `ZeroDivisionError`, `AssertionError`, ...).
    #[error("{at}: {kind}: {message}\n{snippet}")]
    Eval {
        at: Location,
        kind: &'static str,
        message: String,
        snippet: String,
    },

    #[error(
        "base config '{base}' of {file} not found{}; tried:\n{}",
        did_you_mean_path(did_you_mean.as_deref()),
        tried.iter().map(|p| format!("  {}", p.display())).collect::<Vec<_>>().join("\n")
    )]
    BaseNotFound {
        file: PathBuf,
        base: String,
        tried: Vec<PathBuf>,
        /// For a `pkg::` base: the closest config the package does ship (`pkg::rel`).
        did_you_mean: Option<String>,
    },

    /// An MMRazor `cfg_path` (`mmengine.hub.get_model`) naming a config the package does not ship;
    /// mmengine raises `FileNotFoundError` from `get_config` (`mmengine/hub/hub.py`).
    #[error("{file}: {missing}")]
    CfgPathNotFound {
        /// The config holding the `cfg_path` (`<cfg_path>` when called without one).
        file: PathBuf,
        missing: Box<MissingCfgPath>,
    },

    #[error("cyclic _base_ inheritance: {}", chain.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" -> "))]
    Cycle { chain: Vec<PathBuf> },

    #[error("{file}: `_base_` must be a string or a list of strings, got {got}")]
    BadBase { file: PathBuf, got: String },

    #[error("{file}: Duplicate key is not allowed among bases. Duplicate keys: {}", keys.join(", "))]
    DuplicateBaseKeys { file: PathBuf, keys: Vec<String> },

    /// mmengine `_merge_a_into_b` TypeError.
    #[error(
        "{file}: {key} is a dict in the child config but is of type {base_type} in base config, so it cannot \
         inherit from base. You may set `_delete_=True` to ignore the base config."
    )]
    MergeType {
        file: PathBuf,
        /// Dotted key path (`model.backbone`).
        key: String,
        child_type: &'static str,
        base_type: &'static str,
    },

    /// mmengine raises `ModuleNotFoundError('<pkg> is not installed, please install <pkg> manually')`.
    #[error(
        "{file}: package '{package}' is not available ({package} is not installed): no config root for \
         '{scope}::' (needed for '{reference}'). Tried: {tried}. To fix: {fix}",
        tried = .tried.join("; "),
        fix = super::roots::ConfigRoots::how_to_fix(.scope)
    )]
    PackageNotAvailable {
        file: PathBuf,
        /// The prefix before `::` (`mmseg`).
        scope: String,
        /// The pip name mmengine reports (`mmsegmentation`).
        package: String,
        reference: String,
        /// Every place looked at (`ConfigRoots::tried`).
        tried: Vec<String>,
    },

    /// `json.dumps(cfg.to_dict())` would fail the same way in Python.
    #[error("{file}: value at '{key}' is a {type_name}, which a config cannot hold (Object of type {type_name} is not JSON serializable)")]
    NotSerializable {
        file: PathBuf,
        key: String,
        type_name: &'static str,
    },

    /// `Config.__init__` refuses these top-level names.
    #[error("{file}: {key} is reserved for config file")]
    ReservedKey { file: PathBuf, key: String },

    #[error("{file}: '{reference}' is not a valid package config path: {why}")]
    BadPackagePath {
        file: PathBuf,
        reference: String,
        why: String,
    },

    #[error("{file}: environment variable ${name} is not set and '{{{{${name}:default}}}}' has no default")]
    MissingEnv { file: PathBuf, name: String },

    #[error("{file}: unsupported config file type '{ext}' (.py, .toml and .json are read)")]
    UnsupportedExtension { file: PathBuf, ext: String },

    #[error("{file}: invalid TOML: {message}")]
    Toml { file: PathBuf, message: String },

    #[error("{file}: invalid JSON: {message}")]
    Json { file: PathBuf, message: String },

    #[error("cannot write config as TOML: {0}")]
    TomlWrite(String),

    #[error("invalid config root '{spec}': {why} (expected PKG=DIR)")]
    BadRoot { spec: String, why: String },

    #[error("cfg_path dict: {0}")]
    CfgPath(String),

    /// A bound of [`Limits`](crate::config::Limits) was hit: the config would need more memory
    /// or time than a config ever needs (docs/limits.md lists the limits and their defaults).
    #[error(
        "{at}: {what} exceeds the config limit {limit}={max} (raise it with `--config-limit {limit}=N`; \
         see docs/limits.md){}",
        if snippet.is_empty() { String::new() } else { format!("\n{snippet}") }
    )]
    LimitExceeded {
        /// `file:line:col` where the evaluation stopped, or the file for limits on whole files.
        at: String,
        /// The limit's name (`steps`, `seq_len`, ...), as `--config-limit` takes it.
        limit: &'static str,
        max: u64,
        what: String,
        snippet: String,
    },

    #[error("invalid config limit '{spec}': {why} (expected NAME=N, e.g. --config-limit steps=20000000)")]
    BadLimit { spec: String, why: String },

    /// A bug in the loader (it never panics on purpose); reported instead of unwinding.
    #[error("{path}: internal error in the config loader (please report it)")]
    LoaderPanicked { path: PathBuf },
}

impl ConfigError {
    /// The mmengine exception class a file fails with in Python for the same reason (used by the
    /// corpus test to compare failures).
    pub fn python_kind(&self) -> &'static str {
        match self {
            ConfigError::Syntax { .. } => "SyntaxError",
            ConfigError::UndefinedName { .. } => "NameError",
            ConfigError::Eval { kind, .. } => kind,
            ConfigError::BaseNotFound { .. }
            | ConfigError::CfgPathNotFound { .. }
            | ConfigError::Io { .. } => "FileNotFoundError",
            ConfigError::DuplicateBaseKeys { .. }
            | ConfigError::MissingEnv { .. }
            | ConfigError::ReservedKey { .. } => "KeyError",
            ConfigError::NotSerializable { .. } => "TypeError",
            ConfigError::MergeType { .. } | ConfigError::BadBase { .. } => "TypeError",
            ConfigError::PackageNotAvailable { .. } => "ModuleNotFoundError",
            ConfigError::BadPackagePath { .. } => "ValueError",
            _ => "Error",
        }
    }
}

fn did_you_mean_path(s: Option<&str>) -> String {
    s.map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default()
}

/// The details of [`ConfigError::CfgPathNotFound`] (boxed: errors travel through many `Result`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingCfgPath {
    /// Dotted key of the `cfg_path` (`model.architecture.cfg_path`).
    pub key: String,
    pub reference: String,
    /// The pip package (`mmdet`).
    pub package: String,
    pub tried: Vec<PathBuf>,
    /// The closest config the package does ship (`pkg::rel`).
    pub did_you_mean: Option<String>,
}

impl std::fmt::Display for MissingCfgPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} '{}' not found in the {} config tree{}; tried:\n{}",
            self.key,
            self.reference,
            self.package,
            did_you_mean_path(self.did_you_mean.as_deref()),
            self.tried
                .iter()
                .map(|p| format!("  {}", p.display()))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}
