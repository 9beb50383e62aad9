//! mmdet's `StandardRoIHead` box branch (`mmdet/models/roi_heads/standard_roi_head.py:
//! predict_bbox` and `_bbox_forward`, `:147-170`, `:293-364`): proposals → `bbox2roi` →
//! `SingleRoIExtractor` (each RoI pooled by mmcv `RoIAlign` from the level its size maps to) →
//! `Shared2FCBBoxHead` / `ConvFCBBoxHead` (flatten, shared fully connected layers with ReLU,
//! `fc_cls` and `fc_reg`) → `BBoxHead.predict_by_feat` (`crate::postprocess::two_stage`).
//!
//! Registered: `StandardRoIHead` (a [`RoiHead`]); the extractor and the box head are built here
//! (their spec stage kind is "head module", built by the parent).

use tch::{Device, Kind, Tensor};

use crate::export::onnx::graph::attr_i;
use crate::export::onnx::{ExportError, OnnxGraph, OnnxRoiOutputs, ValueId};
use crate::ops::roi_align_onnx::emit_roi_align;

use super::retina_head::delta2bbox;
use crate::models::component::RoiHead;
use crate::models::layers::conv_module::Fuse;
use crate::models::param::Ctx;
use crate::models::ModelError;
use crate::ops::{roi_align, PoolMode, RoiAlignCfg};
use crate::postprocess::two_stage::{bbox2roi, rcnn_detections, Proposals, RoiOutputs};
use crate::postprocess::{
    tch_err, tensor_to_vec, ImageMeta, PostprocessError, RawDetections, TestCfg,
};
use mmcompat_registry::spec::models::anchor_head::DeltaXywhCoderCfg;
use mmcompat_registry::spec::models::roi_head::{ConvFcBBoxHeadCfg, SingleRoiExtractorCfg};
use mmcompat_registry::spec::ComponentSpec;

/// `nn.Linear`.
#[derive(Debug)]
struct Linear {
    weight: Tensor,
    bias: Tensor,
    fused: Option<(Tensor, Tensor)>,
    /// State-dict prefix (ONNX initializer names).
    name: String,
}

impl Linear {
    fn new(ctx: &Ctx, cin: i64, cout: i64) -> Self {
        Linear {
            weight: ctx.param("weight", &[cout, cin]),
            bias: ctx.param("bias", &[cout]),
            fused: None,
            name: ctx.name("weight").trim_end_matches(".weight").to_string(),
        }
    }
    /// ONNX `Gemm` with `transB`: `x · weightᵀ + bias`, as `F.linear`.
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let w = g.weight_tensor(&format!("{}.weight", self.name), &self.weight)?;
        let b = g.weight_tensor(&format!("{}.bias", self.name), &self.bias)?;
        Ok(g.op("Gemm", &[x, w, b], vec![attr_i("transB", 1)]))
    }
    fn fuse(&mut self, mode: Fuse) {
        self.fused = Some((self.weight.to_kind(mode.kind), self.bias.to_kind(mode.kind)));
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let (w, b) = match &self.fused {
            Some((w, b)) => (w, b),
            None => (&self.weight, &self.bias),
        };
        x.f_linear(w, Some(b))
    }
}

/// `SingleRoIExtractor` with mmcv `RoIAlign` layers (`single_level_roi_extractor.py:44-119`).
#[derive(Debug)]
struct SingleRoiExtractor {
    /// One `RoiAlignCfg` per `featmap_strides` entry (`spatial_scale = 1 / stride`).
    layers: Vec<RoiAlignCfg>,
    out_channels: i64,
    finest_scale: f32,
}

impl SingleRoiExtractor {
    fn build(spec: &ComponentSpec) -> Result<Self, ModelError> {
        let cfg: &SingleRoiExtractorCfg = spec.args()?;
        let pool_mode = if cfg.roi_align.pool_mode == "max" {
            PoolMode::Max
        } else {
            PoolMode::Avg
        };
        let layers = cfg
            .args
            .featmap_strides
            .iter()
            // `layer_cls(spatial_scale=1 / s, **cfg)`; the kernel takes it as a C float.
            .map(|&s| RoiAlignCfg {
                output_size: cfg.output_size,
                spatial_scale: (1.0 / s) as f32,
                sampling_ratio: cfg.roi_align.sampling_ratio,
                aligned: cfg.roi_align.aligned,
                pool_mode,
            })
            .collect();
        Ok(SingleRoiExtractor {
            layers,
            out_channels: cfg.args.out_channels,
            finest_scale: cfg.args.finest_scale as f32,
        })
    }

