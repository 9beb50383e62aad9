//! The whole single-stage detector (mmyolo `YOLODetector`, mmdet `RTMDet`, both
//! `SingleStageDetector`s): backbone → neck → bbox head, its `data_preprocessor` and `test_cfg`,
//! the expected state-dict keys, weight loading and the forward pass up to the raw head outputs.
//! Post-processing (priors, decoding, NMS) lives in `crate::postprocess`.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::Value;
use tch::{nn, Device, Kind, Tensor};

use super::backbone::cspnext::CspNext;
use super::builders::{build_component, BuildScope, Component};
use super::cfg::{join, parse_section};
use super::heads::rtmdet_mmdet::MmdetSepBnHead;
use super::heads::rtmdet_mmyolo::MmyoloRtmdetHead;
use super::layers::conv_module::Fuse;
use super::necks::cspnext_pafpn_mmdet::MmdetPafpn;
use super::necks::cspnext_pafpn_mmyolo::MmyoloPafpn;
use super::param::{Ctx, ExpectedKey, KeyLog};
use super::ModelError;
use crate::weights::{load_named_tensors, LoadReport};
use mmcompat_registry::scoped::ScopeOrigin;

/// Which upstream implementation the head (and so the post-processing) follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// mmyolo `RTMDetHead`: raw distances in stride units, joint top-k over levels, unpad and
    /// divide by the scale factor, clamp after NMS.
    Mmyolo,
    /// mmdet `RTMDetSepBNHead`: distances already multiplied by the stride, per-level top-k, clamp
    /// to the padded image, multiply by the reciprocal scale factor.
    Mmdet,
}

/// Raw head outputs, one tensor per level (strides ascending), float32 on the model's device.
#[derive(Debug)]
pub struct HeadOutputs {
    /// `N × (num_base_priors·num_classes) × H × W` logits (before sigmoid).
    pub cls_scores: Vec<Tensor>,
    /// `N × 4 × H × W` distances (l, t, r, b): in stride units for [`Flavour::Mmyolo`], in pixels
    /// for [`Flavour::Mmdet`].
    pub bbox_preds: Vec<Tensor>,
}

/// The model's `data_preprocessor` (`DetDataPreprocessor` / `YOLOv5DetDataPreprocessor`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPreprocessor {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    /// Per-channel mean, in the channel order after the optional swap; `None`: no normalisation.
    #[serde(default)]
    pub mean: Option<Vec<f64>>,
    #[serde(default)]
    pub std: Option<Vec<f64>>,
    #[serde(default = "one")]
    pub pad_size_divisor: i64,
    #[serde(default)]
    pub pad_value: f64,
    #[serde(default)]
    pub bgr_to_rgb: bool,
    #[serde(default)]
    pub rgb_to_bgr: bool,
    #[serde(default)]
    pub pad_mask: bool,
    #[serde(default)]
    pub mask_pad_value: Option<f64>,
    #[serde(default)]
    pub pad_seg: bool,
    #[serde(default)]
    pub seg_pad_value: Option<f64>,
    #[serde(default)]
    pub boxtype2tensor: Option<bool>,
    #[serde(default)]
    pub non_blocking: Option<bool>,
    #[serde(default)]
    pub batch_augments: Option<Value>,
}

fn one() -> i64 {
    1
}

impl Default for DataPreprocessor {
    fn default() -> Self {
        DataPreprocessor {
            type_name: None,
            scope: None,
            mean: None,
            std: None,
            pad_size_divisor: 1,
            pad_value: 0.0,
            bgr_to_rgb: false,
            rgb_to_bgr: false,
            pad_mask: false,
            mask_pad_value: None,
            pad_seg: false,
            seg_pad_value: None,
            boxtype2tensor: None,
            non_blocking: None,
            batch_augments: None,
        }
    }
}

