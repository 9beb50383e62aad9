//! The detector (mmyolo `YOLODetector`, mmdet `SingleStageDetector`s such as `RTMDet`): backbone →
//! neck → dense head, built from the spec's component tree through the backend registrations
//! (`component.rs`), with its `data_preprocessor` and `test_cfg`, the expected state-dict keys,
//! weight loading and the forward pass up to the raw head outputs. It knows no model family:
//! post-processing is the head's own `predict_by_feat`.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;
use tch::{nn, Device, Kind, Tensor};

use mmcompat_registry::scoped::{BuildScope, ScopeOrigin};
use mmcompat_registry::spec::models::detector::SingleStageDetectorCfg;
use mmcompat_registry::spec::models::two_stage::TwoStageDetectorCfg;
use mmcompat_registry::spec::{model_spec, ComponentKind, ComponentSpec, DataPreprocessorSpec};

use super::cfg::join;
use super::component::{
    build_backbone, build_dense_head, build_neck, find, Backbone, DenseHead, Neck, TchBuilder,
};
use super::component::{Flavour, HeadOutputs};
use super::layers::conv_module::Fuse;
use super::param::{Ctx, ExpectedKey, KeyLog};
use super::ModelError;
use crate::models::load::{load_named_tensors, LoadReport};
use crate::postprocess::{ImageMeta, PostprocessError, RawDetections, TestCfg};

/// Backbone → (neck) → dense head, the forward of every `SingleStageDetector`.
#[derive(Debug)]
struct SingleStage {
    backbone: Box<dyn Backbone>,
    neck: Option<Box<dyn Neck>>,
    head: Box<dyn DenseHead>,
    /// `scope.Type` of the backbone, neck (if any) and head, for the ONNX export's errors.
    names: Vec<String>,
}

