//! The backend's component contract: a trait per component kind ([`Backbone`], [`Neck`],
//! [`DenseHead`], [`RoiHead`]) and one registration per upstream type ([`register_tch_component!`](crate::register_tch_component!)), keyed by
//! the `(scope, name)` the spec stage resolved (`mmcompat_registry::spec`). The detector glue
//! (`detector.rs`) knows no family: it asks this table for whatever the spec names.
//!
//! Adding a family = its component files + one `register_tch_component!` per upstream type (and
//! the matching `register_component!` of its arguments in the core); nothing here changes.

use std::fmt;

use mmcompat_registry::spec::{ComponentKind, ComponentSpec};
use tch::{TchError, Tensor};

use super::layers::conv_module::Fuse;
use super::param::Ctx;
use super::ModelError;
use crate::export::onnx::{ExportError, OnnxDecoder, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::postprocess::{
    head_outputs_to_host, predict_by_feat, ImageMeta, PostprocessError, RawDetections, TestCfg,
};

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
    /// `N × (num_base_priors·4) × H × W` box regressions, as the head's `predict_by_feat` reads
    /// them (RTMDet: distances l, t, r, b, in stride units for [`Flavour::Mmyolo`], in pixels for
    /// [`Flavour::Mmdet`]).
    pub bbox_preds: Vec<Tensor>,
    /// `N × num_base_priors × H × W` objectness logits of heads that have them (YOLOv5, YOLOX,
    /// YOLOv7); empty otherwise.
    pub objectnesses: Vec<Tensor>,
    /// The neck's features, kept for a second stage that reads them in `predict_by_feat`
    /// (two-stage detectors: the RoI head pools the RPN's proposals from them), in the model's
    /// compute kind; empty for single-stage heads.
    pub features: Vec<Tensor>,
}

impl HeadOutputs {
    /// Outputs of a head without objectness.
    pub fn new(cls_scores: Vec<Tensor>, bbox_preds: Vec<Tensor>) -> Self {
        HeadOutputs {
            cls_scores,
            bbox_preds,
            objectnesses: Vec::new(),
            features: Vec::new(),
        }
    }
}

/// A backbone: image batch → multi-level features (`out_indices` order).
pub trait Backbone: fmt::Debug + Send {
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, TchError>;
    /// Channels of each output level.
    fn out_channels(&self) -> Vec<i64>;
    /// Required divisor of the input height and width (the neck concatenates upsampled maps
    /// with the next level, so every level's size must divide evenly).
    fn size_divisor(&self) -> i64;
    /// Re-derives the inference weights after loading (see `layers::conv_module::Fuse`).
    fn fuse(&mut self, mode: Fuse);
    /// The ONNX nodes of `forward` (`crate::export::onnx`): `inputs` = the image batch, returns
    /// the output levels. The default refuses (the detector names the component).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>, ExportError> {
        let _ = (g, inputs);
        Err(ExportError::unsupported("", "backbone"))
    }
}

/// A neck: backbone levels → head levels.
pub trait Neck: fmt::Debug + Send {
    fn forward(&self, feats: &[Tensor]) -> Result<Vec<Tensor>, TchError>;
    fn in_channels(&self) -> Vec<i64>;
    /// Channels of each output level.
    fn out_channels(&self) -> Vec<i64>;
    fn fuse(&mut self, mode: Fuse);
    /// The ONNX nodes of `forward`; the default refuses (the detector names the component).
    fn emit_onnx(&self, g: &mut OnnxGraph, feats: &[ValueId]) -> Result<Vec<ValueId>, ExportError> {
        let _ = (g, feats);
        Err(ExportError::unsupported("", "neck"))
    }
}

