//! `YOLOv5Head.predict_by_feat` (mmyolo 0.6.0 `mmyolo/models/dense_heads/yolov5_head.py:276-445`)
//! for heads with objectness: YOLOv5 (`mmdet.YOLOAnchorGenerator` priors, `YOLOv5BBoxCoder`) and
//! YOLOX (`MlvlPointGenerator(offset=0)` priors, `YOLOXBBoxCoder`; `YOLOXHead` does not override
//! `predict_by_feat`). Both: the `obj > score_thr` prefilter (skipped with `yolox_style`),
//! `scores *= obj`, then the same joint top-k, rescale, NMS, `max_per_img` (no cap with
//! `yolox_style`) and clamp as the point-prior mmyolo heads (`super::predict_single_mmyolo`).
//!
//! As in the parent module, the sigmoids run in libtorch on whole tensors and everything
//! order-sensitive on host vectors; only the kept candidates are decoded (element-wise, so the
//! same values as upstream's decode-everything). Float32 arithmetic follows upstream op by op.
//!
//! Never: build boxes from anything but the head outputs, the anchors and the image metas.

use tch::{Kind, Tensor};

use super::{
    bbox_post_process, clamp, tch_err, tensor_to_vec, topk_sorted, ImageMeta, PostprocessError,
    RawDetections, TestCfg,
};

/// The anchors of one level: `mmdet.YOLOAnchorGenerator`'s `strides[i]` and `base_sizes[i]`,
/// and the head's `featmap_strides[i]` that `YOLOv5BBoxCoder.decode` scales the offsets with.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorLevelSpec {
    /// `(w, h)` stride placing the anchors (`prior_generator.strides[i]`).
    pub stride: (f64, f64),
    /// `(w, h)` of each base anchor (`prior_generator.base_sizes[i]`).
    pub base_sizes: Vec<(f64, f64)>,
    /// `head_module.featmap_strides[i]` (`flatten_stride` of `predict_by_feat`).
    pub decode_stride: f64,
}

impl AnchorLevelSpec {
    /// `YOLOAnchorGenerator.gen_single_level_base_anchors`: `[cx - w/2, cy - h/2, cx + w/2,
    /// cy + h/2]` with `cx = stride_w / 2` computed in float64 and stored as float32.
    pub fn base_anchors(&self) -> Vec<[f32; 4]> {
        let (cx, cy) = (self.stride.0 / 2.0, self.stride.1 / 2.0);
        (self.base_sizes.iter())
            .map(|&(w, h)| {
                [
                    (cx - 0.5 * w) as f32,
                    (cy - 0.5 * h) as f32,
                    (cx + 0.5 * w) as f32,
                    (cy + 0.5 * h) as f32,
                ]
            })
            .collect()
    }
}

/// One level of an anchor head's outputs on the host, NCHW row-major float32, after sigmoid.
#[derive(Debug, Clone)]
pub struct AnchorHostLevel {
    pub height: usize,
    pub width: usize,
    pub spec: AnchorLevelSpec,
    pub base_anchors: Vec<[f32; 4]>,
    /// `sigmoid(cls_score)`, (N, A·C, H, W), channel `a·C + c`.
    pub scores: Vec<f32>,
    /// `sigmoid(bbox_pred)`, (N, A·4, H, W), channel `a·4 + k`.
    pub boxes: Vec<f32>,
    /// `sigmoid(objectness)`, (N, A, H, W).
    pub objectness: Vec<f32>,
}

/// All levels of one batch of anchor-head outputs on the host.
#[derive(Debug, Clone)]
pub struct AnchorHostOutputs {
    pub batch: usize,
    pub num_classes: usize,
    pub num_base_priors: usize,
    pub levels: Vec<AnchorHostLevel>,
}

fn sigmoid_to_vec(t: &Tensor, what: &'static str) -> Result<Vec<f32>, PostprocessError> {
    let s = t
        .f_to_kind(Kind::Float)
        .and_then(|t| t.f_sigmoid())
        .map_err(tch_err(what))?;
    tensor_to_vec(&s, what)
}

