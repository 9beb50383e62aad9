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

mod builder;
mod classes;
mod detect;
mod error;
pub mod ground_truth;
mod weights;

pub use crate::registry::spec::student::PredictsWithArchitecture;
pub use builder::InferencerBuilder;
pub use classes::COCO_CLASSES;
pub use detect::detections_record;
pub use detect::{build_inferencer, collect_images, run_detect, DetectOptions, DetectSummary};
pub use error::InferError;

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use crate::device::parse_device;
use crate::models::load::LoadReport;
use crate::models::{build_detector_from_spec, Detector, Flavour, HeadOutputs, ModelError};
use crate::postprocess::{ImageMeta, RawDetections, TestCfg};
use crate::preprocess::{
    decode_image_file_with, BgrImage, DataPreprocessor, DataPreprocessorCfg, DecodeLimits, HwcU8,
    PipelineSpec, Preprocessed,
};
use crate::registry::checkpoint::Checkpoint;
use crate::registry::config::{Config, ConfigRoots};
use crate::registry::spec::InferenceSpec;
use classes::{class_names, palette};
use weights::adapted_tensors;

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

/// A loaded detector with its pipeline, ready to run. `Send` and `Sync`: one instance can serve
/// many threads at once (`Arc<Inferencer>` or scoped threads; see the `Sync` impl for why that is
/// sound although tch tensors are not `Sync`).
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
    decode_limits: DecodeLimits,
}

// SAFETY: the only non-`Sync` parts are the `tch::Tensor`s held by `detector` (weights, fused
// weights) and `data_preprocessor` (mean/std). `tch::Tensor` is not `Sync` only because some of
// its `&self` methods could alias storage that another thread mutates; through `&Inferencer`
// nothing mutates them:
// * every `&self` method (`infer`, `infer_batch`, `detect_raw`, `head_outputs`, `postprocess`)
//   reads those tensors as operands of out-of-place libtorch ops that allocate new outputs
//   (`Detector::forward` runs under a per-call, thread-local `no_grad_guard`, so no autograd
//   graph links calls either); the in-place ops in `src/models` (`copy_` in `load.rs`,
//   `fill_` on a fresh local in `rep_vgg.rs`) run only in `&mut self` methods (`load`,
//   `set_fold_bn`, `set_half`), which `&Inferencer` cannot reach;
// * no component holds interior mutability (no `Cell`/`RefCell`/caches: the priors are built per
//   call); the `RefCell` key log exists only while building, not in the built detector;
// * concurrent reads of one `at::Tensor` from several threads are supported by libtorch
//   (refcounts are atomic; this is the same reasoning by which tch marks `CModule` `Sync` and
//   PyTorch documents multi-threaded inference on one module).
// A component that adds interior mutability or an in-place op on a weight in `forward` must
// revisit this. Tested by tests/threads.rs (8 threads on one instance = sequential results).
unsafe impl Sync for Inferencer {}

// Compile-time checks: the Inferencer can be moved across and shared between threads, and every
// field but the two tensor holders the `Sync` impl above argues for is `Sync` by itself. The
// exhaustive destructuring fails to compile when a field is added, so no new field slips through
// that impl unchecked.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Inferencer>();
};
#[allow(dead_code)]
fn fields_other_than_tensors_are_sync(i: &Inferencer) {
    fn sync<T: Sync>(_: &T) {}
    let Inferencer {
        detector: _,
        data_preprocessor: _,
        pipeline,
        test_cfg,
        class_names,
        class_names_source,
        palette,
        load_report,
        adapters,
        scope,
        config_path,
        distillation,
        decode_limits,
    } = i;
    sync(pipeline);
    sync(test_cfg);
    sync(class_names);
    sync(class_names_source);
    sync(palette);
    sync(load_report);
    sync(adapters);
    sync(scope);
    sync(config_path);
    sync(distillation);
    sync(decode_limits);
}

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
        let config_path = match (&b.loaded_config, b.config) {
            (Some(loaded), _) => loaded.path().to_path_buf(),
            (None, Some(p)) => p,
            (None, None) => return Err(InferError::MissingConfig),
        };
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
        let config = match b.loaded_config {
            Some(loaded) => loaded,
            None => {
                Config::from_file(&config_path, &roots).map_err(|source| InferError::Config {
                    path: config_path.clone(),
                    source: Box::new(source),
                })?
            }
        };
        // The spec stage: every config section parsed and checked before the checkpoint is read.
        let spec =
            InferenceSpec::from_config(&config, b.scope.as_deref(), &roots).map_err(|source| {
                InferError::Spec {
                    path: config_path.clone(),
                    source: Box::new(source),
                }
            })?;
        if let Some(kind) = &spec.distillation {
            tracing::info!(algorithm = %kind, "distillation config: building the student only (teacher and teacher_ckpt ignored)");
        }
        let model_err = |source| InferError::Model {
            config: config_path.clone(),
            source: Box::new(source),
        };
        let mut detector = build_detector_from_spec(&spec.model, device).map_err(model_err)?;
        let pipeline = PipelineSpec::new(spec.test_pipeline.clone());
        let data_preprocessor = DataPreprocessor::new(
            DataPreprocessorCfg::from(&spec.data_preprocessor),
            detector.device(),
        )
        .map_err(|source| InferError::Pipeline {
            config: config_path.clone(),
            source: Box::new(source),
        })?;

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
            b.adapter_set.as_deref(),
            &b.adapter_chain,
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

        let meta = ck.meta_json();
        let (class_names, class_names_source) = class_names(
            &meta,
            spec.config_classes.as_deref(),
            detector.num_classes(),
        );
        let palette = palette(&meta);
        Ok(Inferencer {
            detector,
            pipeline,
            data_preprocessor,
            test_cfg: spec.test_cfg,
            class_names,
            class_names_source,
            palette,
            load_report,
            adapters,
            scope: spec.scope.name().to_string(),
            config_path,
            distillation: spec.distillation,
            decode_limits: DecodeLimits::with_max_pixels(b.max_image_pixels),
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
        let decoded: Vec<std::borrow::Cow<'_, BgrImage>> = inputs
            .iter()
            .map(|&i| match i.into() {
                ImageInput::Path(p) => decode_image_file_with(p, &self.decode_limits)
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
        let (input, _) = self
            .data_preprocessor
            .run(&views, self.detector.kind())
            .map_err(|source| InferError::Preprocess {
                image: PathBuf::from("<batch>"),
                source: Box::new(source),
            })?;
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
        let metas: Vec<ImageMeta> = batch.iter().map(|p| image_meta(p)).collect();
        Ok(self
            .detector
            .predict_by_feat(outputs, &metas, &self.test_cfg)?)
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

    /// The limits image files are decoded with ([`InferencerBuilder::max_image_pixels`]).
    pub fn decode_limits(&self) -> &DecodeLimits {
        &self.decode_limits
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
