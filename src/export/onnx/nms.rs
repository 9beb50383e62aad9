//! mmcv's `nms` and `batched_nms` in standard ONNX ops (`NonMaxSuppression` on a score row per
//! class or one row for all), as the one-stage `--end2end` graph (`end2end.rs`) and the two-stage
//! RPN and box head (`two_stage.rs`) use them. A candidate's score is kept where NMS keeps it and
//! becomes `NOT_A_CANDIDATE` elsewhere, so the caller's `TopK` sorts the survivors first.

use super::end2end::{i64s, reduce_max, NOT_A_CANDIDATE};
use super::graph::{attr_i, attr_ints, OnnxGraph, ValueId};
use super::proto::data_type;
use crate::postprocess::NmsCfg;

/// `NonMaxSuppression` of `boxes [B, K, 4]` with `scores [B, rows, K]` (strict `iou > thr`, as
/// mmcv's `nms`), as `values [B, K]` where kept and `NOT_A_CANDIDATE` elsewhere.
pub(super) fn nms_kept(
    g: &mut OnnxGraph,
    iou_threshold: f32,
    boxes: ValueId,
    scores: ValueId,
    values: ValueId,
) -> ValueId {
    let k_total = g.const_i64(
        "max_output_boxes_per_class",
        vec![1],
        &[i64::from(i32::MAX)],
    );
    let iou = g.const_f32("iou_threshold", vec![1], &[iou_threshold]);
    // Half-way between NOT_A_CANDIDATE and the lowest sigmoid score.
    let sthr = g.const_f32("nms_score_threshold", vec![1], &[NOT_A_CANDIDATE / 2.0]);
    let sel = g.op(
        "NonMaxSuppression",
        &[boxes, scores, k_total, iou, sthr],
        vec![attr_i("center_point_box", 0)],
    );
    // [M, 3] (image, row, candidate) → keep the image's candidate scores, others -1.
    let cols = g.const_i64("image_and_candidate", vec![2], &[0, 2]);
    let bk = g.op("Gather", &[sel, cols], vec![attr_i("axis", 1)]);
    let upd = g.op("GatherND", &[values, bk], vec![]);
    let shape = g.op("Shape", &[values], vec![]);
    let not_cand = g.const_f32("not_a_candidate", vec![], &[NOT_A_CANDIDATE]);
    let fill = g.op("Expand", &[not_cand, shape], vec![]);
    g.op("ScatterND", &[fill, bk, upd], vec![])
}

/// mmcv `batched_nms(boxes [B, K, 4], scores [B, K], idxs [B, K])` over the candidates `mask`
/// keeps: the candidates' scores where kept, `NOT_A_CANDIDATE` elsewhere. Offsets
/// `idx · (max coordinate + 1)` unless `class_agnostic`; below `split_thr` candidates one NMS
/// over all (offset) boxes as one row `[B, 1, K]`, from there on one NMS per index (`for id in
/// torch.unique(idxs)`, a candidate's score in its class row `[B, C, K]`), chosen per image by
/// its count. `nms=None` only masks (the caller's `TopK` sorts). Shared by the one-stage
/// `emit` and the RPN and box head of `two_stage.rs`.
pub(super) fn batched_nms(
    g: &mut OnnxGraph,
    (boxes, values, labels, mask): (ValueId, ValueId, ValueId, Option<ValueId>),
    classes: i64,
    k_cands: i64,
    nms: Option<&NmsCfg>,
) -> ValueId {
    let not_cand = g.const_f32("not_a_candidate", vec![], &[NOT_A_CANDIDATE]);
    let values = match mask {
        Some(m) => g.op("Where", &[m, values, not_cand], vec![]),
        None => values,
    };
    let Some(n) = nms else {
        // `nms_cfg=None`: only sorted (the caller's TopK).
        return values;
    };
    let k_axes = i64s(g, &[2]);
    let nms_boxes = if n.class_agnostic {
        boxes
    } else {
        let masked = match mask {
            Some(m) => {
                let m3 = g.op("Unsqueeze", &[m, k_axes], vec![]);
                let ninf = g.const_f32("minus_inf", vec![], &[f32::NEG_INFINITY]);
                g.op("Where", &[m3, boxes, ninf], vec![])
            }
            None => boxes,
        };
        let maxc = reduce_max(g, masked, &[1, 2]);
        let one = g.const_f32("one", vec![], &[1.0]);
        let step = g.op("Add", &[maxc, one], vec![]);
        let lf = g.cast(labels, data_type::FLOAT);
        let lf = g.op("Unsqueeze", &[lf, k_axes], vec![]);
        let off = g.op("Mul", &[lf, step], vec![]);
        g.op("Add", &[boxes, off], vec![])
    };
    let one_axis = i64s(g, &[1]);
    let all = g.op("Unsqueeze", &[values, one_axis], vec![]);
    let single = nms_kept(g, n.iou_threshold, nms_boxes, all, values);
    if k_cands < n.split_thr as i64 {
        return single;
    }
    let ids: Vec<i64> = (0..classes).collect();
    let class_ids = g.const_i64("class_ids", vec![1, 1, classes], &ids);
    let l3 = g.op("Unsqueeze", &[labels, k_axes], vec![]);
    let is_class = g.op("Equal", &[l3, class_ids], vec![]);
    let v3 = g.op("Unsqueeze", &[values, k_axes], vec![]);
    let rows = g.op("Where", &[is_class, v3, not_cand], vec![]);
    let rows = g.op("Transpose", &[rows], vec![attr_ints("perm", &[0, 2, 1])]);
    let split = nms_kept(g, n.iou_threshold, nms_boxes, rows, values);
    let half = g.const_f32("kept_threshold", vec![], &[NOT_A_CANDIDATE / 2.0]);
    let is_cand = g.op("Greater", &[values, half], vec![]);
    let is_cand = g.cast(is_cand, data_type::INT64);
    let count = g.op(
        "ReduceSum",
        &[is_cand, one_axis],
        vec![attr_i("keepdims", 1)],
    );
    let thr = g.const_i64("split_thr", vec![], &[n.split_thr as i64]);
    let below = g.op("Less", &[count, thr], vec![]);
    g.op("Where", &[below, single, split], vec![])
}