/// Copies the head outputs to the host with the sigmoids `predict_by_feat` and
/// `YOLOv5BBoxCoder.decode` apply (`flatten_cls_scores.sigmoid()`, `pred_bboxes.sigmoid()`,
/// `flatten_objectness.sigmoid()`), checking every level's shape against the anchors.
pub fn anchor_head_outputs_to_host(
    cls_scores: &[Tensor],
    bbox_preds: &[Tensor],
    objectnesses: &[Tensor],
    levels: &[AnchorLevelSpec],
) -> Result<AnchorHostOutputs, PostprocessError> {
    let n_levels = levels.len();
    if n_levels == 0 || [cls_scores.len(), bbox_preds.len(), objectnesses.len()] != [n_levels; 3] {
        return Err(PostprocessError::Shape(format!(
            "{} class-score levels, {} box levels, {} objectness levels and {} anchor levels; \
             they must be equal and non-zero",
            cls_scores.len(),
            bbox_preds.len(),
            objectnesses.len(),
            n_levels
        )));
    }
    let a = levels[0].base_sizes.len();
    let mut out = AnchorHostOutputs {
        batch: 0,
        num_classes: 0,
        num_base_priors: a,
        levels: Vec::with_capacity(n_levels),
    };
    for (l, spec) in levels.iter().enumerate() {
        let size = |t: &Tensor, what: &str| {
            t.size4().map_err(|e| {
                PostprocessError::Shape(format!("level {l}: {what} must be N,C,H,W: {e}"))
            })
        };
        let (n, ac, h, w) = size(&cls_scores[l], "class scores")?;
        let reg = size(&bbox_preds[l], "box predictions")?;
        let obj = size(&objectnesses[l], "objectness")?;
        let a_i = a as i64;
        if spec.base_sizes.len() != a || a_i == 0 || ac % a_i != 0 {
            return Err(PostprocessError::Shape(format!(
                "level {l}: {ac} class channels for {} anchors (level 0 has {a})",
                spec.base_sizes.len()
            )));
        }
        if reg != (n, 4 * a_i, h, w) || obj != (n, a_i, h, w) {
            return Err(PostprocessError::Shape(format!(
                "level {l}: box predictions {reg:?} and objectness {obj:?} disagree with class \
                 scores {:?} for {a} anchors",
                (n, ac, h, w)
            )));
        }
        let c = (ac / a_i) as usize;
        if l == 0 {
            (out.batch, out.num_classes) = (n as usize, c);
        } else if (n as usize, c) != (out.batch, out.num_classes) {
            return Err(PostprocessError::Shape(format!(
                "level {l} has batch {n} and {c} classes, level 0 has {} and {}",
                out.batch, out.num_classes
            )));
        }
        out.levels.push(AnchorHostLevel {
            height: h as usize,
            width: w as usize,
            base_anchors: spec.base_anchors(),
            spec: spec.clone(),
            scores: sigmoid_to_vec(&cls_scores[l], "sigmoid of class scores")?,
            boxes: sigmoid_to_vec(&bbox_preds[l], "sigmoid of box predictions")?,
            objectness: sigmoid_to_vec(&objectnesses[l], "sigmoid of objectness")?,
        });
    }
    Ok(out)
}

/// `predict_by_feat(..., rescale=True)` of `YOLOv5Head` on host outputs: one result per image.
pub fn predict_by_feat(
    outputs: &AnchorHostOutputs,
    metas: &[ImageMeta],
    cfg: &TestCfg,
) -> Result<Vec<RawDetections>, PostprocessError> {
    check_batch(metas, outputs.batch)?;
    (metas.iter().enumerate())
        .map(|(n, meta)| predict_single(outputs, n, meta, cfg))
        .collect()
}

fn check_batch(metas: &[ImageMeta], batch: usize) -> Result<(), PostprocessError> {
    if metas.len() != batch {
        return Err(PostprocessError::Shape(format!(
            "{} image metas for a batch of {batch}",
            metas.len()
        )));
    }
    Ok(())
}

/// `YOLOAnchorGenerator.single_level_grid_priors` for anchor `a` at flat position `hw`:
/// `base_anchor + [sx, sy, sx, sy]`, `sx = float32(col) * stride_w` (float32 throughout).
#[inline]
fn anchor(level: &AnchorHostLevel, hw: usize, a: usize) -> [f32; 4] {
    let sx = (hw % level.width) as f32 * level.spec.stride.0 as f32;
    let sy = (hw / level.width) as f32 * level.spec.stride.1 as f32;
    let b = level.base_anchors[a];
    [b[0] + sx, b[1] + sy, b[2] + sx, b[3] + sy]
}

