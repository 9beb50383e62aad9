//! The DetInferencer-equivalent API: config + checkpoint (+ scope, device) → an [`Inferencer`]
//! whose [`Inferencer::infer`] returns the detections `mmdet.apis.DetInferencer` /
//! `inference_detector` would return for the same image.
//!
//! What it does, in upstream terms (shared/openmmlab/behaviour.md 4.1):
//! * config loaded like `Config.fromfile` (registry/src/config); scope = the explicit argument,
//!   else the config's `default_scope` (DetInferencer itself ignores `default_scope`, and that is
//!   how `scope='mmdet'` breaks mmyolo configs), else `mmdet`;
//! * a distillation config (`model` in the mmrazor scope with an `architecture`) is reduced to its
//!   student: `architecture.cfg_path` through the config resolver (mmengine `get_model` semantics,
//!   top-level `data_preprocessor` copied into the model) or the inline `architecture` dict. The
//!   teacher is never built and `teacher_ckpt` never read. Prediction upstream only ever runs
//!   `self.architecture` (`mmrazor/models/algorithms/base.py: BaseAlgorithm._predict`), so the
//!   detections are the same;
//! * weights go through the automatic adapter chain against the model's expected keys (so a KD
//!   checkpoint's `architecture.*` loads the student), strict by default;
//! * class names from the checkpoint's `meta.dataset_meta` (keys lower-cased, as
//!   `det_inferencer.py: _load_weights_to_model` does), legacy `meta.CLASSES`, the config's
//!   `test_dataloader.dataset.metainfo.classes`, else COCO with a warning;
//! * per image: decode (`LoadImageFromFile` → `InferencerLoader`), the config's test pipeline, the
//!   model's data preprocessor, forward, the head's `predict_by_feat`.
//!
//! Never: build or load the teacher, download anything, execute config or checkpoint code.

mod detect;

pub use detect::{collect_images, run_detect, DetectOptions, DetectSummary};

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tch::{Device, Kind, Tensor};

use crate::core::adapter::{self, AdapterOptions, AdapterSet, CheckpointView, ExpectedKeys};
use crate::core::checkpoint::{Checkpoint, CheckpointError};
use crate::core::config::{Config, ConfigError, ConfigRoots};
use crate::core::DType;
use crate::device::{parse_device, DeviceError};
use crate::models::{build_detector, Detector, Flavour, HeadOutputs, ModelError};
use crate::postprocess::{
    head_outputs_to_host, predict_by_feat, DataPreprocessor, DataPreprocessorCfg, HwcU8, ImageMeta,
    PostprocessError, RawDetections, TestCfg,
};
use crate::preprocess::{decode_image_file, BgrImage, PipelineSpec, PreprocessError, Preprocessed};
use crate::weights::LoadReport;

/// One detection, in original-image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    pub score: f32,
    pub label: usize,
    /// The dataset's name of `label` (`class {label}` when the list is too short).
    pub class_name: String,
}

/// An image to run on: a file (decoded like `cv2.imread`) or an already decoded BGR image
/// (DetInferencer's ndarray input, assumed BGR).
#[derive(Debug, Clone, Copy)]
pub enum ImageInput<'a> {
    Path(&'a Path),
    Image(&'a BgrImage),
}

impl<'a> From<&'a Path> for ImageInput<'a> {
    fn from(p: &'a Path) -> Self {
        ImageInput::Path(p)
    }
}

impl<'a> From<&'a PathBuf> for ImageInput<'a> {
    fn from(p: &'a PathBuf) -> Self {
        ImageInput::Path(p.as_path())
    }
}

impl<'a> From<&'a str> for ImageInput<'a> {
    fn from(p: &'a str) -> Self {
        ImageInput::Path(Path::new(p))
    }
}

impl<'a> From<&'a BgrImage> for ImageInput<'a> {
    fn from(img: &'a BgrImage) -> Self {
        ImageInput::Image(img)
    }
}

/// Where the class names came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassNamesSource {
    /// `meta.dataset_meta.classes` (or legacy `meta.CLASSES`) of the checkpoint.
    Checkpoint,
    /// `test_dataloader.dataset.metainfo.classes` of the config.
    Config,
    /// Nothing found: the 80 COCO names (DetInferencer does the same, with a warning).
    CocoFallback,
}

/// Everything that can go wrong building an [`Inferencer`] or running it.
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
         pass --adapter NAME to force a chain, or --non-strict to load only what matches (not recommended)",
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

