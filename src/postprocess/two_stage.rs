//! mmdet's two-stage post-processing on host vectors:
//! * the RPN's proposals, `RPNHead._predict_by_feat_single` + `_bbox_post_process`
//!   (`mmdet/models/dense_heads/rpn_head.py:134-296`): per level the objectness scores, the
//!   `nms_pre` best by a descending sort when `0 < nms_pre < priors` (`:205-212`, else all), decode
//!   with `max_shape = img_shape` (`:226`), the `min_bbox_size` filter (`w > 0 & h > 0` on the
//!   shipped configs, `:276-280`), mmcv `batched_nms` with the level index as the class (`:284-285`:
//!   levels never suppress each other) and the first `max_per_img` (`:289`);
//! * the box head's detections, `BBoxHead._predict_by_feat_single`
//!   (`mmdet/models/roi_heads/bbox_heads/bbox_head.py:476-570`) + `multiclass_nms`
//!   (`mmdet/models/layers/bbox_nms.py:12-100`): softmax scores with the background last, the
//!   class-specific delta decoded on its RoI (clamped to `img_shape`), `× 1/scale_factor`, every
//!   `(roi, class)` pair with `score > score_thr` in row-major order, `batched_nms` by class, the
//!   first `max_per_img` when it is > 0.
//!
//! As in `mmdet_dense`, only kept candidates are decoded (element-wise, so the same values) and
//! sorts break ties by index (`nms::score_desc_then_index`).

use super::mmdet_dense::{DecodeFn, DenseOutputs};
use super::nms::batched_nms_or_sort;
use super::{bbox_post_process, topk_sorted, ImageMeta, PostprocessError, RawDetections, TestCfg};

/// Region proposals of one image: boxes `[x1, y1, x2, y2]` (on the network input unless rescaled)
/// and objectness scores, by descending score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proposals {
    pub bboxes: Vec<[f32; 4]>,
    pub scores: Vec<f32>,
}

/// `(1/sw, 1/sh)` as `scale_boxes(bboxes, [1 / s for s in scale_factor])` multiplies: float64
/// reciprocals rounded to float32.
fn inverse_scale(meta: &ImageMeta) -> [f32; 2] {
    [
        (1.0 / meta.scale_factor[0]) as f32,
        (1.0 / meta.scale_factor[1]) as f32,
    ]
}

/// `RPNHead.predict_by_feat(..., rescale)` on host outputs (one score column per prior): one
/// proposal list per image.
pub fn rpn_proposals(
    out: &DenseOutputs,
    metas: &[ImageMeta],
    cfg: &TestCfg,
    decode: &DecodeFn<'_>,
    rescale: bool,
) -> Result<Vec<Proposals>, PostprocessError> {
    if metas.len() != out.batch || out.num_classes != 1 {
        return Err(PostprocessError::Shape(format!(
            "{} image metas for a batch of {} with {} score columns (an RPN has 1)",
            metas.len(),
            out.batch,
            out.num_classes
        )));
    }
    metas
        .iter()
        .enumerate()
        .map(|(n, meta)| rpn_single(out, n, meta, cfg, decode, rescale))
        .collect()
}

