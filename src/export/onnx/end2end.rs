//! `--end2end`: the head's `predict_by_feat` up to (not including) the rescale to the original
//! image, as standard ONNX ops, giving mmdeploy's outputs: `dets [B, N, 5]` (x1, y1, x2, y2,
//! score, in network-input pixels) and `labels [B, N]` (int64), `N = max_per_img`, rows sorted by
//! descending score, rows past an image's detections zero with label -1 (mmdeploy's
//! `select_nms_index` pads the same way).
//!
//! Mirrors `crate::postprocess` (mmyolo `YOLOv5Head.predict_by_feat` as RTMDet uses it, mmdet
//! `BaseDenseHead._predict_by_feat_single`) step by step: sigmoid, the top `nms_pre` candidates
//! over all levels (mmyolo) or per level (mmdet) above `score_thr` (ONNX `TopK` sorts by value,
//! ties by index, as our host sort), the point priors as constants, `distance2bbox` (mmdet: clamped
//! to the input size), then mmcv `batched_nms` and the first `max_per_img`. Heads with
//! objectness (`OnnxDecoder`): YOLOv5/YOLOv7's anchors and `YOLOv5BBoxCoder`, YOLOX's points and
//! `YOLOXBBoxCoder`, scores `sigmoid(cls) · sigmoid(obj)` (`end2end_yolo.rs`); with `yolox_style` (YOLOX) there is no
//! `max_per_img` cap, so `N` is symbolic (`"detections"`): the most any image of the batch keeps.
//!
//! NMS: ONNX `NonMaxSuppression` runs greedy NMS per (image, score row) with strict `iou >
//! iou_threshold` and offset-0 areas, like mmcv's `nms`. mmcv's `batched_nms` offsets every box by
//! `label * (max_coordinate + 1)` (not with `class_agnostic`) and computes the IoUs on those
//! float32-rounded coordinates; the graph adds the same offsets, so the IoUs round the same. Below
//! `split_thr` (10000) boxes mmcv runs one NMS over all offset boxes (boxes of neighbouring classes
//! can overlap there when coordinates are negative, e.g. PPYOLOE's large early boxes): the graph's
//! one score row; from `split_thr` on, one NMS per class: the graph's candidate-per-class rows,
//! chosen per image by its candidate count (both run only when `nms_pre` allows that many). The
//! rescale to the original image (`pad_param`, `scale_factor`) runs before NMS and mmyolo's clamp
//! to `ori_shape` after it, as upstream, from the optional per-image inputs (`per_image.rs`);
//! their defaults are the identity, leaving boxes in network-input pixels for the caller to
//! rescale (the `.preprocess.json` says how; the offsets then round differently, which can change
//! the `max_per_img` cut for boxes reaching below -1). RetinaNet (`OnnxDecoder::DeltaAnchors`):
//! anchors as constants and `delta2bbox` with its dw/dh clamp, then the clamp to `img_shape`;
//! ATSS the same with its centerness as score factor, FCOS the distance decoding with it, GFL
//! the `Integral` and distances from the anchor centres (`end2end_mmdet.rs`).

use super::end2end_mmdet;
use super::end2end_yolo;
use super::graph::{attr_i, Dim, OnnxGraph, ValueId};
use super::nms::batched_nms;
use super::per_image::{self, PerImage};
use super::{ExportError, OnnxHeadOutputs};
use crate::models::{Detector, Flavour};
use crate::postprocess::yolov5::AnchorLevelSpec;
use crate::postprocess::TestCfg;
use mmcompat_registry::spec::models::anchor_head::DeltaXywhCoderCfg;

/// Score of rows that are not (or no longer) candidates: below any sigmoid score.
pub(super) const NOT_A_CANDIDATE: f32 = -1.0;

/// One level's geometry (from a forward pass on the export size).
#[derive(Debug, Clone, Copy)]
pub struct LevelShape {
    pub h: i64,
    pub w: i64,
    pub stride: (f64, f64),
}

impl LevelShape {
    /// Each level's geometry from the probe forward's per-level outputs `[B, _, H, W]` and the
    /// head's strides.
    pub(super) fn of_levels(outputs: &[tch::Tensor], strides: &[(f64, f64)]) -> Vec<LevelShape> {
        outputs
            .iter()
            .zip(strides)
            .map(|(t, &stride)| {
                let s = t.size();
                LevelShape {
                    h: s[2],
                    w: s[3],
                    stride,
                }
            })
            .collect()
    }
}