/// Builder of an [`Inferencer`] (all options but config and weights have defaults).
#[derive(Debug, Clone)]
pub struct InferencerBuilder {
    config: Option<PathBuf>,
    weights: Option<PathBuf>,
    scope: Option<String>,
    device: String,
    config_roots: Option<ConfigRoots>,
    half: bool,
    fold_bn: bool,
    strict: bool,
    adapters: Vec<String>,
    adapter_options: AdapterOptions,
}

impl Default for InferencerBuilder {
    fn default() -> Self {
        InferencerBuilder {
            config: None,
            weights: None,
            scope: None,
            device: "cpu".into(),
            config_roots: None,
            half: false,
            fold_bn: false,
            strict: true,
            adapters: Vec::new(),
            adapter_options: AdapterOptions::default(),
        }
    }
}

impl InferencerBuilder {
    /// The model config (`.py` as mmengine reads it, `.toml`, `.json`).
    pub fn config(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = Some(path.into());
        self
    }

    /// The checkpoint (plain, EMA, KD/MMRazor, DDP-wrapped, ... through the adapters).
    pub fn weights(mut self, path: impl Into<PathBuf>) -> Self {
        self.weights = Some(path.into());
        self
    }

    /// Default scope for unqualified types (DetInferencer's `scope`), e.g. `mmyolo`. Without it the
    /// config's `default_scope` is used.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// `cpu`, `cuda` or `cuda:N` (default `cpu`).
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = device.into();
        self
    }

    /// Where `pkg::path` config references are looked up (default: `MMCOMPAT_CONFIG_ROOTS`, then
    /// the configs of the packages installed in `python3`).
    pub fn config_roots(mut self, roots: ConfigRoots) -> Self {
        self.config_roots = Some(roots);
        self
    }

    /// fp16 forward pass (CUDA only).
    pub fn half(mut self, half: bool) -> Self {
        self.half = half;
        self
    }

    /// Fold batch norms into the convolutions at load time (default: off). Saves a pass over
    /// every feature map, but the raw outputs then differ from the Python model's by up to ~7e-4
    /// relative (measured on the fixtures) instead of matching it within float32 noise.
    pub fn fold_bn(mut self, fold: bool) -> Self {
        self.fold_bn = fold;
        self
    }

    /// Strict loading (default): every expected key with its shape, nothing left over.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Force this adapter chain (names, in order) instead of choosing automatically.
    pub fn adapters(mut self, names: Vec<String>) -> Self {
        self.adapters = names;
        self
    }

    /// Options handed to the adapters (EMA choice, free-form options).
    pub fn adapter_options(mut self, options: AdapterOptions) -> Self {
        self.adapter_options = options;
        self
    }

    pub fn build(self) -> Result<Inferencer, InferError> {
        Inferencer::from_builder(self)
    }
}

/// The resolved model to build: which config it came from, its model dict and scope.
struct ResolvedModel {
    model: Json,
    scope: String,
    /// The student config for a distillation config (pipeline / metainfo fallback).
    student_config: Option<Config>,
    distillation: Option<String>,
}

/// A loaded detector with its pipeline, ready to run. `Send`, so a server can move it to a worker
/// thread or share it behind a `Mutex` (tch tensors are not `Sync`).
pub struct Inferencer {
    detector: Detector,
    pipeline: PipelineSpec,
    data_preprocessor: DataPreprocessor,
    test_cfg: TestCfg,
    class_names: Vec<String>,
    class_names_source: ClassNamesSource,
    palette: Option<Vec<[u8; 3]>>,
    load_report: LoadReport,
    adapters: Vec<String>,
    scope: String,
    config_path: PathBuf,
    distillation: Option<String>,
}

// Compile-time check: the Inferencer can be moved across threads.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Inferencer>();
};

impl std::fmt::Debug for Inferencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inferencer")
            .field("config", &self.config_path)
            .field("scope", &self.scope)
            .field("detector", &self.detector)
            .field("adapters", &self.adapters)
            .field("classes", &self.class_names.len())
            .finish()
    }
}

impl Inferencer {
    pub fn builder() -> InferencerBuilder {
        InferencerBuilder::default()
    }