fn rpn_single(
    out: &DenseOutputs,
    n: usize,
    meta: &ImageMeta,
    cfg: &TestCfg,
    decode: &DecodeFn<'_>,
    rescale: bool,
) -> Result<Proposals, PostprocessError> {
    let nms_pre = cfg.nms_pre.unwrap_or(-1);
    let max_shape = [meta.img_shape[0] as f32, meta.img_shape[1] as f32];
    let inv = inverse_scale(meta);
    let mut dets = RawDetections::default();
    for (li, level) in out.levels.iter().enumerate() {
        let p = level.num_priors();
        let truncated =
            || PostprocessError::Shape(format!("level {li} is truncated for image {n}"));
        let scores = level.scores.get(n * p..(n + 1) * p).ok_or_else(truncated)?;
        let regs = level
            .bbox_preds
            .get(n * p * 4..(n + 1) * p * 4)
            .ok_or_else(truncated)?;
        let mut cands: Vec<(f32, usize)> = scores.iter().copied().zip(0..).collect();
        if 0 < nms_pre && (nms_pre as usize) < p {
            // `scores.sort(descending=True)[:nms_pre]`; torch's sort is not stable, ties here
            // go to the lower prior index.
            topk_sorted(&mut cands, nms_pre);
        }
        for (score, prior) in cands {
            let mut b = decode(li, prior, &regs[prior * 4..prior * 4 + 4], max_shape);
            if rescale {
                b = [b[0] * inv[0], b[1] * inv[1], b[2] * inv[0], b[3] * inv[1]];
            }
            dets.bboxes.push(b);
            dets.scores.push(score);
            dets.labels.push(li);
        }
    }
    // `min_bbox_size` filter, batched NMS by level id and `[:max_per_img]`, exactly
    // `BaseDenseHead._bbox_post_process`'s steps.
    let kept = bbox_post_process(dets, cfg)?;
    Ok(Proposals {
        bboxes: kept.bboxes,
        scores: kept.scores,
    })
}

/// One image's box-head outputs on the host: `scores` `(R, C + 1)` after softmax (background
/// last), `deltas` `(R, 4·C)` (or `(R, 4)` class-agnostic).
#[derive(Debug, Clone)]
pub struct RoiOutputs<'a> {
    pub rois: &'a [[f32; 4]],
    pub scores: &'a [f32],
    pub deltas: &'a [f32],
    pub num_classes: usize,
    pub class_agnostic: bool,
}

/// The box head's coder on one RoI: `(roi, delta, max_shape (h, w)) → [x1, y1, x2, y2]`.
pub type RoiDecodeFn<'a> = dyn Fn([f32; 4], &[f32], [f32; 2]) -> [f32; 4] + 'a;

/// `BBoxHead._predict_by_feat_single(..., rescale=True, rcnn_test_cfg)` for one image; `decode`
/// is the box head's `DeltaXYWHBBoxCoder.decode(roi, delta, max_shape)`.
pub fn rcnn_detections(
    out: &RoiOutputs<'_>,
    meta: &ImageMeta,
    cfg: &TestCfg,
    decode: &RoiDecodeFn<'_>,
) -> Result<RawDetections, PostprocessError> {
    let (r, c) = (out.rois.len(), out.num_classes);
    let reg_dim = if out.class_agnostic { 4 } else { 4 * c };
    if out.scores.len() != r * (c + 1) || out.deltas.len() != r * reg_dim {
        return Err(PostprocessError::Shape(format!(
            "{r} RoIs with {} scores and {} deltas (expected {} and {})",
            out.scores.len(),
            out.deltas.len(),
            r * (c + 1),
            r * reg_dim
        )));
    }
    let score_thr = cfg.score_thr.ok_or(PostprocessError::MissingKey {
        section: "test_cfg.rcnn",
        key: "score_thr",
    })? as f32;
    let max_per_img = cfg.max_per_img.ok_or(PostprocessError::MissingKey {
        section: "test_cfg.rcnn",
        key: "max_per_img",
    })?;
    let max_shape = [meta.img_shape[0] as f32, meta.img_shape[1] as f32];
    let inv = inverse_scale(meta);
    let mut dets = RawDetections::default();
    for (i, roi) in out.rois.iter().enumerate() {
        for label in 0..c {
            // `scores = multi_scores[:, :-1]`; `valid_mask = scores > score_thr` (float32).
            let score = out.scores[i * (c + 1) + label];
            if score.is_nan() || score <= score_thr {
                continue;
            }
            let k = if out.class_agnostic { 0 } else { label };
            let d = &out.deltas[i * reg_dim + 4 * k..i * reg_dim + 4 * k + 4];
            let b = decode(*roi, d, max_shape);
            dets.bboxes
                .push([b[0] * inv[0], b[1] * inv[1], b[2] * inv[0], b[3] * inv[1]]);
            dets.scores.push(score);
            dets.labels.push(label);
        }
    }
    if dets.is_empty() {
        return Ok(dets);
    }
    let mut order = batched_nms_or_sort(&dets.bboxes, &dets.scores, &dets.labels, cfg.nms.as_ref());
    // `if max_num > 0: dets = dets[:max_num]` (`bbox_nms.py:98-100`).
    if max_per_img > 0 {
        order.truncate(max_per_img as usize);
    }
    let mut out = RawDetections::default();
    for i in order {
        out.bboxes.push(dets.bboxes[i]);
        out.scores.push(dets.scores[i]);
        out.labels.push(dets.labels[i]);
    }
    Ok(out)
}

