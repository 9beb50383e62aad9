//! `--end2end` pieces of mmdet's GFL, ATSS and FCOS heads, used by `end2end::emit`.
//!
//! * GFL (`OnnxDecoder::GflIntegral`): `GFLHead._predict_by_feat_single`
//!   (`mmdet/models/dense_heads/gfl_head.py:396-490`): per level `Integral` (softmax over the
//!   `reg_max + 1` bins, then `F.linear` with `integral.project`, `:23-56`) times `stride[0]`,
//!   then `DistancePointBBoxCoder.decode` from `anchor_center(priors)` (`:220-231`).
//! * ATSS and FCOS score factors: `BaseDenseHead._predict_by_feat_single`
//!   (`base_dense_head.py:339-373`) keeps `score_factor[keep_idxs]` of the sigmoid centerness
//!   after `filter_scores_and_topk` and `_bbox_post_process` (`:469-473`) multiplies it into the
//!   scores: so the threshold and the per-level top-k see the plain class scores, the NMS and the
//!   `max_per_img` cut the products, as `crate::postprocess::mmdet_dense` does.

use super::end2end::{flatten_anchors, flatten_level, i64s, LevelShape};
use super::graph::{attr_i, OnnxGraph, ValueId};

/// `anchor_center` of every anchor of a level (one per location, `GFLHead` checks that), as
/// `(cx, cy, cx, cy)` rows, location-major: float32 `(x1 + x2) / 2` of `base + shift` as upstream.
fn anchor_centres(base: &[f32; 4], level: &LevelShape) -> Vec<f32> {
    let mut v = Vec::with_capacity((level.h * level.w * 4) as usize);
    for hw in 0..level.h * level.w {
        let sx = (hw % level.w) as f32 * level.stride.0 as f32;
        let sy = (hw / level.w) as f32 * level.stride.1 as f32;
        let (x1, y1, x2, y2) = (base[0] + sx, base[1] + sy, base[2] + sx, base[3] + sy);
        let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
        v.extend([cx, cy, cx, cy]);
    }
    v
}

/// GFL's boxes `[B, H·W, 4]` of one level's distribution logits `[B, 4·(reg_max+1), H, W]`
/// (the mmdet clamp to `img_shape` is the caller's).
pub(super) fn gfl_boxes(
    g: &mut OnnxGraph,
    bbox_pred: ValueId,
    base: &[f32; 4],
    project: &[f32],
    level: &LevelShape,
) -> ValueId {
    let hw = level.h * level.w;
    let bins = project.len() as i64;
    // `bbox_pred.permute(1, 2, 0)` then `x.reshape(-1, reg_max + 1)`: per location the four
    // sides' bins, side-major.
    let x = flatten_level(g, bbox_pred, 4 * bins, hw);
    let shape = i64s(g, &[0, hw, 4, bins]);
    let x = g.op("Reshape", &[x, shape], vec![]);
    let x = g.op("Softmax", &[x], vec![attr_i("axis", -1)]);
    // F.linear(x, project): one dot product per side.
    let p = g.const_f32("integral_project", vec![bins, 1], project);
    let d = g.op("MatMul", &[x, p], vec![]);
    let shape = i64s(g, &[0, hw, 4]);
    let d = g.op("Reshape", &[d, shape], vec![]);
    // `* stride[0]`: a Python int, a float32 product.
    let stride = g.const_f32("stride", vec![], &[level.stride.0 as f32]);
    let d = g.op("Mul", &[d, stride], vec![]);
    // distance2bbox: (cx - l, cy - t, cx + r, cy + b).
    let sign = g.const_f32("ltrb_sign", vec![4], &[-1.0, -1.0, 1.0, 1.0]);
    let sd = g.op("Mul", &[d, sign], vec![]);
    let c = g.const_f32(
        "anchor_centres",
        vec![1, hw, 4],
        &anchor_centres(base, level),
    );
    g.op("Add", &[c, sd], vec![])
}

/// `sigmoid(centerness)` of the candidates `prior [B, K]` (indices into the level's `H·W·A`
/// priors) of one level's centerness logits `[B, A, H, W]`: `[B, K]`.
pub(super) fn centerness_factors(
    g: &mut OnnxGraph,
    centerness: ValueId,
    a: i64,
    hw: i64,
    prior: ValueId,
) -> ValueId {
    let c = flatten_anchors(g, centerness, 1, a, hw);
    let shape = i64s(g, &[0, hw * a]);
    let c = g.op("Reshape", &[c, shape], vec![]);
    let c = g.op("Sigmoid", &[c], vec![]);
    g.op("GatherElements", &[c, prior], vec![attr_i("axis", 1)])
}