impl DataPreprocessor {
    fn parse(value: Option<&Value>, path: &str) -> Result<Self, ModelError> {
        let Some(v) = value.filter(|v| !v.is_null()) else {
            return Ok(DataPreprocessor::default());
        };
        let dp: DataPreprocessor = parse_section(v, "DetDataPreprocessor", path)?;
        let name = dp
            .type_name
            .as_deref()
            .map(|t| t.rsplit('.').next().unwrap_or(t));
        if !matches!(
            name,
            None | Some("DetDataPreprocessor") | Some("YOLOv5DetDataPreprocessor")
        ) {
            return Err(ModelError::Unsupported {
                what: format!(
                    "data_preprocessor type `{}`",
                    dp.type_name.as_deref().unwrap_or("")
                ),
                path: path.to_string(),
                hint: "DetDataPreprocessor and YOLOv5DetDataPreprocessor are implemented".into(),
            });
        }
        for (key, v) in [("mean", &dp.mean), ("std", &dp.std)] {
            if let Some(v) = v {
                if v.len() != 3 && v.len() != 1 {
                    return Err(ModelError::Invalid {
                        path: join(path, key),
                        message: format!("needs 1 or 3 values, got {}", v.len()),
                    });
                }
            }
        }
        if dp.mean.is_some() != dp.std.is_some() {
            return Err(ModelError::Invalid {
                path: path.to_string(),
                message: "mean and std should be both None or tuple".into(),
            });
        }
        if dp.bgr_to_rgb && dp.rgb_to_bgr {
            return Err(ModelError::Invalid {
                path: path.to_string(),
                message: "`bgr2rgb` and `rgb2bgr` cannot be set to True at the same time".into(),
            });
        }
        if dp.batch_augments.as_ref().is_some_and(|b| !b.is_null()) {
            tracing::warn!(
                path,
                "data_preprocessor.batch_augments ignored: training only"
            );
        }
        Ok(dp)
    }

    /// Whether the channels are swapped (either direction: both are a BGR↔RGB flip).
    pub fn swap_channels(&self) -> bool {
        self.bgr_to_rgb || self.rgb_to_bgr
    }
}

/// Backbones we can build.
#[derive(Debug)]
pub enum Backbone {
    CspNext(CspNext),
}

/// Necks we can build.
#[derive(Debug)]
pub enum Neck {
    Mmyolo(MmyoloPafpn),
    Mmdet(MmdetPafpn),
}

/// Heads we can build.
#[derive(Debug)]
pub enum Head {
    Mmyolo(MmyoloRtmdetHead),
    Mmdet(MmdetSepBnHead),
}

/// The typed detector arguments (`SingleStageDetector.__init__` + `use_syncbn`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectorCfg {
    #[serde(default, rename = "type")]
    _type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    _scope: Option<String>,
    backbone: Value,
    #[serde(default)]
    neck: Option<Value>,
    bbox_head: Value,
    #[serde(default)]
    train_cfg: Option<Value>,
    #[serde(default)]
    test_cfg: Option<Value>,
    #[serde(default)]
    data_preprocessor: Option<Value>,
    #[serde(default)]
    use_syncbn: Option<bool>,
    #[serde(default)]
    init_cfg: Option<Value>,
}

/// What a detector builder returns before the weights store is wrapped up.
pub struct DetectorParts {
    flavour: Flavour,
    backbone: Backbone,
    neck: Neck,
    head: Head,
    data_preprocessor: DataPreprocessor,
    test_cfg: Value,
}

