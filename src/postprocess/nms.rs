//! Class-aware NMS exactly as mmcv's `batched_nms` + its CPU `nms` kernel compute it, in plain
//! Rust on the (at most `nms_pre`) candidates that survive top-k.
//!
//! Mirrors `mmcv/ops/nms.py: batched_nms` (v2.0.1, lines 216-330) and
//! `mmcv/ops/csrc/pytorch/cpu/nms.cpp: nms_cpu` (lines 5-54):
//! * class separation by offsetting every box by `label * (max_coordinate + 1)` in float32, also
//!   in the per-class path, so IoUs are computed on the offset (rounded) coordinates as upstream;
//! * fewer than `split_thr` boxes: one greedy NMS over all offset boxes (boxes of neighbouring
//!   classes can still overlap there when coordinates are negative; we keep that behaviour);
//!   otherwise one greedy NMS per class and a final sort by score;
//! * `class_agnostic` only drops the offsets: with `split_thr` or more boxes upstream still loops
//!   class by class (`for id in torch.unique(idxs)`), so it is then per-class NMS after all; `max_num`
//!   cuts after NMS in both paths (the kernel's `max_num`, or the split path's own slice);
//! * IoU `inter / (area_i + area_j - inter)` with offset 0, suppression iff `ovr > thr` (strict).
//!
//! Checked against mmcv's python `batched_nms` (both paths, class-agnostic, `max_num`, `None`,
//! 9999 vs 10000 boxes) in `tests/ops.rs` (fixtures by `make_ops_refs.py`).
//!
//! Ties: upstream sorts with `torch.sort`, which is not stable; we sort by score descending then
//! index ascending, so results are deterministic. This module never panics on NaN input.

use std::cmp::Ordering;

/// The `nms` entry of a head's `test_cfg`, parsed by the core's spec stage.
pub use mmcompat_registry::spec::test_cfg::NmsCfg;

