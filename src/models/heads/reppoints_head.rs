//! mmdet's `RepPointsHead` (`mmdet/models/dense_heads/reppoints_head.py`) with point sets (`use_grid_points=False`), at inference:
//!
//! * towers: `stacked_convs` 3×3 `ConvModule`s each (GN + ReLU on the shipped configs);
//! * initial points `p = pts_init_out(relu(pts_init_conv(pts_feat)))` (+ a fixed grid when
//!   `center_init=False`), `2·num_points` channels, **y first** per point;
//! * `dcn_offset = ((1 − g)·p + g·p) − dcn_base_offset` (the gradient multiplier is a no-op at
//!   inference, kept as upstream computes it), `dcn_base_offset` = the `(dy, dx)` of each kernel
//!   point of a `k×k` grid, row-major (`:93-99`);
//! * `cls = cls_out(relu(DeformConv2d(cls_feat, dcn_offset)))`, `refine =
//!   refine_out(relu(DeformConv2d(pts_feat, dcn_offset))) + p` (`:280-324`);
//! * `bbox_pred = points2bbox(refine)` (`:184-237`), in stride units around the point: `moment`
//!   = mean ± unbiased `torch.std` · `exp(moment_transfer·m + moment_transfer·(1 − m))`;
//!   `minmax` / `partial_minmax` = min/max of the (first four) points' coordinates.
//!
//! Post-processing (`RepPointsHead._predict_by_feat_single`, `:768-884`): priors of
//! `MlvlPointGenerator(point_strides, offset=0.)`, per-level sigmoid / threshold / top-k, `box =
//! bbox_pred·stride + (px, py, px, py)` clamped to `img_shape`, then `_bbox_post_process`
//! (`crate::postprocess::mmdet_dense`, no score factors). Also registers the `RepPointsDetector`
//! (a plain `SingleStageDetector`, `mmdet/models/detectors/reppoints_detector.py`).
//!
//! The deformable convolutions run on tch ops (`crate::ops::deform_conv2d`, mmcv's CPU kernel
//! semantics).

use tch::{Kind, Tensor};

