//! mmdet's single-stage post-processing, `BaseDenseHead.predict_by_feat` →
//! `_predict_by_feat_single` → `_bbox_post_process` (mmdet 3.3.0
//! `mmdet/models/dense_heads/base_dense_head.py:291-492`), for any dense head whose outputs are
//! per-level `(scores, box regressions, optional score factors)`: RetinaHead now; GFL, FCOS and
//! ATSS bring their own decode closure and score factors (centerness).
//!
//! Per image and level: scores (sigmoid, or softmax without the background column), then
//! `filter_scores_and_topk` (`score > score_thr`, the `nms_pre` best; absent `nms_pre` = -1 keeps
//! all but one candidate, `mmdet/models/utils/misc.py:331-335`). Then over all levels: decode with
//! `max_shape = img_shape` (the head's coder, clamped there), `× 1/scale_factor`, `scores ×=
//! score_factors`, the `min_bbox_size` filter (`w > 0 & h > 0` on the shipped configs), mmcv's
//! `batched_nms` and the first `max_per_img` (shared with RTMDet: `super::bbox_post_process`). No
//! clamp to the original image.
//!
//! Libtorch does the order-free work (activation, permute to upstream's `(H·W·A, C)` order, host
//! copy); the order-sensitive steps run on host vectors with the deterministic tie-break of
//! `nms::score_desc_then_index`. Only the kept candidates are decoded (element-wise, so equal to
//! upstream's decode of the concatenation).

use tch::{Kind, Tensor};

use super::{
    bbox_post_process, tch_err, tensor_to_vec, topk_sorted, ImageMeta, PostprocessError,
    RawDetections, TestCfg,
};

/// One level of a dense head's outputs on the host, in upstream's flattened prior order
/// (`permute(1, 2, 0).reshape(-1, …)`: prior = (y·W + x)·A + a).
#[derive(Debug, Clone)]
pub struct DenseLevel {
    pub height: usize,
    pub width: usize,
    /// Priors per location (`num_base_priors`: 9 anchors for RetinaNet, 1 for point heads).
    pub num_base_priors: usize,
    /// `(N, H·W·A, num_classes)` class scores after the activation.
    pub scores: Vec<f32>,
    /// `(N, H·W·A, box_dim)` box regressions as the head's coder reads them.
    pub bbox_preds: Vec<f32>,
    /// `(N, H·W·A)` score factors (e.g. sigmoid of FCOS/ATSS centerness), if the head has them.
    pub score_factors: Option<Vec<f32>>,
}

impl DenseLevel {
    pub fn num_priors(&self) -> usize {
        self.height * self.width * self.num_base_priors
    }
}

/// Every level of one batch, on the host.
#[derive(Debug, Clone)]
pub struct DenseOutputs {
    pub batch: usize,
    pub num_classes: usize,
    pub box_dim: usize,
    pub levels: Vec<DenseLevel>,
}

/// How class logits become scores (`AnchorHead.use_sigmoid_cls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreActivation {
    /// `cls_score.sigmoid()`: `num_classes` channels per prior.
    Sigmoid,
    /// `cls_score.softmax(-1)[:, :-1]`: `num_classes + 1` channels, the last (background) dropped.
    SoftmaxWithBackground,
}

impl ScoreActivation {
    /// From the head's `loss_cls.use_sigmoid` (`use_sigmoid_cls` of mmdet's heads).
    pub fn from_use_sigmoid(use_sigmoid: bool) -> Self {
        if use_sigmoid {
            ScoreActivation::Sigmoid
        } else {
            ScoreActivation::SoftmaxWithBackground
        }
    }
}

/// `(N, A·K, H, W)` → `(N, H·W·A, K)` (upstream's `permute(1, 2, 0).reshape(-1, K)` per image).
fn to_prior_major(t: &Tensor, k: i64) -> Result<Tensor, tch::TchError> {
    let n = t.size()[0];
    t.f_permute([0, 2, 3, 1])?.f_reshape([n, -1, k])
}

