//! The mmyolo decoders of `--end2end` with objectness (`OnnxDecoder::Yolov5Anchors`,
//! `OnnxDecoder::YoloxPoints`): scores `sigmoid(cls) · sigmoid(obj)`, `YOLOv5BBoxCoder` on the
//! level's anchors and `YOLOXBBoxCoder` on its points, op by op as `crate::postprocess::yolov5`.
//! The candidate selection and NMS around them are `end2end.rs`'s.

use super::end2end::{corners, flatten_anchors, priors, split_pairs, LevelShape};
use super::graph::{OnnxGraph, ValueId};
use super::OnnxHeadOutputs;
use crate::postprocess::yolov5::AnchorLevelSpec;

/// `sigmoid(cls) * sigmoid(objectness)[:, None]` of level `i`, `[B, H·W·A, C]`
/// (`scores *= objectness[:, None]`, yolov5_head.py:396-397). The `objectness > score_thr`
/// prefilter (:389-394) is implied by the `score > score_thr` that follows: `score = cls · obj`
/// with `cls ≤ 1` rounds to at most `obj` in float32, so it needs no node.
pub(super) fn objectness_scores(
    g: &mut OnnxGraph,
    heads: &OnnxHeadOutputs,
    i: usize,
    (c, a, hw): (i64, i64, i64),
) -> ValueId {
    let s = flatten_anchors(g, heads.cls_scores[i], c, a, hw);
    let s = g.op("Sigmoid", &[s], vec![]);
    let o = flatten_anchors(g, heads.objectnesses[i], 1, a, hw);
    let o = g.op("Sigmoid", &[o], vec![]);
    g.op("Mul", &[s, o], vec![])
}

/// `YOLOv5BBoxCoder.decode` (yolov5_bbox_coder.py:22-55) of the sigmoid offsets `d [B, HWA, 4]`
/// against the level's anchors, op by op as `crate::postprocess::yolov5::decode`: anchor centres
/// and sizes are constants computed in float32 from the anchors as upstream does.
pub(super) fn yolov5_boxes(
    g: &mut OnnxGraph,
    d: ValueId,
    spec: &AnchorLevelSpec,
    level: &LevelShape,
) -> ValueId {
    let base = spec.base_anchors();
    let n = level.h * level.w * base.len() as i64;
    let (mut centres, mut sizes) = (Vec::with_capacity(n as usize * 2), Vec::new());
    for hw in 0..level.h * level.w {
        // YOLOAnchorGenerator.single_level_grid_priors: base + float32(col) * stride_w.
        let sx = (hw % level.w) as f32 * spec.stride.0 as f32;
        let sy = (hw / level.w) as f32 * spec.stride.1 as f32;
        for b in &base {
            let p = [b[0] + sx, b[1] + sy, b[2] + sx, b[3] + sy];
            centres.extend([(p[0] + p[2]) * 0.5, (p[1] + p[3]) * 0.5]);
            sizes.extend([p[2] - p[0], p[3] - p[1]]);
        }
    }
    let centres = g.const_f32("anchor_centres", vec![1, n, 2], &centres);
    let sizes = g.const_f32("anchor_sizes", vec![1, n, 2], &sizes);
    let (xy, wh) = split_pairs(g, d);
    // (p - 0.5) * 2 * stride + centre
    let half = g.const_f32("half", vec![], &[0.5]);
    let two = g.const_f32("two", vec![], &[2.0]);
    let stride = g.const_f32("stride", vec![], &[spec.decode_stride as f32]);
    let xy = g.op("Sub", &[xy, half], vec![]);
    let xy = g.op("Mul", &[xy, two], vec![]);
    let xy = g.op("Mul", &[xy, stride], vec![]);
    let xy = g.op("Add", &[xy, centres], vec![]);
    // (p * 2) ** 2 * anchor size (torch's pow by 2 is x * x)
    let wh = g.op("Mul", &[wh, two], vec![]);
    let wh = g.op("Mul", &[wh, wh], vec![]);
    let wh = g.op("Mul", &[wh, sizes], vec![]);
    corners(g, xy, wh)
}

/// `YOLOXBBoxCoder.decode` (yolox_bbox_coder.py:22-45) of the raw `d [B, HW, 4]`: `xy = d ·
/// stride + point`, `wh = exp(d) · stride`, as `crate::postprocess::yolov5::decode_yolox`.
pub(super) fn yolox_boxes(
    g: &mut OnnxGraph,
    d: ValueId,
    level: &LevelShape,
    offset: f64,
    decode_stride: f64,
) -> ValueId {
    let hw = level.h * level.w;
    let points: Vec<f32> = priors(level, offset)
        .chunks(4)
        .flat_map(|p| [p[0], p[1]])
        .collect();
    let points = g.const_f32("points", vec![1, hw, 2], &points);
    let stride = g.const_f32("stride", vec![], &[decode_stride as f32]);
    let (xy, wh) = split_pairs(g, d);
    let xy = g.op("Mul", &[xy, stride], vec![]);
    let xy = g.op("Add", &[xy, points], vec![]);
    let wh = g.op("Exp", &[wh], vec![]);
    let wh = g.op("Mul", &[wh, stride], vec![]);
    corners(g, xy, wh)
}
