//! mmdet's `ATSSHead` (`mmdet/models/dense_heads/atss_head.py`, on `AnchorHead`): two towers of
//! `stacked_convs` 3×3 `ConvModule`s (GN32 + ReLU by default), `atss_cls` → A·C logits,
//! `atss_reg` → A·4 deltas times a learnable `Scale` per level, `atss_centerness` (from the reg
//! tower) → A logits, all `pred_kernel_size` wide (`atss_head.py:85-174`). Post-processing is
//! `BaseDenseHead.predict_by_feat` with the centerness as score factor (sigmoid, multiplied after
//! the score threshold, `base_dense_head.py:339-373, 469-473`), `AnchorGenerator` anchors and
//! `DeltaXYWHBBoxCoder.decode` (shared with RetinaHead). Also registers the `ATSS` detector (a
//! plain `SingleStageDetector`, `mmdet/models/detectors/atss.py`).

use tch::{Kind, Tensor};

use super::retina_head::{delta2bbox, Anchors};
use crate::export::onnx::{ExportError, OnnxDecoder, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::component::{DenseHead, Flavour, HeadOutputs};
use crate::models::layers::conv_module::{Conv2d, ConvModule, ConvSpec, Fuse};
use crate::models::param::Ctx;
use crate::models::ModelError;
use crate::postprocess::mmdet_dense::{self, ScoreActivation};
use crate::postprocess::{ImageMeta, PostprocessError, RawDetections, TestCfg};
use mmcompat_registry::spec::layers::{Act, NormCfg};
use mmcompat_registry::spec::models::anchor_head::DeltaXywhCoderCfg;
use mmcompat_registry::spec::models::atss_head::AtssHeadCfg;
use mmcompat_registry::spec::ComponentSpec;

/// The `cls_convs` / `reg_convs` towers of `ATSSHead._init_layers` and `GFLHead._init_layers`
/// (`atss_head.py:88-109`, `gfl_head.py:144-165`): `ConvModule(chn, feat, 3, padding=1,
/// norm_cfg=norm_cfg)` with mmcv's default ReLU, `chn = in_channels` for the first.
pub(crate) fn towers(
    ctx: &Ctx,
    stacked_convs: i64,
    in_channels: i64,
    feat_channels: i64,
    norm: Option<&NormCfg>,
) -> (Vec<ConvModule>, Vec<ConvModule>) {
    let tower = |name: &str| -> Vec<ConvModule> {
        let t = ctx.sub(name);
        (0..stacked_convs)
            .map(|i| {
                let cin = if i == 0 { in_channels } else { feat_channels };
                ConvModule::new(
                    &t.sub(i),
                    ConvSpec::new(cin, feat_channels, 3).padding(1),
                    norm,
                    Some(Act::ReLU),
                )
            })
            .collect()
    };
    (tower("cls_convs"), tower("reg_convs"))
}

/// Runs a tower (`for conv in convs: feat = conv(feat)`).
pub(crate) fn run_tower(convs: &[ConvModule], x: &Tensor) -> Result<Tensor, tch::TchError> {
    let mut feat = x.shallow_clone();
    for conv in convs {
        feat = conv.forward(&feat)?;
    }
    Ok(feat)
}

/// mmcv's `Scale` (`mmcv/cnn/bricks/scale.py:6-21`): one learnable 0-d `scale`, `x * scale`.
/// Registered as `scales.<level>.scale`, one per prior-generator stride.
#[derive(Debug)]
pub(crate) struct Scales(Vec<Tensor>);

impl Scales {
    pub(crate) fn new(ctx: &Ctx, levels: usize) -> Self {
        let s = ctx.sub("scales");
        Scales((0..levels).map(|l| s.sub(l).param("scale", &[])).collect())
    }

    /// `scale(x).float()`: the product in the forward's precision, then float32 as both heads
    /// return their box branch (`atss_head.py:172`, `gfl_head.py:217`).
    pub(crate) fn apply(&self, level: usize, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let s = self.0[level].f_to_kind(x.kind())?;
        x.f_mul(&s)?.f_to_kind(Kind::Float)
    }

    /// [`Scales::apply`] as an ONNX `Mul` by the level's scale (a weight: float16 when `half`,
    /// the graph's own cast to float32 comes at its outputs).
    pub(crate) fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        level: usize,
        x: ValueId,
    ) -> Result<ValueId, ExportError> {
        let s = g.weight_tensor(&format!("scales.{level}.scale"), &self.0[level])?;
        Ok(g.op("Mul", &[x, s], vec![]))
    }
}

/// A tower (`for conv in convs: feat = conv(feat)`) as ONNX nodes.
pub(crate) fn emit_tower(
    g: &mut OnnxGraph,
    convs: &[ConvModule],
    x: ValueId,
) -> Result<ValueId, ExportError> {
    let mut feat = x;
    for conv in convs {
        feat = conv.emit_onnx(g, feat)?;
    }
    Ok(feat)
}

#[derive(Debug)]
pub struct AtssHead {
    cls_convs: Vec<ConvModule>,
    reg_convs: Vec<ConvModule>,
    atss_cls: Conv2d,
    atss_reg: Conv2d,
    atss_centerness: Conv2d,
    scales: Scales,
    num_classes: i64,
    in_channels: i64,
    anchors: Anchors,
    coder: DeltaXywhCoderCfg,
    activation: ScoreActivation,
}