/// Builder behind `YOLODetector` and `RTMDet`.
pub(crate) fn build_detector_from(
    scope: &BuildScope,
    ctx: &Ctx,
    value: &Value,
    path: &str,
    flavour: Flavour,
) -> Result<Component, ModelError> {
    let type_name = match flavour {
        Flavour::Mmyolo => "mmyolo.YOLODetector",
        Flavour::Mmdet => "mmdet.RTMDet",
    };
    let cfg: DetectorCfg = parse_section(value, type_name, path)?;
    // use_syncbn only matters for multi-GPU training; init_cfg only for training from scratch.
    let _ = (&cfg.use_syncbn, &cfg.init_cfg);
    let backbone = match build_component(
        scope,
        &ctx.sub("backbone"),
        &cfg.backbone,
        &join(path, "backbone"),
    )? {
        Component::Backbone(b) => b,
        other => {
            return Err(wrong(
                &cfg.backbone,
                path,
                "backbone",
                other.kind_name(),
                "backbone",
            ))
        }
    };
    let Some(neck_cfg) = cfg.neck.as_ref().filter(|v| !v.is_null()) else {
        return Err(ModelError::Unsupported {
            what: "a detector without neck".into(),
            path: path.to_string(),
            hint: "RTMDet always has a CSPNeXtPAFPN neck".into(),
        });
    };
    let neck = match build_component(scope, &ctx.sub("neck"), neck_cfg, &join(path, "neck"))? {
        Component::Neck(n) => n,
        other => return Err(wrong(neck_cfg, path, "neck", other.kind_name(), "neck")),
    };
    // SingleStageDetector: bbox_head.update(train_cfg=train_cfg); bbox_head.update(test_cfg=test_cfg).
    let mut head_cfg = cfg.bbox_head.clone();
    if let Some(obj) = head_cfg.as_object_mut() {
        obj.insert(
            "train_cfg".into(),
            cfg.train_cfg.clone().unwrap_or(Value::Null),
        );
        obj.insert(
            "test_cfg".into(),
            cfg.test_cfg.clone().unwrap_or(Value::Null),
        );
    }
    let head = match build_component(
        scope,
        &ctx.sub("bbox_head"),
        &head_cfg,
        &join(path, "bbox_head"),
    )? {
        Component::Head(h) => h,
        other => {
            return Err(wrong(
                &cfg.bbox_head,
                path,
                "bbox_head",
                other.kind_name(),
                "bbox head",
            ))
        }
    };
    let head_flavour = match head {
        Head::Mmyolo(_) => Flavour::Mmyolo,
        Head::Mmdet(_) => Flavour::Mmdet,
    };
    if head_flavour != flavour {
        tracing::info!(
            ?flavour,
            ?head_flavour,
            "detector and head come from different packages; the head decides post-processing"
        );
    }
    let data_preprocessor = DataPreprocessor::parse(
        cfg.data_preprocessor.as_ref(),
        &join(path, "data_preprocessor"),
    )?;
    Ok(Component::Detector(Box::new(DetectorParts {
        flavour: head_flavour,
        backbone,
        neck,
        head,
        data_preprocessor,
        test_cfg: cfg.test_cfg.unwrap_or(Value::Null),
    })))
}

fn wrong(
    v: &Value,
    path: &str,
    key: &str,
    got: &'static str,
    expected: &'static str,
) -> ModelError {
    ModelError::WrongComponent {
        path: join(path, key),
        type_name: super::cfg::type_of(v).unwrap_or("?").to_string(),
        got,
        expected,
    }
}

/// A built RTMDet, ready for [`Detector::load`] and [`Detector::forward`]. `Send`: a server can
/// move it to a worker thread (share it behind a `Mutex`; `Tensor` is not `Sync`).
pub struct Detector {
    vs: nn::VarStore,
    keys: Vec<ExpectedKey>,
    parts: DetectorParts,
    strides: Vec<(f64, f64)>,
    kind: Kind,
    fold_bn: bool,
    loaded: bool,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("flavour", &self.parts.flavour)
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
/// on `device`. Call [`Detector::load`] next.
pub fn build_detector(
    model_cfg: &Value,
    scope: &str,
    device: Device,
) -> Result<Detector, ModelError> {
    let vs = nn::VarStore::new(device);
    let log = Rc::new(RefCell::new(KeyLog::default()));
    let ctx = Ctx::new(vs.root(), log.clone());
    // DetInferencer's `scope` argument replaces the config's default_scope.
    let start = BuildScope::with_origin(scope, ScopeOrigin::Explicit);
    let built = tch::no_grad(|| build_component(&start, &ctx, model_cfg, "model"))?;
    drop(ctx);
    let parts = match built {
        Component::Detector(d) => *d,
        other => {
            return Err(ModelError::WrongComponent {
                path: "model".into(),
                type_name: super::cfg::type_of(model_cfg).unwrap_or("?").to_string(),
                got: other.kind_name(),
                expected: "detector",
            })
        }
    };
    let keys = std::mem::take(&mut log.borrow_mut().keys);
    let strides = match &parts.head {
        Head::Mmyolo(h) => h.prior_generator.strides.iter().map(|s| s.wh()).collect(),
        Head::Mmdet(h) => h.prior_generator.strides.iter().map(|s| s.wh()).collect(),
    };
    let mut det = Detector {
        vs,
        keys,
        parts,
        strides,
        kind: Kind::Float,
        fold_bn: false,
        loaded: false,
    };
    det.check_level_counts()?;
    Ok(det)
}

impl Detector {
    fn check_level_counts(&mut self) -> Result<(), ModelError> {
        let Backbone::CspNext(b) = &self.parts.backbone;
        let neck_in: &[i64] = match &self.parts.neck {
            Neck::Mmyolo(n) => &n.in_channels,
            Neck::Mmdet(n) => &n.in_channels,
        };
        let neck_out = match &self.parts.neck {
            Neck::Mmyolo(n) => n.out_channels,
            Neck::Mmdet(n) => n.out_channels,
        };
        if b.out_channels != neck_in {
            return Err(ModelError::Invalid {
                path: "model.neck.in_channels".into(),
                message: format!(
                    "backbone outputs {:?} channels, neck expects {:?}",
                    b.out_channels, neck_in
                ),
            });
        }
        let head_in = match &self.parts.head {
            Head::Mmyolo(h) => h.in_channels,
            Head::Mmdet(h) => h.in_channels,
        };
        if head_in != neck_out {
            return Err(ModelError::Invalid {
                path: "model.bbox_head.in_channels".into(),
                message: format!("neck outputs {neck_out} channels, head expects {head_in}"),
            });
        }
        if self.strides.len() != neck_in.len() {
            return Err(ModelError::Invalid {
                path: "model.bbox_head".into(),
                message: format!(
                    "{} head levels for {} neck levels",
                    self.strides.len(),
                    neck_in.len()
                ),
            });
        }
        Ok(())
    }

