//! mmdet's `GFLHead` (`mmdet/models/dense_heads/gfl_head.py`, on `AnchorHead`): two towers of
//! `stacked_convs` 3×3 `ConvModule`s (GN32 + ReLU by default), `gfl_cls` → C joint
//! class-quality logits, `gfl_reg` → 4·(reg_max+1) distribution logits times a learnable
//! `Scale` per level (`gfl_head.py:141-218`). Post-processing is GFLHead's own
//! `_predict_by_feat_single` (`:396-490`): per level `Integral` (softmax over the reg_max+1 bins ·
//! `project`, the persistent buffer `integral.project`, `:23-56`) × stride, sigmoid scores (no
//! centerness), the per-level threshold and top-k, `DistancePointBBoxCoder.decode` from the
//! anchor centre (`anchor_center`, `:220-231`), clamped to `img_shape`; then mmdet's
//! `_bbox_post_process`. Also registers the `GFL` detector (a plain `SingleStageDetector`,
//! `mmdet/models/detectors/gfl.py`).

use tch::{Kind, Tensor};

use super::atss_head::{emit_tower, run_tower, towers, Scales};
use super::retina_head::Anchors;
use crate::export::onnx::{ExportError, OnnxDecoder, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::component::{DenseHead, Flavour, HeadOutputs};
use crate::models::layers::conv_module::{Conv2d, ConvModule, ConvSpec, Fuse};
use crate::models::param::Ctx;
use crate::models::ModelError;
use crate::postprocess::mmdet_dense::{self, ScoreActivation};
use crate::postprocess::{tch_err, ImageMeta, PostprocessError, RawDetections, TestCfg};
use mmcompat_registry::spec::models::gfl_head::GflHeadCfg;
use mmcompat_registry::spec::ComponentSpec;

#[derive(Debug)]
pub struct GflHead {
    cls_convs: Vec<ConvModule>,
    reg_convs: Vec<ConvModule>,
    gfl_cls: Conv2d,
    gfl_reg: Conv2d,
    scales: Scales,
    /// `Integral.project` (`linspace(0, reg_max, reg_max + 1)` at init; loaded from the
    /// checkpoint like every persistent buffer).
    project: Tensor,
    reg_max: i64,
    clip_border: bool,
    num_classes: i64,
    in_channels: i64,
    anchors: Anchors,
}

impl GflHead {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &GflHeadCfg = spec.args()?;
        let a = &cfg.args;
        let anchors = Anchors::new(&cfg.anchors);
        let (cls_convs, reg_convs) = towers(
            ctx,
            a.stacked_convs,
            a.in_channels,
            a.feat_channels,
            cfg.norm.as_ref(),
        );
        // Module order of the state dict: towers, gfl_cls, gfl_reg, scales (`_init_layers`),
        // then `integral` (built after `super().__init__`, `gfl_head.py:138`).
        let pred = |name: &str, cout: i64| {
            Conv2d::new(
                &ctx.sub(name),
                ConvSpec::new(a.feat_channels, cout, 3).padding(1),
                true,
            )
        };
        // The spec checked `use_sigmoid_cls` (cls_out_channels = num_classes) and one anchor per
        // location.
        let gfl_cls = pred("gfl_cls", a.num_classes);
        let gfl_reg = pred("gfl_reg", 4 * (a.reg_max + 1));
        let scales = Scales::new(ctx, anchors.strides.len());
        let project = ctx.sub("integral").param("project", &[a.reg_max + 1]);
        Ok(GflHead {
            cls_convs,
            reg_convs,
            gfl_cls,
            gfl_reg,
            scales,
            project,
            reg_max: a.reg_max,
            clip_border: cfg.coder.clip_border,
            num_classes: a.num_classes,
            in_channels: a.in_channels,
            anchors,
        })
    }

    /// `GFLHead.forward_single` (`gfl_head.py:193-218`).
    fn forward_single(&self, level: usize, x: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
        let cls_feat = run_tower(&self.cls_convs, x)?;
        let reg_feat = run_tower(&self.reg_convs, x)?;
        let cls_score = self.gfl_cls.forward(&cls_feat)?;
        let bbox_pred = self
            .scales
            .apply(level, &self.gfl_reg.forward(&reg_feat)?)?;
        Ok((cls_score, bbox_pred))
    }

    /// `self.integral(bbox_pred.permute(1, 2, 0)) * stride[0]` (`gfl_head.py:455-456`) on a
    /// `(N, 4·(reg_max+1), H, W)` level, returned as `(N, 4, H, W)` distances in pixels:
    /// `softmax(x.reshape(-1, reg_max + 1), 1)`, `F.linear(·, project)` (`:54-55`), float32.
    fn integral(&self, bbox_pred: &Tensor, stride: f64) -> Result<Tensor, tch::TchError> {
        let (n, _, h, w) = bbox_pred.size4()?;
        let x = bbox_pred
            .f_to_kind(Kind::Float)?
            .f_permute([0, 2, 3, 1])?
            .f_reshape([-1, self.reg_max + 1])?
            .f_softmax(1, Kind::Float)?;
        let project = self.project.f_to_kind(Kind::Float)?;
        // `* stride[0]`: a Python int, so a float32 product.
        x.f_linear::<Tensor>(&project, None)?
            .f_reshape([n, h, w, 4])?
            .f_mul_scalar(stride)?
            .f_permute([0, 3, 1, 2])
    }
}