    /// `Inferencer::builder().config(config).weights(weights).scope(scope).device(device).build()`
    /// (scope `None`: the config's `default_scope`).
    pub fn new(
        config: impl Into<PathBuf>,
        weights: impl Into<PathBuf>,
        scope: Option<&str>,
        device: &str,
    ) -> Result<Inferencer, InferError> {
        let mut b = Inferencer::builder()
            .config(config)
            .weights(weights)
            .device(device);
        if let Some(s) = scope {
            b = b.scope(s);
        }
        b.build()
    }

    fn from_builder(b: InferencerBuilder) -> Result<Inferencer, InferError> {
        crate::builtin_adapters();
        let config_path = b.config.ok_or(InferError::MissingConfig)?;
        let weights_path = b.weights.ok_or(InferError::MissingWeights)?;
        let roots = match b.config_roots {
            Some(r) => r,
            None => ConfigRoots::new()
                .with_env()
                .map_err(|source| InferError::Config {
                    path: config_path.clone(),
                    source: Box::new(source),
                })?
                .discover_python(),
        };
        let device = parse_device(&b.device)?;
        let config =
            Config::from_file(&config_path, &roots).map_err(|source| InferError::Config {
                path: config_path.clone(),
                source: Box::new(source),
            })?;
        let resolved = resolve_model(&config, b.scope.as_deref(), &roots)?;
        if let Some(kind) = &resolved.distillation {
            tracing::info!(algorithm = %kind, "distillation config: building the student only (teacher and teacher_ckpt ignored)");
        }

        let model_err = |source| InferError::Model {
            config: config_path.clone(),
            source: Box::new(source),
        };
        let mut detector =
            build_detector(&resolved.model, &resolved.scope, device).map_err(model_err)?;

        // Weights through the adapters, then into the model.
        let ck = Checkpoint::open(&weights_path).map_err(|source| InferError::Checkpoint {
            path: weights_path.clone(),
            source: Box::new(source),
        })?;
        let (tensors, adapters) = adapted_tensors(
            &ck,
            &weights_path,
            &config,
            &detector,
            &b.adapters,
            &b.adapter_options,
            b.strict,
        )?;
        let load_report = match detector.load(tensors, b.strict) {
            Ok(r) => r,
            Err(ModelError::StrictLoad(report)) => {
                return Err(InferError::WeightsDoNotFit {
                    weights: weights_path,
                    config: config_path,
                    report: report.to_string(),
                })
            }
            Err(e) => return Err(model_err(e)),
        };
        if !b.strict && !load_report.is_complete() {
            tracing::warn!(
                coverage = format!("{:.1}%", load_report.coverage()),
                "NON-STRICT LOAD: the model is only partly initialised from {}; detections are unreliable\n{}",
                weights_path.display(),
                load_report
            );
        }
        if b.fold_bn {
            detector.set_fold_bn(true);
        }
        if b.half {
            detector.set_half(true).map_err(model_err)?;
        }

        // Test pipeline: the given config's test_dataloader (what DetInferencer reads), else the
        // student config's.
        let pipeline_value = config
            .get("test_dataloader.dataset.pipeline")
            .or_else(|| {
                resolved
                    .student_config
                    .as_ref()
                    .and_then(|c| c.get("test_dataloader.dataset.pipeline"))
            })
            .map(|v| v.to_json())
            .ok_or_else(|| InferError::ConfigContent {
                path: config_path.clone(),
                message:
                    "no test_dataloader.dataset.pipeline (DetInferencer needs the test pipeline)"
                        .into(),
            })?;
        let pipeline =
            PipelineSpec::from_config(&pipeline_value).map_err(|source| InferError::Pipeline {
                config: config_path.clone(),
                source: Box::new(source),
            })?;
        let data_preprocessor = DataPreprocessor::new(
            DataPreprocessorCfg::from(detector.data_preprocessor()),
            detector.device(),
        )?;
        let test_cfg = if detector.test_cfg().is_null() {
            return Err(InferError::ConfigContent {
                path: config_path,
                message: "the model has no test_cfg (predict_by_feat reads nms_pre, score_thr, nms, max_per_img)".into(),
            });
        } else {
            TestCfg::from_json(detector.test_cfg())?
        };

        let meta = ck.meta_json();
        let (class_names, class_names_source) = class_names(
            &meta,
            &config,
            resolved.student_config.as_ref(),
            detector.num_classes(),
        );
        let palette = palette(&meta);
        Ok(Inferencer {
            detector,
            pipeline,
            data_preprocessor,
            test_cfg,
            class_names,
            class_names_source,
            palette,
            load_report,
            adapters,
            scope: resolved.scope,
            config_path,
            distillation: resolved.distillation,
        })
    }