    pub fn flavour(&self) -> Flavour {
        self.parts.flavour
    }

    pub fn data_preprocessor(&self) -> &DataPreprocessor {
        &self.parts.data_preprocessor
    }

    /// `(w, h)` stride of each level, from the head's prior generator.
    pub fn strides(&self) -> &[(f64, f64)] {
        &self.strides
    }

    /// `offset` of the head's `MlvlPointGenerator` (0 on RTMDet configs; upstream default 0.5).
    pub fn prior_offset(&self) -> f64 {
        match &self.parts.head {
            Head::Mmyolo(h) => h.prior_generator.offset,
            Head::Mmdet(h) => h.prior_generator.offset,
        }
    }

    pub fn num_classes(&self) -> i64 {
        match &self.parts.head {
            Head::Mmyolo(h) => h.num_classes,
            Head::Mmdet(h) => h.num_classes,
        }
    }

    /// The model's `test_cfg` (`Value::Null` when absent).
    pub fn test_cfg(&self) -> &Value {
        &self.parts.test_cfg
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
            let Backbone::CspNext(b) = &mut self.parts.backbone;
            b.fuse(mode);
            match &mut self.parts.neck {
                Neck::Mmyolo(n) => n.fuse(mode),
                Neck::Mmdet(n) => n.fuse(mode),
            }
            match &mut self.parts.head {
                Head::Mmyolo(h) => h.fuse(mode),
                Head::Mmdet(h) => h.fuse(mode),
            }
        });
    }

    /// Required divisor of the input height and width: the backbone halves the resolution
    /// `1 + stages` times and the neck concatenates upsampled maps with the next level.
    pub fn size_divisor(&self) -> i64 {
        let Backbone::CspNext(b) = &self.parts.backbone;
        1 << (b.stages.len() + 1)
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
        let Backbone::CspNext(b) = &self.parts.backbone;
        let feats = b.forward(&x)?;
        let feats = match &self.parts.neck {
            Neck::Mmyolo(n) => n.forward(&feats)?,
            Neck::Mmdet(n) => n.forward(&feats)?,
        };
        let (cls, reg) = match &self.parts.head {
            Head::Mmyolo(h) => h.forward(&feats)?,
            Head::Mmdet(h) => h.forward(&feats)?,
        };
        let to_f32 = |v: Vec<Tensor>| -> Result<Vec<Tensor>, ModelError> {
            v.into_iter()
                .map(|t| Ok(t.f_to_kind(Kind::Float)?))
                .collect()
        };
        Ok(HeadOutputs {
            cls_scores: to_f32(cls)?,
            bbox_preds: to_f32(reg)?,
        })
    }
}