/// `YOLOv5BBoxCoder.decode` (`mmyolo/models/task_modules/coders/yolov5_bbox_coder.py:22-55`) of
/// the sigmoid offsets `p` against `prior`, op by op in float32.
#[inline]
fn decode(prior: [f32; 4], p: [f32; 4], stride: f32) -> [f32; 4] {
    let x_center = (prior[0] + prior[2]) * 0.5;
    let y_center = (prior[1] + prior[3]) * 0.5;
    let w = prior[2] - prior[0];
    let h = prior[3] - prior[1];
    let xc = (p[0] - 0.5) * 2.0 * stride + x_center;
    let yc = (p[1] - 0.5) * 2.0 * stride + y_center;
    // `(p * 2) ** 2`: torch's pow by the scalar 2 is `x * x`.
    let (pw, ph) = (p[2] * 2.0, p[3] * 2.0);
    let w_pred = pw * pw * w;
    let h_pred = ph * ph * h;
    [
        xc - w_pred / 2.0,
        yc - h_pred / 2.0,
        xc + w_pred / 2.0,
        yc + h_pred / 2.0,
    ]
}

/// What the per-image loop reads of one level of a head with objectness, whatever its priors.
trait ObjectnessLevel {
    /// `H · W`.
    fn plane(&self) -> usize;
    /// `sigmoid(cls_score)`, (N, A·C, H, W).
    fn scores(&self) -> &[f32];
    /// `sigmoid(objectness)`, (N, A, H, W).
    fn objectness(&self) -> &[f32];
    /// `(w, h)` stride, for messages.
    fn stride(&self) -> (f64, f64);
    /// The decoded box (network-input pixels) of prior `k` of `a` at flat position `hw` of
    /// image `n`.
    fn decode_box(&self, n: usize, a: usize, hw: usize, k: usize) -> [f32; 4];
}

impl ObjectnessLevel for AnchorHostLevel {
    fn plane(&self) -> usize {
        self.height * self.width
    }
    fn scores(&self) -> &[f32] {
        &self.scores
    }
    fn objectness(&self) -> &[f32] {
        &self.objectness
    }
    fn stride(&self) -> (f64, f64) {
        self.spec.stride
    }
    fn decode_box(&self, n: usize, a: usize, hw: usize, k: usize) -> [f32; 4] {
        let plane = self.plane();
        let base = (n * a + k) * 4 * plane + hw;
        let p =
            [0, 1, 2, 3].map(|j| (self.boxes.get(base + j * plane).copied()).unwrap_or(f32::NAN));
        decode(anchor(self, hw, k), p, self.spec.decode_stride as f32)
    }
}

/// `YOLOv5Head.predict_by_feat` on anchor-head host outputs for image `n`.
fn predict_single(
    out: &AnchorHostOutputs,
    n: usize,
    meta: &ImageMeta,
    cfg: &TestCfg,
) -> Result<RawDetections, PostprocessError> {
    predict_single_with(
        &out.levels,
        (out.num_classes, out.num_base_priors),
        n,
        meta,
        cfg,
    )
}

