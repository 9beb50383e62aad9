//! mmcompat: load OpenMMLab (mmdet 3.x, mmyolo 0.6, mmrazor 1.0) detectors without Python and run
//! them on libtorch through tch.
//!
//! This crate is the backend layer: tch models, pre/post-processing, the `Inferencer` API and the
//! CLI. Config loading, registries, checkpoint reading and adapters live in `mmcompat_registry`.

pub mod device;
pub mod inferencer;
pub mod models;
pub mod postprocess;
pub mod preprocess;
pub mod visualize;
/// Loading named tensors into a model (`models::load`), under the path the API has always had.
pub mod weights {
    pub use crate::models::load::*;
}

pub use mmcompat_registry as core;

/// Makes sure the built-in adapter crates are linked (their `inventory` submissions vanish with an
/// unreferenced crate). Every binary and test that wants the built-in adapters calls this.
pub fn builtin_adapters() {
    mmcompat_plugin_mmrazor::link();
    mmcompat_plugin_mmengine::link();
    mmcompat_plugin_rtmdet_layout::link();
}
