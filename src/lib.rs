//! Load OpenMMLab detectors (mmdet 3.x, mmyolo 0.6, mmrazor 1.0 on mmengine 0.10) without Python
//! and run them on libtorch through [`tch`].
//!
//! Give [`Inferencer::builder`] a config and a checkpoint — a plain, EMA, DDP, mmdet/mmyolo-layout
//! or MMRazor distillation checkpoint — and it returns the [`Detection`]s
//! `mmdet.apis.inference_detector` returns for the same image. Everything that runs no model
//! (configs, registries, checkpoints, adapters, conversion) comes from the core crate
//! [`mmcompat_registry`] (no libtorch), re-exported here as [`registry`] and, for the entry
//! points, at this crate's root.
//!
//! # The public surface
//!
//! | what | items |
//! | --- | --- |
//! | run a detector | [`Inferencer`], [`InferencerBuilder`], [`Detection`], [`ImageInput`], [`BgrImage`], [`decode_image_file`], [`ClassNamesSource`] |
//! | configs (roots, scope) | [`Config`], [`ConfigRoots`], [`InferenceSpec`] (what a config runs, per scope) |
//! | checkpoints | [`Checkpoint`] (safe reader), [`InspectReport`], [`write_pth`], [`write_safetensors`] |
//! | conversion | [`convert`](registry::convert::run), [`ConvertOptions`], [`ConvertReport`] |
//! | adapters | [`AdapterSet`]; yours as a TOML file ([`AdapterSet::load_toml`]), a dynamic library ([`AdapterSet::load_dynamic`], [`declare_adapter_plugin!`]) or Rust code ([`CheckpointAdapter`] + [`register_adapter!`]) |
//! | registries | [`Registries`], [`BuildScope`] |
//! | export | [`export::onnx::export_onnx`] (ONNX), [`registry::export::export_package`] (plain mmdet/mmyolo package, safetensors) |
//! | serve over HTTP | [`serve::Server`], [`serve::ServeOptions`], [`serve::ShutdownHandle`] |
//! | errors | [`InferError`] (wraps the others), [`ConfigError`], [`SpecError`], [`CheckpointError`], [`AdapterError`], [`ConvertError`], [`RegistryError`], [`ModelError`], [`PreprocessError`], [`DeviceError`] |
//!
//! Modules marked hidden (`models`, `preprocess`, `inferencer`, ...) are reachable only because the
//! integration tests, benchmarks and the CLI look inside them; they are not part of the stable API.
//!
//! # Scope selection
//!
//! The scope decides which registry a `type` resolves in (mmengine's `default_scope`). mmyolo
//! configs need `mmyolo`; `DetInferencer(scope='mmdet')` is the classic way to break them. Without
//! `.scope(..)` the config's `default_scope` is used. This runs the bundled distilled demo
//! (`make demo`) and checks the top detection against the one the real Python stack produced
//! (`tests/fixtures/inference/kd_student__astronaut.json`):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mmcompat::{ConfigRoots, Inferencer};
//!
//! let mut roots = ConfigRoots::new(); // where `mmyolo::...` and friends live (`make setup`)
//! for pkg in ["mmyolo", "mmdet", "mmrazor"] {
//!     roots.add(pkg, format!(".cache/fixture-configs/{pkg}"));
//! }
//! let inferencer = Inferencer::builder()
//!     .config(".cache/fixture-configs/mmyolo/mmcompat/kd_nano_rtmdet_neck.py")
//!     .weights("tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth")
//!     .config_roots(roots)
//!     .scope("mmyolo")
//!     .device("cpu")
//!     .build()?;
//! // A distillation config runs its student; the teacher is never built.
//! assert_eq!(inferencer.adapters(), ["mmrazor.kd_student"]);
//!
//! let detections = inferencer.infer("tests/fixtures/inference/images/astronaut.png")?;
//! # let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
//! #     "tests/fixtures/inference/kd_student__astronaut.json")?)?;
//! # let upstream = &fixture["detections"];
//! # let (top_score, top_label) = (upstream["scores"][0].as_f64().unwrap(), upstream["labels"][0].as_u64().unwrap());
//! assert_eq!(detections.len(), 300); // as many as inference_detector returns, best first
//! assert_eq!(detections[0].label as u64, top_label);
//! assert!((detections[0].score as f64 - top_score).abs() < 1e-4);
//! # Ok(()) }
//! ```
//!
//! # Converting a distillation checkpoint
//!
//! The MMRazor checkpoint holds the student under `architecture.` next to the teacher; the
//! converted file loads into `mmdet.apis.init_detector` with no missing or unexpected keys
//! (476 tensors, checked with the real packages in `tests/fixtures/convert-check.json`):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mmcompat::{registry::convert, Checkpoint, ConvertOptions};
//!
//! mmcompat::builtin_adapters(); // links the mmrazor/mmengine/layout adapters
//! let out = std::env::temp_dir().join(format!("mmcompat-doc-{}.pth", std::process::id()));
//! let report = convert::run(
//!     "tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth",
//!     &out,
//!     &ConvertOptions::default(),
//! )?;
//! assert_eq!(report.adapters, ["mmrazor.kd_student"]);
//! assert_eq!(report.tensors, 476);
//! let student = Checkpoint::open(&out)?;
//! assert!(student.all_tensors().iter().all(|(key, _)| !key.starts_with("teacher.")));
//! # std::fs::remove_file(&out)?;
//! # Ok(()) }
//! ```
//!
//! A user adapter (Rust code, a TOML file) is shown in the core crate's documentation:
//! [`mmcompat_registry`].
//!
//! # libtorch
//!
//! `tch` needs libtorch 2.11.0 at build time (`LIBTORCH`, or `LIBTORCH_USE_PYTORCH=1` with a
//! `torch==2.11.0` in the `python3` on PATH; a CUDA build works the same way). This crate's build
//! script embeds that library folder as an rpath in its own binaries and reports it to crates that
//! depend on it (`links = "mmcompat"`, as `DEP_MMCOMPAT_LIBTORCH_LIB`); a downstream binary gets the
//! same rpath by calling `mmcompat_build::link_libtorch()` from its `build.rs` (crate
//! `build-support/`), so it runs without `LD_LIBRARY_PATH`.