/// Descending score, then ascending index: the deterministic total order used for every sort.
#[inline]
pub(crate) fn score_desc_then_index(a: (f32, usize), b: (f32, usize)) -> Ordering {
    // total_cmp puts NaN above +inf; NaN scores never reach NMS (they fail `score > thr`).
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Indices into `boxes` kept by mmcv's `batched_nms`, in output order (descending score).
pub fn batched_nms(
    boxes: &[[f32; 4]],
    scores: &[f32],
    labels: &[usize],
    cfg: &NmsCfg,
) -> Vec<usize> {
    let n = boxes.len().min(scores.len()).min(labels.len());
    if n == 0 {
        return Vec::new();
    }
    let boxes = &boxes[..n];
    let offset_boxes: Vec<[f32; 4]> = if cfg.class_agnostic {
        boxes.to_vec()
    } else {
        // `max_coordinate = boxes.max()`; `offsets = idxs.to(boxes) * (max_coordinate + 1)`.
        let max_coordinate =
            boxes
                .iter()
                .flat_map(|b| b.iter().copied())
                .fold(
                    f32::NEG_INFINITY,
                    |m, v| if v > m || v.is_nan() { v } else { m },
                );
        let step = max_coordinate + 1.0f32;
        boxes
            .iter()
            .zip(labels)
            .map(|(b, &l)| {
                let off = (l as f32) * step;
                [b[0] + off, b[1] + off, b[2] + off, b[3] + off]
            })
            .collect()
    };

    let mut keep = if n < cfg.split_thr {
        let all: Vec<usize> = (0..n).collect();
        let mut keep = nms_subset(&offset_boxes, scores, &all, cfg.iou_threshold);
        if let Some(max_num) = cfg.max_num {
            keep.truncate(max_num);
        }
        keep
    } else {
        // for id in torch.unique(idxs): nms on that class's (offset) boxes; then one sort.
        let mut by_label: Vec<(usize, usize)> = labels[..n].iter().copied().zip(0..n).collect();
        by_label.sort_unstable();
        let mut kept = Vec::new();
        let mut start = 0;
        while start < by_label.len() {
            let label = by_label[start].0;
            let end = start + by_label[start..].partition_point(|&(l, _)| l == label);
            let subset: Vec<usize> = by_label[start..end].iter().map(|&(_, i)| i).collect();
            kept.extend(nms_subset(
                &offset_boxes,
                scores,
                &subset,
                cfg.iou_threshold,
            ));
            start = end;
        }
        kept.sort_unstable_by(|&a, &b| score_desc_then_index((scores[a], a), (scores[b], b)));
        if let Some(max_num) = cfg.max_num {
            kept.truncate(max_num);
        }
        kept
    };
    keep.shrink_to_fit();
    keep
}

/// `batched_nms(boxes, scores, idxs, nms_cfg)` including `nms_cfg=None`, which skips NMS and only
/// sorts by descending score (`mmcv/ops/nms.py:268-272`); two-stage heads (mmdet RPN / RoI head)
/// and dense heads without an `nms` entry go through here.
pub fn batched_nms_or_sort(
    boxes: &[[f32; 4]],
    scores: &[f32],
    labels: &[usize],
    cfg: Option<&NmsCfg>,
) -> Vec<usize> {
    match cfg {
        Some(cfg) => batched_nms(boxes, scores, labels, cfg),
        None => {
            let n = boxes.len().min(scores.len()).min(labels.len());
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_unstable_by(|&a, &b| score_desc_then_index((scores[a], a), (scores[b], b)));
            order
        }
    }
}

/// Greedy NMS (`nms_cpu`, offset 0) over `subset` (indices into `boxes`, ascending), returning the
/// kept indices in descending score order.
///
/// Instead of testing every later box against each kept box, only boxes whose x-extent can
/// intersect are visited (a window over the boxes sorted by x1): a pair with zero intersection has
/// IoU 0 (or NaN), which never exceeds a non-negative threshold, so the result is identical.
fn nms_subset(
    boxes: &[[f32; 4]],
    scores: &[f32],
    subset: &[usize],
    iou_threshold: f32,
) -> Vec<usize> {
    let m = subset.len();
    // Local order by score (the kernel's `order = scores.sort(descending)`).
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_unstable_by(|&a, &b| {
        score_desc_then_index(
            (scores[subset[a]], subset[a]),
            (scores[subset[b]], subset[b]),
        )
    });
    let mut rank = vec![0usize; m];
    for (r, &local) in order.iter().enumerate() {
        rank[local] = r;
    }
    let b = |local: usize| boxes[subset[local]];
    // areas = (x2 - x1) * (y2 - y1), float32.
    let areas: Vec<f32> = (0..m)
        .map(|k| {
            let x = b(k);
            (x[2] - x[0]) * (x[3] - x[1])
        })
        .collect();
    let iou_gt = |i: usize, j: usize| -> bool {
        let (bi, bj) = (b(i), b(j));
        let xx1 = max_cpp(bi[0], bj[0]);
        let yy1 = max_cpp(bi[1], bj[1]);
        let xx2 = min_cpp(bi[2], bj[2]);
        let yy2 = min_cpp(bi[3], bj[3]);
        let w = max_cpp(0.0, xx2 - xx1);
        let h = max_cpp(0.0, yy2 - yy1);
        let inter = w * h;
        let ovr = inter / (areas[i] + areas[j] - inter);
        ovr > iou_threshold
    };

    let mut suppressed = vec![false; m];
    let mut keep = Vec::new();
    let all_finite = (0..m).all(|k| b(k).iter().all(|v| v.is_finite()));
    if !all_finite || iou_threshold < 0.0 || m < 64 {
        // Literal kernel: every later box is tested.
        for (r, &i) in order.iter().enumerate() {
            if suppressed[i] {
                continue;
            }
            keep.push(subset[i]);
            for &j in &order[r + 1..] {
                if !suppressed[j] && iou_gt(i, j) {
                    suppressed[j] = true;
                }
            }
        }
        return keep;
    }

    // Window search: sort by x1; a box j can intersect i only if x1_j < x2_i and
    // x2_j > x1_i, hence x1_j > x1_i - max_width (slack absorbs float rounding of widths).
    let mut by_x1: Vec<usize> = (0..m).collect();
    by_x1.sort_unstable_by(|&a, &c| b(a)[0].total_cmp(&b(c)[0]).then(a.cmp(&c)));
    let x1_sorted: Vec<f32> = by_x1.iter().map(|&k| b(k)[0]).collect();
    let max_width = (0..m).map(|k| b(k)[2] - b(k)[0]).fold(0.0f32, f32::max);
    let slack = 1.0 + max_width * 1e-5;
    for &i in &order {
        if suppressed[i] {
            continue;
        }
        keep.push(subset[i]);
        let bi = b(i);
        let lo = x1_sorted.partition_point(|&x| x < bi[0] - max_width - slack);
        let hi = x1_sorted.partition_point(|&x| x < bi[2]);
        if lo >= hi {
            continue;
        }
        for &j in &by_x1[lo..hi] {
            if rank[j] > rank[i] && !suppressed[j] && iou_gt(i, j) {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// `std::max(a, b)` as C++ defines it (`a < b ? b : a`), so NaN handling matches the kernel.
#[inline]
fn max_cpp(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// `std::min(a, b)` as C++ defines it (`b < a ? b : a`).
#[inline]
fn min_cpp(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(boxes: &[[f32; 4]], scores: &[f32], labels: &[usize], thr: f32) -> Vec<usize> {
        // Per-class literal greedy NMS on raw boxes: equal to batched_nms when boxes don't
        // straddle class offsets (all coordinates non-negative here).
        let mut order: Vec<usize> = (0..boxes.len()).collect();
        order.sort_by(|&a, &b| score_desc_then_index((scores[a], a), (scores[b], b)));
        let mut sup = vec![false; boxes.len()];
        let mut keep = vec![];
        for (r, &i) in order.iter().enumerate() {
            if sup[i] {
                continue;
            }
            keep.push(i);
            for &j in &order[r + 1..] {
                if labels[j] != labels[i] {
                    continue;
                }
                let (a, b) = (boxes[i], boxes[j]);
                let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
                let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
                let inter = w * h;
                let ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
                if inter / ua > thr {
                    sup[j] = true;
                }
            }
        }
        keep
    }

    #[test]
    fn window_search_equals_literal_kernel() {
        // Deterministic pseudo-random clusters of boxes, 3 classes.
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32) / (1u64 << 24) as f32
        };
        let mut boxes = vec![];
        let mut scores = vec![];
        let mut labels = vec![];
        for k in 0..3000 {
            let cx = (k % 10) as f32 * 60.0 + next() * 20.0;
            let cy = (k % 7) as f32 * 80.0 + next() * 20.0;
            let w = 10.0 + next() * 50.0;
            let h = 10.0 + next() * 50.0;
            boxes.push([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]);
            scores.push(next());
            labels.push(k % 3);
        }
        for split_thr in [10_000, 100] {
            let cfg = NmsCfg {
                split_thr,
                ..NmsCfg::default()
            };
            let ours = batched_nms(&boxes, &scores, &labels, &cfg);
            let reference = brute(&boxes, &scores, &labels, 0.65);
            assert_eq!(ours, reference, "split_thr {split_thr}");
        }
    }

    #[test]
    fn strict_threshold_and_ties() {
        // IoU exactly 0.5: not suppressed at thr 0.5 (strict), suppressed at 0.49.
        let boxes = [
            [0.0, 0.0, 2.0, 1.0],
            [0.0, 0.0, 1.0, 1.0],
            [5.0, 5.0, 6.0, 6.0],
        ];
        let scores = [0.9, 0.9, 0.1];
        let labels = [0, 0, 0];
        let at = |thr| {
            batched_nms(
                &boxes,
                &scores,
                &labels,
                &NmsCfg {
                    iou_threshold: thr,
                    ..NmsCfg::default()
                },
            )
        };
        assert_eq!(at(0.5), vec![0, 1, 2]);
        assert_eq!(at(0.49), vec![0, 2]);
        assert!(batched_nms(&[], &[], &[], &NmsCfg::default()).is_empty());
    }
}