/// Copies the raw outputs of a dense head to the host in upstream's prior order: per level
/// `cls_scores[l]` `(N, A·C', H, W)`, `bbox_preds[l]` `(N, A·box_dim, H, W)` and optional
/// `score_factors[l]` `(N, A, H, W)` logits (sigmoid applied here).
pub fn dense_outputs_to_host(
    cls_scores: &[Tensor],
    bbox_preds: &[Tensor],
    score_factors: Option<&[Tensor]>,
    num_base_priors: usize,
    box_dim: usize,
    activation: ScoreActivation,
) -> Result<DenseOutputs, PostprocessError> {
    if cls_scores.len() != bbox_preds.len()
        || cls_scores.is_empty()
        || score_factors.is_some_and(|f| f.len() != cls_scores.len())
    {
        return Err(PostprocessError::Shape(format!(
            "{} class-score levels and {} box levels; they must be equal and non-zero",
            cls_scores.len(),
            bbox_preds.len()
        )));
    }
    let a = num_base_priors as i64;
    let mut levels = Vec::with_capacity(cls_scores.len());
    let (mut batch, mut num_classes) = (0usize, 0usize);
    for (l, (cls, reg)) in cls_scores.iter().zip(bbox_preds).enumerate() {
        let (n, c, h, w) = cls.size4().map_err(|e| {
            PostprocessError::Shape(format!("level {l}: class scores must be N,C,H,W: {e}"))
        })?;
        let reg_size = reg.size();
        if c % a != 0 || reg_size != [n, a * box_dim as i64, h, w] {
            return Err(PostprocessError::Shape(format!(
                "level {l}: class scores {:?} and box predictions {reg_size:?} do not fit {a} \
                 priors per location with {box_dim} box values",
                [n, c, h, w]
            )));
        }
        let k = c / a;
        let cls = to_prior_major(
            &cls.f_to_kind(Kind::Float)
                .map_err(tch_err("class scores"))?,
            k,
        )
        .map_err(tch_err("reshaping class scores"))?;
        let scores = match activation {
            ScoreActivation::Sigmoid => cls.f_sigmoid(),
            ScoreActivation::SoftmaxWithBackground => cls
                .f_softmax(-1, Kind::Float)
                .and_then(|s| s.f_narrow(-1, 0, k - 1)),
        }
        .map_err(tch_err("class score activation"))?;
        let classes = match activation {
            ScoreActivation::Sigmoid => k as usize,
            ScoreActivation::SoftmaxWithBackground => (k - 1).max(0) as usize,
        };
        if l == 0 {
            (batch, num_classes) = (n as usize, classes);
        } else if (n as usize, classes) != (batch, num_classes) {
            return Err(PostprocessError::Shape(format!(
                "level {l} has batch {n} and {classes} classes, level 0 has {batch} and {num_classes}"
            )));
        }
        let reg =
            to_prior_major(reg, box_dim as i64).map_err(tch_err("reshaping box predictions"))?;
        let factors = match score_factors {
            Some(f) => {
                let t = to_prior_major(&f[l], 1)
                    .and_then(|t| t.f_to_kind(Kind::Float))
                    .and_then(|t| t.f_sigmoid())
                    .map_err(tch_err("score factors"))?;
                Some(tensor_to_vec(&t, "copying score factors to the host")?)
            }
            None => None,
        };
        levels.push(DenseLevel {
            height: h as usize,
            width: w as usize,
            num_base_priors,
            scores: tensor_to_vec(&scores, "copying class scores to the host")?,
            bbox_preds: tensor_to_vec(&reg, "copying box predictions to the host")?,
            score_factors: factors,
        });
    }
    Ok(DenseOutputs {
        batch,
        num_classes,
        box_dim,
        levels,
    })
}

/// The head's coder on one kept candidate: `(level, prior, regression) → [x1, y1, x2, y2]`
/// clamped to `max_shape` `(h, w)` as the coder's `decode(..., max_shape=img_shape)` does.
pub type DecodeFn<'a> = dyn Fn(usize, usize, &[f32], [f32; 2]) -> [f32; 4] + 'a;

/// `predict_by_feat(..., rescale=True, with_nms=True)` on host outputs: one result per image.
pub fn predict_by_feat(
    out: &DenseOutputs,
    metas: &[ImageMeta],
    cfg: &TestCfg,
    decode: &DecodeFn<'_>,
) -> Result<Vec<RawDetections>, PostprocessError> {
    if metas.len() != out.batch {
        return Err(PostprocessError::Shape(format!(
            "{} image metas for a batch of {}",
            metas.len(),
            out.batch
        )));
    }
    metas
        .iter()
        .enumerate()
        .map(|(n, meta)| predict_single(out, n, meta, cfg, decode))
        .collect()
}