/// A dense head: features → raw outputs, and its own `predict_by_feat` (each upstream head
/// decodes differently; the detector never needs to know how).
pub trait DenseHead: fmt::Debug + Send {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, TchError>;
    /// Input channels of each level (mmyolo's YOLOv5/YOLOv8 heads take a different width per
    /// level; RTMDet's one for all).
    fn in_channels(&self) -> Vec<i64>;
    fn num_classes(&self) -> i64;
    /// `(w, h)` stride of each level, from the head's prior generator.
    fn strides(&self) -> Vec<(f64, f64)>;
    /// `offset` of the head's point/anchor generator.
    fn prior_offset(&self) -> f64;
    /// Which package's conventions the post-processing follows.
    fn flavour(&self) -> Flavour;
    fn fuse(&mut self, mode: Fuse);
    /// The ONNX nodes of `forward`: the raw outputs as `predict_by_feat` receives them. The
    /// default refuses (the detector names the component).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let _ = (g, feats);
        Err(ExportError::unsupported("", "dense head"))
    }
    /// How `--end2end` decodes [`DenseHead::emit_onnx`]'s outputs; the default is the
    /// point-prior distance decoding of [`DenseHead::predict_by_feat`]'s default.
    fn onnx_decoder(&self) -> OnnxDecoder {
        OnnxDecoder::Distance
    }
    /// Two-stage heads: the second stage, whose `RoiHead::emit_onnx` the ONNX export calls
    /// after the proposals (`crate::export::onnx::two_stage`). `None` for one-stage heads.
    fn onnx_roi_head(&self) -> Option<&dyn RoiHead> {
        None
    }
    /// Two-stage heads: the first stage's region proposals of each image (`rescale=False`, on
    /// the network input), as the second stage receives them. `None` for one-stage heads.
    fn proposals(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Option<Result<Vec<crate::postprocess::two_stage::Proposals>, PostprocessError>> {
        let _ = (outputs, metas, cfg);
        None
    }
    /// `predict_by_feat(..., rescale=True)` on raw outputs of a batch: one result per image.
    /// The default is the point-prior heads' (RTMDet, YOLOv8): sigmoid scores, priors from
    /// [`DenseHead::strides`] and [`DenseHead::prior_offset`], distance decoding and NMS as the
    /// head's package does it ([`DenseHead::flavour`], `crate::postprocess`). Heads that decode
    /// otherwise (anchors, objectness) override it.
    fn predict_by_feat(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError> {
        let host = head_outputs_to_host(
            &outputs.cls_scores,
            &outputs.bbox_preds,
            &self.strides(),
            self.prior_offset(),
        )?;
        predict_by_feat(self.flavour(), &host, metas, cfg)
    }
}

pub type BackboneBuild = fn(&ComponentSpec, &Ctx) -> Result<Box<dyn Backbone>, ModelError>;
pub type NeckBuild = fn(&ComponentSpec, &Ctx) -> Result<Box<dyn Neck>, ModelError>;
pub type DenseHeadBuild = fn(&ComponentSpec, &Ctx) -> Result<Box<dyn DenseHead>, ModelError>;
pub type RoiHeadBuild = fn(&ComponentSpec, &Ctx) -> Result<Box<dyn RoiHead>, ModelError>;

/// The second stage of a two-stage detector (mmdet `StandardRoIHead`): proposals of each image
/// (boxes on the network input, `img_shape` scale) → final detections, rescaled to the original
/// image (`roi_head.predict(..., rescale=True)`).
pub trait RoiHead: fmt::Debug + Send {
    /// Channels of the features it pools from (`bbox_roi_extractor.out_channels`).
    fn in_channels(&self) -> i64;
    /// Feature levels it reads (`bbox_roi_extractor.num_inputs`, the first ones).
    fn num_inputs(&self) -> usize;
    fn num_classes(&self) -> i64;
    fn fuse(&mut self, mode: Fuse);
    /// `predict_bbox(x, rpn_results_list, batch_img_metas, rcnn_test_cfg, rescale=True)`.
    fn predict(
        &self,
        feats: &[Tensor],
        proposals: &[crate::postprocess::two_stage::Proposals],
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError>;
    /// The ONNX nodes of the box branch (`crate::export::onnx::two_stage`): RoI features pooled
    /// from `feats` for the proposals `rois [N, 4]` (image 0, network-input pixels), then the box
    /// head's raw `cls_score`/`bbox_pred`. The default refuses (the detector names it).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
        rois: ValueId,
    ) -> Result<crate::export::onnx::OnnxRoiOutputs, ExportError> {
        let _ = (g, feats, rois);
        Err(ExportError::unsupported("", "RoI head"))
    }
}

/// How the backend builds one upstream type; the variant is its component kind.
#[derive(Clone, Copy)]
pub enum TchBuilder {
    Backbone(BackboneBuild),
    Neck(NeckBuild),
    DenseHead(DenseHeadBuild),
    /// A two-stage detector's `roi_head`.
    RoiHead(RoiHeadBuild),
    /// Built by the enclosing generic detector (`SingleStageDetector`); the detector types only
    /// need to be known.
    Detector,
    /// Built by its parent (mmyolo's `head_module`, read by the head's builder).
    BuiltByParent,
}

/// One backend registration: const data, submitted with [`register_tch_component!`](crate::register_tch_component!).
pub struct TchComponent {
    pub scope: &'static str,
    pub name: &'static str,
    pub builder: TchBuilder,
    /// `module_path!()`, for duplicate reports.
    pub location: &'static str,
}

inventory::collect!(TchComponent);

/// Registers how the backend builds the upstream type `scope.name`:
/// `register_tch_component!(scope: "mmyolo", name: "CSPNeXt", Backbone: build_fn);`
#[macro_export]
macro_rules! register_tch_component {
    (scope: $s:literal, name: $n:literal, $kind:ident $(: $f:expr)?) => {
        inventory::submit! {
            $crate::models::component::TchComponent {
                scope: $s,
                name: $n,
                builder: $crate::models::component::TchBuilder::$kind $(($f))?,
                location: module_path!(),
            }
        }
    };
}

/// The backend registration of `scope.name`, if any (a handful of entries: a scan is enough).
pub fn find(scope: &str, name: &str) -> Option<&'static TchComponent> {
    all().find(|c| c.scope == scope && c.name == name)
}