/// `YOLOv5Head.predict_by_feat`'s per-image loop (:376-443) for image `n`: `levels` in stride
/// order, `(c, a)` = (num_classes, priors per location).
fn predict_single_with<L: ObjectnessLevel>(
    levels: &[L],
    (c, a): (usize, usize),
    n: usize,
    meta: &ImageMeta,
    cfg: &TestCfg,
) -> Result<RawDetections, PostprocessError> {
    // `multi_label &= self.num_classes > 1` (:326-329); `cfg.multi_label` is an attribute read.
    let multi_label = cfg.multi_label.ok_or(PostprocessError::MissingKey {
        section: "test_cfg",
        key: "multi_label",
    })? && c > 1;
    // `score_thr = cfg.get('score_thr', -1)`: the `> 0` test on the Python float, the
    // comparisons with tensors in float32; `yolox_style` skips the prefilter (:389-394).
    let score_thr_py = cfg.score_thr.unwrap_or(-1.0);
    let score_thr = score_thr_py as f32;
    let prefilter = score_thr_py > 0.0 && !cfg.yolox_style;
    let nms_pre = cfg.nms_pre.unwrap_or(100_000);

    // Priors are numbered level by level, location-major, anchor-minor (grid_priors order);
    // candidates carry `prior * C + label` (multi-label: every class; single-label: the best),
    // which orders ties as upstream's row order does. The prefilter keeps row order, so
    // numbering before or after it gives the same order.
    let mut starts = Vec::with_capacity(levels.len());
    let mut cands: Vec<(f32, usize)> = Vec::new();
    let mut total = 0usize;
    for level in levels {
        starts.push(total);
        let plane = level.plane();
        let truncated = || {
            PostprocessError::Shape(format!("level of stride {:?} is truncated", level.stride()))
        };
        let scores = (level
            .scores()
            .get(n * a * c * plane..(n + 1) * a * c * plane))
        .ok_or_else(truncated)?;
        let obj =
            (level.objectness().get(n * a * plane..(n + 1) * a * plane)).ok_or_else(truncated)?;
        for hw in 0..plane {
            for k in 0..a {
                let o = obj[k * plane + hw];
                // `conf_inds = objectness > score_thr` (:389-394).
                let confident = o > score_thr;
                if prefilter && !confident {
                    continue;
                }
                let prior = total + hw * a + k;
                // `scores *= objectness[:, None]` (:396-397).
                let score = |cls: usize| scores[(k * c + cls) * plane + hw] * o;
                if multi_label {
                    for cls in 0..c {
                        let s = score(cls);
                        if s > score_thr {
                            cands.push((s, prior * c + cls));
                        }
                    }
                } else {
                    // `scores.max(1)`: first maximum; NaN wins (and then fails the threshold).
                    let (mut best, mut label) = (score(0), 0usize);
                    for cls in 1..c {
                        let s = score(cls);
                        if s > best || (s.is_nan() && !best.is_nan()) {
                            (best, label) = (s, cls);
                        }
                    }
                    if best > score_thr {
                        cands.push((best, prior * c + label));
                    }
                }
            }
        }
        total += plane * a;
    }
    // filter_scores_and_topk with `nms_pre` over all levels jointly (:403-419).
    topk_sorted(&mut cands, nms_pre);

    let mut dets = RawDetections::default();
    for &(score, flat) in &cands {
        let (prior, label) = (flat / c, flat % c);
        let li = starts.partition_point(|&s| s <= prior).saturating_sub(1);
        let local = prior - starts[li];
        let (hw, k) = (local / a, local % a);
        let mut b = levels[li].decode_box(n, a, hw, k);
        // rescale (:423-429): subtract [left, top, left, top], divide by float32 scale factor.
        if let Some(pad) = meta.pad_param {
            b = [b[0] - pad[2], b[1] - pad[0], b[2] - pad[2], b[3] - pad[0]];
        }
        let (sw, sh) = (meta.scale_factor[0] as f32, meta.scale_factor[1] as f32);
        dets.bboxes
            .push([b[0] / sw, b[1] / sh, b[2] / sw, b[3] / sh]);
        dets.scores.push(score);
        dets.labels.push(label);
    }

    let mut dets = if cfg.yolox_style {
        // `cfg.max_per_img = len(results)` (:431-433): everything NMS keeps.
        let uncapped = TestCfg {
            max_per_img: Some(dets.len() as i64),
            ..cfg.clone()
        };
        bbox_post_process(dets, &uncapped)?
    } else {
        bbox_post_process(dets, cfg)?
    };
    // Clamp to the original image after NMS (:441-442).
    let (h, w) = (meta.ori_shape[0] as f32, meta.ori_shape[1] as f32);
    for b in &mut dets.bboxes {
        *b = [
            clamp(b[0], 0.0, w),
            clamp(b[1], 0.0, h),
            clamp(b[2], 0.0, w),
            clamp(b[3], 0.0, h),
        ];
    }
    Ok(dets)
}

/// One level of `MlvlPointGenerator` priors as `YOLOv5Head.predict_by_feat` uses them for
/// YOLOX: points `((col + offset)·stride_w, (row + offset)·stride_h)` and the head's
/// `featmap_strides[i]` that `YOLOXBBoxCoder.decode` scales with.
#[derive(Debug, Clone, PartialEq)]
pub struct PointLevelSpec {
    /// `(w, h)` stride placing the points (`prior_generator.strides[i]`).
    pub stride: (f64, f64),
    /// `prior_generator.offset` (0 for YOLOX).
    pub offset: f64,
    /// `head_module.featmap_strides[i]` (`flatten_stride` of `predict_by_feat`).
    pub decode_stride: f64,
}