/// What [`emit`] returns: `(dets, labels)`.
pub struct End2EndOutputs {
    pub dets: ValueId,
    pub labels: ValueId,
    /// Rows per image: `max_per_img`, or with `yolox_style` the symbolic `"detections"` (the
    /// most any image of the batch keeps).
    pub rows: Dim,
}

fn invalid(key: &str, message: impl Into<String>) -> ExportError {
    ExportError::InvalidOption {
        option: "--end2end",
        message: format!("test_cfg.{key}: {}", message.into()),
    }
}

pub(super) fn i64s(g: &mut OnnxGraph, v: &[i64]) -> ValueId {
    g.const_i64("shape", vec![v.len() as i64], v)
}

/// `ReduceMax` over `axes` with `keepdims` (axes moved from attribute to input in opset 18).
pub(super) fn reduce_max(g: &mut OnnxGraph, x: ValueId, axes: &[i64]) -> ValueId {
    if g.opset() >= 18 {
        let a = i64s(g, axes);
        g.op("ReduceMax", &[x, a], vec![attr_i("keepdims", 1)])
    } else {
        g.op(
            "ReduceMax",
            &[x],
            vec![super::graph::attr_ints("axes", axes), attr_i("keepdims", 1)],
        )
    }
}

/// `[B, ch, H, W]` → `[B, H·W, ch]`.
pub(super) fn flatten_level(g: &mut OnnxGraph, x: ValueId, ch: i64, hw: i64) -> ValueId {
    let shape = i64s(g, &[0, ch, hw]);
    let r = g.op("Reshape", &[x, shape], vec![]);
    g.op(
        "Transpose",
        &[r],
        vec![super::graph::attr_ints("perm", &[0, 2, 1])],
    )
}

/// `(px, py, px, py)` of every prior of a level, row-major with x fastest, in float32 as
/// `MlvlPointGenerator` computes them.
pub(super) fn priors(level: &LevelShape, offset: f64) -> Vec<f32> {
    let (sw, sh) = (level.stride.0 as f32, level.stride.1 as f32);
    let mut v = Vec::with_capacity((level.h * level.w * 4) as usize);
    for y in 0..level.h {
        for x in 0..level.w {
            let px = (x as f32 + offset as f32) * sw;
            let py = (y as f32 + offset as f32) * sh;
            v.extend([px, py, px, py]);
        }
    }
    v
}

