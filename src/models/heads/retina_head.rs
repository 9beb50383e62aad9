//! mmdet's `RetinaHead` (`mmdet/models/dense_heads/retina_head.py`, on `AnchorHead`): two towers of
//! `stacked_convs` 3×3 `ConvModule`s (ReLU; bias unless `norm_cfg`), `retina_cls` → A·C logits and
//! `retina_reg` → A·4 deltas per location. Post-processing: `AnchorGenerator` anchors,
//! `DeltaXYWHBBoxCoder.decode` and mmdet's single-stage `predict_by_feat`
//! (`crate::postprocess::mmdet_dense`). Also registers the `RetinaNet` detector (a plain
//! `SingleStageDetector`, `mmdet/models/detectors/retinanet.py`).

use tch::Tensor;

use crate::export::onnx::{ExportError, OnnxDecoder, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::component::{DenseHead, Flavour, HeadOutputs};
use crate::models::layers::conv_module::{Conv2d, ConvModule, ConvSpec, Fuse};
use crate::models::param::Ctx;
use crate::models::ModelError;
use crate::postprocess::mmdet_dense::{self, ScoreActivation};
use crate::postprocess::{ImageMeta, PostprocessError, RawDetections, TestCfg};
use mmcompat_registry::spec::layers::Act;
use mmcompat_registry::spec::models::anchor_head::{AnchorGeneratorCfg, DeltaXywhCoderCfg};
use mmcompat_registry::spec::models::retina_head::RetinaHeadCfg;
use mmcompat_registry::spec::ComponentSpec;

/// `AnchorGenerator`'s anchors, float32 as upstream computes them.
#[derive(Debug, Clone)]
pub struct Anchors {
    /// `(w, h)` stride per level.
    pub strides: Vec<(f64, f64)>,
    /// `base_anchors[level][a]` = `[x1, y1, x2, y2]` around the location's origin.
    pub base: Vec<Vec<[f32; 4]>>,
}

impl Anchors {
    /// `AnchorGenerator.gen_base_anchors` (`anchor_generator.py:150-203`): per level, `w = h =
    /// base_size` (default `min(stride)`), `h_r = sqrt(ratio)`, `w_r = 1 / h_r`, scale-major
    /// `ws = (w · w_r) · scale` (ratio-major when `scale_major=False`), centred at
    /// `center_offset · (w, h)`; all in float32 (`torch.Tensor` of the ratios and scales).
    pub fn new(cfg: &AnchorGeneratorCfg) -> Self {
        let strides = cfg.strides_wh();
        let scales: Vec<f32> = cfg.scales_f64().iter().map(|&s| s as f32).collect();
        let ratios: Vec<f32> = cfg.ratios.iter().map(|&r| r as f32).collect();
        let base = strides
            .iter()
            .enumerate()
            .map(|(l, &(sw, sh))| {
                let size = match &cfg.base_sizes {
                    Some(b) => b[l] as f32,
                    None => sw.min(sh) as f32,
                };
                let (w, h) = (size, size);
                let off = cfg.center_offset as f32;
                let (xc, yc) = (off * w, off * h);
                let mut anchors = Vec::with_capacity(ratios.len() * scales.len());
                let mut push = |r: f32, s: f32| {
                    let h_ratio = r.sqrt();
                    let w_ratio = 1.0 / h_ratio;
                    let ws = w * w_ratio * s;
                    let hs = h * h_ratio * s;
                    anchors.push([xc - 0.5 * ws, yc - 0.5 * hs, xc + 0.5 * ws, yc + 0.5 * hs]);
                };
                if cfg.scale_major {
                    for &r in &ratios {
                        for &s in &scales {
                            push(r, s);
                        }
                    }
                } else {
                    for &s in &scales {
                        for &r in &ratios {
                            push(r, s);
                        }
                    }
                }
                anchors
            })
            .collect();
        Anchors { strides, base }
    }

    pub fn num_base_priors(&self) -> usize {
        self.base.first().map_or(0, Vec::len)
    }

    /// Anchor `prior` (= (y·W + x)·A + a) of `level` on a `width`-wide map
    /// (`single_level_grid_priors`: `base_anchors[None] + shifts[:, None]`, shifts `x·stride_w`).
    pub fn anchor(&self, level: usize, width: usize, prior: usize) -> [f32; 4] {
        let a = self.num_base_priors().max(1);
        let (hw, k) = (prior / a, prior % a);
        let (x, y) = ((hw % width) as f32, (hw / width) as f32);
        let (sw, sh) = self.strides[level];
        let (dx, dy) = (x * sw as f32, y * sh as f32);
        let b = self.base[level][k];
        [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy]
    }
}

/// `delta2bbox` (`delta_xywh_bbox_coder.py:270-361`) for one anchor, float32 in upstream's order.
pub fn delta2bbox(
    coder: &DeltaXywhCoderCfg,
    roi: [f32; 4],
    delta: &[f32],
    max_shape: [f32; 2],
) -> [f32; 4] {
    let d: Vec<f32> = (0..4)
        .map(|i| delta[i] * coder.target_stds[i] as f32 + coder.target_means[i] as f32)
        .collect();
    let (px, py) = ((roi[0] + roi[2]) * 0.5, (roi[1] + roi[3]) * 0.5);
    let (pw, ph) = (roi[2] - roi[0], roi[3] - roi[1]);
    let (mut dxw, mut dyh) = (pw * d[0], ph * d[1]);
    // `max_ratio = abs(log(16 / 1000))` (float64), compared in float32 by `clamp`.
    let max_ratio = (16f64 / 1000.0).ln().abs() as f32;
    let (dw, dh) = if coder.add_ctr_clamp {
        let c = coder.ctr_clamp as f32;
        dxw = dxw.clamp(-c, c);
        dyh = dyh.clamp(-c, c);
        (d[2].min(max_ratio), d[3].min(max_ratio))
    } else {
        (
            d[2].clamp(-max_ratio, max_ratio),
            d[3].clamp(-max_ratio, max_ratio),
        )
    };
    let (gx, gy) = (px + dxw, py + dyh);
    let (gw, gh) = (pw * dw.exp(), ph * dh.exp());
    let mut b = [gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5];
    if coder.clip_border {
        let clamp = |v: f32, hi: f32| {
            if v < 0.0 {
                0.0
            } else if v > hi {
                hi
            } else {
                v
            }
        };
        b = [
            clamp(b[0], max_shape[1]),
            clamp(b[1], max_shape[0]),
            clamp(b[2], max_shape[1]),
            clamp(b[3], max_shape[0]),
        ];
    }
    b
}

#[derive(Debug)]
pub struct RetinaHead {
    cls_convs: Vec<ConvModule>,
    reg_convs: Vec<ConvModule>,
    retina_cls: Conv2d,
    retina_reg: Conv2d,
    num_classes: i64,
    in_channels: i64,
    anchors: Anchors,
    coder: DeltaXywhCoderCfg,
    activation: ScoreActivation,
}

impl RetinaHead {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &RetinaHeadCfg = spec.args()?;
        let a = &cfg.args;
        let anchors = Anchors::new(&cfg.anchors);
        let num_base = anchors.num_base_priors() as i64;
        let cls_out = if cfg.use_sigmoid {
            a.num_classes
        } else {
            a.num_classes + 1
        };
        let norm = a.norm_cfg.as_ref();
        let tower = |name: &str| -> Vec<ConvModule> {
            let t = ctx.sub(name);
            (0..a.stacked_convs)
                .map(|i| {
                    let cin = if i == 0 {
                        a.in_channels
                    } else {
                        a.feat_channels
                    };
                    ConvModule::new(
                        &t.sub(i),
                        ConvSpec::new(cin, a.feat_channels, 3).padding(1),
                        norm,
                        Some(Act::ReLU),
                    )
                })
                .collect()
        };
        let cls_convs = tower("cls_convs");
        let reg_convs = tower("reg_convs");
        let pred_in = if a.stacked_convs > 0 {
            a.feat_channels
        } else {
            a.in_channels
        };
        let retina_cls = Conv2d::new(
            &ctx.sub("retina_cls"),
            ConvSpec::new(pred_in, num_base * cls_out, 3).padding(1),
            true,
        );
        let retina_reg = Conv2d::new(
            &ctx.sub("retina_reg"),
            ConvSpec::new(pred_in, num_base * 4, 3).padding(1),
            true,
        );
        Ok(RetinaHead {
            cls_convs,
            reg_convs,
            retina_cls,
            retina_reg,
            num_classes: a.num_classes,
            in_channels: a.in_channels,
            anchors,
            coder: cfg.coder.clone(),
            activation: ScoreActivation::from_use_sigmoid(cfg.use_sigmoid),
        })
    }

    /// `RetinaHead.forward_single` (`retina_head.py:114-135`).
    fn forward_single(&self, x: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
        let mut cls = x.shallow_clone();
        for conv in &self.cls_convs {
            cls = conv.forward(&cls)?;
        }
        let mut reg = x.shallow_clone();
        for conv in &self.reg_convs {
            reg = conv.forward(&reg)?;
        }
        Ok((
            self.retina_cls.forward(&cls)?,
            self.retina_reg.forward(&reg)?,
        ))
    }
}

