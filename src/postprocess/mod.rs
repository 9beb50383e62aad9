//! RTMDet post-processing: raw head outputs → final detections, exactly as the heads'
//! `predict_by_feat` computes them (mmyolo and mmdet flavours), driven by the `test_cfg` the
//! core's spec stage parsed (`mmcompat_registry::spec::test_cfg`).
//!
//! Split of work: tensor-wide, order-free operations (sigmoid, dtype/device moves) run in
//! libtorch; everything order-sensitive (score threshold, top-k, decode of the
//! kept priors, rescale, NMS, `max_per_img`, clamp) runs in plain Rust on host vectors, with a
//! deterministic tie-break (score descending, then index ascending) where torch's sort is not
//! stable. Decoding only the kept priors gives the same values as upstream's decode-everything
//! (the operations are element-wise) at a fraction of the cost.
//!
//! Never: build boxes from anything but the head outputs and the image metas; panic on bad input.

pub mod mmdet_dense;
pub mod nms;
#[cfg(test)]
mod tests;
pub mod two_stage;
pub mod yolov5;

pub use mmcompat_registry::spec::test_cfg::{NmsCfg, TestCfg};
pub use nms::batched_nms;

use tch::{Device, Kind, Tensor};

/// Which upstream head's `predict_by_feat` to mirror (decided by the built head). The two differ
/// in where the stride is applied, top-k scope, clamping and rescaling
/// (shared/openmmlab/behaviour.md 4.3 and 4.4).
pub use crate::models::Flavour as HeadFlavour;

/// The image metainfo `predict_by_feat` reads (what the test pipeline's `PackDetInputs` packs).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMeta {
    /// `ori_shape` (height, width) of the decoded image.
    pub ori_shape: [usize; 2],
    /// `img_shape` (height, width) after the pipeline; mmdet's `Pad` overwrites it with the padded
    /// size, which is what its decode clamps to.
    pub img_shape: [usize; 2],
    /// `scale_factor` (w, h) as the pipeline's Python floats (float64).
    pub scale_factor: [f64; 2],
    /// mmyolo `LetterResize`'s `pad_param` `[top, bottom, left, right]` (float32), if any.
    pub pad_param: Option<[f32; 4]>,
}

/// Final detections of one image, in output order (descending score).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawDetections {
    /// `[x1, y1, x2, y2]` in original-image pixels.
    pub bboxes: Vec<[f32; 4]>,
    pub scores: Vec<f32>,
    pub labels: Vec<usize>,
}