impl DenseHead for GflHead {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let (cls, reg) = super::per_level("GFLHead", self.anchors.strides.len(), feats, |l, x| {
            self.forward_single(l, x)
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
        self.gfl_cls.fuse(mode);
        self.gfl_reg.fuse(mode);
    }
    /// `forward_single` per level as ONNX nodes: `cls_score_i [B, C, H, W]` joint
    /// class-quality logits and `bbox_pred_i [B, 4·(reg_max+1), H, W]` distribution logits (after
    /// the level's `Scale`), as `predict_by_feat` receives them (the integral is `--end2end`'s).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = OnnxHeadOutputs::default();
        for (l, &x) in feats.iter().enumerate() {
            let cls_feat = emit_tower(g, &self.cls_convs, x)?;
            let reg_feat = emit_tower(g, &self.reg_convs, x)?;
            out.cls_scores.push(self.gfl_cls.emit_onnx(g, cls_feat)?);
            let reg = self.gfl_reg.emit_onnx(g, reg_feat)?;
            out.bbox_preds.push(self.scales.emit_onnx(g, l, reg)?);
        }
        Ok(out)
    }
    /// The anchors (one per location), `integral.project` as loaded and the coder's
    /// `clip_border`.
    fn onnx_decoder(&self) -> OnnxDecoder {
        let project = self
            .project
            .f_to_kind(Kind::Float)
            .and_then(|p| Vec::<f32>::try_from(&p));
        match (project, self.anchors.num_base_priors()) {
            (Ok(project), 1) => OnnxDecoder::GflIntegral {
                base: self.anchors.base.iter().map(|b| b[0]).collect(),
                project,
                clip_border: self.clip_border,
            },
            _ => OnnxDecoder::Unsupported("GFLHead with more than one anchor per location"),
        }
    }
    /// `GFLHead._predict_by_feat_single` per image, through mmdet's shared dense
    /// post-processing: the integral runs on every prior in libtorch (as upstream, before the
    /// top-k), the distance decoding on the kept candidates.
    fn predict_by_feat(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError> {
        let distances = outputs
            .bbox_preds
            .iter()
            .zip(&self.anchors.strides)
            .map(|(t, &(sw, _))| self.integral(t, sw))
            .collect::<Result<Vec<_>, _>>()
            .map_err(tch_err("GFLHead integral"))?;
        let host = mmdet_dense::dense_outputs_to_host(
            &outputs.cls_scores,
            &distances,
            None,
            1,
            4,
            ScoreActivation::Sigmoid,
        )?;
        let widths: Vec<usize> = host.levels.iter().map(|l| l.width).collect();
        let clip = self.clip_border;
        let decode = |level: usize, prior: usize, d: &[f32], max_shape: [f32; 2]| {
            let anchor = self.anchors.anchor(level, widths[level], prior);
            // `anchor_center`: float32 `(x1 + x2) / 2`.
            let (cx, cy) = ((anchor[0] + anchor[2]) / 2.0, (anchor[1] + anchor[3]) / 2.0);
            let b = [cx - d[0], cy - d[1], cx + d[2], cy + d[3]];
            if !clip {
                return b;
            }
            // `distance2bbox`: `clamp_(min=0, max=max_shape[1])` on x, `[0]` on y
            // (`mmdet/structures/bbox/transforms.py:176-181`).
            let c = |v: f32, hi: f32| v.max(0.0).min(hi);
            [
                c(b[0], max_shape[1]),
                c(b[1], max_shape[0]),
                c(b[2], max_shape[1]),
                c(b[3], max_shape[0]),
            ]
        };
        mmdet_dense::predict_by_feat(&host, metas, cfg, &decode)
    }
}

crate::register_tch_component!(scope: "mmdet", name: "GFLHead", DenseHead: |s, c| Ok(Box::new(GflHead::build(s, c)?)));
crate::register_tch_component!(scope: "mmdet", name: "GFL", Detector);
