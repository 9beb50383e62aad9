//! mmdet's `TwoStageDetector` head pair (`mmdet/models/detectors/two_stage.py`), seen by the
//! generic detector as one dense head: `forward` runs the RPN (its raw outputs are the
//! [`HeadOutputs`]) and keeps the neck's features; `predict_by_feat` runs `TwoStageDetector.predict`
//! (`two_stage.py:196-243`): the RPN's proposals with `test_cfg.rpn` (`rescale=False`), then the
//! RoI head on them with `test_cfg.rcnn` (`rescale=True`). Also registers `FasterRCNN`
//! (`mmdet/models/detectors/faster_rcnn.py`, a plain `TwoStageDetector`).

use tch::Tensor;

use crate::export::onnx::{ExportError, OnnxDecoder, OnnxGraph, OnnxHeadOutputs, ValueId};

use super::rpn_head::RpnHead;
use crate::models::component::{build_roi_head, DenseHead, Flavour, HeadOutputs, RoiHead};
use crate::models::layers::conv_module::Fuse;
use crate::models::param::Ctx;
use crate::models::ModelError;
use crate::postprocess::two_stage::Proposals;
use crate::postprocess::{ImageMeta, PostprocessError, RawDetections, TestCfg};
use mmcompat_registry::spec::ComponentSpec;

/// `test_cfg.<key>` of a two-stage detector (`TwoStageDetector.__init__` reads it as an attribute).
fn stage<'a>(
    c: &'a Option<Box<TestCfg>>,
    key: &'static str,
) -> Result<&'a TestCfg, PostprocessError> {
    c.as_deref().ok_or(PostprocessError::MissingKey {
        section: "test_cfg",
        key,
    })
}

#[derive(Debug)]
pub struct TwoStageHead {
    rpn: RpnHead,
    roi: Box<dyn RoiHead>,
}

impl TwoStageHead {
    /// The `rpn_head` and `roi_head` of the detector `spec`, under their state-dict prefixes.
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let rpn_spec = spec.require_child("rpn_head")?;
        if rpn_spec.qualified_name() != "mmdet.RPNHead" {
            return Err(ModelError::Unsupported {
                what: format!("rpn_head {}", rpn_spec.qualified_name()),
                path: rpn_spec.path.clone(),
                hint: "two-stage detectors run with mmdet.RPNHead proposals".into(),
            });
        }
        let rpn = RpnHead::build(rpn_spec, &ctx.sub("rpn_head"))?;
        let roi_spec = spec.require_child("roi_head")?;
        let roi = build_roi_head(roi_spec, &ctx.sub("roi_head"))?;
        let levels = rpn.strides().len();
        if roi.num_inputs() > levels || roi.in_channels() != rpn.in_channels()[0] {
            return Err(ModelError::Invalid {
                path: format!("{}.bbox_roi_extractor", roi_spec.path),
                message: format!(
                    "it reads {} levels of {} channels; the neck gives {levels} of {}",
                    roi.num_inputs(),
                    roi.in_channels(),
                    rpn.in_channels()[0]
                ),
            });
        }
        Ok(TwoStageHead { rpn, roi })
    }
}

impl DenseHead for TwoStageHead {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let mut out = self.rpn.forward(feats)?;
        out.features = feats.iter().map(Tensor::shallow_clone).collect();
        Ok(out)
    }
    fn in_channels(&self) -> Vec<i64> {
        self.rpn.in_channels()
    }
    fn num_classes(&self) -> i64 {
        self.roi.num_classes()
    }
    fn strides(&self) -> Vec<(f64, f64)> {
        self.rpn.strides()
    }
    fn prior_offset(&self) -> f64 {
        0.0
    }
    fn flavour(&self) -> Flavour {
        Flavour::Mmdet
    }
    fn fuse(&mut self, mode: Fuse) {
        self.rpn.fuse(mode);
        self.roi.fuse(mode);
    }
    /// The RPN's nodes (`rpn_head.emit_onnx`), with the neck's features kept for the RoI head.
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = self.rpn.emit_onnx(g, feats)?;
        out.features = feats.to_vec();
        Ok(out)
    }
    /// Proposals from the RPN's anchors (`crate::export::onnx::two_stage` builds the rest).
    fn onnx_decoder(&self) -> OnnxDecoder {
        match self.rpn.onnx_anchors() {
            Some((rpn_base, rpn_coder)) => OnnxDecoder::TwoStage {
                rpn_base,
                rpn_coder,
            },
            None => OnnxDecoder::Unsupported("RPNHead with use_sigmoid=False (softmax scores)"),
        }
    }
    fn onnx_roi_head(&self) -> Option<&dyn RoiHead> {
        Some(self.roi.as_ref())
    }
    /// `test_cfg.rpn` is read from `cfg` (the detector's whole `test_cfg`).
    fn proposals(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Option<Result<Vec<Proposals>, PostprocessError>> {
        Some(stage(&cfg.rpn, "rpn").and_then(|rpn| self.rpn.proposals(outputs, metas, rpn, false)))
    }
    fn predict_by_feat(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError> {
        let proposals = self
            .rpn
            .proposals(outputs, metas, stage(&cfg.rpn, "rpn")?, false)?;
        if outputs.features.is_empty() {
            return Err(PostprocessError::Shape(
                "no neck features for the RoI head (outputs of another head's forward?)".into(),
            ));
        }
        self.roi.predict(
            &outputs.features,
            &proposals,
            metas,
            stage(&cfg.rcnn, "rcnn")?,
        )
    }
}

crate::register_tch_component!(scope: "mmdet", name: "FasterRCNN", Detector);