    /// `map_roi_levels` (`:44-63`): `floor(log2(sqrt(w·h) / finest_scale + 1e-6))` clamped to
    /// the levels, in float32.
    fn level_of(&self, roi: &[f32; 5]) -> usize {
        let scale = ((roi[3] - roi[1]) * (roi[4] - roi[2])).sqrt();
        let lvl = (scale / self.finest_scale + 1e-6f32).log2().floor();
        let top = (self.layers.len() - 1) as f32;
        // NaN (a degenerate box) clamps to 0 as torch's clamp(min=0) then long() would not; such
        // boxes never survive the RPN's `w > 0 & h > 0` filter.
        (if lvl.is_nan() {
            0.0
        } else {
            lvl.clamp(0.0, top)
        }) as usize
    }

    /// `forward` as ONNX nodes on `rois [N, 4]` (image 0): `map_roi_levels` as comparisons
    /// (`floor(log2(v))` clamped to `[0, L-1]` is the count of `l ≥ 1` with `v ≥ 2^l`, no `Log2`
    /// op needed), then per level the RoIs of that level (`NonZero` + `Gather`) through
    /// `RoiAlign`, scattered back into their rows (`roi_feats[inds] = roi_feats_t`): each RoI is
    /// pooled once, from its own level, as upstream.
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
        rois: ValueId,
    ) -> Result<ValueId, ExportError> {
        let two = g.const_i64("split", vec![2], &[2, 2]);
        let halves = g.op_multi(
            "Split",
            vec![Some(rois), Some(two)],
            2,
            vec![attr_i("axis", 1)],
        );
        let wh = g.op("Sub", &[halves[1], halves[0]], vec![]);
        let one = g.const_i64("split", vec![2], &[1, 1]);
        let w_h = g.op_multi(
            "Split",
            vec![Some(wh), Some(one)],
            2,
            vec![attr_i("axis", 1)],
        );
        // `sqrt((x2 - x1) * (y2 - y1)) / finest_scale + 1e-6`, float32.
        let area = g.op("Mul", &[w_h[0], w_h[1]], vec![]);
        let scale = g.op("Sqrt", &[area], vec![]);
        let fs = g.const_f32("finest_scale", vec![], &[self.finest_scale]);
        let v = g.op("Div", &[scale, fs], vec![]);
        let eps = g.const_f32("eps", vec![], &[1e-6]);
        let v = g.op("Add", &[v, eps], vec![]);
        let flat = g.const_i64("shape", vec![1], &[-1]);
        let v = g.op("Reshape", &[v, flat], vec![]);
        let mut level = g.const_i64("level", vec![], &[0]);
        for l in 1..self.layers.len() {
            let bound = g.const_f32("level_bound", vec![], &[(1u64 << l) as f32]);
            let ge = g.op("GreaterOrEqual", &[v, bound], vec![]);
            let ge = g.cast(ge, crate::export::onnx::proto::data_type::INT64);
            level = g.op("Add", &[level, ge], vec![]);
        }
        let (ph, pw) = self.layers[0].output_size;
        let n = g.op("Shape", &[rois], vec![attr_i("end", 1)]);
        let rest = g.const_i64("shape", vec![3], &[self.out_channels, ph, pw]);
        let shape = g.op("Concat", &[n, rest], vec![attr_i("axis", 0)]);
        let zero = g.const_f32("zero", vec![], &[0.0]);
        let mut out = g.op("Expand", &[zero, shape], vec![]);
        let zero_i = g.const_i64("zero", vec![], &[0]);
        for (l, cfg) in self.layers.iter().enumerate() {
            let id = g.const_i64("level", vec![], &[l as i64]);
            let is_l = g.op("Equal", &[level, id], vec![]);
            let nz = g.op("NonZero", &[is_l], vec![]);
            let inds = g.op("Reshape", &[nz, flat], vec![]);
            let level_rois = g.op("Gather", &[rois, inds], vec![attr_i("axis", 0)]);
            // Batch 1: every RoI reads image 0.
            let batch = g.op("Mul", &[inds, zero_i], vec![]);
            let pooled = emit_roi_align(g, feats[l], level_rois, batch, cfg)?;
            let col = g.const_i64("shape", vec![1], &[1]);
            let rows = g.op("Unsqueeze", &[inds, col], vec![]);
            out = g.op("ScatterND", &[out, rows, pooled], vec![]);
        }
        Ok(out)
    }

    /// `forward(feats[:num_inputs], rois)`: `(K, out_channels, ph, pw)` in the features' kind.
    fn forward(&self, feats: &[Tensor], rois: &[[f32; 5]]) -> Result<Tensor, PostprocessError> {
        let first = &feats[0];
        let (ph, pw) = self.layers[0].output_size;
        let device = first.device();
        let mut out = Tensor::f_zeros(
            [rois.len() as i64, self.out_channels, ph, pw],
            (first.kind(), device),
        )
        .map_err(tch_err("RoI features"))?;
        let levels: Vec<usize> = rois.iter().map(|r| self.level_of(r)).collect();
        for (l, cfg) in self.layers.iter().enumerate() {
            let inds: Vec<i64> = (0..rois.len() as i64)
                .filter(|&i| levels[i as usize] == l)
                .collect();
            if inds.is_empty() {
                continue;
            }
            let flat: Vec<f32> = inds
                .iter()
                .flat_map(|&i| rois[i as usize].iter().copied())
                .collect();
            // `rois = rois.type_as(feats[0])`.
            let level_rois = Tensor::from_slice(&flat)
                .f_view([-1, 5])
                .and_then(|t| t.f_to_device(device))
                .and_then(|t| t.f_to_kind(first.kind()))
                .map_err(tch_err("RoIs"))?;
            let pooled = roi_align(&feats[l], &level_rois, cfg)
                .map_err(|e| PostprocessError::Shape(format!("RoIAlign on level {l}: {e}")))?;
            let index = Tensor::from_slice(&inds)
                .f_to_device(device)
                .map_err(tch_err("RoI indices"))?;
            // `roi_feats[inds] = roi_feats_t`.
            out = out
                .f_index_copy_(0, &index, &pooled)
                .map_err(tch_err("gathering RoI features"))?;
        }
        Ok(out)
    }
}

