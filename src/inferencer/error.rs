//! [`InferError`]: everything that can go wrong building an [`Inferencer`](super::Inferencer)(super::Inferencer) or
//! running it, each variant naming the file it is about.

use std::path::PathBuf;

use crate::device::DeviceError;
use crate::models::ModelError;
use crate::postprocess::PostprocessError;
use crate::preprocess::PreprocessError;
use crate::registry::adapter;
use crate::registry::checkpoint::CheckpointError;
use crate::registry::config::ConfigError;

/// Everything that can go wrong building an [`Inferencer`](super::Inferencer) or running it.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("Inferencer::builder(): no config given; call .config(PATH) with the model's .py/.toml/.json config")]
    MissingConfig,
    #[error("Inferencer::builder(): no weights given; call .weights(PATH) with the checkpoint (.pth/.safetensors)")]
    MissingWeights,
    #[error("config {}: {source}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: Box<ConfigError>,
    },
    #[error("config {}: {source}", path.display())]
    Spec {
        path: PathBuf,
        #[source]
        source: Box<crate::registry::spec::SpecError>,
    },
    #[error("config {}: {message}", path.display())]
    ConfigContent { path: PathBuf, message: String },
    #[error("checkpoint {}: {source}", path.display())]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: Box<CheckpointError>,
    },
    #[error(transparent)]
    Device(Box<DeviceError>),
    #[error("model from {}: {source}", config.display())]
    Model {
        config: PathBuf,
        #[source]
        source: Box<ModelError>,
    },
    #[error(
        "weights {} do not fit the model of {} (strict loading):\n{report}\n\
         add your own adapter with --adapters FILE (or $XDG_CONFIG_HOME/mmcompat/adapters/), pass --adapter NAME to force a chain, or --non-strict to load only what matches (not recommended)",
        weights.display(),
        config.display()
    )]
    WeightsDoNotFit {
        weights: PathBuf,
        config: PathBuf,
        report: String,
    },
    #[error("checkpoint {}: {source}", path.display())]
    Adapter {
        path: PathBuf,
        #[source]
        source: Box<adapter::AdapterError>,
    },
    #[error("image {}: {source}", image.display())]
    Preprocess {
        image: PathBuf,
        #[source]
        source: Box<PreprocessError>,
    },
    #[error("config {}: test pipeline: {source}", config.display())]
    Pipeline {
        config: PathBuf,
        #[source]
        source: Box<PreprocessError>,
    },
    #[error(transparent)]
    Postprocess(Box<PostprocessError>),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Visualize(Box<crate::visualize::VisualizeError>),
    #[error("{0}")]
    Input(String),
}

impl From<PostprocessError> for InferError {
    fn from(e: PostprocessError) -> Self {
        InferError::Postprocess(Box::new(e))
    }
}

impl From<crate::visualize::VisualizeError> for InferError {
    fn from(e: crate::visualize::VisualizeError) -> Self {
        InferError::Visualize(Box::new(e))
    }
}

impl From<DeviceError> for InferError {
    fn from(e: DeviceError) -> Self {
        InferError::Device(Box::new(e))
    }
}