/// How `--end2end` decodes a head's raw outputs (`DenseHead::onnx_decoder`).
#[derive(Debug, Clone)]
pub enum OnnxDecoder {
    /// Point priors and `DistancePointBBoxCoder` (RTMDet, YOLOv8): the default.
    Distance,
    /// `YOLOAnchorGenerator` anchors, `YOLOv5BBoxCoder` and objectness (YOLOv5, YOLOv7):
    /// `crate::postprocess::yolov5`.
    Yolov5Anchors(Vec<AnchorLevelSpec>),
    /// `MlvlPointGenerator` points, `YOLOXBBoxCoder` (scaled by `featmap_strides[i]`) and
    /// objectness (YOLOX).
    YoloxPoints { decode_strides: Vec<f64> },
    /// `AnchorGenerator` anchors (`base[level][a]` around the origin, as
    /// `crate::models::heads::retina_head::Anchors`) and `DeltaXYWHBBoxCoder`, sigmoid scores
    /// (RetinaNet).
    DeltaAnchors {
        base: Vec<Vec<[f32; 4]>>,
        coder: DeltaXywhCoderCfg,
    },
    /// GFL: one `AnchorGenerator` anchor per location (`base[level]`), the `Integral` of the
    /// distribution logits with `project` times the stride, distances from the anchor centres
    /// (`end2end_mmdet::gfl_boxes`), clamped to `img_shape` when `clip_border`.
    GflIntegral {
        base: Vec<[f32; 4]>,
        project: Vec<f32>,
        clip_border: bool,
    },
    /// Two-stage (Faster R-CNN): the RPN's `AnchorGenerator` anchors and `DeltaXYWHBBoxCoder`;
    /// the graph after the RPN (proposals, RoIAlign, box head, NMS) is `two_stage.rs`'s.
    TwoStage {
        rpn_base: Vec<Vec<[f32; 4]>>,
        rpn_coder: DeltaXywhCoderCfg,
    },
    /// RepPoints: points with offset 0, `bbox_pred · stride + point` clamped to `img_shape`
    /// (`end2end_reppoints.rs`).
    RepPoints,
    /// A head whose decoding has no graph form (named in the error).
    Unsupported(&'static str),
}

/// `DistancePointBBoxCoder.decode` of one level's distances (mmdet's clamp is the caller's).
fn distance_boxes(
    g: &mut OnnxGraph,
    bbox_pred: ValueId,
    level: &LevelShape,
    (offset, flavour): (f64, Flavour),
    hw: i64,
) -> ValueId {
    let mut d = flatten_level(g, bbox_pred, 4, hw);
    if flavour == Flavour::Mmyolo {
        // DistancePointBBoxCoder.decode: `pred_bboxes * stride` first (mmyolo's raw
        // distances are in stride units).
        let st = g.const_f32("stride", vec![], &[level.stride.0 as f32]);
        d = g.op("Mul", &[d, st], vec![]);
    }
    // distance2bbox: (px - l, py - t, px + r, py + b) as priors + d * (-1, -1, 1, 1).
    let sign = g.const_f32("ltrb_sign", vec![4], &[-1.0, -1.0, 1.0, 1.0]);
    let sd = g.op("Mul", &[d, sign], vec![]);
    let p = g.const_f32("priors", vec![1, hw, 4], &priors(level, offset));
    g.op("Add", &[p, sd], vec![])
}

/// `[B, A·k, H, W]` → `[B, H·W·A, k]`: `permute(0, 2, 3, 1).reshape(B, -1, k)` as
/// `predict_by_feat` flattens (location-major, anchor-minor: `grid_priors`' order).
pub(super) fn flatten_anchors(g: &mut OnnxGraph, x: ValueId, k: i64, a: i64, hw: i64) -> ValueId {
    let t = flatten_level(g, x, a * k, hw);
    if a == 1 {
        return t;
    }
    let shape = i64s(g, &[0, hw * a, k]);
    g.op("Reshape", &[t, shape], vec![])
}

/// `[B, N, 4]` → its `[B, N, 2]` halves (xy, wh).
pub(super) fn split_pairs(g: &mut OnnxGraph, x: ValueId) -> (ValueId, ValueId) {
    let two = i64s(g, &[2, 2]);
    let h = g.op_multi(
        "Split",
        vec![Some(x), Some(two)],
        2,
        vec![attr_i("axis", 2)],
    );
    (h[0], h[1])
}

/// `x2 - x1 > m and y2 - y1 > m` for each box of `boxes [B, N, 4]`, as bool `[B, N]`: mmdet's
/// positive-size filter in `_bbox_post_process` (`m = 0`) and the RPN's `min_bbox_size`
/// (`two_stage.rs`).
pub(super) fn both_sides_above(g: &mut OnnxGraph, boxes: ValueId, m: f32) -> ValueId {
    let (lo, hi) = split_pairs(g, boxes);
    let wh = g.op("Sub", &[hi, lo], vec![]);
    let m = g.const_f32("min_size", vec![], &[m]);
    let above = g.op("Greater", &[wh, m], vec![]);
    // ReduceMin has no bool kernel: through int32.
    let above = g.cast(above, super::proto::data_type::INT32);
    let both = if g.opset() >= 18 {
        let axes = i64s(g, &[2]);
        g.op("ReduceMin", &[above, axes], vec![attr_i("keepdims", 0)])
    } else {
        g.op(
            "ReduceMin",
            &[above],
            vec![super::graph::attr_ints("axes", &[2]), attr_i("keepdims", 0)],
        )
    };
    g.cast(both, super::proto::data_type::BOOL)
}

/// `[xy - wh / 2, xy + wh / 2]` on the last axis.
pub(super) fn corners(g: &mut OnnxGraph, xy: ValueId, wh: ValueId) -> ValueId {
    let two = g.const_f32("two", vec![], &[2.0]);
    let half = g.op("Div", &[wh, two], vec![]);
    let lo = g.op("Sub", &[xy, half], vec![]);
    let hi = g.op("Add", &[xy, half], vec![]);
    g.op("Concat", &[lo, hi], vec![attr_i("axis", 2)])
}

/// `delta2bbox` (mmdet `delta_xywh_bbox_coder.py:270-361`) of one level's deltas `d [B, HWA, 4]`
/// against its anchors (constants: centres and sizes in float32 as upstream computes them from
/// the anchors, location-major then anchor), op by op as `retina_head::delta2bbox`; the clamp to
/// `max_shape` is the caller's.
pub(super) fn delta_boxes(
    g: &mut OnnxGraph,
    d: ValueId,
    base: &[[f32; 4]],
    coder: &DeltaXywhCoderCfg,
    level: &LevelShape,
) -> ValueId {
    let n = level.h * level.w * base.len() as i64;
    let (mut centres, mut sizes) = (Vec::with_capacity(n as usize * 2), Vec::new());
    for hw in 0..level.h * level.w {
        // single_level_grid_priors: base + float32(col) * stride_w.
        let sx = (hw % level.w) as f32 * level.stride.0 as f32;
        let sy = (hw / level.w) as f32 * level.stride.1 as f32;
        for b in base {
            let p = [b[0] + sx, b[1] + sy, b[2] + sx, b[3] + sy];
            centres.extend([(p[0] + p[2]) * 0.5, (p[1] + p[3]) * 0.5]);
            sizes.extend([p[2] - p[0], p[3] - p[1]]);
        }
    }
    let centres = g.const_f32("anchor_centres", vec![1, n, 2], &centres);
    let sizes = g.const_f32("anchor_sizes", vec![1, n, 2], &sizes);
    let d = denormalise_deltas(g, d, coder);
    let (dxy, dwh) = split_pairs(g, d);
    let (gxy, gwh) = apply_deltas(g, (centres, sizes), (dxy, dwh), coder);
    // gxy ∓ gwh * 0.5 (corners' `/ 2` is the same float32 result).
    corners(g, gxy, gwh)
}

/// `delta2bbox`'s first step: `deltas · target_stds + target_means`.
pub(super) fn denormalise_deltas(
    g: &mut OnnxGraph,
    d: ValueId,
    coder: &DeltaXywhCoderCfg,
) -> ValueId {
    let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    let stds = g.const_f32("target_stds", vec![4], &f(&coder.target_stds));
    let means = g.const_f32("target_means", vec![4], &f(&coder.target_means));
    let d = g.op("Mul", &[d, stds], vec![]);
    g.op("Add", &[d, means], vec![])
}

/// `delta2bbox` on priors given as centres and sizes (`[..., 2]` each, broadcast against the
/// deltas' halves): `dxy · size` (clamped to `±ctr_clamp` with `add_ctr_clamp`), `dwh` clamped to
/// `±max_ratio` (only above with `add_ctr_clamp`), then `(centre + dxy, size · exp(dwh))`.
/// Shared by the anchor heads (`delta_boxes`) and the RoI box head (`two_stage.rs`).
pub(super) fn apply_deltas(
    g: &mut OnnxGraph,
    (centres, sizes): (ValueId, ValueId),
    (dxy, dwh): (ValueId, ValueId),
    coder: &DeltaXywhCoderCfg,
) -> (ValueId, ValueId) {
    let mut dxy = g.op("Mul", &[sizes, dxy], vec![]);
    // max_ratio = abs(log(16 / 1000)) in float64, compared in float32.
    let r = (16f64 / 1000.0).ln().abs() as f32;
    let max_ratio = g.const_f32("max_ratio", vec![], &[r]);
    let dwh = if coder.add_ctr_clamp {
        let c = coder.ctr_clamp as f32;
        let (lo, hi) = (
            g.const_f32("ctr_clamp_lo", vec![], &[-c]),
            g.const_f32("ctr_clamp_hi", vec![], &[c]),
        );
        dxy = g.op("Clip", &[dxy, lo, hi], vec![]);
        g.op("Min", &[dwh, max_ratio], vec![])
    } else {
        let lo = g.const_f32("min_ratio", vec![], &[-r]);
        g.op("Clip", &[dwh, lo, max_ratio], vec![])
    };
    let gxy = g.op("Add", &[centres, dxy], vec![]);
    let e = g.op("Exp", &[dwh], vec![]);
    let gwh = g.op("Mul", &[sizes, e], vec![]);
    (gxy, gwh)
}

/// Top `k` of `scores [B, M]` (sorted), their values, indices and the `> score_thr` mask.
pub(super) fn top_candidates(
    g: &mut OnnxGraph,
    scores: ValueId,
    k: i64,
    score_thr: f32,
) -> (ValueId, ValueId, ValueId) {
    let kk = i64s(g, &[k]);
    top_k_of(g, scores, kk, score_thr)
}

/// [`top_candidates`] with K a graph value (`[1]` int64).
pub(super) fn top_k_of(
    g: &mut OnnxGraph,
    scores: ValueId,
    kk: ValueId,
    score_thr: f32,
) -> (ValueId, ValueId, ValueId) {
    let tk = g.op_multi(
        "TopK",
        vec![Some(scores), Some(kk)],
        2,
        vec![attr_i("axis", 1), attr_i("largest", 1), attr_i("sorted", 1)],
    );
    let thr = g.const_f32("score_thr", vec![], &[score_thr]);
    let mask = g.op("Greater", &[tk[0], thr], vec![]);
    (tk[0], tk[1], mask)
}

/// Gathers the rows of boxes `x [B, M, 4]` at `idx [B, K]` (`GatherElements` on the index
/// expanded to `[B, K, 4]`; `GatherND` with `batch_dims` is less widely implemented).
pub(super) fn gather_rows(g: &mut OnnxGraph, x: ValueId, idx: ValueId) -> ValueId {
    let axes = i64s(g, &[2]);
    let idx3 = g.op("Unsqueeze", &[idx, axes], vec![]);
    let four = i64s(g, &[1, 1, 4]);
    let idx4 = g.op("Expand", &[idx3, four], vec![]);
    g.op("GatherElements", &[x, idx4], vec![attr_i("axis", 1)])
}

/// mmdeploy's outputs from the top `K` rows (`top_k_of`: scores `top [B, K]`, indices `idx`,
/// `valid` rows): `dets [B, K, 5]` (the gathered boxes `boxes_k [B, K, 4]` and the score) and
/// `labels [B, K]` (of `labels [B, M]` at `idx`); rows past an image's detections are zero in
/// `dets` and -1 in `labels`. `ax2` is the caller's int64 constant `[2]`. Shared by the one-stage
/// `emit` and the two-stage box head (`two_stage.rs`).
pub(super) fn dets_and_labels(
    g: &mut OnnxGraph,
    (boxes_k, labels): (ValueId, ValueId),
    (top, idx, valid): (ValueId, ValueId, ValueId),
    ax2: ValueId,
) -> (ValueId, ValueId) {
    let out_labels = g.op("GatherElements", &[labels, idx], vec![attr_i("axis", 1)]);
    let t3 = g.op("Unsqueeze", &[top, ax2], vec![]);
    let dets = g.op("Concat", &[boxes_k, t3], vec![attr_i("axis", 2)]);
    let valid3 = g.op("Unsqueeze", &[valid, ax2], vec![]);
    let zero = g.const_f32("zero", vec![], &[0.0]);
    let dets = g.op("Where", &[valid3, dets, zero], vec![]);
    let minus_one = g.const_i64("no_label", vec![], &[-1]);
    let labels = g.op("Where", &[valid, out_labels, minus_one], vec![]);
    (dets, labels)
}

/// Appends decoding, NMS and the final selection after the raw head outputs (float32 values).
pub fn emit(
    g: &mut OnnxGraph,
    det: &Detector,
    cfg: &TestCfg,
    heads: &OnnxHeadOutputs,
    (levels, batch): (&[LevelShape], &Dim),
) -> Result<End2EndOutputs, ExportError> {
    let flavour = det.flavour();
    let c = det.num_classes();
    let offset = det.prior_offset();
    let decoder = det.onnx_decoder();
    if let OnnxDecoder::Unsupported(what) = decoder {
        return Err(ExportError::unsupported(
            format!("end-to-end decoding of {what}"),
            "dense head",
        ));
    }
    let with_objectness = matches!(
        decoder,
        OnnxDecoder::Yolov5Anchors(_) | OnnxDecoder::YoloxPoints { .. }
    );
    let priors_per_location = match &decoder {
        OnnxDecoder::Yolov5Anchors(specs) => specs.first().map_or(1, |s| s.base_sizes.len() as i64),
        OnnxDecoder::DeltaAnchors { base, .. } => base.first().map_or(1, |b| b.len() as i64),
        _ => 1,
    };
    if with_objectness == heads.objectnesses.is_empty()
        || (with_objectness && flavour != Flavour::Mmyolo)
        || (matches!(
            decoder,
            OnnxDecoder::DeltaAnchors { .. } | OnnxDecoder::GflIntegral { .. }
        ) && flavour != Flavour::Mmdet)
        || (!heads.centernesses.is_empty()
            && (flavour != Flavour::Mmdet || heads.centernesses.len() != levels.len()))
    {
        // A head whose outputs and decoder disagree: a missing emitter, not a user error.
        return Err(ExportError::unsupported(
            format!("end-to-end decoding of {}", det.type_name()),
            "dense head",
        ));
    }
    // `_bbox_post_process` filters on the rescaled boxes; only 0 ("non-empty") is independent
    // of each image's scale factor, so only 0 can live in the graph.
    let min_size_zero = match cfg.min_bbox_size {
        Some(m) if m > 0.0 => {
            return Err(invalid(
                "min_bbox_size",
                format!(
                    "{m} depends on each image's scale factor; only 0 or absent can be exported"
                ),
            ))
        }
        Some(m) => m == 0.0,
        None => false,
    };
    let max_per_img = cfg.max_per_img.ok_or_else(|| {
        invalid(
            "max_per_img",
            "required (upstream reads it as an attribute)",
        )
    })?;
    if max_per_img <= 0 {
        return Err(invalid(
            "max_per_img",
            format!("must be positive, got {max_per_img}"),
        ));
    }
    let cat1 =
        |g: &mut OnnxGraph, parts: &[ValueId]| g.op("Concat", parts, vec![attr_i("axis", 1)]);

    // Per level: scores [B, HW, C] (sigmoid), boxes [B, HW, 4] decoded.
    let mut level_scores = Vec::new();
    let mut level_boxes = Vec::new();
    let input_h = levels
        .first()
        .map(|l| l.h as f64 * l.stride.1)
        .unwrap_or(0.0) as f32;
    let input_w = levels
        .first()
        .map(|l| l.w as f64 * l.stride.0)
        .unwrap_or(0.0) as f32;
    let meta: PerImage = per_image::declare(g, flavour, batch, (input_h as i64, input_w as i64));
    for (i, level) in levels.iter().enumerate() {
        let hw = level.h * level.w;
        let (scores, b) = match &decoder {
            OnnxDecoder::Distance => {
                let s = flatten_level(g, heads.cls_scores[i], c, hw);
                let scores = g.op("Sigmoid", &[s], vec![]);
                let b = distance_boxes(g, heads.bbox_preds[i], level, (offset, flavour), hw);
                let b = if flavour == Flavour::Mmdet {
                    // max_shape = img_shape: x in [0, W], y in [0, H].
                    meta.clamp(g, b)
                } else {
                    b
                };
                (scores, b)
            }
            OnnxDecoder::DeltaAnchors { base, coder } => {
                let base = base.get(i).ok_or_else(|| {
                    invalid("anchor_generator", format!("no anchors for level {i}"))
                })?;
                let a = base.len() as i64;
                let s = flatten_anchors(g, heads.cls_scores[i], c, a, hw);
                let scores = g.op("Sigmoid", &[s], vec![]);
                let d = flatten_anchors(g, heads.bbox_preds[i], 4, a, hw);
                let b = delta_boxes(g, d, base, coder, level);
                let b = if coder.clip_border {
                    meta.clamp(g, b)
                } else {
                    b
                };
                (scores, b)
            }
            OnnxDecoder::GflIntegral {
                base,
                project,
                clip_border,
            } => {
                let base = base.get(i).ok_or_else(|| {
                    invalid("anchor_generator", format!("no anchors for level {i}"))
                })?;
                let s = flatten_level(g, heads.cls_scores[i], c, hw);
                let scores = g.op("Sigmoid", &[s], vec![]);
                let b = end2end_mmdet::gfl_boxes(g, heads.bbox_preds[i], base, project, level);
                let b = if *clip_border { meta.clamp(g, b) } else { b };
                (scores, b)
            }
            OnnxDecoder::RepPoints => {
                super::end2end_reppoints::decode_level(g, heads, i, (c, offset), level, &meta)
            }
            OnnxDecoder::TwoStage { .. } => {
                return Err(ExportError::unsupported(
                    "two-stage decoding outside export::onnx::two_stage",
                    "dense head",
                ));
            }
            OnnxDecoder::Unsupported(what) => {
                return Err(ExportError::unsupported(*what, "dense head"));
            }
            OnnxDecoder::Yolov5Anchors(specs) => {
                let spec = specs.get(i).ok_or_else(|| {
                    invalid("prior_generator", format!("no anchors for level {i}"))
                })?;
                let a = spec.base_sizes.len() as i64;
                let scores = end2end_yolo::objectness_scores(g, heads, i, (c, a, hw));
                let d = flatten_anchors(g, heads.bbox_preds[i], 4, a, hw);
                let d = g.op("Sigmoid", &[d], vec![]);
                (scores, end2end_yolo::yolov5_boxes(g, d, spec, level))
            }
            OnnxDecoder::YoloxPoints { decode_strides } => {
                let stride = *decode_strides.get(i).ok_or_else(|| {
                    invalid("featmap_strides", format!("no stride for level {i}"))
                })?;
                let scores = end2end_yolo::objectness_scores(g, heads, i, (c, 1, hw));
                let d = flatten_level(g, heads.bbox_preds[i], 4, hw);
                (
                    scores,
                    end2end_yolo::yolox_boxes(g, d, level, offset, stride),
                )
            }
        };
        level_scores.push(scores);
        level_boxes.push(b);
    }

    let score_thr = match flavour {
        // mmyolo: `cfg.get('score_thr', -1)`; mmdet: `cfg.get('score_thr', 0)`.
        Flavour::Mmyolo => cfg.score_thr.unwrap_or(-1.0) as f32,
        Flavour::Mmdet => cfg.score_thr.unwrap_or(0.0) as f32,
    };
    // Candidates: values [B, K], boxes [B, K, 4], labels [B, K] (int64), mask [B, K].
    let (values, boxes, labels, mask, k_cands) = match flavour {
        Flavour::Mmyolo => {
            let multi_label = cfg
                .multi_label
                .ok_or_else(|| invalid("multi_label", "required by mmyolo's predict_by_feat"))?
                && c > 1;
            let nms_pre = cfg.nms_pre.unwrap_or(100_000);
            let scores = cat1(g, &level_scores);
            let all_boxes = cat1(g, &level_boxes);
            let p: i64 = levels.iter().map(|l| l.h * l.w).sum::<i64>() * priors_per_location;
            if multi_label {
                // flat index = prior * C + class, over all levels jointly.
                let shape = i64s(g, &[0, p * c]);
                let flat = g.op("Reshape", &[scores, shape], vec![]);
                let k = nms_pre.clamp(0, p * c).max(1);
                let (v, idx, mask) = top_candidates(g, flat, k, score_thr);
                let cc = g.const_i64("num_classes", vec![], &[c]);
                let prior = g.op("Div", &[idx, cc], vec![]);
                let label = g.op("Mod", &[idx, cc], vec![]);
                let b = gather_rows(g, all_boxes, prior);
                (v, b, label, mask, k)
            } else {
                // scores.max(1): the first maximum's class.
                let axes = [2];
                let best = reduce_max(g, scores, &axes);
                let sq = i64s(g, &axes);
                let best = g.op("Squeeze", &[best, sq], vec![]);
                let arg = g.op(
                    "ArgMax",
                    &[scores],
                    vec![attr_i("axis", 2), attr_i("keepdims", 0)],
                );
                let k = nms_pre.clamp(0, p).max(1);
                let (v, idx, mask) = top_candidates(g, best, k, score_thr);
                let b = gather_rows(g, all_boxes, idx);
                let label = g.op("GatherElements", &[arg, idx], vec![attr_i("axis", 1)]);
                (v, b, label, mask, k)
            }
        }
        Flavour::Mmdet => {
            // Per level: the top `nms_pre` of (H·W·C) scores (flat index = hw * C + class).
            let nms_pre = cfg.nms_pre.unwrap_or(-1);
            let (mut vs, mut bs, mut ls, mut ms, mut total) = (vec![], vec![], vec![], vec![], 0);
            for (i, level) in levels.iter().enumerate() {
                let n = level.h * level.w * priors_per_location * c;
                let shape = i64s(g, &[0, n]);
                let flat = g.op("Reshape", &[level_scores[i], shape], vec![]);
                let k = if nms_pre > 0 { nms_pre.min(n) } else { n };
                total += k;
                let (v, idx, mask) = top_candidates(g, flat, k, score_thr);
                let cc = g.const_i64("num_classes", vec![], &[c]);
                let prior = g.op("Div", &[idx, cc], vec![]);
                ls.push(g.op("Mod", &[idx, cc], vec![]));
                bs.push(gather_rows(g, level_boxes[i], prior));
                // ATSS/FCOS: `scores * score_factors` after the threshold and top-k (the mask
                // keeps the plain score's verdict).
                let v = match heads.centernesses.get(i) {
                    Some(&ctr) => {
                        let a = priors_per_location;
                        let f =
                            end2end_mmdet::centerness_factors(g, ctr, a, level.h * level.w, prior);
                        g.op("Mul", &[v, f], vec![])
                    }
                    None => v,
                };
                vs.push(v);
                ms.push(mask);
            }
            (
                cat1(g, &vs),
                cat1(g, &bs),
                cat1(g, &ls),
                cat1(g, &ms),
                total,
            )
        }
    };

    // predict_by_feat's rescale, before `_bbox_post_process` (min size, NMS) as upstream.
    let boxes = meta.rescale(g, boxes);
    let mask = if min_size_zero {
        // (x2 - x1) > 0 and (y2 - y1) > 0, on the boxes before the (positive) rescale.
        let both = both_sides_above(g, boxes, 0.0);
        g.op("And", &[mask, both], vec![])
    } else {
        mask
    };
    let nms_cfg = cfg.nms.as_ref();
    let kept = batched_nms(g, (boxes, values, labels, Some(mask)), c, k_cands, nms_cfg);
    // max_per_img (and mmcv's max_num, applied first with the same order) by descending score.
    let k_out = match nms_cfg.and_then(|n| n.max_num) {
        Some(m) => max_per_img.min(m as i64),
        None => max_per_img,
    };
    let k_out = k_out.min(k_cands).max(1);
    let (k, rows) = if cfg.yolox_style {
        // `cfg.max_per_img = len(results)` (yolov5_head.py:431-433): everything NMS keeps, so
        // the row count is the data's: the most any image keeps (at least 1), a `TopK` whose K
        // is computed in the graph.
        let kept_mask = g.const_f32("kept_threshold", vec![], &[NOT_A_CANDIDATE / 2.0]);
        let is_kept = g.op("Greater", &[kept, kept_mask], vec![]);
        let is_kept = g.cast(is_kept, super::proto::data_type::INT64);
        let ax1 = i64s(g, &[1]);
        let per_image = g.op("ReduceSum", &[is_kept, ax1], vec![attr_i("keepdims", 0)]);
        let most = reduce_max(g, per_image, &[0]);
        let one = i64s(g, &[1]);
        (
            g.op("Max", &[most, one], vec![]),
            Dim::Symbolic("detections".into()),
        )
    } else {
        (i64s(g, &[k_out]), Dim::Fixed(k_out))
    };
    let (top, top_idx, valid) = top_k_of(g, kept, k, NOT_A_CANDIDATE / 2.0);
    let out_boxes = gather_rows(g, boxes, top_idx);
    let out_boxes = match flavour {
        // mmyolo clamps to the original image after NMS.
        Flavour::Mmyolo => meta.clamp(g, out_boxes),
        Flavour::Mmdet => out_boxes,
    };
    let k_axes = i64s(g, &[2]);
    let (dets, labels) = dets_and_labels(g, (out_boxes, labels), (top, top_idx, valid), k_axes);
    Ok(End2EndOutputs { dets, labels, rows })
}