/// A built detector, ready for [`Detector::load`] and [`Detector::forward`]. `Send`: a server can
/// move it to a worker thread (`Tensor` is not `Sync`; share an `Inferencer` instead, which is).
pub struct Detector {
    vs: nn::VarStore,
    keys: Vec<ExpectedKey>,
    net: SingleStage,
    type_name: String,
    data_preprocessor: DataPreprocessorSpec,
    test_cfg: Value,
    strides: Vec<(f64, f64)>,
    kind: Kind,
    fold_bn: bool,
    loaded: bool,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("type", &self.type_name)
            .field("flavour", &self.flavour())
            .field("num_classes", &self.num_classes())
            .field("strides", &self.strides)
            .field("device", &self.vs.device())
            .field("kind", &self.kind)
            .field("fold_bn", &self.fold_bn)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Builds the detector described by `model_cfg` (the resolved config's `model` dict) with
/// `scope` as the default scope (DetInferencer's `scope` argument), its weights zero-initialised
/// on `device`: the spec stage ([`model_spec`]) then [`build_detector_from_spec`].
pub fn build_detector(
    model_cfg: &Value,
    scope: &str,
    device: Device,
) -> Result<Detector, ModelError> {
    // DetInferencer's `scope` argument replaces the config's default_scope.
    let spec = model_spec(
        model_cfg,
        &BuildScope::with_origin(scope, ScopeOrigin::Explicit),
    )?;
    build_detector_from_spec(&spec, device)
}

/// Builds the detector of a model spec (the root must be a detector). Call [`Detector::load`]
/// next.
pub fn build_detector_from_spec(
    spec: &ComponentSpec,
    device: Device,
) -> Result<Detector, ModelError> {
    if spec.kind != ComponentKind::Detector
        || !matches!(
            find(spec.scope, spec.type_name).map(|c| c.builder),
            Some(TchBuilder::Detector)
        )
    {
        return Err(ModelError::Unsupported {
            what: format!("{} {}", spec.kind.describe(), spec.qualified_name()),
            path: spec.path.clone(),
            hint: "no single-stage detector implementation is registered for it".into(),
        });
    }
    // A two-stage detector (`FasterRCNN`) has the same two sections the detector reads.
    let (dp_cfg, test_cfg) = match spec.args::<SingleStageDetectorCfg>() {
        Ok(c) => (c.data_preprocessor.clone(), c.test_cfg.clone()),
        Err(_) => {
            let c: &TwoStageDetectorCfg = spec.args()?;
            (c.data_preprocessor.clone(), c.test_cfg.clone())
        }
    };
    let data_preprocessor =
        DataPreprocessorSpec::parse(dp_cfg.as_ref(), &join(&spec.path, "data_preprocessor"))?;
    let vs = nn::VarStore::new(device);
    let log = Rc::new(RefCell::new(KeyLog::default()));
    let ctx = Ctx::new(vs.root(), log.clone());
    let net = tch::no_grad(|| -> Result<SingleStage, ModelError> {
        let backbone_spec = spec.require_child("backbone")?;
        let backbone = build_backbone(backbone_spec, &ctx.sub("backbone"))?;
        let neck = spec
            .child("neck")
            .map(|n| build_neck(n, &ctx.sub("neck")))
            .transpose()?;
        // Two-stage: the RPN and RoI head as one head (`heads::two_stage`), named by the RPN.
        let (head_spec, head): (_, Box<dyn DenseHead>) = match spec.child("rpn_head") {
            Some(rpn) => (
                rpn,
                Box::new(crate::models::heads::two_stage::TwoStageHead::build(
                    spec, &ctx,
                )?),
            ),
            None => {
                let h = spec.require_child("bbox_head")?;
                (h, build_dense_head(h, &ctx.sub("bbox_head"))?)
            }
        };
        let names = [Some(backbone_spec), spec.child("neck"), Some(head_spec)]
            .into_iter()
            .map(|c| c.map(|c| c.qualified_name()).unwrap_or_default())
            .collect();
        Ok(SingleStage {
            backbone,
            neck,
            head,
            names,
        })
    })?;
    drop(ctx);
    let keys = std::mem::take(&mut log.borrow_mut().keys);
    let strides = net.head.strides();
    let det = Detector {
        vs,
        keys,
        net,
        type_name: spec.qualified_name(),
        data_preprocessor,
        test_cfg: test_cfg.unwrap_or(Value::Null),
        strides,
        kind: Kind::Float,
        fold_bn: false,
        loaded: false,
    };
    det.check_level_counts(&spec.path)?;
    Ok(det)
}

impl Detector {
    /// The channels and levels of consecutive components must agree (Python would fail in the
    /// first forward with a shape error; we fail at build time, naming the key to fix).
    fn check_level_counts(&self, path: &str) -> Result<(), ModelError> {
        let b_out = self.net.backbone.out_channels();
        let head_levels = match &self.net.neck {
            Some(neck) => {
                let neck_in = neck.in_channels();
                if b_out != neck_in {
                    return Err(ModelError::Invalid {
                        path: join(path, "neck.in_channels"),
                        message: format!(
                            "backbone outputs {b_out:?} channels, neck expects {neck_in:?}"
                        ),
                    });
                }
                neck.out_channels()
            }
            None => b_out,
        };
        let head_in = self.net.head.in_channels();
        if head_levels != head_in {
            return Err(ModelError::Invalid {
                path: join(path, "bbox_head.in_channels"),
                message: format!(
                    "neck outputs {head_levels:?} channels per level, head expects {head_in:?}"
                ),
            });
        }
        if self.strides.len() != head_levels.len() {
            return Err(ModelError::Invalid {
                path: join(path, "bbox_head"),
                message: format!(
                    "{} head levels for {} neck levels",
                    self.strides.len(),
                    head_levels.len()
                ),
            });
        }
        Ok(())
    }

    /// Which package's conventions the head's post-processing follows.
    pub fn flavour(&self) -> Flavour {
        self.net.head.flavour()
    }

    /// `scope.Type` of the detector.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The parsed `data_preprocessor` section.
    pub fn data_preprocessor(&self) -> &DataPreprocessorSpec {
        &self.data_preprocessor
    }

    /// `(w, h)` stride of each level, from the head's prior generator.
    pub fn strides(&self) -> &[(f64, f64)] {
        &self.strides
    }

    /// `offset` of the head's prior generator (0 on RTMDet configs; upstream default 0.5).
    pub fn prior_offset(&self) -> f64 {
        self.net.head.prior_offset()
    }

    pub fn num_classes(&self) -> i64 {
        self.net.head.num_classes()
    }

    /// How `--end2end` decodes the head's raw outputs (`DenseHead::onnx_decoder`).
    pub fn onnx_decoder(&self) -> crate::export::onnx::OnnxDecoder {
        self.net.head.onnx_decoder()
    }

    /// A two-stage detector's RoI head, for the ONNX export (`DenseHead::onnx_roi_head`).
    pub fn onnx_roi_head(&self) -> Option<&dyn crate::models::component::RoiHead> {
        self.net.head.onnx_roi_head()
    }

    /// The model's `test_cfg` (`Value::Null` when absent).
    pub fn test_cfg(&self) -> &Value {
        &self.test_cfg
    }

    /// The head's `predict_by_feat` on raw outputs of a batch.
    pub fn predict_by_feat(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError> {
        self.net.head.predict_by_feat(outputs, metas, cfg)
    }

    /// A two-stage detector's region proposals per image (`DenseHead::proposals`); `None` for
    /// one-stage detectors.
    pub fn proposals(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Option<Result<Vec<crate::postprocess::two_stage::Proposals>, PostprocessError>> {
        self.net.head.proposals(outputs, metas, cfg)
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }
    /// Compute precision of the forward pass (`Float` unless [`Detector::set_half`]).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Every parameter and persistent buffer of the upstream state dict with its shape, in module
    /// order, including every alias of shared convolutions; `num_batches_tracked` excluded.
    pub fn expected_keys(&self) -> Vec<(String, Vec<i64>)> {
        self.keys
            .iter()
            .map(|k| (k.name.clone(), k.shape.clone()))
            .collect()
    }

    /// Like [`Detector::expected_keys`], with alias information.
    pub fn expected_key_details(&self) -> &[ExpectedKey] {
        &self.keys
    }

    /// Loads named tensors (any float dtype, any device). `strict`: every expected key must be
    /// present with its shape and nothing unexpected may remain (`num_batches_tracked` ignored),
    /// else [`ModelError::StrictLoad`] with the grouped report and nothing is changed. Non-strict:
    /// loads what matches (like mmengine's `load_checkpoint(strict=False)`) and reports coverage.
    /// Then freezes the weights for inference (batch norms folded only after
    /// [`Detector::set_fold_bn`]).
    pub fn load(
        &mut self,
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        strict: bool,
    ) -> Result<LoadReport, ModelError> {
        let report = load_named_tensors(&self.vs, &self.keys, tensors, strict)?;
        self.loaded = true;
        self.fuse();
        Ok(report)
    }

    /// Switches the forward pass to fp16 (`true`) or back to fp32. fp16 is for CUDA devices only.
    pub fn set_half(&mut self, half: bool) -> Result<(), ModelError> {
        if half && !self.vs.device().is_cuda() {
            return Err(ModelError::Input(
                "fp16 inference needs a CUDA device (CPU kernels are fp32); use --device cuda"
                    .into(),
            ));
        }
        self.kind = if half { Kind::Half } else { Kind::Float };
        self.fuse();
        Ok(())
    }

    /// Folds every batch norm into its convolution (`true`) or keeps conv → batch norm as
    /// PyTorch runs it (`false`, the default). Folding saves one pass over each feature map but
    /// rounds differently: the head outputs then differ from the Python model's by up to ~7e-4
    /// relative instead of float32 noise (see `layers::conv_module`).
    pub fn set_fold_bn(&mut self, fold: bool) {
        self.fold_bn = fold;
        self.fuse();
    }

    /// Whether batch norms are folded into the convolutions ([`Detector::set_fold_bn`]).
    pub fn fold_bn(&self) -> bool {
        self.fold_bn
    }

    fn fuse(&mut self) {
        let mode = Fuse {
            kind: self.kind,
            fold_bn: self.fold_bn,
        };
        tch::no_grad(|| {
            self.net.backbone.fuse(mode);
            if let Some(n) = &mut self.net.neck {
                n.fuse(mode);
            }
            self.net.head.fuse(mode);
        });
    }

    /// Backbone → neck → head as ONNX nodes on the graph value `x` (`crate::export::onnx`). An
    /// unsupported component is refused naming its `scope.Type`, before anything is written.
    pub fn emit_onnx(
        &self,
        g: &mut crate::export::onnx::OnnxGraph,
        x: crate::export::onnx::ValueId,
    ) -> Result<crate::export::onnx::OnnxHeadOutputs, crate::export::onnx::ExportError> {
        let names = &self.net.names;
        let feats = self
            .net
            .backbone
            .emit_onnx(g, &[x])
            .map_err(|e| e.within(&names[0]))?;
        let feats = match &self.net.neck {
            Some(n) => n.emit_onnx(g, &feats).map_err(|e| e.within(&names[1]))?,
            None => feats,
        };
        // Every head emits one group of outputs per prior stride. `validate` checked the neck's
        // declared levels against the strides; this checks what the emitters returned, once for
        // every head, so that no head indexes its per-level modules past the features given.
        let levels = self.strides.len();
        if feats.len() != levels {
            return Err(crate::export::onnx::ExportError::InvalidOption {
                option: "--input-size",
                message: format!(
                    "{}: {} feature levels for {levels} prior strides",
                    names[2],
                    feats.len()
                ),
            });
        }
        self.net
            .head
            .emit_onnx(g, &feats)
            .map_err(|e| e.within(&names[2]))
    }

    /// Required divisor of the input height and width (the backbone's).
    pub fn size_divisor(&self) -> i64 {
        self.net.backbone.size_divisor()
    }

    /// Backbone → neck → head on a normalised `N×3×H×W` float batch. Returns float32 outputs on
    /// the model's device.
    pub fn forward(&self, x: &Tensor) -> Result<HeadOutputs, ModelError> {
        let size = x.size();
        if size.len() != 4 || size[1] != 3 {
            return Err(ModelError::Input(format!(
                "expected an N×3×H×W tensor, got shape {size:?}"
            )));
        }
        if !matches!(
            x.kind(),
            Kind::Float | Kind::Half | Kind::Double | Kind::BFloat16
        ) {
            return Err(ModelError::Input(format!(
                "expected a float tensor, got {:?}",
                x.kind()
            )));
        }
        let d = self.size_divisor();
        if size[2] % d != 0 || size[3] % d != 0 || size[2] == 0 || size[3] == 0 {
            return Err(ModelError::Input(format!(
                "height and width must be positive multiples of {d}, got {}×{} (pad the batch: \
                 the neck concatenates upsampled maps with the next level)",
                size[2], size[3]
            )));
        }
        if !self.loaded {
            tracing::warn!("forward on a detector whose weights were never loaded (all zeros)");
        }
        let _guard = tch::no_grad_guard();
        let x = x.f_to_device(self.vs.device())?.f_to_kind(self.kind)?;
        let feats = self.net.backbone.forward(&x)?;
        let feats = match &self.net.neck {
            Some(n) => n.forward(&feats)?,
            None => feats,
        };
        let out = self.net.head.forward(&feats)?;
        let to_f32 = |v: Vec<Tensor>| -> Result<Vec<Tensor>, ModelError> {
            v.into_iter()
                .map(|t| Ok(t.f_to_kind(Kind::Float)?))
                .collect()
        };
        Ok(HeadOutputs {
            cls_scores: to_f32(out.cls_scores)?,
            bbox_preds: to_f32(out.bbox_preds)?,
            objectnesses: to_f32(out.objectnesses)?,
            // In the compute kind: the second stage of a two-stage head runs on them.
            features: out.features,
        })
    }
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLODetector", Detector);
crate::register_tch_component!(scope: "mmdet", name: "RTMDet", Detector);
