//! mmcompat core: everything a user can do without running a model — load OpenMMLab configs the
//! way mmengine does (without executing them), resolve types in scoped registries, read and
//! inspect checkpoints without executing pickle code, adapt and convert them. This crate never
//! links libtorch and never decodes images; the `mmcompat` crate runs the models.
//!
//! Data flows one way: config file → [`config`] tree → [`scoped`] registries (scope resolution) →
//! [`spec`] (typed description of the model); checkpoint → [`checkpoint`] (safe reader) →
//! [`adapter`] plans → [`convert`].
//!
//! # The public surface
//!
//! | what | items |
//! | --- | --- |
//! | configs (roots, scope) | [`Config`], [`ConfigRoots`], [`InferenceSpec`] |
//! | checkpoints | [`Checkpoint`], [`InspectReport`], [`write_pth`], [`write_safetensors`] |
//! | conversion | [`convert::run`], [`convert::run_with`], [`ConvertOptions`], [`ConvertReport`] |
//! | adapters | [`AdapterSet`]; yours as a TOML file ([`AdapterSet::load_toml`], format in [`adapter::declarative`]), a dynamic library ([`AdapterSet::load_dynamic`], [`declare_adapter_plugin!`]) or Rust code ([`CheckpointAdapter`] + [`register_adapter!`]) |
//! | registries | [`Registries`], [`BuildScope`], [`register_type!`] |
//! | errors | [`ConfigError`], [`SpecError`], [`CheckpointError`], [`AdapterError`], [`ConvertError`], [`RegistryError`] |
//!
//! # Configs, roots and scope
//!
//! `pkg::path` references and `_base_` files are looked up in [`ConfigRoots`]; the scope decides
//! where an unscoped `type` resolves (explicit > `default_scope` > `mmdet`), as mmengine's
//! `DefaultScope` does. An mmyolo model asked for in the `mmdet` scope fails the way
//! `DetInferencer(scope='mmdet')` does, naming where the type is registered:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mmcompat_registry::{Config, ConfigRoots, InferenceSpec};
//!
//! let mut roots = ConfigRoots::new(); // `make setup` lays these trees out
//! for pkg in ["mmyolo", "mmdet", "mmrazor"] {
//!     roots.add(pkg, format!("../.cache/fixture-configs/{pkg}"));
//! }
//! let cfg = Config::from_file("../.cache/fixture-configs/mmyolo/mmcompat/kd_nano_rtmdet_neck.py", &roots)?;
//! assert_eq!(cfg.get("model.type").and_then(|v| v.as_str()), Some("FpnTeacherDistill"));
//!
//! let spec = InferenceSpec::from_config(&cfg, Some("mmyolo"), &roots)?;
//! assert_eq!(spec.distillation.as_deref(), Some("FpnTeacherDistill")); // reduced to its student
//! assert_eq!((spec.model.scope, spec.model.type_name), ("mmyolo", "YOLODetector"));
//!
//! let wrong = InferenceSpec::from_config(&cfg, Some("mmdet"), &roots).unwrap_err();
//! assert!(wrong.to_string().contains("YOLODetector"));
//! # Ok(()) }
//! ```
//!
//! # Reading a checkpoint
//!
//! Nothing is executed: unknown pickle classes become inert data, code-running callables are
//! refused. The counts below are the ones `torch.load` sees (`tests/fixtures/checkpoints/*.keys.json`):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mmcompat_registry::{Checkpoint, InspectReport};
//!
//! let path = "../tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth";
//! let ck = Checkpoint::open(path)?;
//! let report = InspectReport::from_checkpoint(&ck, path);
//! let state_dict = report.sections.iter().find(|s| s.name == "state_dict").unwrap();
//! # let upstream: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
//! #     "../tests/fixtures/checkpoints/kd_nano_rtmdet_neck.keys.json")?)?;
//! # let count = |prefix: &str| upstream["sections"]["state_dict"].as_array().unwrap().iter()
//! #     .filter(|k| k["name"].as_str().unwrap().starts_with(prefix)).count();
//! // The MMRazor layout: student, teacher and distiller side by side.
//! assert_eq!(state_dict.prefixes["architecture"], count("architecture."));
//! assert_eq!(state_dict.prefixes["teacher"], count("teacher."));
//! println!("{}", report.render_human());
//! # Ok(()) }
//! ```
//!
//! # Your own adapter
//!
//! An adapter looks at a checkpoint's description (keys, shapes, meta) and returns a plan (pure
//! data) that mmcompat applies. Register one from Rust with [`register_adapter!`], or write the
//! same plan as a TOML file (`examples/adapters/strip_orig_mod.toml`):
//!
//! ```
//! use mmcompat_registry::adapter::{
//!     AdapterError, AdapterOptions, CheckpointView, Confidence, Op, Plan,
//! };
//! use mmcompat_registry::{AdapterSet, CheckpointAdapter};
//!
//! /// An in-house trainer saves the detector under `detector.`.
//! struct DetectorPrefix;
//!
//! impl CheckpointAdapter for DetectorPrefix {
//!     fn name(&self) -> &str { "acme.detector_prefix" }
//!     fn scope(&self) -> &str { "acme" }
//!     fn description(&self) -> &str { "strip `detector.`" }
//!     fn detect(&self, view: &CheckpointView, _cfg: Option<&serde_json::Value>) -> Confidence {
//!         match view.default_section() {
//!             Some(s) if view.any_key_starts_with(s, "detector.") => Confidence::high("`detector.` keys"),
//!             _ => Confidence::none("no `detector.` keys"),
//!         }
//!     }
//!     fn plan(&self, view: &CheckpointView, _o: &AdapterOptions) -> Result<Plan, AdapterError> {
//!         Ok(Plan {
//!             adapter: self.name().to_owned(),
//!             section: view.default_section().unwrap_or("state_dict").to_owned(),
//!             ops: vec![Op::StripPrefix { prefix: "detector.".into() }],
//!             notes: vec![],
//!         })
//!     }
//! }
//! mmcompat_registry::register_adapter!(
//!     name: "acme.detector_prefix", scope: "acme", make: || Box::new(DetectorPrefix)
//! );
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut set = AdapterSet::from_inventory()?; // every register_adapter! linked in
//! set.load_toml("../examples/adapters/strip_orig_mod.toml")?;
//! assert!(set.get("acme.detector_prefix").is_ok());
//! assert!(set.get("torch.strip_orig_mod").is_ok());
//! // A name defined twice is an error naming both sources.
//! assert!(set.load_toml("../examples/adapters/strip_orig_mod.toml").is_err());
//! # Ok(()) }
//! ```
//!
//! # Stability
//!
//! Items listed above follow semver from 0.1 on (breaking changes bump the minor version while
//! the major is 0). `#[doc(hidden)]` items are not covered.

pub mod adapter;
pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod dtype;
pub mod export;
pub mod model_zoo;
pub mod plugin;
pub mod scoped;
pub mod spec;
/// Re-exported for [`register_adapter!`] and [`register_type!`], which expand to
/// `inventory::submit!`; not part of the API.
#[doc(hidden)]
pub use inventory;

pub use adapter::{AdapterError, AdapterOptions, AdapterSet, CheckpointAdapter, EmaChoice};
pub use checkpoint::{
    inspect::InspectReport, write_pth, write_safetensors, Checkpoint, CheckpointError,
};
pub use config::{Config, ConfigError, ConfigRoots};
pub use convert::{ConvertError, ConvertOptions, ConvertReport};
pub use dtype::DType;
pub use scoped::{BuildScope, Registries, RegistryError};
pub use spec::{InferenceSpec, SpecError};