use super::fcos_head::{point, run_tower, towers};
use crate::export::onnx::deform_conv::{reduce, take, DeformSampling, DeformWeight};
use crate::export::onnx::graph::{attr_i, tensor_f32};
use crate::export::onnx::{ExportError, OnnxDecoder, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::component::{DenseHead, Flavour, HeadOutputs};
use crate::models::layers::conv_module::{Conv2d, ConvModule, ConvSpec, Fuse};
use crate::models::param::Ctx;
use crate::models::ModelError;
use crate::ops::{deform_conv2d, DeformGeometry};
use crate::postprocess::mmdet_dense::{self, ScoreActivation};
use crate::postprocess::{ImageMeta, PostprocessError, RawDetections, TestCfg};
use mmcompat_registry::spec::models::reppoints_head::RepPointsHeadCfg;
use mmcompat_registry::spec::ComponentSpec;

/// mmcv `DeformConv2d(cin, cout, k, stride=1, padding=(k-1)/2)` without bias; the weight is cast
/// to the input's kind at the call (as `weight.type_as(input)` in `DeformConv2dFunction`).
#[derive(Debug)]
struct Dcn {
    weight: Tensor,
    geometry: DeformGeometry,
    /// The weight's state-dict name (its ONNX initializer's name).
    name: String,
}

impl Dcn {
    fn new(ctx: &Ctx, cin: i64, cout: i64, k: i64) -> Self {
        let pad = (k - 1) / 2;
        Dcn {
            weight: ctx.param("weight", &[cout, cin, k, k]),
            name: ctx.name("weight"),
            geometry: DeformGeometry {
                padding: [pad, pad],
                ..DeformGeometry::default()
            },
        }
    }

    fn forward(&self, x: &Tensor, offset: &Tensor) -> Result<Tensor, tch::TchError> {
        let w = self.weight.f_to_kind(x.kind())?;
        deform_conv2d(x, offset, &w, None, &self.geometry, None)
            .map_err(|e| tch::TchError::Torch(e.to_string()))
    }
}

#[derive(Debug)]
pub struct RepPointsHead {
    transform: Transform,
    cls_convs: Vec<ConvModule>,
    reg_convs: Vec<ConvModule>,
    cls_conv: Dcn,
    cls_out: Conv2d,
    pts_init_conv: Conv2d,
    pts_init_out: Conv2d,
    pts_refine_conv: Dcn,
    pts_refine_out: Conv2d,
    /// `dcn_base_offset` as float64 values (`np.float64` upstream, `.type_as(x)` at use).
    dcn_base_offset: Vec<f64>,
    /// `points_init` when `center_init=False`: the base grid scaled to `point_base_scale / 2`.
    points_init: Option<Vec<f64>>,
    gradient_mul: f64,
    strides: Vec<(f64, f64)>,
    num_classes: i64,
    in_channels: i64,
    activation: ScoreActivation,
}

impl RepPointsHead {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &RepPointsHeadCfg = spec.args()?;
        let a = &cfg.args;
        // A module's own parameters precede its children's in `state_dict()`; only the moment
        // transform has one (`reppoints_head.py:126-129`).
        let transform = match a.transform_method.as_str() {
            "moment" => Transform::Moment {
                transfer: ctx.param("moment_transfer", &[2]),
                mul: a.moment_mul,
            },
            "minmax" => Transform::MinMax { points: None },
            // the spec stage admits only the three names
            _ => Transform::MinMax { points: Some(4) },
        };
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
        let cls_out_ch = if cfg.common.use_sigmoid {
            a.num_classes
        } else {
            a.num_classes + 1
        };
        let (k, pf) = (cfg.dcn_kernel, a.point_feat_channels);
        let pts_out = 2 * a.num_points;
        let conv = |name: &str, cin: i64, cout: i64, kernel: i64| {
            Conv2d::new(
                &ctx.sub(name),
                ConvSpec::new(cin, cout, kernel).padding((kernel - 1) / 2),
                true,
            )
        };
        // `_init_layers` order (`reppoints_head.py:140-182`).
        let cls_conv = Dcn::new(&ctx.sub("reppoints_cls_conv"), feat, pf, k);
        let cls_out = conv("reppoints_cls_out", pf, cls_out_ch, 1);
        let pts_init_conv = conv("reppoints_pts_init_conv", feat, pf, 3);
        let pts_init_out = conv("reppoints_pts_init_out", pf, pts_out, 1);
        let pts_refine_conv = Dcn::new(&ctx.sub("reppoints_pts_refine_conv"), feat, pf, k);
        let pts_refine_out = conv("reppoints_pts_refine_out", pf, pts_out, 1);
        // `dcn_base = arange(-pad, pad + 1)`; y = repeat (row index), x = tile (column index).
        let pad = (k - 1) / 2;
        let base: Vec<f64> = (-pad..=pad).map(|v| v as f64).collect();
        let mut dcn_base_offset = Vec::with_capacity(2 * (k * k) as usize);
        for &y in &base {
            for &x in &base {
                dcn_base_offset.extend([y, x]);
            }
        }
        // `points_init = dcn_base_offset / dcn_base_offset.max() * (point_base_scale / 2)`.
        let points_init = (!a.center_init).then(|| {
            let max = pad.max(1) as f64;
            let scale = a.point_base_scale as f64 / 2.0;
            dcn_base_offset.iter().map(|v| v / max * scale).collect()
        });
        Ok(RepPointsHead {
            transform,
            cls_convs,
            reg_convs,
            cls_conv,
            cls_out,
            pts_init_conv,
            pts_init_out,
            pts_refine_conv,
            pts_refine_out,
            dcn_base_offset,
            points_init,
            gradient_mul: a.gradient_mul,
            strides: cfg.strides_wh.clone(),
            num_classes: a.num_classes,
            in_channels: a.in_channels,
            activation: ScoreActivation::from_use_sigmoid(cfg.common.use_sigmoid),
        })
    }

    /// A `(1, 2·num_points, 1, 1)` tensor of `values` in `like`'s kind and device.
    fn column(values: &[f64], like: &Tensor) -> Result<Tensor, tch::TchError> {
        Tensor::f_from_slice(values)?
            .f_to_kind(like.kind())?
            .f_to_device(like.device())?
            .f_view([1, -1, 1, 1])
    }

    /// `RepPointsHead.forward_single` at inference: (cls_out, points2bbox(pts_out_refine)).
    fn forward_single(&self, x: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
        let base = Self::column(&self.dcn_base_offset, x)?;
        let cls_feat = run_tower(&self.cls_convs, x)?;
        let pts_feat = run_tower(&self.reg_convs, x)?;
        let mut pts_init = self
            .pts_init_out
            .forward(&self.pts_init_conv.forward(&pts_feat)?.f_relu()?)?;
        if let Some(init) = &self.points_init {
            pts_init = pts_init.f_add(&Self::column(init, x)?)?;
        }
        // `(1 - gradient_mul) * pts.detach() + gradient_mul * pts`.
        let g = self.gradient_mul;
        let grad_mul = pts_init
            .f_mul_scalar(1.0 - g)?
            .f_add(&pts_init.f_mul_scalar(g)?)?;
        let dcn_offset = grad_mul.f_sub(&base)?;
        let cls_out = self
            .cls_out
            .forward(&self.cls_conv.forward(&cls_feat, &dcn_offset)?.f_relu()?)?;
        let refine = self
            .pts_refine_out
            .forward(
                &self
                    .pts_refine_conv
                    .forward(&pts_feat, &dcn_offset)?
                    .f_relu()?,
            )?
            .f_add(&pts_init)?;
        Ok((cls_out, self.points2bbox(&refine)?))
    }

    /// `points2bbox(pts, y_first=True)` (`:184-237`).
    fn points2bbox(&self, pts: &Tensor) -> Result<Tensor, tch::TchError> {
        let (n, _, h, w) = pts.size4()?;
        let pts = pts.f_view([n, -1, 2, h, w])?;
        let mut pts_y = pts.f_select(2, 0)?;
        let mut pts_x = pts.f_select(2, 1)?;
        let sides = match &self.transform {
            Transform::MinMax { points } => {
                if let Some(k) = points {
                    // partial_minmax: the first four points only.
                    pts_y = pts_y.f_narrow(1, 0, *k)?;
                    pts_x = pts_x.f_narrow(1, 0, *k)?;
                }
                [
                    pts_x.f_amin(1, true)?,
                    pts_y.f_amin(1, true)?,
                    pts_x.f_amax(1, true)?,
                    pts_y.f_amax(1, true)?,
                ]
            }
            Transform::Moment { transfer, mul } => {
                let y_mean = pts_y.f_mean_dim(1, true, None::<Kind>)?;
                let x_mean = pts_x.f_mean_dim(1, true, None::<Kind>)?;
                // `torch.std` is unbiased.
                let y_std = pts_y.f_sub(&y_mean)?.f_std_dim(1, true, true)?;
                let x_std = pts_x.f_sub(&x_mean)?.f_std_dim(1, true, true)?;
                // `moment_transfer * moment_mul + moment_transfer.detach() * (1 - moment_mul)`.
                let mt = transfer.f_to_kind(pts.kind())?;
                let mt = mt.f_mul_scalar(*mul)?.f_add(&mt.f_mul_scalar(1.0 - mul)?)?;
                let half_w = x_std.f_mul(&mt.f_select(0, 0)?.f_exp()?)?;
                let half_h = y_std.f_mul(&mt.f_select(0, 1)?.f_exp()?)?;
                [
                    x_mean.f_sub(&half_w)?,
                    y_mean.f_sub(&half_h)?,
                    x_mean.f_add(&half_w)?,
                    y_mean.f_add(&half_h)?,
                ]
            }
        };
        Tensor::f_cat(&sides, 1)
    }
}