/// Proposals of all images as `bbox2roi` rows `(batch_index, x1, y1, x2, y2)` in image order
/// (`mmdet/structures/bbox/transforms.py: bbox2roi`).
pub fn bbox2roi(proposals: &[Proposals]) -> Vec<[f32; 5]> {
    proposals
        .iter()
        .enumerate()
        .flat_map(|(n, p)| {
            p.bboxes
                .iter()
                .map(move |b| [n as f32, b[0], b[1], b[2], b[3]])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::NmsCfg;

    fn meta() -> ImageMeta {
        ImageMeta {
            ori_shape: [50, 50],
            img_shape: [100, 100],
            scale_factor: [2.0, 2.0],
            pad_param: None,
        }
    }

    fn rcnn_cfg(score_thr: f64, max_per_img: i64) -> TestCfg {
        TestCfg {
            score_thr: Some(score_thr),
            nms: Some(NmsCfg {
                iou_threshold: 0.5,
                ..NmsCfg::default()
            }),
            max_per_img: Some(max_per_img),
            ..TestCfg::default()
        }
    }

    /// multiclass_nms semantics: a strict `>` threshold on each foreground column (the background
    /// column never competes), per-class NMS (two classes on the same box both survive), boxes
    /// rescaled by `1/scale_factor`, `max_per_img <= 0` keeps everything.
    #[test]
    fn rcnn_thresholds_per_class_and_keeps_overlaps_of_other_classes() {
        let rois = [[10.0, 10.0, 30.0, 30.0], [11.0, 11.0, 31.0, 31.0]];
        // (R=2, C+1=3): class 0, class 1, background.
        let scores = [0.5, 0.3, 0.2, 0.4, 0.05, 0.55];
        let deltas = [0.0; 2 * 8];
        let identity = |roi: [f32; 4], _: &[f32], _: [f32; 2]| roi;
        let out = RoiOutputs {
            rois: &rois,
            scores: &scores,
            deltas: &deltas,
            num_classes: 2,
            class_agnostic: false,
        };
        let dets = rcnn_detections(&out, &meta(), &rcnn_cfg(0.05, 100), &identity).unwrap();
        // Class 0: roi 1 overlaps roi 0 (IoU 0.82) and is suppressed; class 1: 0.05 is not > 0.05.
        assert_eq!(dets.labels, vec![0, 1]);
        assert_eq!(dets.scores, vec![0.5, 0.3]);
        assert_eq!(dets.bboxes[0], [5.0, 5.0, 15.0, 15.0]);
        let dets = rcnn_detections(&out, &meta(), &rcnn_cfg(0.05, 1), &identity).unwrap();
        assert_eq!(dets.len(), 1);
        // Threshold 0 admits roi 1's class-1 box (0.05), which NMS suppresses under roi 0's.
        let dets = rcnn_detections(&out, &meta(), &rcnn_cfg(0.0, -1), &identity).unwrap();
        assert_eq!(dets.scores, vec![0.5, 0.3]);
    }

    #[test]
    fn bbox2roi_prefixes_the_image_index() {
        let p = Proposals {
            bboxes: vec![[1.0, 2.0, 3.0, 4.0]],
            scores: vec![0.5],
        };
        assert_eq!(
            bbox2roi(&[Proposals::default(), p]),
            vec![[1.0, 1.0, 2.0, 3.0, 4.0]]
        );
    }
}