/// One level of a point head with objectness (YOLOX) on the host, NCHW row-major float32.
#[derive(Debug, Clone)]
pub struct PointHostLevel {
    pub height: usize,
    pub width: usize,
    pub spec: PointLevelSpec,
    /// `sigmoid(cls_score)`, (N, C, H, W).
    pub scores: Vec<f32>,
    /// `bbox_pred` as the head returns it (`YOLOXBBoxCoder` reads raw values), (N, 4, H, W).
    pub boxes: Vec<f32>,
    /// `sigmoid(objectness)`, (N, 1, H, W).
    pub objectness: Vec<f32>,
}

/// All levels of one batch of point-head outputs with objectness on the host.
#[derive(Debug, Clone)]
pub struct PointHostOutputs {
    pub batch: usize,
    pub num_classes: usize,
    pub levels: Vec<PointHostLevel>,
}

/// Copies YOLOX head outputs to the host with the sigmoids `predict_by_feat` applies
/// (`flatten_cls_scores.sigmoid()`, `flatten_objectness.sigmoid()`; the box predictions stay
/// raw), checking every level's shape.
pub fn point_head_outputs_to_host(
    cls_scores: &[Tensor],
    bbox_preds: &[Tensor],
    objectnesses: &[Tensor],
    levels: &[PointLevelSpec],
) -> Result<PointHostOutputs, PostprocessError> {
    let n_levels = levels.len();
    if n_levels == 0 || [cls_scores.len(), bbox_preds.len(), objectnesses.len()] != [n_levels; 3] {
        return Err(PostprocessError::Shape(format!(
            "{} class-score levels, {} box levels, {} objectness levels and {} prior levels; \
             they must be equal and non-zero",
            cls_scores.len(),
            bbox_preds.len(),
            objectnesses.len(),
            n_levels
        )));
    }
    let mut out = PointHostOutputs {
        batch: 0,
        num_classes: 0,
        levels: Vec::with_capacity(n_levels),
    };
    for (l, spec) in levels.iter().enumerate() {
        let size = |t: &Tensor, what: &str| {
            t.size4().map_err(|e| {
                PostprocessError::Shape(format!("level {l}: {what} must be N,C,H,W: {e}"))
            })
        };
        let (n, c, h, w) = size(&cls_scores[l], "class scores")?;
        let reg = size(&bbox_preds[l], "box predictions")?;
        let obj = size(&objectnesses[l], "objectness")?;
        if reg != (n, 4, h, w) || obj != (n, 1, h, w) {
            return Err(PostprocessError::Shape(format!(
                "level {l}: box predictions {reg:?} and objectness {obj:?} disagree with class \
                 scores {:?} (expected ({n}, 4, {h}, {w}) and ({n}, 1, {h}, {w}))",
                (n, c, h, w)
            )));
        }
        if l == 0 {
            (out.batch, out.num_classes) = (n as usize, c as usize);
        } else if (n as usize, c as usize) != (out.batch, out.num_classes) {
            return Err(PostprocessError::Shape(format!(
                "level {l} has batch {n} and {c} classes, level 0 has {} and {}",
                out.batch, out.num_classes
            )));
        }
        out.levels.push(PointHostLevel {
            height: h as usize,
            width: w as usize,
            spec: spec.clone(),
            scores: sigmoid_to_vec(&cls_scores[l], "sigmoid of class scores")?,
            boxes: tensor_to_vec(&bbox_preds[l], "copying box predictions to the host")?,
            objectness: sigmoid_to_vec(&objectnesses[l], "sigmoid of objectness")?,
        });
    }
    Ok(out)
}

/// `predict_by_feat(..., rescale=True)` of `YOLOXHead` (i.e. `YOLOv5Head`'s) on host outputs: one
/// result per image.
pub fn predict_by_feat_points(
    outputs: &PointHostOutputs,
    metas: &[ImageMeta],
    cfg: &TestCfg,
) -> Result<Vec<RawDetections>, PostprocessError> {
    check_batch(metas, outputs.batch)?;
    (metas.iter().enumerate())
        .map(|(n, meta)| {
            predict_single_with(&outputs.levels, (outputs.num_classes, 1), n, meta, cfg)
        })
        .collect()
}