/// `ConvFCBBoxHead` with fully connected layers only (`convfc_bbox_head.py:163-217`).
#[derive(Debug)]
struct FcBBoxHead {
    fc_cls: Linear,
    fc_reg: Linear,
    shared_fcs: Vec<Linear>,
    cls_fcs: Vec<Linear>,
    reg_fcs: Vec<Linear>,
    in_channels: i64,
    num_classes: i64,
    class_agnostic: bool,
    coder: DeltaXywhCoderCfg,
}

impl FcBBoxHead {
    fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &ConvFcBBoxHeadCfg = spec.args()?;
        let a = &cfg.args;
        let fc = a.fc_out_channels;
        let flat = a.in_channels * cfg.roi_feat_size.0 * cfg.roi_feat_size.1;
        // `_add_conv_fc_branch` (`:122-161`): the first fc of a branch reads the flattened RoI
        // features (the shared branch's output for cls/reg branches after shared fcs).
        let branch = |name: &str, n: i64, cin: i64| -> (Vec<Linear>, i64) {
            let c = ctx.sub(name);
            let fcs = (0..n)
                .map(|i| Linear::new(&c.sub(i), if i == 0 { cin } else { fc }, fc))
                .collect();
            (fcs, if n > 0 { fc } else { cin })
        };
        let reg_out = if a.reg_class_agnostic {
            4
        } else {
            4 * a.num_classes
        };
        // State-dict order: BBoxHead.__init__ registers fc_cls and fc_reg first; ConvFCBBoxHead
        // replaces them later, which keeps their position (`bbox_head.py:80-99`).
        let shared_out = if a.num_shared_fcs > 0 { fc } else { flat };
        let cls_in = if a.num_cls_fcs > 0 { fc } else { shared_out };
        let reg_in = if a.num_reg_fcs > 0 { fc } else { shared_out };
        let fc_cls = Linear::new(&ctx.sub("fc_cls"), cls_in, a.num_classes + 1);
        let fc_reg = Linear::new(&ctx.sub("fc_reg"), reg_in, reg_out);
        let (shared_fcs, shared_dim) = branch("shared_fcs", a.num_shared_fcs, flat);
        let (cls_fcs, _) = branch("cls_fcs", a.num_cls_fcs, shared_dim);
        let (reg_fcs, _) = branch("reg_fcs", a.num_reg_fcs, shared_dim);
        Ok(FcBBoxHead {
            fc_cls,
            fc_reg,
            shared_fcs,
            cls_fcs,
            reg_fcs,
            in_channels: a.in_channels,
            num_classes: a.num_classes,
            class_agnostic: a.reg_class_agnostic,
            coder: cfg.coder.clone(),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
        let mut x = x.f_flatten(1, -1)?;
        for fc in &self.shared_fcs {
            x = fc.forward(&x)?.f_relu()?;
        }
        let mut x_cls = x.shallow_clone();
        for fc in &self.cls_fcs {
            x_cls = fc.forward(&x_cls.f_flatten(1, -1)?)?.f_relu()?;
        }
        let mut x_reg = x;
        for fc in &self.reg_fcs {
            x_reg = fc.forward(&x_reg.f_flatten(1, -1)?)?.f_relu()?;
        }
        Ok((self.fc_cls.forward(&x_cls)?, self.fc_reg.forward(&x_reg)?))
    }

    /// `forward` as ONNX nodes: `Flatten`, the fully connected layers (`Gemm`) with `Relu`.
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<(ValueId, ValueId), ExportError> {
        let mut x = g.op("Flatten", &[x], vec![attr_i("axis", 1)]);
        for fc in &self.shared_fcs {
            let y = fc.emit_onnx(g, x)?;
            x = g.op("Relu", &[y], vec![]);
        }
        let mut x_cls = x;
        for fc in &self.cls_fcs {
            let y = fc.emit_onnx(g, x_cls)?;
            x_cls = g.op("Relu", &[y], vec![]);
        }
        let mut x_reg = x;
        for fc in &self.reg_fcs {
            let y = fc.emit_onnx(g, x_reg)?;
            x_reg = g.op("Relu", &[y], vec![]);
        }
        Ok((
            self.fc_cls.emit_onnx(g, x_cls)?,
            self.fc_reg.emit_onnx(g, x_reg)?,
        ))
    }

    fn fuse(&mut self, mode: Fuse) {
        self.fc_cls.fuse(mode);
        self.fc_reg.fuse(mode);
        for fc in self
            .shared_fcs
            .iter_mut()
            .chain(&mut self.cls_fcs)
            .chain(&mut self.reg_fcs)
        {
            fc.fuse(mode);
        }
    }
}

#[derive(Debug)]
pub struct StandardRoiHead {
    extractor: SingleRoiExtractor,
    bbox_head: FcBBoxHead,
}

impl StandardRoiHead {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let extractor = SingleRoiExtractor::build(spec.require_child("bbox_roi_extractor")?)?;
        let head_spec = spec.require_child("bbox_head")?;
        let bbox_head = FcBBoxHead::build(head_spec, &ctx.sub("bbox_head"))?;
        if bbox_head.in_channels != extractor.out_channels {
            return Err(ModelError::Invalid {
                path: format!("{}.in_channels", head_spec.path),
                message: format!(
                    "the box head reads {} channels, bbox_roi_extractor.out_channels is {}",
                    bbox_head.in_channels, extractor.out_channels
                ),
            });
        }
        Ok(StandardRoiHead {
            extractor,
            bbox_head,
        })
    }
}