/// ONNX emission (issue 16): `forward_single` and `points2bbox` node by node, the deformable
/// convolutions as standard ops (`crate::export::onnx::deform_conv`).
impl RepPointsHead {
    /// `values` as a `[1, len, 1, 1]` weight named `name` (as [`RepPointsHead::column`]).
    fn emit_column(g: &mut OnnxGraph, name: &str, values: &[f64]) -> ValueId {
        let v: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        g.weight(name, vec![1, v.len() as i64, 1, 1], &v)
    }

    /// `forward_single` of one level: `(cls_out, points2bbox(pts_out_refine))`.
    fn emit_single(
        &self,
        g: &mut OnnxGraph,
        (x, size): (ValueId, (i64, i64)),
        [cls_w, refine_w]: &[DeformWeight; 2],
    ) -> Result<(ValueId, ValueId), ExportError> {
        let tower = |g: &mut OnnxGraph, convs: &[ConvModule], x: ValueId| {
            convs.iter().try_fold(x, |y, conv| conv.emit_onnx(g, y))
        };
        let cls_feat = tower(g, &self.cls_convs, x)?;
        let pts_feat = tower(g, &self.reg_convs, x)?;
        let init = self.pts_init_conv.emit_onnx(g, pts_feat)?;
        let init = g.op("Relu", &[init], vec![]);
        let mut pts_init = self.pts_init_out.emit_onnx(g, init)?;
        if let Some(points) = &self.points_init {
            let c = Self::emit_column(g, "bbox_head.points_init", points);
            pts_init = g.op("Add", &[pts_init, c], vec![]);
        }
        // `(1 - gradient_mul) * pts.detach() + gradient_mul * pts`: the identity in value, but
        // not always in float32 rounding, so spelt out as `forward_single` computes it.
        let gm = self.gradient_mul;
        let (a, b) = (g.scalar((1.0 - gm) as f32), g.scalar(gm as f32));
        let pa = g.op("Mul", &[pts_init, a], vec![]);
        let pb = g.op("Mul", &[pts_init, b], vec![]);
        let grad_mul = g.op("Add", &[pa, pb], vec![]);
        let base = Self::emit_column(g, "bbox_head.dcn_base_offset", &self.dcn_base_offset);
        let dcn_offset = g.op("Sub", &[grad_mul, base], vec![]);
        // Both DCNs share the geometry (checked by `emit_onnx`) and the offsets: one sampling.
        let k = self.cls_conv.weight.size();
        let sampling = DeformSampling::emit(
            g,
            (cls_feat, size),
            dcn_offset,
            (k[2], k[3]),
            &self.cls_conv.geometry,
        )?;
        let cls = sampling.conv(g, cls_feat, cls_w)?;
        let cls = g.op("Relu", &[cls], vec![]);
        let cls_out = self.cls_out.emit_onnx(g, cls)?;
        let refine = sampling.conv(g, pts_feat, refine_w)?;
        let refine = g.op("Relu", &[refine], vec![]);
        let refine = self.pts_refine_out.emit_onnx(g, refine)?;
        let refine = g.op("Add", &[refine, pts_init], vec![]);
        let num_points = self.pts_refine_out.weight.size()[0] / 2;
        Ok((cls_out, self.emit_points2bbox(g, refine, num_points, size)?))
    }