/// Every backend registration (for `mmcompat registry` and the consistency test).
pub fn all() -> impl Iterator<Item = &'static TchComponent> {
    inventory::iter::<TchComponent>.into_iter()
}

fn builder(spec: &ComponentSpec) -> Result<TchBuilder, ModelError> {
    find(spec.scope, spec.type_name)
        .map(|c| c.builder)
        .ok_or_else(|| ModelError::Unsupported {
            what: format!("{} {}", spec.kind.describe(), spec.qualified_name()),
            path: spec.path.clone(),
            hint: "the config is understood, but this backend has no implementation of it".into(),
        })
}

fn wrong_kind(spec: &ComponentSpec, expected: ComponentKind) -> ModelError {
    ModelError::WrongComponent {
        path: spec.path.clone(),
        type_name: spec.qualified_name(),
        got: spec.kind.describe(),
        expected: expected.describe(),
    }
}

pub fn build_backbone(spec: &ComponentSpec, ctx: &Ctx) -> Result<Box<dyn Backbone>, ModelError> {
    match builder(spec)? {
        TchBuilder::Backbone(f) => f(spec, ctx),
        _ => Err(wrong_kind(spec, ComponentKind::Backbone)),
    }
}

pub fn build_neck(spec: &ComponentSpec, ctx: &Ctx) -> Result<Box<dyn Neck>, ModelError> {
    match builder(spec)? {
        TchBuilder::Neck(f) => f(spec, ctx),
        _ => Err(wrong_kind(spec, ComponentKind::Neck)),
    }
}

pub fn build_dense_head(spec: &ComponentSpec, ctx: &Ctx) -> Result<Box<dyn DenseHead>, ModelError> {
    match builder(spec)? {
        TchBuilder::DenseHead(f) => f(spec, ctx),
        _ => Err(wrong_kind(spec, ComponentKind::DenseHead)),
    }
}

pub fn build_roi_head(spec: &ComponentSpec, ctx: &Ctx) -> Result<Box<dyn RoiHead>, ModelError> {
    match builder(spec)? {
        TchBuilder::RoiHead(f) => f(spec, ctx),
        _ => Err(wrong_kind(spec, ComponentKind::RoiHead)),
    }
}

#[cfg(test)]
mod tests {
    use mmcompat_registry::spec::model::{registries, ComponentDecl};

    /// Every model type the spec stage accepts has a backend, and every backend registration
    /// names a type the spec stage declares (so `config --spec` and `detect` agree).
    #[test]
    fn spec_and_backend_registrations_agree() {
        let regs = registries().expect("registries");
        let mut declared = Vec::new();
        for (scope, _) in regs.scopes() {
            for e in regs.entries("model", scope) {
                if e.payload::<ComponentDecl>().is_some() {
                    declared.push((e.scope.to_string(), e.name.to_string()));
                }
            }
        }
        assert!(declared.len() >= 9, "{declared:?}");
        for (scope, name) in &declared {
            assert!(
                super::find(scope, name).is_some(),
                "{scope}.{name} is declared to the spec stage but has no backend"
            );
        }
        let mut seen = std::collections::HashSet::new();
        for c in super::all() {
            assert!(
                seen.insert((c.scope, c.name)),
                "{}.{} registered twice ({})",
                c.scope,
                c.name,
                c.location
            );
            assert!(
                declared.iter().any(|(s, n)| s == c.scope && n == c.name),
                "backend for {}.{} ({}) has no spec declaration",
                c.scope,
                c.name,
                c.location
            );
        }
    }
}