/// `_predict_by_feat_single` + `_bbox_post_process` for image `n`.
fn predict_single(
    out: &DenseOutputs,
    n: usize,
    meta: &ImageMeta,
    cfg: &TestCfg,
    decode: &DecodeFn<'_>,
) -> Result<RawDetections, PostprocessError> {
    let c = out.num_classes;
    let bd = out.box_dim;
    // `nms_pre = cfg.get('nms_pre', -1)`; `score_thr = cfg.get('score_thr', 0)` compared in f32.
    let nms_pre = cfg.nms_pre.unwrap_or(-1);
    let score_thr = cfg.score_thr.unwrap_or(0.0) as f32;
    let max_shape = [meta.img_shape[0] as f32, meta.img_shape[1] as f32];
    // `scale_boxes(bboxes, [1 / s for s in scale_factor])`: float64 reciprocals, then float32.
    let inv = [
        (1.0 / meta.scale_factor[0]) as f32,
        (1.0 / meta.scale_factor[1]) as f32,
    ];
    let mut dets = RawDetections::default();
    for (li, level) in out.levels.iter().enumerate() {
        let p = level.num_priors();
        let truncated =
            || PostprocessError::Shape(format!("level {li} is truncated for image {n}"));
        let scores = level
            .scores
            .get(n * p * c..(n + 1) * p * c)
            .ok_or_else(truncated)?;
        let regs = level
            .bbox_preds
            .get(n * p * bd..(n + 1) * p * bd)
            .ok_or_else(truncated)?;
        // filter_scores_and_topk on (P, C): flat index prior·C + class (torch.nonzero order).
        let mut cands: Vec<(f32, usize)> = scores
            .iter()
            .enumerate()
            .filter(|(_, &s)| s > score_thr)
            .map(|(i, &s)| (s, i))
            .collect();
        topk_sorted(&mut cands, nms_pre);
        for &(score, flat) in &cands {
            let (prior, label) = (flat / c, flat % c);
            let b = decode(li, prior, &regs[prior * bd..(prior + 1) * bd], max_shape);
            let factor = match &level.score_factors {
                Some(f) => *f.get(n * p + prior).ok_or_else(truncated)?,
                None => 1.0,
            };
            dets.bboxes
                .push([b[0] * inv[0], b[1] * inv[1], b[2] * inv[0], b[3] * inv[1]]);
            // `results.scores * score_factors` (only heads with factors multiply at all).
            dets.scores.push(if level.score_factors.is_some() {
                score * factor
            } else {
                score
            });
            dets.labels.push(label);
        }
    }
    bbox_post_process(dets, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::NmsCfg;

    /// One level, one image, `p` priors of one class with the given scores; boxes far apart.
    fn level(scores: &[f32], factors: Option<Vec<f32>>) -> DenseOutputs {
        let p = scores.len();
        DenseOutputs {
            batch: 1,
            num_classes: 1,
            box_dim: 4,
            levels: vec![DenseLevel {
                height: 1,
                width: p,
                num_base_priors: 1,
                scores: scores.to_vec(),
                bbox_preds: vec![0.0; p * 4],
                score_factors: factors,
            }],
        }
    }

    fn meta() -> ImageMeta {
        ImageMeta {
            ori_shape: [100, 1000],
            img_shape: [100, 1000],
            scale_factor: [1.0, 1.0],
            pad_param: None,
        }
    }

    fn cfg(nms_pre: Option<i64>) -> TestCfg {
        TestCfg {
            multi_label: None,
            nms_pre,
            score_thr: Some(0.3),
            nms: Some(NmsCfg {
                iou_threshold: 0.5,
                split_thr: 10_000,
                class_agnostic: false,
                max_num: None,
            }),
            max_per_img: Some(100),
            min_bbox_size: Some(0.0),
            yolox_style: false,
            ..TestCfg::default()
        }
    }

    /// Disjoint 10×10 boxes, one per prior.
    fn decode(_: usize, prior: usize, _: &[f32], _: [f32; 2]) -> [f32; 4] {
        let x = prior as f32 * 20.0;
        [x, 0.0, x + 10.0, 10.0]
    }

    /// `filter_scores_and_topk(..., topk=-1)`: `min(-1, n)` is -1 and `scores[:-1]` drops the
    /// lowest candidate (`mmdet/models/utils/misc.py:331-335`); `nms_pre=2` keeps two.
    #[test]
    fn absent_nms_pre_drops_one_candidate() {
        let out = level(&[0.9, 0.2, 0.8, 0.4], None);
        let all = predict_by_feat(&out, &[meta()], &cfg(None), &decode).unwrap();
        assert_eq!(all[0].scores, vec![0.9, 0.8]);
        let two = predict_by_feat(&out, &[meta()], &cfg(Some(2)), &decode).unwrap();
        assert_eq!(two[0].scores, vec![0.9, 0.8]);
        let many = predict_by_feat(&out, &[meta()], &cfg(Some(1000)), &decode).unwrap();
        assert_eq!(many[0].scores, vec![0.9, 0.8, 0.4]);
    }

    /// Score factors multiply after the threshold (`base_dense_head.py:471-473`): 0.5 passes 0.3,
    /// then becomes 0.25.
    #[test]
    fn score_factors_apply_after_the_threshold() {
        let out = level(&[0.5, 0.2], Some(vec![0.5, 1.0]));
        let d = predict_by_feat(&out, &[meta()], &cfg(Some(1000)), &decode).unwrap();
        assert_eq!(d[0].scores, vec![0.25]);
    }

    /// `min_bbox_size=0`: boxes of zero width (clamped at the border) are dropped.
    #[test]
    fn empty_boxes_are_dropped() {
        let out = level(&[0.9, 0.8], None);
        let flat = |_: usize, prior: usize, _: &[f32], _: [f32; 2]| {
            if prior == 0 {
                [5.0, 0.0, 5.0, 10.0]
            } else {
                [20.0, 0.0, 30.0, 10.0]
            }
        };
        let d = predict_by_feat(&out, &[meta()], &cfg(Some(1000)), &flat).unwrap();
        assert_eq!(d[0].scores, vec![0.8]);
    }
}
