//! mmdet's `FCOSHead` (`mmdet/models/dense_heads/fcos_head.py`, on `AnchorFreeHead`,
//! `anchor_free_head.py`): two towers of `stacked_convs` 3×3 `ConvModule`s (GN(32) + ReLU by
//! default; conv bias per `conv_bias`), `conv_cls` → C logits, `conv_reg` → 4 distances,
//! `conv_centerness` → 1 logit (on the cls tower, or the reg tower with `centerness_on_reg`), and a
//! learnt `Scale` per level. Its raw `bbox_preds` are already in pixels: `exp(Scale(x))`, or
//! `relu(Scale(x))·stride` with `norm_on_bbox` (`fcos_head.py:153-188`). Post-processing:
//! `MlvlPointGenerator(strides)` points (offset 0.5), `DistancePointBBoxCoder.decode` clamped to
//! `img_shape`, scores × sigmoid(centerness) after thresholding
//! (`crate::postprocess::mmdet_dense`). Also registers the `FCOS` detector (a plain
//! `SingleStageDetector`, `mmdet/models/detectors/fcos.py`).
//!
//! The centerness logits travel in [`HeadOutputs::objectnesses`] (the per-prior score-factor
//! slot; nothing but this head's `predict_by_feat` reads them for an mmdet head).

use tch::{Kind, Tensor};

use crate::export::onnx::{ExportError, OnnxDecoder, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::component::{DenseHead, Flavour, HeadOutputs};
use crate::models::layers::conv_module::{Conv2d, ConvModule, ConvSpec, Fuse};
use crate::models::param::Ctx;
use crate::models::ModelError;
use crate::postprocess::mmdet_dense::{self, ScoreActivation};
use crate::postprocess::{ImageMeta, PostprocessError, RawDetections, TestCfg};
use mmcompat_registry::spec::layers::Act;
use mmcompat_registry::spec::models::fcos_head::FcosHeadCfg;
use mmcompat_registry::spec::ComponentSpec;

/// The two towers of `AnchorFreeHead._init_cls_convs` / `_init_reg_convs`
/// (`anchor_free_head.py:112-149`): `stacked_convs` 3×3 ConvModules, ReLU, the given norm and bias.
pub(crate) fn towers(
    ctx: &Ctx,
    cfg: &mmcompat_registry::spec::models::anchor_free_head::AnchorFreeCommon,
    in_channels: i64,
    feat_channels: i64,
    stacked_convs: i64,
) -> (Vec<ConvModule>, Vec<ConvModule>) {
    let tower = |name: &str| -> Vec<ConvModule> {
        let t = ctx.sub(name);
        (0..stacked_convs)
            .map(|i| {
                let cin = if i == 0 { in_channels } else { feat_channels };
                ConvModule::with_bias(
                    &t.sub(i),
                    ConvSpec::new(cin, feat_channels, 3).padding(1),
                    cfg.tower_bias,
                    cfg.norm.as_ref(),
                    Some(Act::ReLU),
                )
            })
            .collect()
    };
    (tower("cls_convs"), tower("reg_convs"))
}

/// `x` through a tower (`for conv in convs: x = conv(x)`).
pub(crate) fn run_tower(convs: &[ConvModule], x: &Tensor) -> Result<Tensor, tch::TchError> {
    let mut y = x.shallow_clone();
    for conv in convs {
        y = conv.forward(&y)?;
    }
    Ok(y)
}

#[derive(Debug)]
pub struct FcosHead {
    cls_convs: Vec<ConvModule>,
    reg_convs: Vec<ConvModule>,
    conv_cls: Conv2d,
    conv_reg: Conv2d,
    conv_centerness: Conv2d,
    /// `scales.{l}.scale`: mmcv `Scale`, a 0-d float32 parameter.
    scales: Vec<Tensor>,
    strides: Vec<(f64, f64)>,
    norm_on_bbox: bool,
    centerness_on_reg: bool,
    clip_border: bool,
    num_classes: i64,
    in_channels: i64,
    activation: ScoreActivation,
}

impl FcosHead {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &FcosHeadCfg = spec.args()?;
        let a = &cfg.args;
        let (cls_convs, reg_convs) = towers(
            ctx,
            &cfg.common,
            a.in_channels,
            a.feat_channels,
            a.stacked_convs,
        );
        let feat = if a.stacked_convs > 0 {
            a.feat_channels
        } else {
            a.in_channels
        };
        let cls_out = if cfg.common.use_sigmoid {
            a.num_classes
        } else {
            a.num_classes + 1
        };
        // Module order of `_init_layers` (state-dict order): towers, `_init_predictor`
        // (conv_cls, conv_reg), then conv_centerness and scales (`fcos_head.py:111-117`).
        let conv = |name: &str, cout: i64| {
            Conv2d::new(
                &ctx.sub(name),
                ConvSpec::new(feat, cout, 3).padding(1),
                true,
            )
        };
        let conv_cls = conv("conv_cls", cls_out);
        let conv_reg = conv("conv_reg", 4);
        let conv_centerness = conv("conv_centerness", 1);
        let sctx = ctx.sub("scales");
        let scales = (0..cfg.strides_wh.len())
            .map(|l| sctx.sub(l).param("scale", &[]))
            .collect();
        Ok(FcosHead {
            cls_convs,
            reg_convs,
            conv_cls,
            conv_reg,
            conv_centerness,
            scales,
            strides: cfg.strides_wh.clone(),
            norm_on_bbox: a.norm_on_bbox,
            centerness_on_reg: a.centerness_on_reg,
            clip_border: cfg.clip_border,
            num_classes: a.num_classes,
            in_channels: a.in_channels,
            activation: ScoreActivation::from_use_sigmoid(cfg.common.use_sigmoid),
        })
    }

    /// `FCOSHead.forward_single` (`fcos_head.py:153-188`): (cls_score, bbox_pred, centerness).
    fn forward_single(
        &self,
        level: usize,
        x: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor), tch::TchError> {
        let cls_feat = run_tower(&self.cls_convs, x)?;
        let reg_feat = run_tower(&self.reg_convs, x)?;
        let cls_score = self.conv_cls.forward(&cls_feat)?;
        let bbox_pred = self.conv_reg.forward(&reg_feat)?;
        let centerness = if self.centerness_on_reg {
            self.conv_centerness.forward(&reg_feat)?
        } else {
            self.conv_centerness.forward(&cls_feat)?
        };
        // `scale(bbox_pred).float()`: mmcv Scale is `x * self.scale`.
        let scale = self.scales[level].f_to_kind(bbox_pred.kind())?;
        let bbox_pred = bbox_pred.f_mul(&scale)?.f_to_kind(Kind::Float)?;
        let bbox_pred = if self.norm_on_bbox {
            // `bbox_pred.clamp(min=0)`, then `bbox_pred *= stride` when not training (an int
            // stride: the configs give square ones).
            bbox_pred
                .f_clamp_min(0.0)?
                .f_mul_scalar(self.strides[level].0)?
        } else {
            bbox_pred.f_exp()?
        };
        Ok((cls_score, bbox_pred, centerness))
    }
}

