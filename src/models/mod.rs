//! Models on tch, built from the spec's component tree: one trait per component kind
//! ([`component`]), one registration per upstream type, one file per component under
//! `backbone/`, `necks/`, `heads/`, shared bricks under `layers/`. Today: RTMDet in both packages'
//! flavours (mmyolo `YOLODetector` + CSPNeXt + CSPNeXtPAFPN + RTMDetHead/RTMDetSepBNHeadModule,
//! mmdet `RTMDet` + CSPNeXt + CSPNeXtPAFPN + RTMDetSepBNHead).
//!
//! Module paths compose like the Python module tree, so every parameter's name is exactly its
//! upstream state-dict key. Models are inference-only: no gradients, batch norms in eval mode.
//! Nothing here reads files or parses config dicts (the spec stage did).

pub mod backbone;
pub mod cfg;
pub mod component;
pub mod detector;
pub mod heads;
pub mod layers;
pub mod load;
pub mod necks;
pub mod param;

pub use component::{Backbone, DenseHead, Flavour, HeadOutputs, Neck};
pub use detector::{build_detector, build_detector_from_spec, Detector};
pub use param::ExpectedKey;

use mmcompat_registry::spec::SpecError;

use crate::models::load::LoadReport;

/// Everything that can go wrong building, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A config dict has a key the Python constructor would reject
    /// (`TypeError: __init__() got an unexpected keyword argument`).
    #[error("{path}: unexpected key `{key}` for {type_name} (accepted: {expected})")]
    UnknownKey {
        key: String,
        type_name: String,
        path: String,
        expected: String,
    },
    /// A config dict does not deserialise (missing required key, wrong value type).
    #[error("{path}: invalid arguments for {type_name}: {message}")]
    Config {
        type_name: String,
        path: String,
        message: String,
    },
    /// Arguments that deserialise but make no model (Python would assert or raise).
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// A valid upstream option that this implementation does not support.
    #[error("{path}: {what} is not supported ({hint})")]
    Unsupported {
        what: String,
        path: String,
        hint: String,
    },
    /// `type` not found in the registry of the scope in effect (mmengine's KeyError), with the
    /// scopes searched and the closest names.
    #[error("{path}: {source}")]
    Registry {
        path: String,
        source: Box<mmcompat_registry::scoped::RegistryError>,
    },
    /// The type exists but builds something else than the slot needs (e.g. a neck as backbone).
    #[error("{path}: `{type_name}` builds a {got}, but a {expected} is needed here")]
    WrongComponent {
        path: String,
        type_name: String,
        got: &'static str,
        expected: &'static str,
    },
    /// Bad input tensor for `forward`.
    #[error("invalid model input: {0}")]
    Input(String),
    /// Strict loading failed; the report lists missing, unexpected and mis-shaped keys.
    #[error("strict load failed:\n{0}")]
    StrictLoad(Box<LoadReport>),
    /// The state dict lists a shared convolution under several names with different values.
    #[error(
        "shared weight `{canonical}` and its alias `{alias}` differ (max |diff| {max_abs_diff}); \
         upstream shares one tensor (share_conv=True), so the checkpoint is inconsistent"
    )]
    SharedWeightsDiffer {
        canonical: String,
        alias: String,
        max_abs_diff: f64,
    },
    /// The same tensor name was supplied twice.
    #[error("tensor `{0}` supplied twice")]
    DuplicateTensor(String),
    /// Reading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(Box<mmcompat_registry::checkpoint::CheckpointError>),
    /// A checkpoint tensor's bytes do not match its dtype and shape.
    #[error("tensor `{name}`: {got} bytes where dtype × shape needs {expected}")]
    BadTensorBytes {
        name: String,
        expected: usize,
        got: usize,
    },
    /// The requested checkpoint section does not exist.
    #[error("checkpoint has no section `{section}` (sections: {available})")]
    NoSection { section: String, available: String },
    /// A libtorch error (device, dtype, out of memory).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Config errors found by the spec stage keep the variants callers match on.
impl From<SpecError> for ModelError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::UnknownKey {
                path,
                type_name,
                key,
                closest,
                accepted,
            } => ModelError::UnknownKey {
                expected: match closest {
                    Some(c) => format!("did you mean `{c}`? accepted: {}", accepted.join(", ")),
                    None => accepted.join(", "),
                },
                key,
                type_name,
                path,
            },
            SpecError::Invalid {
                path,
                type_name,
                message,
            } => ModelError::Config {
                type_name,
                path,
                message,
            },
            SpecError::Unsupported { path, what, hint } => {
                ModelError::Unsupported { what, path, hint }
            }
            SpecError::Registry { path, source } => ModelError::Registry { path, source },
            SpecError::WrongComponent {
                path,
                type_name,
                got,
                expected,
            } => ModelError::WrongComponent {
                path,
                type_name,
                got,
                expected,
            },
            other => ModelError::Invalid {
                path: "model".into(),
                message: other.to_string(),
            },
        }
    }
}

impl From<mmcompat_registry::checkpoint::CheckpointError> for ModelError {
    fn from(e: mmcompat_registry::checkpoint::CheckpointError) -> Self {
        ModelError::Checkpoint(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    /// Errors travel through many `Result`s (clippy's `result_large_err` bound is 128 bytes).
    #[test]
    fn model_error_stays_small() {
        assert!(std::mem::size_of::<super::ModelError>() <= 128);
    }
}