/// `YOLOXBBoxCoder.decode` (`mmyolo/models/task_modules/coders/yolox_bbox_coder.py:22-45`) of the
/// raw prediction `p` at the point `(px, py)`, op by op in float32: `xy = p·s + prior`,
/// `wh = exp(p)·s`, corners `xy ∓ wh / 2`.
#[inline]
fn decode_yolox((px, py): (f32, f32), p: [f32; 4], stride: f32) -> [f32; 4] {
    let (x, y) = (p[0] * stride + px, p[1] * stride + py);
    let (w, h) = (p[2].exp() * stride, p[3].exp() * stride);
    [x - w / 2.0, y - h / 2.0, x + w / 2.0, y + h / 2.0]
}

impl ObjectnessLevel for PointHostLevel {
    fn plane(&self) -> usize {
        self.height * self.width
    }
    fn scores(&self) -> &[f32] {
        &self.scores
    }
    fn objectness(&self) -> &[f32] {
        &self.objectness
    }
    fn stride(&self) -> (f64, f64) {
        self.spec.stride
    }
    /// One point per location (`a` = 1, `k` = 0).
    fn decode_box(&self, n: usize, _a: usize, hw: usize, _k: usize) -> [f32; 4] {
        let plane = self.plane();
        let base = n * 4 * plane + hw;
        let p =
            [0, 1, 2, 3].map(|j| (self.boxes.get(base + j * plane).copied()).unwrap_or(f32::NAN));
        // `MlvlPointGenerator.single_level_grid_priors`: `(arange(W) + offset) * stride_w` in
        // float32.
        let offset = self.spec.offset as f32;
        let px = ((hw % self.width) as f32 + offset) * self.spec.stride.0 as f32;
        let py = ((hw / self.width) as f32 + offset) * self.spec.stride.1 as f32;
        decode_yolox((px, py), p, self.spec.decode_stride as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The P5 anchors of level 0 as `YOLOAnchorGenerator` builds them (`base_anchors[0]`).
    #[test]
    fn base_anchors_follow_yolo_anchor_generator() {
        let spec = AnchorLevelSpec {
            stride: (8.0, 8.0),
            base_sizes: vec![(10.0, 13.0), (16.0, 30.0), (33.0, 23.0)],
            decode_stride: 8.0,
        };
        assert_eq!(
            spec.base_anchors(),
            vec![
                [-1.0, -2.5, 9.0, 10.5],
                [-4.0, -11.0, 12.0, 19.0],
                [-12.5, -7.5, 20.5, 15.5]
            ]
        );
    }

    /// `p = 0.5` everywhere decodes to the anchor itself (centre unchanged, `(2·0.5)² = 1`).
    #[test]
    fn neutral_offsets_decode_to_the_anchor() {
        let prior = [-12.5 + 16.0, -7.5 + 8.0, 20.5 + 16.0, 15.5 + 8.0];
        assert_eq!(decode(prior, [0.5; 4], 8.0), prior);
        // x: (0.75 - 0.5)·2·8 = 4 px right; w: (2·0.75)² = 2.25× the anchor's 33 px.
        let b = decode(prior, [0.75, 0.5, 0.75, 0.5], 8.0);
        let (cx, w) = ((b[0] + b[2]) / 2.0, b[2] - b[0]);
        assert_eq!((cx, w), (20.0 + 4.0, 33.0 * 2.25));
    }

    /// One level of 1×2 locations, one anchor, two classes: the objectness prefilter, the score
    /// product, multi- vs single-label candidates, the rescale and the clamp.
    #[test]
    fn objectness_gates_and_multiplies_the_scores() {
        let spec = AnchorLevelSpec {
            stride: (8.0, 8.0),
            base_sizes: vec![(8.0, 8.0)],
            decode_stride: 8.0,
        };
        let level = AnchorHostLevel {
            height: 1,
            width: 2,
            base_anchors: spec.base_anchors(),
            spec,
            // (N=1, A·C=2, H=1, W=2): class 0 then class 1, each over the two locations.
            scores: vec![0.9, 0.5, 0.2, 0.8],
            boxes: vec![0.5; 8],
            // location 0 passes `obj > 0.1`, location 1 does not (0.1 is not > 0.1).
            objectness: vec![0.5, 0.1],
        };
        let out = AnchorHostOutputs {
            batch: 1,
            num_classes: 2,
            num_base_priors: 1,
            levels: vec![level],
        };
        let meta = ImageMeta {
            ori_shape: [4, 4],
            img_shape: [8, 16],
            scale_factor: [2.0, 2.0],
            pad_param: Some([0.0, 0.0, 0.0, 0.0]),
        };
        let mut cfg = TestCfg {
            multi_label: Some(true),
            score_thr: Some(0.1),
            max_per_img: Some(10),
            ..TestCfg::default()
        };
        let dets = predict_single(&out, 0, &meta, &cfg).expect("multi-label");
        assert_eq!(dets.labels, vec![0]);
        assert_eq!(dets.scores, vec![0.9f32 * 0.5]);
        // The anchor [0, 0, 8, 8] / 2, clamped to the 4×4 image.
        assert_eq!(dets.bboxes, vec![[0.0, 0.0, 4.0, 4.0]]);
        // Without the prefilter (score_thr <= 0) location 1 is kept too, scaled by its 0.1.
        cfg.score_thr = Some(0.0);
        let dets = predict_single(&out, 0, &meta, &cfg).expect("no prefilter");
        assert_eq!(dets.labels, vec![0, 1, 1, 0]); // 0.45, 0.1, 0.08, 0.05
                                                   // Single-label: the best class per prior only.
        cfg.multi_label = Some(false);
        let dets = predict_single(&out, 0, &meta, &cfg).expect("single-label");
        assert_eq!(dets.labels, vec![0, 1]);
        assert_eq!(dets.scores, vec![0.9f32 * 0.5, 0.8f32 * 0.1]);
    }

    /// `YOLOXBBoxCoder.decode` at an offset-0 point prior: zero logits are a stride-sized box
    /// centred on the point; `xy` moves by `p·stride`, `wh` scales by `exp(p)`.
    #[test]
    fn yolox_decode_follows_yolox_bbox_coder() {
        assert_eq!(
            decode_yolox((16.0, 8.0), [0.0; 4], 8.0),
            [12.0, 4.0, 20.0, 12.0]
        );
        let b = decode_yolox((16.0, 8.0), [0.5, -0.25, 0.0, 0.0], 8.0);
        assert_eq!(b, [16.0, 2.0, 24.0, 10.0]);
        let b = decode_yolox((16.0, 8.0), [0.0, 0.0, std::f32::consts::LN_2, 0.0], 8.0);
        assert!(((b[2] - b[0]) - 16.0).abs() < 1e-5, "{b:?}");
    }

    /// One YOLOX level of 1×2 points, two classes: `yolox_style` skips the objectness prefilter
    /// (here without effect: `score > thr` implies `obj > thr`) and keeps everything NMS keeps
    /// (`max_per_img = len(results)`), where the plain path caps at `max_per_img`.
    #[test]
    fn yolox_style_keeps_every_box_nms_keeps() {
        let level = PointHostLevel {
            height: 1,
            width: 2,
            spec: PointLevelSpec {
                stride: (8.0, 8.0),
                offset: 0.0,
                decode_stride: 8.0,
            },
            // (N=1, C=2, H=1, W=2): class 0 then class 1.
            scores: vec![0.9, 0.6, 0.8, 0.7],
            boxes: vec![0.0; 8],
            objectness: vec![0.5, 0.5],
        };
        let out = PointHostOutputs {
            batch: 1,
            num_classes: 2,
            levels: vec![level],
        };
        let meta = ImageMeta {
            ori_shape: [16, 32],
            img_shape: [16, 32],
            scale_factor: [1.0, 1.0],
            pad_param: None,
        };
        let mut cfg = TestCfg {
            multi_label: Some(true),
            score_thr: Some(0.01),
            max_per_img: Some(1),
            ..TestCfg::default()
        };
        let one = |cfg: &TestCfg| {
            predict_by_feat_points(&out, std::slice::from_ref(&meta), cfg)
                .expect("predict")
                .remove(0)
        };
        assert_eq!(one(&cfg).labels, vec![0]);
        cfg.yolox_style = true;
        let dets = one(&cfg);
        // Scores 0.45, 0.4, 0.35, 0.3 (no NMS configured): all four, sorted.
        assert_eq!(dets.labels, vec![0, 1, 1, 0]);
        assert_eq!(
            dets.scores,
            vec![0.9f32 * 0.5, 0.8 * 0.5, 0.7 * 0.5, 0.6 * 0.5]
        );
        // Point (0, 0) with zero logits: [-4, -4, 4, 4], clamped to the image after NMS.
        assert_eq!(dets.bboxes[..2], [[0.0, 0.0, 4.0, 4.0]; 2]);
        // Point (8, 0): [4, -4, 12, 4].
        assert_eq!(dets.bboxes[2], [4.0, 0.0, 12.0, 4.0]);
    }
}