impl AtssHead {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &AtssHeadCfg = spec.args()?;
        let a = &cfg.args;
        let anchors = Anchors::new(&cfg.anchors);
        let num_base = anchors.num_base_priors() as i64;
        let cls_out = if cfg.use_sigmoid {
            a.num_classes
        } else {
            a.num_classes + 1
        };
        let (cls_convs, reg_convs) = towers(
            ctx,
            a.stacked_convs,
            a.in_channels,
            a.feat_channels,
            cfg.norm.as_ref(),
        );
        // The predictors read `feat_channels` even with `stacked_convs=0` (`atss_head.py:111`),
        // as upstream; such a config only runs there when in_channels == feat_channels.
        let k = a.pred_kernel_size;
        let pred = |name: &str, cout: i64| {
            Conv2d::new(
                &ctx.sub(name),
                ConvSpec::new(a.feat_channels, cout, k).padding(k / 2),
                true,
            )
        };
        let atss_cls = pred("atss_cls", num_base * cls_out);
        let atss_reg = pred("atss_reg", num_base * 4);
        let atss_centerness = pred("atss_centerness", num_base);
        let scales = Scales::new(ctx, anchors.strides.len());
        Ok(AtssHead {
            cls_convs,
            reg_convs,
            atss_cls,
            atss_reg,
            atss_centerness,
            scales,
            num_classes: a.num_classes,
            in_channels: a.in_channels,
            anchors,
            coder: cfg.coder.clone(),
            activation: ScoreActivation::from_use_sigmoid(cfg.use_sigmoid),
        })
    }

    /// `ATSSHead.forward_single` (`atss_head.py:147-174`).
    fn forward_single(
        &self,
        level: usize,
        x: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor), tch::TchError> {
        let cls_feat = run_tower(&self.cls_convs, x)?;
        let reg_feat = run_tower(&self.reg_convs, x)?;
        let cls_score = self.atss_cls.forward(&cls_feat)?;
        let bbox_pred = self
            .scales
            .apply(level, &self.atss_reg.forward(&reg_feat)?)?;
        let centerness = self.atss_centerness.forward(&reg_feat)?;
        Ok((cls_score, bbox_pred, centerness))
    }
}

impl DenseHead for AtssHead {
    /// `(cls_scores, bbox_preds, centernesses)`; the centerness logits travel in
    /// `objectnesses` (the slot of a per-prior logit beside the boxes).
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let levels = self.anchors.strides.len();
        if feats.len() != levels {
            return Err(tch::TchError::Shape(format!(
                "ATSSHead: {} feature levels for {levels} anchor strides",
                feats.len()
            )));
        }
        let mut out = HeadOutputs::new(Vec::new(), Vec::new());
        for (l, x) in feats.iter().enumerate() {
            let (c, r, o) = self.forward_single(l, x)?;
            out.cls_scores.push(c);
            out.bbox_preds.push(r);
            out.objectnesses.push(o);
        }
        Ok(out)
    }
    fn in_channels(&self) -> Vec<i64> {
        vec![self.in_channels; self.anchors.strides.len()]
    }
    fn num_classes(&self) -> i64 {
        self.num_classes
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
        self.cls_convs.iter_mut().for_each(|m| m.fuse(mode));
        self.reg_convs.iter_mut().for_each(|m| m.fuse(mode));
        self.atss_cls.fuse(mode);
        self.atss_reg.fuse(mode);
        self.atss_centerness.fuse(mode);
    }
    /// `forward_single` per level as ONNX nodes: `cls_score_i [B, A·C, H, W]` logits,
    /// `bbox_pred_i [B, A·4, H, W]` deltas (after the level's `Scale`) and `centerness_i
    /// [B, A, H, W]` logits (from the reg tower).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = OnnxHeadOutputs::default();
        for (l, &x) in feats.iter().enumerate() {
            let cls_feat = emit_tower(g, &self.cls_convs, x)?;
            let reg_feat = emit_tower(g, &self.reg_convs, x)?;
            out.cls_scores.push(self.atss_cls.emit_onnx(g, cls_feat)?);
            let reg = self.atss_reg.emit_onnx(g, reg_feat)?;
            out.bbox_preds.push(self.scales.emit_onnx(g, l, reg)?);
            out.centernesses
                .push(self.atss_centerness.emit_onnx(g, reg_feat)?);
        }
        Ok(out)
    }
    /// RetinaNet's anchors and `DeltaXYWHBBoxCoder`, the centerness as score factor; only
    /// sigmoid scores (every shipped ATSS) can be decoded in the graph.
    fn onnx_decoder(&self) -> OnnxDecoder {
        match self.activation {
            ScoreActivation::Sigmoid => OnnxDecoder::DeltaAnchors {
                base: self.anchors.base.clone(),
                coder: self.coder.clone(),
            },
            ScoreActivation::SoftmaxWithBackground => {
                OnnxDecoder::Unsupported("ATSSHead with use_sigmoid=False (softmax scores)")
            }
        }
    }
    /// `BaseDenseHead.predict_by_feat` with anchors, `DeltaXYWHBBoxCoder.decode` and the
    /// centerness score factors.
    fn predict_by_feat(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError> {
        let host = mmdet_dense::dense_outputs_to_host(
            &outputs.cls_scores,
            &outputs.bbox_preds,
            Some(&outputs.objectnesses),
            self.anchors.num_base_priors(),
            4,
            self.activation,
        )?;
        let widths: Vec<usize> = host.levels.iter().map(|l| l.width).collect();
        let decode = |level: usize, prior: usize, delta: &[f32], max_shape: [f32; 2]| {
            let anchor = self.anchors.anchor(level, widths[level], prior);
            delta2bbox(&self.coder, anchor, delta, max_shape)
        };
        mmdet_dense::predict_by_feat(&host, metas, cfg, &decode)
    }
}

crate::register_tch_component!(scope: "mmdet", name: "ATSSHead", DenseHead: |s, c| Ok(Box::new(AtssHead::build(s, c)?)));
crate::register_tch_component!(scope: "mmdet", name: "ATSS", Detector);