    /// `points2bbox(pts, y_first=True)` of `pts [B, 2·n, H, W]` (level size `(h, w)`):
    /// `[B, 4, H, W]`. The points are viewed as `[B, n, 2, H, W]` (`pts.view(.., -1, 2, ..)`)
    /// and reduced over the points, (y, x) side by side.
    fn emit_points2bbox(
        &self,
        g: &mut OnnxGraph,
        pts: ValueId,
        n: i64,
        (h, w): (i64, i64),
    ) -> Result<ValueId, ExportError> {
        let shape = g.const_i64("shape", vec![5], &[-1, n, 2, h, w]);
        let pts = g.op("Reshape", &[pts, shape], vec![]);
        // `[B, 2, 2, H, W]`: (low, high) × (y, x).
        let sides = match &self.transform {
            Transform::MinMax { points } => {
                let m = points.unwrap_or(n).min(n);
                let pts = if m < n {
                    let idx: Vec<i64> = (0..m).collect();
                    take(g, pts, 1, &idx)
                } else {
                    pts
                };
                let lo = reduce(g, "ReduceMin", pts, &[1]);
                let hi = reduce(g, "ReduceMax", pts, &[1]);
                g.op("Concat", &[lo, hi], vec![attr_i("axis", 1)])
            }
            Transform::Moment { transfer, mul } => {
                let mean = reduce(g, "ReduceMean", pts, &[1]);
                // `torch.std(pts - mean, dim=1, unbiased=True)`: its own mean, then the sum of
                // squares over n − 1.
                let d = g.op("Sub", &[pts, mean], vec![]);
                let m = reduce(g, "ReduceMean", d, &[1]);
                let e = g.op("Sub", &[d, m], vec![]);
                let sq = g.op("Mul", &[e, e], vec![]);
                let s = reduce(g, "ReduceSum", sq, &[1]);
                let dof = g.scalar((n - 1) as f32);
                let var = g.op("Div", &[s, dof], vec![]);
                let std = g.op("Sqrt", &[var], vec![]);
                // `exp(moment_transfer * moment_mul + moment_transfer.detach() * (1 - mul))`,
                // with the same libtorch ops as `points2bbox` (weights only), as (h, w) to
                // scale the (y, x) stds.
                let what = "bbox_head.moment_transfer";
                let e = transfer
                    .f_to_kind(Kind::Float)
                    .and_then(|t| t.f_mul_scalar(*mul)?.f_add(&t.f_mul_scalar(1.0 - mul)?))
                    .and_then(|mt| mt.f_exp())
                    .map_err(|source| ExportError::Tensor {
                        what: what.into(),
                        source,
                    })?;
                let (_, e) = tensor_f32(&e, what)?;
                let scale = g.weight(
                    "bbox_head.moment_transfer.exp_hw",
                    vec![1, 1, 2, 1, 1],
                    &[e[1], e[0]],
                );
                let half = g.op("Mul", &[std, scale], vec![]);
                // `mean ∓ half` as `mean + (∓1 · half)` (the same float32 values), both sides in
                // one `Add`: two `Sub`/`Add` of `mean` and `half` made tract 0.22 panic in its
                // unicast kernel (a misaligned operand) on the 25×25 level.
                let means = g.op("Concat", &[mean, mean], vec![attr_i("axis", 1)]);
                let halves = g.op("Concat", &[half, half], vec![attr_i("axis", 1)]);
                let sign = g.weight("points2bbox_sign", vec![1, 2, 1, 1, 1], &[-1.0, 1.0]);
                let halves = g.op("Mul", &[halves, sign], vec![]);
                g.op("Add", &[means, halves], vec![])
            }
        };
        // (y, x) → (x, y): `[x1, y1, x2, y2]`.
        let sides = take(g, sides, 2, &[1, 0]);
        let shape = g.const_i64("shape", vec![4], &[-1, 4, h, w]);
        Ok(g.op("Reshape", &[sides, shape], vec![]))
    }
}