    /// Detections of one image, by descending score (every one `test_cfg` keeps).
    pub fn infer<'a>(
        &self,
        input: impl Into<ImageInput<'a>>,
    ) -> Result<Vec<Detection>, InferError> {
        let mut out = self.infer_batch(&[input.into()])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Detections of several images run as one batch (padded to the largest, as `stack_batch`).
    pub fn infer_batch<'a, I: Into<ImageInput<'a>> + Copy>(
        &self,
        inputs: &[I],
    ) -> Result<Vec<Vec<Detection>>, InferError> {
        let decoded: Vec<std::borrow::Cow<'_, BgrImage>> =
            inputs
                .iter()
                .map(|&i| match i.into() {
                    ImageInput::Path(p) => decode_image_file(p)
                        .map(std::borrow::Cow::Owned)
                        .map_err(|source| InferError::Preprocess {
                            image: p.to_path_buf(),
                            source: Box::new(source),
                        }),
                    ImageInput::Image(img) => Ok(std::borrow::Cow::Borrowed(img)),
                })
                .collect::<Result<_, _>>()?;
        let images: Vec<&BgrImage> = decoded.iter().map(|c| c.as_ref()).collect();
        let raw = self.detect_raw(&images)?;
        Ok(raw.into_iter().map(|r| self.to_detections(r)).collect())
    }

    /// Test pipeline of one decoded image (resize, pad; uint8 network input + metainfo).
    pub fn preprocess(&self, img: &BgrImage) -> Result<Preprocessed, InferError> {
        self.pipeline
            .run(img)
            .map_err(|source| InferError::Preprocess {
                image: PathBuf::from("<image>"),
                source: Box::new(source),
            })
    }

    /// Data preprocessor + forward on pre-processed images: the raw head outputs.
    pub fn head_outputs(&self, batch: &[&Preprocessed]) -> Result<HeadOutputs, InferError> {
        let views: Vec<HwcU8<'_>> = batch
            .iter()
            .map(|p| HwcU8 {
                data: &p.image.data,
                height: p.image.height,
                width: p.image.width,
            })
            .collect();
        let (input, _) = self.data_preprocessor.run(&views, self.detector.kind())?;
        self.forward(&input)
    }

    fn forward(&self, input: &Tensor) -> Result<HeadOutputs, InferError> {
        self.detector
            .forward(input)
            .map_err(|source| InferError::Model {
                config: self.config_path.clone(),
                source: Box::new(source),
            })
    }

    /// `predict_by_feat` of the model's head on raw outputs of `batch`.
    pub fn postprocess(
        &self,
        outputs: &HeadOutputs,
        batch: &[&Preprocessed],
    ) -> Result<Vec<RawDetections>, InferError> {
        let host = head_outputs_to_host(
            &outputs.cls_scores,
            &outputs.bbox_preds,
            self.detector.strides(),
            self.detector.prior_offset(),
        )?;
        let metas: Vec<ImageMeta> = batch.iter().map(|p| image_meta(p)).collect();
        Ok(predict_by_feat(
            self.detector.flavour(),
            &host,
            &metas,
            &self.test_cfg,
        )?)
    }

    /// Pipeline, forward and post-processing of decoded images.
    pub fn detect_raw(&self, images: &[&BgrImage]) -> Result<Vec<RawDetections>, InferError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let pre: Vec<Preprocessed> = images
            .iter()
            .map(|img| self.preprocess(img))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&Preprocessed> = pre.iter().collect();
        let outputs = self.head_outputs(&refs)?;
        self.postprocess(&outputs, &refs)
    }

    fn to_detections(&self, raw: RawDetections) -> Vec<Detection> {
        let mut dets: Vec<Detection> = raw
            .bboxes
            .into_iter()
            .zip(raw.scores)
            .zip(raw.labels)
            .map(|((bbox, score), label)| Detection {
                bbox,
                score,
                label,
                class_name: self.class_name(label),
            })
            .collect();
        // Already in NMS output order; a stable sort keeps it for equal scores.
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        dets
    }

    /// Name of `label` (`class {label}` beyond the list).
    pub fn class_name(&self, label: usize) -> String {
        self.class_names
            .get(label)
            .cloned()
            .unwrap_or_else(|| format!("class {label}"))
    }

    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    pub fn class_names_source(&self) -> ClassNamesSource {
        self.class_names_source
    }

    /// The dataset palette (RGB per class) from the checkpoint meta, if any.
    pub fn palette(&self) -> Option<&[[u8; 3]]> {
        self.palette.as_deref()
    }

    /// What loading the weights found (coverage, missing/unexpected keys).
    pub fn load_report(&self) -> &LoadReport {
        &self.load_report
    }

    /// Adapters applied to the checkpoint, in order (empty: used as is).
    pub fn adapters(&self) -> &[String] {
        &self.adapters
    }

    /// The scope the model was built in.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// `Some(algorithm type)` when the config was a distillation config reduced to its student.
    pub fn distillation(&self) -> Option<&str> {
        self.distillation.as_deref()
    }

    pub fn flavour(&self) -> Flavour {
        self.detector.flavour()
    }

    pub fn device(&self) -> Device {
        self.detector.device()
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    pub fn test_cfg(&self) -> &TestCfg {
        &self.test_cfg
    }

    pub fn pipeline(&self) -> &PipelineSpec {
        &self.pipeline
    }
}