impl RawDetections {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

/// One pyramid level of head outputs copied to the host: sigmoid scores and box regressions in
/// NCHW order, float32.
#[derive(Debug, Clone)]
pub struct HostLevel {
    pub height: usize,
    pub width: usize,
    /// `(w, h)` stride of the level (`prior_generator.strides`).
    pub stride: (f64, f64),
    /// `MlvlPointGenerator.offset` (0 for RTMDet).
    pub offset: f64,
    /// `sigmoid(cls_score)`, shape (N, C, H, W), row-major.
    pub scores: Vec<f32>,
    /// `bbox_pred`, shape (N, 4, H, W), row-major: distances (left, top, right, bottom); in stride
    /// units for mmyolo, already multiplied by the stride for mmdet.
    pub bbox_preds: Vec<f32>,
}

/// All levels of one batch of head outputs on the host.
#[derive(Debug, Clone)]
pub struct HostHeadOutputs {
    pub batch: usize,
    pub num_classes: usize,
    pub levels: Vec<HostLevel>,
}

/// Errors of post-processing (a malformed `test_cfg` is the spec stage's `SpecError`).
#[derive(Debug, thiserror::Error)]
pub enum PostprocessError {
    #[error("{section}.{key} is required (upstream reads it as an attribute and would raise AttributeError)")]
    MissingKey {
        section: &'static str,
        key: &'static str,
    },
    #[error("head outputs: {0}")]
    Shape(String),
    #[error("{what}: {source}")]
    Tch {
        what: &'static str,
        #[source]
        source: tch::TchError,
    },
}

pub(crate) fn tch_err(what: &'static str) -> impl FnOnce(tch::TchError) -> PostprocessError {
    move |source| PostprocessError::Tch { what, source }
}

/// Copies a float tensor to a host `Vec<f32>` (any device, any float kind).
pub(crate) fn tensor_to_vec(t: &Tensor, what: &'static str) -> Result<Vec<f32>, PostprocessError> {
    let t = t
        .f_to_kind(Kind::Float)
        .and_then(|t| t.f_to_device(Device::Cpu))
        .and_then(|t| t.f_contiguous())
        .map_err(tch_err(what))?;
    let numel = t.numel();
    let mut out = vec![0f32; numel];
    t.f_copy_data(&mut out, numel).map_err(tch_err(what))?;
    Ok(out)
}

/// Moves the head outputs to the host: sigmoid of the class logits in float32 (the heads'
/// `flatten_cls_scores.sigmoid()` / `cls_score.sigmoid()`), regressions as they are.
pub fn head_outputs_to_host(
    cls_scores: &[Tensor],
    bbox_preds: &[Tensor],
    strides: &[(f64, f64)],
    prior_offset: f64,
) -> Result<HostHeadOutputs, PostprocessError> {
    if cls_scores.len() != bbox_preds.len()
        || cls_scores.len() != strides.len()
        || cls_scores.is_empty()
    {
        return Err(PostprocessError::Shape(format!(
            "{} class-score levels, {} box levels and {} strides; they must be equal and non-zero",
            cls_scores.len(),
            bbox_preds.len(),
            strides.len()
        )));
    }
    let mut levels = Vec::with_capacity(cls_scores.len());
    let (mut batch, mut num_classes) = (0usize, 0usize);
    for (level, ((cls, reg), &stride)) in cls_scores.iter().zip(bbox_preds).zip(strides).enumerate()
    {
        let (n, c, h, w) = cls.size4().map_err(|e| {
            PostprocessError::Shape(format!("level {level}: class scores must be N,C,H,W: {e}"))
        })?;
        let (rn, r4, rh, rw) = reg.size4().map_err(|e| {
            PostprocessError::Shape(format!(
                "level {level}: box predictions must be N,4,H,W: {e}"
            ))
        })?;
        if (rn, r4, rh, rw) != (n, 4, h, w) {
            return Err(PostprocessError::Shape(format!(
                "level {level}: class scores {:?} and box predictions {:?} disagree (expected [{n}, 4, {h}, {w}])",
                [n, c, h, w],
                [rn, r4, rh, rw]
            )));
        }
        if level == 0 {
            (batch, num_classes) = (n as usize, c as usize);
        } else if (n as usize, c as usize) != (batch, num_classes) {
            return Err(PostprocessError::Shape(format!(
                "level {level} has batch {n} and {c} classes, level 0 has {batch} and {num_classes}"
            )));
        }
        let sig = cls
            .f_to_kind(Kind::Float)
            .and_then(|t| t.f_sigmoid())
            .map_err(tch_err("sigmoid of class scores"))?;
        levels.push(HostLevel {
            height: h as usize,
            width: w as usize,
            stride,
            offset: prior_offset,
            scores: tensor_to_vec(&sig, "copying class scores to the host")?,
            bbox_preds: tensor_to_vec(reg, "copying box predictions to the host")?,
        });
    }
    Ok(HostHeadOutputs {
        batch,
        num_classes,
        levels,
    })
}

/// `predict_by_feat(..., rescale=True)` of the chosen head on host outputs: one result per image.
pub fn predict_by_feat(
    flavour: HeadFlavour,
    outputs: &HostHeadOutputs,
    metas: &[ImageMeta],
    cfg: &TestCfg,
) -> Result<Vec<RawDetections>, PostprocessError> {
    if metas.len() != outputs.batch {
        return Err(PostprocessError::Shape(format!(
            "{} image metas for a batch of {}",
            metas.len(),
            outputs.batch
        )));
    }
    metas
        .iter()
        .enumerate()
        .map(|(n, meta)| match flavour {
            HeadFlavour::Mmyolo => predict_single_mmyolo(outputs, n, meta, cfg),
            HeadFlavour::Mmdet => predict_single_mmdet(outputs, n, meta, cfg),
        })
        .collect()
}

/// Python slice end `[:stop]` for a sequence of `len` items (negative stops count from the end).
fn py_slice_end(len: usize, stop: i64) -> usize {
    if stop >= 0 {
        (stop as usize).min(len)
    } else {
        len.saturating_sub(stop.unsigned_abs() as usize)
    }
}

/// `mmdet/models/utils/misc.py: filter_scores_and_topk` minus the threshold (already applied by
/// the caller while gathering): keeps the `topk` best `(score, flat_index)` pairs, sorted by
/// score descending then index ascending.
pub(crate) fn topk_sorted(cands: &mut Vec<(f32, usize)>, topk: i64) {
    let keep = py_slice_end(cands.len(), topk.min(cands.len() as i64));
    if keep == 0 {
        cands.clear();
        return;
    }
    if keep < cands.len() {
        cands.select_nth_unstable_by(keep - 1, |&a, &b| nms::score_desc_then_index(a, b));
        cands.truncate(keep);
    }
    cands.sort_unstable_by(|&a, &b| nms::score_desc_then_index(a, b));
}

/// Prior (x, y) of flat position `hw` on a level: `MlvlPointGenerator(offset=0)` grid, row-major
/// with x fastest (`mmdet/models/task_modules/prior_generators/point_generator.py:
/// single_level_grid_priors`).
#[inline]
fn prior_xy(level: &HostLevel, hw: usize) -> (f32, f32) {
    // `(arange(W) + offset) * stride_w` in float32 (int64 arange + Python float → float32).
    let offset = level.offset as f32;
    let x = ((hw % level.width) as f32 + offset) * level.stride.0 as f32;
    let y = ((hw / level.width) as f32 + offset) * level.stride.1 as f32;
    (x, y)
}

/// Box distances of image `n` at flat position `hw`.
#[inline]
fn distances(level: &HostLevel, n: usize, hw: usize) -> [f32; 4] {
    let plane = level.height * level.width;
    let base = n * 4 * plane + hw;
    let at = |k: usize| {
        level
            .bbox_preds
            .get(base + k * plane)
            .copied()
            .unwrap_or(f32::NAN)
    };
    [at(0), at(1), at(2), at(3)]
}

/// `distance2bbox` (`mmdet/structures/bbox/transforms.py:147-181`) without clamping.
#[inline]
fn distance2bbox((px, py): (f32, f32), d: [f32; 4]) -> [f32; 4] {
    [px - d[0], py - d[1], px + d[2], py + d[3]]
}

/// `Tensor.clamp_(min, max)`: NaN stays NaN.
#[inline]
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// mmyolo: `YOLOv5Head.predict_by_feat` (mmyolo 0.6.0 `yolov5_head.py:276-445`) for image `n`.
fn predict_single_mmyolo(
    out: &HostHeadOutputs,
    n: usize,
    meta: &ImageMeta,
    cfg: &TestCfg,
) -> Result<RawDetections, PostprocessError> {
    let c = out.num_classes;
    // `multi_label &= self.num_classes > 1` (:327-329).
    let multi_label = cfg.multi_label.ok_or(PostprocessError::MissingKey {
        section: "test_cfg",
        key: "multi_label",
    })? && c > 1;
    // `score_thr = cfg.get('score_thr', -1)`; the comparison runs in float32.
    let score_thr = cfg.score_thr.unwrap_or(-1.0) as f32;
    let nms_pre = cfg.nms_pre.unwrap_or(100_000);
    // Level start offsets in the flattened prior list (levels concatenated 8 → 16 → 32).
    let mut starts = Vec::with_capacity(out.levels.len());
    let mut total = 0usize;
    for level in &out.levels {
        starts.push(total);
        total += level.height * level.width;
    }

    // filter_scores_and_topk over all levels jointly (:403-416); flat index = prior * C + class
    // for multi-label, prior for single-label (scores.max(1) first).
    let mut cands: Vec<(f32, usize)> = Vec::new();
    let mut single_labels: Vec<usize> = Vec::new();
    for (level, &start) in out.levels.iter().zip(&starts) {
        let plane = level.height * level.width;
        let base = n * c * plane;
        let scores = level.scores.get(base..base + c * plane).ok_or_else(|| {
            PostprocessError::Shape(format!("level of stride {:?} is truncated", level.stride))
        })?;
        if multi_label {
            for cls in 0..c {
                let row = &scores[cls * plane..(cls + 1) * plane];
                for (hw, &s) in row.iter().enumerate() {
                    if s > score_thr {
                        cands.push((s, (start + hw) * c + cls));
                    }
                }
            }
        } else {
            for hw in 0..plane {
                // torch.max(dim): first maximum; NaN wins (and then fails the threshold).
                let (mut best, mut label) = (scores[hw], 0usize);
                for cls in 1..c {
                    let s = scores[cls * plane + hw];
                    if s > best || (s.is_nan() && !best.is_nan()) {
                        best = s;
                        label = cls;
                    }
                }
                single_labels.push(label);
                if best > score_thr {
                    cands.push((best, start + hw));
                }
            }
        }
    }
    topk_sorted(&mut cands, nms_pre);

    let locate = |prior: usize| -> (usize, usize) {
        let level = starts.partition_point(|&s| s <= prior).saturating_sub(1);
        (level, prior - starts[level])
    };
    let mut dets = RawDetections::default();
    for &(score, flat) in &cands {
        let (prior, label) = if multi_label {
            (flat / c, flat % c)
        } else {
            (flat, single_labels.get(flat).copied().unwrap_or(0))
        };
        let (li, hw) = locate(prior);
        let level = &out.levels[li];
        // DistancePointBBoxCoder.decode: `pred_bboxes * stride` (the scalar `featmap_strides`
        // entry), then distance2bbox, no clamp.
        let stride = level.stride.0 as f32;
        let d = distances(level, n, hw).map(|v| v * stride);
        let mut b = distance2bbox(prior_xy(level, hw), d);
        // rescale (:423-429): subtract [left, top, left, top], divide by float32 scale factor.
        if let Some(p) = meta.pad_param {
            b = [b[0] - p[2], b[1] - p[0], b[2] - p[2], b[3] - p[0]];
        }
        let (sw, sh) = (meta.scale_factor[0] as f32, meta.scale_factor[1] as f32);
        b = [b[0] / sw, b[1] / sh, b[2] / sw, b[3] / sh];
        dets.bboxes.push(b);
        dets.scores.push(score);
        dets.labels.push(label);
    }

    let mut dets = bbox_post_process(dets, cfg)?;
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

/// mmdet: `BaseDenseHead._predict_by_feat_single` (mmdet 3.3.0 `base_dense_head.py:291-428`).
fn predict_single_mmdet(
    out: &HostHeadOutputs,
    n: usize,
    meta: &ImageMeta,
    cfg: &TestCfg,
) -> Result<RawDetections, PostprocessError> {
    let c = out.num_classes;
    let nms_pre = cfg.nms_pre.unwrap_or(-1);
    // `score_thr = cfg.get('score_thr', 0)`, compared in float32.
    let score_thr = cfg.score_thr.unwrap_or(0.0) as f32;
    let (img_h, img_w) = (meta.img_shape[0] as f32, meta.img_shape[1] as f32);
    // `scale_factor = [1 / s for s in img_meta['scale_factor']]` (float64), then
    // `boxes * new_tensor(scale_factor)` (float32) in `scale_boxes`.
    let inv = [
        (1.0 / meta.scale_factor[0]) as f32,
        (1.0 / meta.scale_factor[1]) as f32,
    ];
    let mut dets = RawDetections::default();
    for level in &out.levels {
        let plane = level.height * level.width;
        let base = n * c * plane;
        let scores = level.scores.get(base..base + c * plane).ok_or_else(|| {
            PostprocessError::Shape(format!("level of stride {:?} is truncated", level.stride))
        })?;
        // Per level: filter_scores_and_topk on (H*W, C) scores; flat index = hw * C + class.
        let mut cands: Vec<(f32, usize)> = Vec::new();
        for cls in 0..c {
            for (hw, &s) in scores[cls * plane..(cls + 1) * plane].iter().enumerate() {
                if s > score_thr {
                    cands.push((s, hw * c + cls));
                }
            }
        }
        topk_sorted(&mut cands, nms_pre);
        for &(score, flat) in &cands {
            let (hw, label) = (flat / c, flat % c);
            // decode with max_shape=img_shape: clamp x to [0, W], y to [0, H] (transforms.py:176-181).
            let b = distance2bbox(prior_xy(level, hw), distances(level, n, hw));
            let b = [
                clamp(b[0], 0.0, img_w),
                clamp(b[1], 0.0, img_h),
                clamp(b[2], 0.0, img_w),
                clamp(b[3], 0.0, img_h),
            ];
            dets.bboxes
                .push([b[0] * inv[0], b[1] * inv[1], b[2] * inv[0], b[3] * inv[1]]);
            dets.scores.push(score);
            dets.labels.push(label);
        }
    }
    bbox_post_process(dets, cfg)
}

/// `BaseDenseHead._bbox_post_process(rescale=False)` (`base_dense_head.py:430-492`):
/// `min_bbox_size` filter, batched NMS, first `max_per_img`.
pub(crate) fn bbox_post_process(
    dets: RawDetections,
    cfg: &TestCfg,
) -> Result<RawDetections, PostprocessError> {
    let mut dets = dets;
    if let Some(min) = cfg.min_bbox_size.filter(|&m| m >= 0.0) {
        let min = min as f32;
        let keep: Vec<bool> = dets
            .bboxes
            .iter()
            .map(|b| (b[2] - b[0]) > min && (b[3] - b[1]) > min)
            .collect();
        if keep.iter().any(|k| !k) {
            dets = select(
                &dets,
                keep.iter().enumerate().filter(|(_, &k)| k).map(|(i, _)| i),
            );
        }
    }
    if dets.is_empty() {
        return Ok(dets);
    }
    // batched_nms(nms_cfg=None) only sorts by score: `batched_nms_or_sort` covers both.
    let order =
        nms::batched_nms_or_sort(&dets.bboxes, &dets.scores, &dets.labels, cfg.nms.as_ref());
    let max_per_img = cfg.max_per_img.ok_or(PostprocessError::MissingKey {
        section: "test_cfg",
        key: "max_per_img",
    })?;
    let end = py_slice_end(order.len(), max_per_img);
    Ok(select(&dets, order[..end].iter().copied()))
}

fn select(dets: &RawDetections, idx: impl Iterator<Item = usize>) -> RawDetections {
    let mut out = RawDetections::default();
    for i in idx {
        if let (Some(b), Some(s), Some(l)) =
            (dets.bboxes.get(i), dets.scores.get(i), dets.labels.get(i))
        {
            out.bboxes.push(*b);
            out.scores.push(*s);
            out.labels.push(*l);
        }
    }
    out
}
