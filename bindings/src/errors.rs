//! The exception classes: `mmcompat.MmcompatError` and one subclass per kind of failure, each
//! carrying the library's whole message (the file, the key, the fix).

use mmcompat::inferencer::InferError;
use mmcompat::registry::convert::ConvertError;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

pyo3::create_exception!(
    mmcompat,
    MmcompatError,
    PyException,
    "Base class of every error mmcompat raises."
);
pyo3::create_exception!(
    mmcompat,
    ConfigError,
    MmcompatError,
    "A config that cannot be loaded or resolved (file, key, did-you-mean)."
);
pyo3::create_exception!(
    mmcompat,
    CheckpointError,
    MmcompatError,
    "A checkpoint that cannot be read safely, or whose weights do not fit the model."
);
pyo3::create_exception!(
    mmcompat,
    ModelError,
    MmcompatError,
    "The model cannot be built or run (unsupported component, device, post-processing)."
);
pyo3::create_exception!(
    mmcompat,
    ImageError,
    MmcompatError,
    "An image that cannot be read or decoded, or an array of the wrong shape or dtype."
);

pub(crate) fn config_err(message: String) -> PyErr {
    ConfigError::new_err(message)
}

pub(crate) fn checkpoint_err(message: String) -> PyErr {
    CheckpointError::new_err(message)
}

/// The exception class of an [`InferError`] variant, with its `Display` (which embeds the
/// source chain) as the message.
pub(crate) fn infer_err(e: &InferError) -> PyErr {
    let m = e.to_string();
    match e {
        InferError::MissingConfig
        | InferError::Config { .. }
        | InferError::Spec { .. }
        | InferError::ConfigContent { .. }
        | InferError::Pipeline { .. } => ConfigError::new_err(m),
        InferError::MissingWeights
        | InferError::Checkpoint { .. }
        | InferError::Adapter { .. }
        | InferError::WeightsDoNotFit { .. } => CheckpointError::new_err(m),
        InferError::Device(_) | InferError::Model { .. } | InferError::Postprocess(_) => {
            ModelError::new_err(m)
        }
        InferError::Preprocess { .. } | InferError::Input(_) | InferError::Visualize(_) => {
            ImageError::new_err(m)
        }
        InferError::Io { .. } => MmcompatError::new_err(m),
    }
}

pub(crate) fn convert_err(e: &ConvertError) -> PyErr {
    CheckpointError::new_err(e.to_string())
}

/// Adds the classes to the module (`mmcompat/__init__.py` re-exports them).
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MmcompatError", py.get_type::<MmcompatError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("CheckpointError", py.get_type::<CheckpointError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("ImageError", py.get_type::<ImageError>())?;
    Ok(())
}