impl DenseHead for RetinaHead {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let (cls, reg) =
            super::per_level("RetinaHead", self.anchors.strides.len(), feats, |_, x| {
                self.forward_single(x)
            })?;
        Ok(HeadOutputs::new(cls, reg))
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
        self.retina_cls.fuse(mode);
        self.retina_reg.fuse(mode);
    }
    /// `forward_single` per level as ONNX nodes: `cls_score_i [B, A·C, H, W]` logits and
    /// `bbox_pred_i [B, A·4, H, W]` deltas (the same convolutions on every level).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = OnnxHeadOutputs::default();
        for &x in feats {
            let mut cls = x;
            for conv in &self.cls_convs {
                cls = conv.emit_onnx(g, cls)?;
            }
            let mut reg = x;
            for conv in &self.reg_convs {
                reg = conv.emit_onnx(g, reg)?;
            }
            out.cls_scores.push(self.retina_cls.emit_onnx(g, cls)?);
            out.bbox_preds.push(self.retina_reg.emit_onnx(g, reg)?);
        }
        Ok(out)
    }
    /// Anchors and `DeltaXYWHBBoxCoder`; only sigmoid scores (`use_sigmoid_cls`, every shipped
    /// RetinaNet) can be decoded in the graph.
    fn onnx_decoder(&self) -> OnnxDecoder {
        match self.activation {
            ScoreActivation::Sigmoid => OnnxDecoder::DeltaAnchors {
                base: self.anchors.base.clone(),
                coder: self.coder.clone(),
            },
            ScoreActivation::SoftmaxWithBackground => {
                OnnxDecoder::Unsupported("RetinaHead with use_sigmoid=False (softmax scores)")
            }
        }
    }
    /// `BaseDenseHead.predict_by_feat` with anchors and `DeltaXYWHBBoxCoder.decode`.
    fn predict_by_feat(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError> {
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
        mmdet_dense::predict_by_feat(&host, metas, cfg, &decode)
    }
}

crate::register_tch_component!(scope: "mmdet", name: "RetinaHead", DenseHead: |s, c| Ok(Box::new(RetinaHead::build(s, c)?)));
crate::register_tch_component!(scope: "mmdet", name: "RetinaNet", Detector);
