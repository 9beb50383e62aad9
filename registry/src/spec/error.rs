//! Errors of the spec stage. Each names where in the config it happened (the dotted key path),
//! what upstream type was being read, and what would fix it.

use crate::config::ConfigError;
use crate::scoped::RegistryError;

/// Everything that can be wrong with a config before any model is built or any checkpoint read.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A key the Python constructor would reject (`TypeError: __init__() got an unexpected
    /// keyword argument`).
    #[error(
        "{path}: unknown key `{key}` for {type_name}{}; accepted keys: {}",
        did_you_mean(closest.as_deref()),
        accepted.join(", ")
    )]
    UnknownKey {
        path: String,
        type_name: String,
        key: String,
        closest: Option<String>,
        accepted: Vec<String>,
    },
    /// A value of the wrong type, a missing required key, or arguments Python would reject.
    #[error("{path}: invalid arguments for {type_name}: {message}")]
    Invalid {
        path: String,
        type_name: String,
        message: String,
    },
    /// A valid upstream option that mmcompat does not implement.
    #[error("{path}: {what} is not supported ({hint})")]
    Unsupported {
        path: String,
        what: String,
        hint: String,
    },
    /// A `type` that does not resolve in the scope in effect (with the scopes searched and the
    /// closest names), or resolves to something mmcompat cannot build.
    #[error("{path}: {source}")]
    Registry {
        path: String,
        source: Box<RegistryError>,
    },
    /// The type exists but builds something else than the slot needs (a neck as backbone).
    #[error("{path}: `{type_name}` is a {got}, but a {expected} is needed here")]
    WrongComponent {
        path: String,
        type_name: String,
        got: &'static str,
        expected: &'static str,
    },
    /// A section the inference needs is absent.
    #[error("{path}: {message}")]
    Missing { path: String, message: String },
    /// An MMRazor algorithm whose weights are not a plain detector's (pruning, NAS supernet,
    /// quantisation): refused from the config alone, before any checkpoint is opened.
    #[error(
        "{path}: `{algorithm}` is an MMRazor {kind} model, not a plain detector or a \
         distillation student, so mmcompat refuses it: {hint}"
    )]
    RefusedAlgorithm {
        path: String,
        algorithm: String,
        kind: &'static str,
        hint: &'static str,
    },
    /// Reading a config referenced by this one (MMRazor `cfg_path`) failed.
    #[error(transparent)]
    Config(Box<ConfigError>),
}

impl From<ConfigError> for SpecError {
    fn from(e: ConfigError) -> Self {
        SpecError::Config(Box::new(e))
    }
}

pub(crate) fn did_you_mean(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}
