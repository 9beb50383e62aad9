//! mmdet's `RPNHead` (`mmdet/models/dense_heads/rpn_head.py`, on `AnchorHead`): `rpn_conv` (a 3×3
//! `nn.Conv2d`, or `num_convs` 3×3 `ConvModule`s) → ReLU → 1×1 `rpn_cls` (A objectness logits) and
//! 1×1 `rpn_reg` (A·4 deltas) per level. Its `predict_by_feat` gives region proposals
//! (`crate::postprocess::two_stage::rpn_proposals`): the first stage of `FasterRCNN`, built by
//! `super::two_stage`.

use tch::Tensor;

use crate::export::onnx::{ExportError, OnnxDecoder, OnnxGraph, OnnxHeadOutputs, ValueId};

use super::retina_head::{delta2bbox, Anchors};
use crate::models::component::{DenseHead, Flavour, HeadOutputs};
use crate::models::layers::conv_module::{Conv2d, ConvModule, ConvSpec, Fuse};
use crate::models::param::Ctx;
use crate::models::ModelError;
use crate::postprocess::mmdet_dense::{self, ScoreActivation};
use crate::postprocess::two_stage::{rpn_proposals, Proposals};
use crate::postprocess::{ImageMeta, PostprocessError, RawDetections, TestCfg};
use mmcompat_registry::spec::layers::Act;
use mmcompat_registry::spec::models::anchor_head::DeltaXywhCoderCfg;
use mmcompat_registry::spec::models::two_stage::RpnHeadCfg;
use mmcompat_registry::spec::ComponentSpec;

/// `self.rpn_conv`: a plain convolution for `num_convs == 1`, else an `nn.Sequential` of
/// `ConvModule`s (`rpn_head.py:50-70`).
#[derive(Debug)]
enum RpnConv {
    Plain(Conv2d),
    Stacked(Vec<ConvModule>),
}

#[derive(Debug)]
pub struct RpnHead {
    rpn_conv: RpnConv,
    rpn_cls: Conv2d,
    rpn_reg: Conv2d,
    in_channels: i64,
    anchors: Anchors,
    coder: DeltaXywhCoderCfg,
    activation: ScoreActivation,
}

impl RpnHead {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &RpnHeadCfg = spec.args()?;
        let a = &cfg.args;
        let anchors = Anchors::new(&cfg.anchors);
        let num_base = anchors.num_base_priors() as i64;
        // AnchorHead: `cls_out_channels = num_classes` with sigmoid, `num_classes + 1` without.
        let cls_out = if cfg.use_sigmoid { 1 } else { 2 };
        let conv_ctx = ctx.sub("rpn_conv");
        let rpn_conv = if a.num_convs > 1 {
            RpnConv::Stacked(
                (0..a.num_convs)
                    .map(|i| {
                        let cin = if i == 0 {
                            a.in_channels
                        } else {
                            a.feat_channels
                        };
                        ConvModule::new(
                            &conv_ctx.sub(i),
                            ConvSpec::new(cin, a.feat_channels, 3).padding(1),
                            None,
                            Some(Act::ReLU),
                        )
                    })
                    .collect(),
            )
        } else {
            RpnConv::Plain(Conv2d::new(
                &conv_ctx,
                ConvSpec::new(a.in_channels, a.feat_channels, 3).padding(1),
                true,
            ))
        };
        let rpn_cls = Conv2d::new(
            &ctx.sub("rpn_cls"),
            ConvSpec::new(a.feat_channels, num_base * cls_out, 1),
            true,
        );
        let rpn_reg = Conv2d::new(
            &ctx.sub("rpn_reg"),
            ConvSpec::new(a.feat_channels, num_base * 4, 1),
            true,
        );
        Ok(RpnHead {
            rpn_conv,
            rpn_cls,
            rpn_reg,
            in_channels: a.in_channels,
            anchors,
            coder: cfg.coder.clone(),
            activation: ScoreActivation::from_use_sigmoid(cfg.use_sigmoid),
        })
    }

    /// `RPNHead.forward_single` (`rpn_head.py:80-97`).
    fn forward_single(&self, x: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
        let x = match &self.rpn_conv {
            RpnConv::Plain(c) => c.forward(x)?,
            RpnConv::Stacked(convs) => {
                let mut x = x.shallow_clone();
                for c in convs {
                    x = c.forward(&x)?;
                }
                x
            }
        }
        .f_relu()?;
        Ok((self.rpn_cls.forward(&x)?, self.rpn_reg.forward(&x)?))
    }

    /// What the ONNX export decodes the proposals with: the anchors and the coder; `None` for a
    /// softmax RPN (`use_sigmoid_cls=False`, which no shipped config uses).
    pub fn onnx_anchors(&self) -> Option<(Vec<Vec<[f32; 4]>>, DeltaXywhCoderCfg)> {
        match self.activation {
            ScoreActivation::Sigmoid => Some((self.anchors.base.clone(), self.coder.clone())),
            ScoreActivation::SoftmaxWithBackground => None,
        }
    }

    /// Region proposals of each image on the network input's scale (`rescale=False`, as
    /// `TwoStageDetector.predict` asks the RPN, `two_stage.py:231-232`).
    pub fn proposals(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
        rescale: bool,
    ) -> Result<Vec<Proposals>, PostprocessError> {
        let host = mmdet_dense::dense_outputs_to_host(
            &outputs.cls_scores,
            &outputs.bbox_preds,
            None,
            self.anchors.num_base_priors(),
            4,
            self.activation,
        )?;
        let widths: Vec<usize> = host.levels.iter().map(|l| l.width).collect();
        let decode = |level: usize, prior: usize, delta: &[f32], max_shape: [f32; 2]| {
            let anchor = self.anchors.anchor(level, widths[level], prior);
            delta2bbox(&self.coder, anchor, delta, max_shape)
        };
        rpn_proposals(&host, metas, cfg, &decode, rescale)
    }
}