#[doc(hidden)] // device parsing and the CUDA dlopen; tests reach in, users pass `.device("cuda:0")`
pub mod device;
/// The torch.hub weights cache and download behind `detect --model NAME`.
pub mod download;
/// Export to deployment formats (ONNX; the plain mmdet package is in the core crate).
pub mod export;
#[doc(hidden)]
// the CLI's `run_detect` and the tests import from here; users use the root re-exports
pub mod inferencer;
#[doc(hidden)] // tests build detectors directly and the CLI lists a model's expected keys
pub mod models;
/// mmcv's custom ops on tch tensor ops (RoIAlign, deformable convolution) and their layers.
#[doc(hidden)] // model components use them; tests check them against mmcv's kernels
pub mod ops;
#[doc(hidden)] // `Inferencer`'s stage methods (used by tests and benches) return its types
pub mod postprocess;
#[doc(hidden)]
// tests check every preprocessing stage against upstream; users need only the root re-exports
pub mod preprocess;
/// `mmcompat serve`: an [`Inferencer`] behind HTTP (`Server`, `ServeOptions`, `ShutdownHandle`).
pub mod serve;
mod visualize;
/// Loading named tensors into a model (`models::load`), under the path the API has always had.
#[doc(hidden)] // tests load raw sections into a detector
pub mod weights {
    pub use crate::models::load::*;
}

/// The core crate (no libtorch): configs, registries, checkpoints, adapters, conversion.
pub use mmcompat_registry as registry;

pub use inferencer::{
    ClassNamesSource, Detection, ImageInput, InferError, Inferencer, InferencerBuilder,
};
pub use preprocess::{decode_image_file, BgrImage, PreprocessError};

pub use device::DeviceError;
pub use mmcompat_registry::adapter::{
    AdapterError, AdapterOptions, AdapterSet, CheckpointAdapter, EmaChoice,
};
pub use mmcompat_registry::checkpoint::{
    inspect::InspectReport, write_pth, write_safetensors, Checkpoint, CheckpointError,
};
pub use mmcompat_registry::config::{Config, ConfigError, ConfigRoots};
pub use mmcompat_registry::convert::{ConvertError, ConvertOptions, ConvertReport};
pub use mmcompat_registry::scoped::{BuildScope, Registries, RegistryError};
pub use mmcompat_registry::spec::{InferenceSpec, SpecError};
pub use mmcompat_registry::{declare_adapter_plugin, register_adapter};
pub use models::ModelError;

/// Makes sure the built-in adapter crates are linked (their `inventory` submissions vanish with an
/// unreferenced crate). Every binary and test that wants the built-in adapters calls this.
pub fn builtin_adapters() {
    mmcompat_plugin_mmrazor::link();
    mmcompat_plugin_mmengine::link();
    mmcompat_plugin_rtmdet_layout::link();
    mmcompat_plugin_ultralytics::link();
    mmcompat_plugin_megvii_yolox::link();
    mmcompat_plugin_meituan_yolov6::link();
    mmcompat_plugin_wongkinyiu_yolov7::link();
    mmcompat_plugin_paddle_ppyoloe::link();
}