/// The metainfo `predict_by_feat` reads, from the pipeline's output.
pub fn image_meta(p: &Preprocessed) -> ImageMeta {
    ImageMeta {
        ori_shape: [p.ori_shape.0, p.ori_shape.1],
        img_shape: [p.img_shape.0, p.img_shape.1],
        scale_factor: [p.scale_factor.0, p.scale_factor.1],
        pad_param: p.pad_param,
    }
}

/// Registry payload of the MMRazor algorithms whose prediction is their `architecture`'s
/// (`mmrazor/models/algorithms/base.py: BaseAlgorithm._predict`): inference builds the student
/// alone. Registered in the mmrazor scope like upstream, so `type` resolves with mmengine's
/// scope rules and `mmcompat registry` lists them.
pub struct PredictsWithArchitecture;

static PREDICTS_WITH_ARCHITECTURE: PredictsWithArchitecture = PredictsWithArchitecture;

macro_rules! register_distill_algorithms {
    ($($name:literal),* $(,)?) => {$(
        crate::core::register_type!(
            scope: "mmrazor",
            kind: "model",
            name: $name,
            payload: &PREDICTS_WITH_ARCHITECTURE
        );
    )*};
}

// mmrazor/models/algorithms/distill/configurable/*.py and data_free_distillation.py.
register_distill_algorithms!(
    "SingleTeacherDistill",
    "FpnTeacherDistill",
    "OverhaulFeatureDistillation",
    "SelfDistill",
    "DAFLDataFreeDistillation",
    "DataFreeDistillation",
);

/// Whether `type_name` (built in `dict_scope` under `outer`) resolves, in the scoped registries,
/// to an algorithm that predicts with its architecture.
fn predicts_with_architecture(type_name: &str, dict_scope: Option<&str>, outer: &str) -> bool {
    use crate::core::scoped::{BuildScope, Registries};
    let Ok(regs) = Registries::from_inventory() else {
        return false;
    };
    regs.resolve(
        "model",
        type_name,
        dict_scope,
        &BuildScope::new(Some(outer), None),
    )
    .is_ok_and(|(found, _)| found.payload::<PredictsWithArchitecture>().is_some())
}

