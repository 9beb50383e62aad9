//! Export of a loaded detector to deployment formats (issue 16). The ONNX graph is emitted by our own
//! model components (`onnx`); the plain mmdet/mmyolo package and the safetensors export need no
//! libtorch and live in the core crate (`mmcompat_registry::export`).

pub mod onnx;