impl RoiHead for StandardRoiHead {
    fn in_channels(&self) -> i64 {
        self.extractor.out_channels
    }
    fn num_inputs(&self) -> usize {
        self.extractor.layers.len()
    }
    fn num_classes(&self) -> i64 {
        self.bbox_head.num_classes
    }
    fn fuse(&mut self, mode: Fuse) {
        self.bbox_head.fuse(mode);
    }

    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
        rois: ValueId,
    ) -> Result<OnnxRoiOutputs, ExportError> {
        if feats.len() < self.num_inputs() {
            return Err(ExportError::unsupported(
                format!(
                    "a RoI extractor reading {} levels from {} features",
                    self.num_inputs(),
                    feats.len()
                ),
                "RoI head",
            ));
        }
        let pooled = self
            .extractor
            .emit_onnx(g, &feats[..self.num_inputs()], rois)?;
        let (cls_score, bbox_pred) = self.bbox_head.emit_onnx(g, pooled)?;
        Ok(OnnxRoiOutputs {
            cls_score,
            bbox_pred,
            num_classes: self.bbox_head.num_classes,
            class_agnostic: self.bbox_head.class_agnostic,
            coder: self.bbox_head.coder.clone(),
        })
    }

    fn predict(
        &self,
        feats: &[Tensor],
        proposals: &[Proposals],
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError> {
        if proposals.len() != metas.len() || feats.len() < self.num_inputs() {
            return Err(PostprocessError::Shape(format!(
                "{} proposal lists, {} image metas, {} feature levels (the RoI head reads {})",
                proposals.len(),
                metas.len(),
                feats.len(),
                self.num_inputs()
            )));
        }
        let rois = bbox2roi(proposals);
        // `if rois.shape[0] == 0: return empty_instances(...)` (`standard_roi_head.py:326-333`).
        if rois.is_empty() {
            return Ok(vec![RawDetections::default(); metas.len()]);
        }
        let _guard = tch::no_grad_guard();
        // The second stage's network part (RoIAlign + box head), as a span: profilers and
        // examples/detect_distilled.rs count it as forward, not post-processing.
        let span = tracing::debug_span!("roi_head_forward", rois = rois.len()).entered();
        let extract = tracing::debug_span!("roi_extractor").entered();
        let roi_feats = self.extractor.forward(&feats[..self.num_inputs()], &rois)?;
        // Synchronise (an asynchronous device) so the span holds the extractor's own time.
        let _ = roi_feats.f_sum(Kind::Float).map(|s| s.double_value(&[]));
        drop(extract);
        let (cls, reg) = self
            .bbox_head
            .forward(&roi_feats)
            .map_err(tch_err("box head"))?;
        // The outputs are read on the host below: wait for an asynchronous device here.
        let _ = cls.f_sum(Kind::Float).map(|s| s.double_value(&[]));
        drop(span);
        // `F.softmax(cls_score, dim=-1)` (`bbox_head.py:526`), on float32 scores.
        let scores = cls
            .f_to_kind(Kind::Float)
            .and_then(|c| c.f_softmax(-1, Kind::Float))
            .and_then(|c| c.f_to_device(Device::Cpu))
            .map_err(tch_err("box scores"))?;
        let scores = tensor_to_vec(&scores, "copying box scores to the host")?;
        let deltas = tensor_to_vec(&reg, "copying box deltas to the host")?;
        let c = self.bbox_head.num_classes as usize;
        let reg_dim = if self.bbox_head.class_agnostic {
            4
        } else {
            4 * c
        };
        let decode = |roi: [f32; 4], d: &[f32], max_shape: [f32; 2]| {
            delta2bbox(&self.bbox_head.coder, roi, d, max_shape)
        };
        let mut start = 0;
        proposals
            .iter()
            .zip(metas)
            .map(|(p, meta)| {
                let r = p.bboxes.len();
                let out = RoiOutputs {
                    rois: &p.bboxes,
                    scores: &scores[start * (c + 1)..(start + r) * (c + 1)],
                    deltas: &deltas[start * reg_dim..(start + r) * reg_dim],
                    num_classes: c,
                    class_agnostic: self.bbox_head.class_agnostic,
                };
                start += r;
                if r == 0 {
                    return Ok(RawDetections::default());
                }
                rcnn_detections(&out, meta, cfg, &decode)
            })
            .collect()
    }
}

crate::register_tch_component!(scope: "mmdet", name: "StandardRoIHead", RoiHead: |s, c| Ok(Box::new(StandardRoiHead::build(s, c)?)));
crate::register_tch_component!(scope: "mmdet", name: "SingleRoIExtractor", BuiltByParent);
crate::register_tch_component!(scope: "mmdet", name: "Shared2FCBBoxHead", BuiltByParent);
crate::register_tch_component!(scope: "mmdet", name: "ConvFCBBoxHead", BuiltByParent);