/// The model dict to build and its scope; distillation configs reduced to the student.
fn resolve_model(
    config: &Config,
    scope: Option<&str>,
    roots: &ConfigRoots,
) -> Result<ResolvedModel, InferError> {
    let path = config.path().to_path_buf();
    let content = |message: String| InferError::ConfigContent {
        path: path.clone(),
        message,
    };
    let explicit = scope.map(str::to_string);
    let default_scope = config
        .get("default_scope")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let scope = explicit
        .clone()
        .or(default_scope)
        .unwrap_or_else(|| "mmdet".into());
    let model = config
        .get("model")
        .ok_or_else(|| content("no `model` in the config".into()))?
        .to_json();
    let type_name = model
        .get("type")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let model_scope = model
        .get("_scope_")
        .and_then(Json::as_str)
        .map(str::to_string);
    let type_scope = type_name.split_once('.').map(|(s, _)| s.to_string());
    let in_razor = type_scope
        .as_deref()
        .or(model_scope.as_deref())
        .unwrap_or(&scope)
        == "mmrazor";
    let Some(arch) = model.get("architecture").filter(|_| in_razor) else {
        return Ok(ResolvedModel {
            model,
            scope,
            student_config: None,
            distillation: None,
        });
    };
    if !predicts_with_architecture(&type_name, model_scope.as_deref(), &scope) {
        tracing::warn!(algorithm = %type_name, "mmrazor algorithm not known to predict through its architecture; using the architecture anyway");
    }
    // BaseAlgorithm: `data_preprocessor` of the algorithm if given, else the architecture's.
    let algo_dp = model
        .get("data_preprocessor")
        .filter(|v| !v.is_null())
        .cloned();
    let (mut student, student_scope, student_config) = if arch.get("cfg_path").is_some() {
        let m = config
            .resolve_cfg_path("model.architecture", roots)
            .map_err(|source| InferError::Config {
                path: path.clone(),
                source: Box::new(source),
            })?;
        (m.model.to_json(), m.scope, Some(m.config))
    } else if arch.get("type").is_some() {
        let s = arch
            .get("_scope_")
            .and_then(Json::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| scope.clone());
        (arch.clone(), s, None)
    } else {
        return Err(content(
            "model.architecture has neither `cfg_path` nor `type`: cannot tell which student to build".into(),
        ));
    };
    if let (Some(dp), Some(obj)) = (algo_dp, student.as_object_mut()) {
        obj.insert("data_preprocessor".into(), dp);
    }
    // An explicit scope argument wins, as DetInferencer's init_default_scope does (`_scope_` keys
    // inside the student config still switch scope where they appear); otherwise the scope
    // `get_model` builds the student in (its package).
    let scope = explicit.unwrap_or(student_scope);
    Ok(ResolvedModel {
        model: student,
        scope,
        student_config,
        distillation: Some(type_name),
    })
}

fn kind_of(dtype: DType) -> Kind {
    match dtype {
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F64 => Kind::Double,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    }
}

/// Named tensors for the model and the adapter chain that produced the names.
type AdaptedTensors = (Vec<(String, Tensor)>, Vec<String>);

/// The checkpoint's tensors renamed by the adapter chain that makes them fit the model.
#[allow(clippy::too_many_arguments)]
fn adapted_tensors(
    ck: &Checkpoint,
    weights: &Path,
    config: &Config,
    detector: &Detector,
    forced: &[String],
    options: &AdapterOptions,
    strict: bool,
) -> Result<AdaptedTensors, InferError> {
    let adapter_err = |source| InferError::Adapter {
        path: weights.to_path_buf(),
        source: Box::new(source),
    };
    let view = CheckpointView::from_checkpoint(ck);
    let set = AdapterSet::from_inventory().map_err(adapter_err)?;
    // The model's state dict as PyTorch lists it: every batch norm also has a scalar
    // `num_batches_tracked` buffer (unused at inference, skipped when loading, but present in
    // checkpoints; the chain must not count it as unexpected).
    let mut expected = ExpectedKeys::new();
    for (k, s) in detector.expected_keys() {
        let tracked = k
            .strip_suffix(".running_mean")
            .map(|p| format!("{p}.num_batches_tracked"));
        expected.insert(k, s.into_iter().map(|d| d.max(0) as usize).collect());
        if let Some(t) = tracked {
            expected.insert(t, Vec::new());
        }
    }
    let config_json = config.to_json();
    let chain = if forced.is_empty() {
        match adapter::choose_chain(&view, Some(&config_json), &expected, &set, options) {
            Ok(chain) => chain,
            Err(nofit) if strict => {
                return Err(InferError::WeightsDoNotFit {
                    weights: weights.to_path_buf(),
                    config: config.path().to_path_buf(),
                    report: nofit.to_string(),
                })
            }
            Err(nofit) => {
                // Non-strict: the closest chain tried (identity first on ties).
                let best: Vec<String> = nofit
                    .attempts
                    .first()
                    .map(|a| a.adapters.clone())
                    .unwrap_or_default();
                let names: Vec<&str> = best.iter().map(String::as_str).collect();
                adapter::chain::apply_named(&view, &names, &set, options, Some(&config_json))
                    .map_err(adapter_err)?
            }
        }
    } else {
        let names: Vec<&str> = forced.iter().map(String::as_str).collect();
        let chain = adapter::chain::apply_named(&view, &names, &set, options, Some(&config_json))
            .map_err(adapter_err)?;
        if strict && !adapter::chain::KeyMismatch::between(&chain.mapping, &expected).fits() {
            // The grouped missing/unexpected report, naming the adapters that would have fitted.
            let nofit = adapter::chain::explain_mismatch(
                &view,
                &chain.mapping,
                Some(&config_json),
                &expected,
                &set,
                options,
            );
            return Err(InferError::WeightsDoNotFit {
                weights: weights.to_path_buf(),
                config: config.path().to_path_buf(),
                report: nofit.to_string(),
            });
        }
        chain
    };
    if !chain.adapters.is_empty() {
        tracing::info!(chain = %chain.adapters.join(" → "), "checkpoint adapters applied");
    }
    let ck_err = |source| InferError::Checkpoint {
        path: weights.to_path_buf(),
        source: Box::new(source),
    };
    let mut out = Vec::with_capacity(chain.mapping.tensors.len());
    for mt in &chain.mapping.tensors {
        let info = ck
            .section(&mt.section)
            .and_then(|s| s.tensors.get(&mt.source_key))
            .ok_or_else(|| InferError::Input(format!(
                "checkpoint {}: adapter output `{}` refers to `{}` in section `{}`, which does not exist",
                weights.display(),
                mt.key,
                mt.source_key,
                mt.section
            )))?;
        let bytes = ck.tensor_bytes(info).map_err(ck_err)?;
        let (dtype, shape, bytes) =
            adapter::apply_tensor_ops(info.dtype, &info.shape, bytes, &mt.ops)
                .map_err(adapter_err)?;
        let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(&bytes, &shape, kind_of(dtype)).map_err(|e| {
            InferError::Input(format!(
                "checkpoint {}: tensor `{}`: {e}",
                weights.display(),
                mt.source_key
            ))
        })?;
        out.push((mt.key.clone(), t));
    }
    Ok((out, chain.adapters))
}

