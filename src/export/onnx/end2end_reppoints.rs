//! `--end2end` decoding of mmdet's `RepPointsHead` (`OnnxDecoder::RepPoints`), used by
//! `end2end::emit`: `RepPointsHead._predict_by_feat_single`
//! (`mmdet/models/dense_heads/reppoints_head.py:768-864`) per level: sigmoid scores, and
//! `_bbox_decode` (`:865-884`) of the raw `bbox_pred` (the refined point set's box, in stride
//! units around its point): `bbox_pred · stride + (px, py, px, py)` on the level's
//! `MlvlPointGenerator(point_strides, offset=0.)` points, each side clamped to `img_shape`. The
//! per-level threshold and top-`nms_pre`, the rescale and `batched_nms` are `end2end::emit`'s, as
//! for the other mmdet heads (`_bbox_post_process` without score factors). Decoding every prior
//! before the top-k gives the same boxes as upstream's decoding after it (elementwise).
//!
//! Never: threshold or sort here.

use super::end2end::{flatten_level, priors, LevelShape};
use super::graph::{OnnxGraph, ValueId};
use super::per_image::PerImage;
use super::OnnxHeadOutputs;

/// Level `i`'s sigmoid scores `[B, H·W, C]` and clamped boxes `[B, H·W, 4]`.
pub(super) fn decode_level(
    g: &mut OnnxGraph,
    heads: &OnnxHeadOutputs,
    i: usize,
    (c, offset): (i64, f64),
    level: &LevelShape,
    meta: &PerImage,
) -> (ValueId, ValueId) {
    let hw = level.h * level.w;
    let s = flatten_level(g, heads.cls_scores[i], c, hw);
    let scores = g.op("Sigmoid", &[s], vec![]);
    let d = flatten_level(g, heads.bbox_preds[i], 4, hw);
    // `bbox_pred * stride` (`point_strides[level]`, a Python int: a float32 product), then
    // `+ bbox_pos_center`.
    let stride = g.const_f32("stride", vec![], &[level.stride.0 as f32]);
    let d = g.op("Mul", &[d, stride], vec![]);
    let p = g.const_f32("priors", vec![1, hw, 4], &priors(level, offset));
    let b = g.op("Add", &[d, p], vec![]);
    // `x1.clamp(min=0, max=max_shape[1])`, ... with `max_shape = img_shape`.
    let b = meta.clamp(g, b);
    (scores, b)
}