/// `distance2bbox(points, distance, max_shape)` (`mmdet/structures/bbox/transforms.py`): `x1 = px
/// − l, y1 = py − t, x2 = px + r, y2 = py + b`, then `clamp_(min=0, max=w|h)` when clipping.
pub(crate) fn distance2bbox(point: [f32; 2], d: &[f32], max_shape: Option<[f32; 2]>) -> [f32; 4] {
    let b = [
        point[0] - d[0],
        point[1] - d[1],
        point[0] + d[2],
        point[1] + d[3],
    ];
    match max_shape {
        Some([h, w]) => {
            let c = |v: f32, hi: f32| v.max(0.0).min(hi);
            [c(b[0], w), c(b[1], h), c(b[2], w), c(b[3], h)]
        }
        None => b,
    }
}

/// Point `prior` (= y·W + x) of a `width`-wide level with stride `(sw, sh)` and `offset`
/// (`MlvlPointGenerator.single_level_grid_priors`: `(arange(W) + offset) * stride_w`, float32).
pub(crate) fn point(width: usize, prior: usize, stride: (f64, f64), offset: f32) -> [f32; 2] {
    let (x, y) = ((prior % width) as f32, (prior / width) as f32);
    [
        (x + offset) * stride.0 as f32,
        (y + offset) * stride.1 as f32,
    ]
}