/// Class names: checkpoint meta (`dataset_meta` with lower-cased keys, legacy `CLASSES`), config
/// metainfo, else COCO with a warning (`det_inferencer.py: _load_weights_to_model`).
fn class_names(
    meta: &Json,
    config: &Config,
    student: Option<&Config>,
    num_classes: i64,
) -> (Vec<String>, ClassNamesSource) {
    let strings = |v: &Json| -> Option<Vec<String>> {
        v.as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let from_meta = meta
        .get("dataset_meta")
        .and_then(Json::as_object)
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.to_lowercase() == "classes")
                .map(|(_, v)| v)
        })
        .or_else(|| meta.get("CLASSES"))
        .and_then(strings);
    if let Some(names) = from_meta {
        return (names, ClassNamesSource::Checkpoint);
    }
    let from_cfg = [Some(config), student]
        .into_iter()
        .flatten()
        .find_map(|c| {
            c.get("test_dataloader.dataset.metainfo.classes")
                .map(|v| v.to_json())
        })
        .and_then(|v| strings(&v));
    if let Some(names) = from_cfg {
        return (names, ClassNamesSource::Config);
    }
    tracing::warn!("no class names in the checkpoint meta or the config: using the COCO classes");
    let names: Vec<String> = COCO_CLASSES.iter().map(|s| s.to_string()).collect();
    if num_classes as usize != names.len() {
        tracing::warn!(
            num_classes,
            "the model does not have 80 classes; COCO names will be wrong"
        );
    }
    (names, ClassNamesSource::CocoFallback)
}

fn palette(meta: &Json) -> Option<Vec<[u8; 3]>> {
    let p = meta.get("dataset_meta")?.get("palette")?.as_array()?;
    p.iter()
        .map(|c| {
            let c = c.as_array()?;
            let ch = |i: usize| c.get(i)?.as_u64().map(|v| v.min(255) as u8);
            Some([ch(0)?, ch(1)?, ch(2)?])
        })
        .collect()
}

/// `mmdet.evaluation.functional.class_names.coco_classes()` (what `get_classes('coco')` gives
/// DetInferencer when the checkpoint has no class names).
pub const COCO_CLASSES: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic_light",
    "fire_hydrant",
    "stop_sign",
    "parking_meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports_ball",
    "kite",
    "baseball_bat",
    "baseball_glove",
    "skateboard",
    "surfboard",
    "tennis_racket",
    "bottle",
    "wine_glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot_dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted_plant",
    "bed",
    "dining_table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell_phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy_bear",
    "hair_drier",
    "toothbrush",
];