impl DenseHead for RpnHead {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let (cls, reg) = super::per_level("RPNHead", self.anchors.strides.len(), feats, |_, x| {
            self.forward_single(x)
        })?;
        Ok(HeadOutputs::new(cls, reg))
    }
    fn in_channels(&self) -> Vec<i64> {
        vec![self.in_channels; self.anchors.strides.len()]
    }
    fn num_classes(&self) -> i64 {
        1
    }
    fn strides(&self) -> Vec<(f64, f64)> {
        self.anchors.strides.clone()
    }
    fn prior_offset(&self) -> f64 {
        0.0
    }
    fn flavour(&self) -> Flavour {
        Flavour::Mmdet
    }
    fn fuse(&mut self, mode: Fuse) {
        match &mut self.rpn_conv {
            RpnConv::Plain(c) => c.fuse(mode),
            RpnConv::Stacked(convs) => convs.iter_mut().for_each(|c| c.fuse(mode)),
        }
        self.rpn_cls.fuse(mode);
        self.rpn_reg.fuse(mode);
    }
    /// `forward_single` per level as ONNX nodes: `cls_score_i [B, A, H, W]` objectness logits and
    /// `bbox_pred_i [B, A·4, H, W]` deltas (the same convolutions on every level).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = OnnxHeadOutputs::default();
        for &x in feats {
            let y = match &self.rpn_conv {
                RpnConv::Plain(c) => c.emit_onnx(g, x)?,
                RpnConv::Stacked(convs) => {
                    let mut y = x;
                    for c in convs {
                        y = c.emit_onnx(g, y)?;
                    }
                    y
                }
            };
            let y = g.op("Relu", &[y], vec![]);
            out.cls_scores.push(self.rpn_cls.emit_onnx(g, y)?);
            out.bbox_preds.push(self.rpn_reg.emit_onnx(g, y)?);
        }
        Ok(out)
    }
    /// An RPN on its own gives proposals, not detections: no end-to-end graph.
    fn onnx_decoder(&self) -> OnnxDecoder {
        OnnxDecoder::Unsupported("RPNHead on its own (an RPN detector's proposals)")
    }
    /// An RPN on its own (mmdet's `RPN` detector): the proposals, rescaled to the original image,
    /// all labelled 0 (`rpn_head.py:286-292`).
    fn predict_by_feat(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError> {
        Ok(self
            .proposals(outputs, metas, cfg, true)?
            .into_iter()
            .map(|p| RawDetections {
                labels: vec![0; p.scores.len()],
                bboxes: p.bboxes,
                scores: p.scores,
            })
            .collect())
    }
}

crate::register_tch_component!(scope: "mmdet", name: "RPNHead", DenseHead: |s, c| Ok(Box::new(RpnHead::build(s, c)?)));