impl DenseHead for FcosHead {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let levels = self.strides.len();
        if feats.len() != levels {
            return Err(tch::TchError::Shape(format!(
                "FCOSHead: {} feature levels for {levels} strides",
                feats.len()
            )));
        }
        let (mut cls, mut reg, mut centernesses) = (Vec::new(), Vec::new(), Vec::new());
        for (l, x) in feats.iter().enumerate() {
            let (c, r, ctr) = self.forward_single(l, x)?;
            cls.push(c);
            reg.push(r);
            centernesses.push(ctr);
        }
        let mut out = HeadOutputs::new(cls, reg);
        out.objectnesses = centernesses;
        Ok(out)
    }
    fn in_channels(&self) -> Vec<i64> {
        vec![self.in_channels; self.strides.len()]
    }
    fn num_classes(&self) -> i64 {
        self.num_classes
    }
    fn strides(&self) -> Vec<(f64, f64)> {
        self.strides.clone()
    }
    fn prior_offset(&self) -> f64 {
        0.5
    }
    fn flavour(&self) -> Flavour {
        Flavour::Mmdet
    }
    fn fuse(&mut self, mode: Fuse) {
        self.cls_convs.iter_mut().for_each(|m| m.fuse(mode));
        self.reg_convs.iter_mut().for_each(|m| m.fuse(mode));
        self.conv_cls.fuse(mode);
        self.conv_reg.fuse(mode);
        self.conv_centerness.fuse(mode);
    }
    /// `forward_single` per level as ONNX nodes: `cls_score_i [B, C, H, W]` logits, `bbox_pred_i
    /// [B, 4, H, W]` distances in pixels (`exp(Scale(x))`, or `relu(Scale(x)) · stride` with
    /// `norm_on_bbox`) and `centerness_i [B, 1, H, W]` logits. With `--half` the `exp` runs in
    /// float16 (upstream's `.float()` comes before it).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let tower = |g: &mut OnnxGraph, convs: &[ConvModule], x: ValueId| {
            convs.iter().try_fold(x, |y, conv| conv.emit_onnx(g, y))
        };
        let mut out = OnnxHeadOutputs::default();
        for (l, &x) in feats.iter().enumerate() {
            let cls_feat = tower(g, &self.cls_convs, x)?;
            let reg_feat = tower(g, &self.reg_convs, x)?;
            out.cls_scores.push(self.conv_cls.emit_onnx(g, cls_feat)?);
            let reg = self.conv_reg.emit_onnx(g, reg_feat)?;
            let s = g.weight_tensor(&format!("scales.{l}.scale"), &self.scales[l])?;
            let reg = g.op("Mul", &[reg, s], vec![]);
            let reg = if self.norm_on_bbox {
                let r = g.op("Relu", &[reg], vec![]);
                let stride = g.scalar(self.strides[l].0 as f32);
                g.op("Mul", &[r, stride], vec![])
            } else {
                g.op("Exp", &[reg], vec![])
            };
            out.bbox_preds.push(reg);
            let ctr_feat = if self.centerness_on_reg {
                reg_feat
            } else {
                cls_feat
            };
            out.centernesses
                .push(self.conv_centerness.emit_onnx(g, ctr_feat)?);
        }
        Ok(out)
    }
    /// Points with offset 0.5 and `DistancePointBBoxCoder` (the default), the centerness as
    /// score factor; the graph always clamps mmdet boxes to `img_shape`, so `clip_border=False`
    /// and softmax scores are refused.
    fn onnx_decoder(&self) -> OnnxDecoder {
        match (self.activation, self.clip_border) {
            (ScoreActivation::Sigmoid, true) => OnnxDecoder::Distance,
            (ScoreActivation::Sigmoid, false) => {
                OnnxDecoder::Unsupported("FCOSHead with bbox_coder.clip_border=False")
            }
            (ScoreActivation::SoftmaxWithBackground, _) => {
                OnnxDecoder::Unsupported("FCOSHead with use_sigmoid=False (softmax scores)")
            }
        }
    }
    /// `BaseDenseHead.predict_by_feat` with centerness score factors and
    /// `DistancePointBBoxCoder.decode` on points with offset 0.5.
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
            1,
            4,
            self.activation,
        )?;
        let widths: Vec<usize> = host.levels.iter().map(|l| l.width).collect();
        let decode = |level: usize, prior: usize, d: &[f32], max_shape: [f32; 2]| {
            let p = point(widths[level], prior, self.strides[level], 0.5);
            distance2bbox(p, d, self.clip_border.then_some(max_shape))
        };
        mmdet_dense::predict_by_feat(&host, metas, cfg, &decode)
    }
}

crate::register_tch_component!(scope: "mmdet", name: "FCOSHead", DenseHead: |s, c| Ok(Box::new(FcosHead::build(s, c)?)));
crate::register_tch_component!(scope: "mmdet", name: "FCOS", Detector);