/// `transform_method`: how a point set becomes a box.
#[derive(Debug)]
enum Transform {
    /// Mean ± std · `exp(moment_transfer)`; `transfer` `[2]` = (width, height) log-scales.
    Moment { transfer: Tensor, mul: f64 },
    /// Min/max of the coordinates, of the first `points` only (`partial_minmax`: 4) if given.
    MinMax { points: Option<i64> },
}

impl DenseHead for RepPointsHead {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let (cls, reg) = super::per_level("RepPointsHead", self.strides.len(), feats, |_, x| {
            self.forward_single(x)
        })?;
        Ok(HeadOutputs::new(cls, reg))
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
        0.0
    }
    fn flavour(&self) -> Flavour {
        Flavour::Mmdet
    }
    /// `forward_single` per level as ONNX nodes: `cls_score_i [B, C, H, W]` logits and
    /// `bbox_pred_i [B, 4, H, W]`, the refined point set's box (`points2bbox` with the configured
    /// transform) in stride units around its point, as `predict_by_feat` receives them.
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let (a, b) = (&self.cls_conv, &self.pts_refine_conv);
        if a.geometry != b.geometry || a.weight.size()[2..] != b.weight.size()[2..] {
            return Err(ExportError::unsupported(
                "mmdet.RepPointsHead (its two DeformConv2d differ in geometry)",
                "dense head",
            ));
        }
        let weights = [
            DeformWeight::emit(g, &a.weight, &a.name)?,
            DeformWeight::emit(g, &b.weight, &b.name)?,
        ];
        let mut out = OnnxHeadOutputs::default();
        for (l, &x) in feats.iter().enumerate() {
            let size = g.level_size(l).ok_or_else(|| ExportError::InvalidOption {
                option: "--input-size",
                message: format!(
                    "RepPointsHead: the size of level {l} is unknown (OnnxGraph::set_level_sizes)"
                ),
            })?;
            let (cls, bbox) = self.emit_single(g, (x, size), &weights)?;
            out.cls_scores.push(cls);
            out.bbox_preds.push(bbox);
        }
        Ok(out)
    }
    /// Points with offset 0, `bbox_pred · stride + point` clamped to `img_shape`
    /// (`end2end_reppoints.rs`); softmax scores are refused.
    fn onnx_decoder(&self) -> OnnxDecoder {
        match self.activation {
            ScoreActivation::Sigmoid => OnnxDecoder::RepPoints,
            ScoreActivation::SoftmaxWithBackground => {
                OnnxDecoder::Unsupported("RepPointsHead with use_sigmoid=False (softmax scores)")
            }
        }
    }
    fn fuse(&mut self, mode: Fuse) {
        self.cls_convs.iter_mut().for_each(|m| m.fuse(mode));
        self.reg_convs.iter_mut().for_each(|m| m.fuse(mode));
        for c in [
            &mut self.cls_out,
            &mut self.pts_init_conv,
            &mut self.pts_init_out,
            &mut self.pts_refine_out,
        ] {
            c.fuse(mode);
        }
    }
    /// `RepPointsHead._predict_by_feat_single` + `_bbox_post_process`: `_bbox_decode`
    /// (`:865-884`) on points with offset 0.
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
            1,
            4,
            self.activation,
        )?;
        let widths: Vec<usize> = host.levels.iter().map(|l| l.width).collect();
        let decode = |level: usize, prior: usize, d: &[f32], max_shape: [f32; 2]| {
            let (sw, sh) = self.strides[level];
            let p = point(widths[level], prior, (sw, sh), 0.0);
            // `bbox_pred * stride + [px, py, px, py]`, then each side clamped to [0, w|h].
            let (s, [h, w]) = (sw as f32, max_shape);
            let c = |v: f32, hi: f32| v.max(0.0).min(hi);
            [
                c(d[0] * s + p[0], w),
                c(d[1] * s + p[1], h),
                c(d[2] * s + p[0], w),
                c(d[3] * s + p[1], h),
            ]
        };
        mmdet_dense::predict_by_feat(&host, metas, cfg, &decode)
    }
}

crate::register_tch_component!(scope: "mmdet", name: "RepPointsHead", DenseHead: |s, c| Ok(Box::new(RepPointsHead::build(s, c)?)));
crate::register_tch_component!(scope: "mmdet", name: "RepPointsDetector", Detector);
