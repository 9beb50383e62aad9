//! Two-stage detectors (mmdet `FasterRCNN`: `RPNHead` + `StandardRoIHead`) as one ONNX graph in
//! standard ops, batch 1, after the RPN's raw outputs (`TwoStageHead::emit_onnx`):
//!
//! 1. proposals, as `RPNHead._predict_by_feat_single` + `_bbox_post_process`
//!    (`mmdet/models/dense_heads/rpn_head.py:134-296`, `crate::postprocess::two_stage`): per level
//!    the sigmoid objectness, its top `nms_pre` (`TopK`), `delta2bbox` on the anchors clamped to
//!    `img_shape`; the `min_bbox_size` filter (`w > m & h > m`, on network-input pixels as
//!    `rescale=False`), mmcv `batched_nms` with the level index as the class (the coordinate
//!    offsets; one NMS per level from `split_thr` candidates on) and the first `max_per_img`;
//! 2. `StandardRoIHead`'s box branch (`RoiHead::emit_onnx`): `map_roi_levels`, one ONNX
//!    `RoiAlign` per level on that level's RoIs (`crate::ops::roi_align_onnx`), `Shared2FCBBoxHead`;
//! 3. with `--end2end`, `BBoxHead._predict_by_feat_single(rescale=True)` + `multiclass_nms`
//!    (`bbox_head.py:476-570`, `bbox_nms.py:12-100`): softmax, the class-specific `delta2bbox` of
//!    each RoI clamped to `img_shape`, `× 1/scale_factor`, every (RoI, class) with `score >
//!    score_thr`, mmcv `batched_nms` by class and the first `max_per_img` → `dets [1, N, 5]`,
//!    `labels [1, N]` as the one-stage graphs (`end2end.rs`, whose helpers this calls).
//!
//! Raw outputs (no `--end2end`): `rpn_cls_score_i [1, A, H, W]` and `rpn_bbox_pred_i [1, 4A, H,
//! W]` per level (the RPN's `predict_by_feat` input), `rois [N, 5]` (`bbox2roi`: image index 0,
//! x1, y1, x2, y2 on the network input), `roi_scores [N]` (their objectness), `cls_score [N,
//! C + 1]` (logits, background last) and `bbox_pred [N, 4C]` (deltas; `[N, 4]` class-agnostic),
//! `N` the proposal count (symbolic `"rois"`). The per-image inputs `scale_factor`, `img_shape`
//! (`per_image.rs`) are declared in both modes: `img_shape` is the proposals' clamp.
//!
//! tract (the Rust tests) has no `RoiAlign`: tests/onnx_export_mmdet.rs runs the graph up to the
//! proposals there; onnxruntime runs all of it (tests/fixtures/generate/check_onnx.py).

use super::end2end::{
    apply_deltas, both_sides_above, delta_boxes, denormalise_deltas, dets_and_labels,
    flatten_anchors, gather_rows, i64s, top_candidates, top_k_of, LevelShape, OnnxDecoder,
    NOT_A_CANDIDATE,
};
use super::graph::{attr_i, Dim, OnnxGraph, ValueId};
use super::nms::batched_nms;
use super::per_image::{self, PerImage};
use super::proto::data_type;
use super::write::{level_outputs, LevelGroup, OutputDoc};
use super::{ExportError, OnnxHeadOutputs, OnnxOptions};
use crate::models::{Flavour, HeadOutputs};
use crate::postprocess::{NmsCfg, TestCfg};
use crate::Inferencer;
use mmcompat_registry::spec::models::anchor_head::DeltaXywhCoderCfg;

/// The box head's raw outputs as graph values (`RoiHead::emit_onnx`), with how to decode them.
#[derive(Debug, Clone)]
pub struct OnnxRoiOutputs {
    /// `[N, C + 1]` logits, background last.
    pub cls_score: ValueId,
    /// `[N, 4C]` deltas (`[N, 4]` with `reg_class_agnostic`).
    pub bbox_pred: ValueId,
    pub num_classes: i64,
    pub class_agnostic: bool,
    pub coder: DeltaXywhCoderCfg,
}

/// The proposals: `boxes [1, N, 4]`, `scores [1, N]`, `valid [1, N]` (rows past the image's
/// proposals false), `n` = rows.
struct Proposals {
    boxes: ValueId,
    scores: ValueId,
    valid: ValueId,
    n: i64,
}

fn invalid(option: &'static str, message: impl Into<String>) -> ExportError {
    ExportError::InvalidOption {
        option,
        message: message.into(),
    }
}

fn stage<'a>(cfg: &'a TestCfg, key: &str) -> Result<&'a TestCfg, ExportError> {
    let c = match key {
        "rpn" => cfg.rpn.as_deref(),
        _ => cfg.rcnn.as_deref(),
    };
    c.ok_or_else(|| {
        invalid(
            "--end2end",
            format!("test_cfg.{key}: required by a two-stage detector"),
        )
    })
}

/// The graph after the RPN's raw outputs `heads` (shapes from the probe `raw`): the outputs to
/// declare, in order.
pub(super) fn emit(
    g: &mut OnnxGraph,
    inferencer: &Inferencer,
    opts: &OnnxOptions,
    (heads, raw): (&OnnxHeadOutputs, &HeadOutputs),
    batch: &Dim,
    (h, w): (i64, i64),
) -> Result<Vec<(ValueId, OutputDoc)>, ExportError> {
    let det = inferencer.detector();
    if *batch != Dim::Fixed(1) {
        return Err(invalid(
            "--dynamic-batch",
            format!(
                "{} is exported with batch 1: each image's proposals are a data-dependent \
                 number of RoIs; export without --dynamic-batch",
                det.type_name()
            ),
        ));
    }
    if opts.half {
        return Err(invalid(
            "--half",
            format!(
                "{}: a float16 two-stage graph is not exported (RoiAlign and the proposal NMS \
                 run in float32); export without --half",
                det.type_name()
            ),
        ));
    }
    let (rpn_base, rpn_coder) = match det.onnx_decoder() {
        OnnxDecoder::TwoStage {
            rpn_base,
            rpn_coder,
        } => (rpn_base, rpn_coder),
        OnnxDecoder::Unsupported(what) => return Err(ExportError::unsupported(what, "dense head")),
        _ => {
            return Err(ExportError::unsupported(
                format!("the first stage of {}", det.type_name()),
                "dense head",
            ))
        }
    };
    let roi_head = det.onnx_roi_head().ok_or_else(|| {
        ExportError::unsupported(format!("the RoI head of {}", det.type_name()), "RoI head")
    })?;
    let levels = LevelShape::of_levels(&raw.cls_scores, det.strides());
    if rpn_base.len() < levels.len() || heads.features.is_empty() {
        return Err(ExportError::unsupported(
            format!(
                "the RPN of {} (anchors or features missing)",
                det.type_name()
            ),
            "dense head",
        ));
    }
    let cfg = inferencer.test_cfg();
    let rpn_cfg = stage(cfg, "rpn")?;
    let meta = per_image::declare(g, Flavour::Mmdet, batch, (h, w));
    let props = proposals(g, heads, &levels, (&rpn_base, &rpn_coder), rpn_cfg, &meta)?;
    let sq0 = i64s(g, &[0]);
    let mut outputs = Vec::new();
    if opts.end2end {
        let rois = g.op("Squeeze", &[props.boxes, sq0], vec![]);
        let r = roi_head.emit_onnx(g, &heads.features, rois)?;
        let (dets, labels, k) = detections(g, &r, rois, &props, stage(cfg, "rcnn")?, &meta)?;
        outputs.push((
            dets,
            OutputDoc {
                name: "dets".into(),
                shape: vec![batch.clone(), Dim::Fixed(k), Dim::Fixed(5)],
                elem_type: data_type::FLOAT,
                doc: "x1, y1, x2, y2, score by descending score, in original-image pixels when \
                      scale_factor and img_shape are fed, else in network-input pixels; rows \
                      past the image's detections are zero (mmdeploy's layout)"
                    .into(),
            },
        ));
        outputs.push((
            labels,
            OutputDoc {
                name: "labels".into(),
                shape: vec![batch.clone(), Dim::Fixed(k)],
                elem_type: data_type::INT64,
                doc: "class index of each row of dets; -1 for padding rows".into(),
            },
        ));
        return Ok(outputs);
    }
    let rpn_groups: [LevelGroup; 2] = [
        (
            "rpn_cls_score",
            &heads.cls_scores,
            &raw.cls_scores,
            "RPN objectness logits",
        ),
        (
            "rpn_bbox_pred",
            &heads.bbox_preds,
            &raw.bbox_preds,
            "RPN anchor deltas",
        ),
    ];
    // Float32 already: `--half` is refused above.
    outputs.extend(level_outputs(g, &rpn_groups, batch, det.strides(), false));
    // Only the image's proposals: the first `count` rows (valid rows come first, by score).
    let valid = g.cast(props.valid, data_type::INT64);
    let ax1 = i64s(g, &[1]);
    let count = g.op("ReduceSum", &[valid, ax1], vec![attr_i("keepdims", 0)]);
    // A `TopK` with the count as K (the rows are sorted already): tract runs it, where its
    // `Slice` with a data-dependent end fails.
    let (scores, idx, _) = top_k_of(g, props.scores, count, NOT_A_CANDIDATE / 2.0);
    let boxes = gather_rows(g, props.boxes, idx);
    let rois = g.op("Squeeze", &[boxes, sq0], vec![]);
    let roi_scores = g.op("Squeeze", &[scores, sq0], vec![]);
    let r = roi_head.emit_onnx(g, &heads.features, rois)?;
    // bbox2roi: the image index 0 before each box.
    let zero = g.const_f32("zero", vec![], &[0.0]);
    let n1 = g.op("Shape", &[rois], vec![attr_i("end", 1)]);
    let one = i64s(g, &[1]);
    let col_shape = g.op("Concat", &[n1, one], vec![attr_i("axis", 0)]);
    let col = g.op("Expand", &[zero, col_shape], vec![]);
    let rois5 = g.op("Concat", &[col, rois], vec![attr_i("axis", 1)]);
    let n = Dim::Symbolic("rois".into());
    let c = r.num_classes;
    let reg = if r.class_agnostic { 4 } else { 4 * c };
    for (v, name, dims, doc) in [
        (
            rois5,
            "rois",
            vec![n.clone(), Dim::Fixed(5)],
            "bbox2roi of the proposals: image index (0), x1, y1, x2, y2 in network-input \
             pixels, by descending objectness",
        ),
        (
            roi_scores,
            "roi_scores",
            vec![n.clone()],
            "RPN objectness (sigmoid) of each proposal",
        ),
        (
            r.cls_score,
            "cls_score",
            vec![n.clone(), Dim::Fixed(c + 1)],
            "box head class logits per RoI (before softmax), background last",
        ),
        (
            r.bbox_pred,
            "bbox_pred",
            vec![n.clone(), Dim::Fixed(reg)],
            "box head deltas per RoI (DeltaXYWHBBoxCoder, per class unless reg_class_agnostic)",
        ),
    ] {
        outputs.push((
            v,
            OutputDoc {
                name: name.into(),
                shape: dims,
                elem_type: data_type::FLOAT,
                doc: doc.into(),
            },
        ));
    }
    Ok(outputs)
}

/// Step 1: the RPN's proposals, `max_per_img` rows by descending score.
fn proposals(
    g: &mut OnnxGraph,
    heads: &OnnxHeadOutputs,
    levels: &[LevelShape],
    (base, coder): (&[Vec<[f32; 4]>], &DeltaXywhCoderCfg),
    cfg: &TestCfg,
    meta: &PerImage,
) -> Result<Proposals, ExportError> {
    let nms_pre = cfg.nms_pre.unwrap_or(-1);
    let (mut vs, mut bs, mut ls, mut total) = (vec![], vec![], vec![], 0);
    for (i, level) in levels.iter().enumerate() {
        let a = base[i].len() as i64;
        let hw = level.h * level.w;
        let n = hw * a;
        let s = flatten_anchors(g, heads.cls_scores[i], 1, a, hw);
        let shape = i64s(g, &[0, n]);
        let s = g.op("Reshape", &[s, shape], vec![]);
        let s = g.op("Sigmoid", &[s], vec![]);
        let d = flatten_anchors(g, heads.bbox_preds[i], 4, a, hw);
        let b = delta_boxes(g, d, &base[i], coder, level);
        // max_shape = img_shape.
        let b = if coder.clip_border {
            meta.clamp(g, b)
        } else {
            b
        };
        // `0 < nms_pre < priors`: the sorted top; else all (sorted too: NMS sorts anyway).
        let k = if 0 < nms_pre && nms_pre < n {
            nms_pre
        } else {
            n
        };
        let (v, idx, _) = top_candidates(g, s, k, NOT_A_CANDIDATE);
        bs.push(gather_rows(g, b, idx));
        vs.push(v);
        ls.push(g.const_i64("level_ids", vec![1, k], &vec![i as i64; k as usize]));
        total += k;
    }
    let cat1 =
        |g: &mut OnnxGraph, parts: &[ValueId]| g.op("Concat", parts, vec![attr_i("axis", 1)]);
    let (values, boxes, labels) = (cat1(g, &vs), cat1(g, &bs), cat1(g, &ls));
    // `if cfg.get('min_bbox_size', -1) >= 0`: `w > m & h > m` (`rescale=False`: input pixels).
    let mask = cfg
        .min_bbox_size
        .filter(|&m| m >= 0.0)
        .map(|m| both_sides_above(g, boxes, m as f32));
    // `assert with_nms` upstream: an RPN always suppresses.
    let nms = cfg
        .nms
        .as_ref()
        .ok_or_else(|| invalid("--end2end", "test_cfg.rpn.nms: required by RPNHead"))?;
    let kept = batched_nms(
        g,
        (boxes, values, labels, mask),
        levels.len() as i64,
        total,
        Some(nms),
    );
    let max_per_img = cfg
        .max_per_img
        .ok_or_else(|| invalid("--end2end", "test_cfg.rpn.max_per_img: required"))?;
    if max_per_img <= 0 {
        // `results[:max_per_img]` would drop proposals from the end: no fixed row count.
        return Err(invalid(
            "--end2end",
            format!("test_cfg.rpn.max_per_img: must be positive to export, got {max_per_img}"),
        ));
    }
    let n = keep_count(max_per_img, nms, total);
    let kk = i64s(g, &[n]);
    let (scores, idx, valid) = top_k_of(g, kept, kk, NOT_A_CANDIDATE / 2.0);
    let boxes = gather_rows(g, boxes, idx);
    Ok(Proposals {
        boxes,
        scores,
        valid,
        n,
    })
}

/// Rows kept after NMS of `total` candidates: `[:max_per_img]` (Python slice; `max_num` first).
fn keep_count(max_per_img: i64, nms: &NmsCfg, total: i64) -> i64 {
    let mut k = if max_per_img > 0 { max_per_img } else { total };
    if let Some(m) = nms.max_num {
        k = k.min(m as i64);
    }
    k.min(total).max(1)
}

/// `delta2bbox` (`delta_xywh_bbox_coder.py:270-361`) of `deltas [..., 4]` on `rois [..., 4]`
/// (broadcast), op by op as `retina_head::delta2bbox`; the clamp is the caller's.
fn delta2bbox(
    g: &mut OnnxGraph,
    rois: ValueId,
    deltas: ValueId,
    coder: &DeltaXywhCoderCfg,
) -> ValueId {
    let d = denormalise_deltas(g, deltas, coder);
    let split = |g: &mut OnnxGraph, x: ValueId| {
        let two = i64s(g, &[2, 2]);
        let p = g.op_multi(
            "Split",
            vec![Some(x), Some(two)],
            2,
            vec![attr_i("axis", -1)],
        );
        (p[0], p[1])
    };
    let (dxy, dwh) = split(g, d);
    let (lo, hi) = split(g, rois);
    let half = g.const_f32("half", vec![], &[0.5]);
    let sum = g.op("Add", &[lo, hi], vec![]);
    let pxy = g.op("Mul", &[sum, half], vec![]);
    let pwh = g.op("Sub", &[hi, lo], vec![]);
    let (gxy, gwh) = apply_deltas(g, (pxy, pwh), (dxy, dwh), coder);
    let hw = g.op("Mul", &[gwh, half], vec![]);
    let x1y1 = g.op("Sub", &[gxy, hw], vec![]);
    let x2y2 = g.op("Add", &[gxy, hw], vec![]);
    g.op("Concat", &[x1y1, x2y2], vec![attr_i("axis", -1)])
}

/// Step 3 (`--end2end`): `(dets [1, k, 5], labels [1, k], k)`.
fn detections(
    g: &mut OnnxGraph,
    r: &OnnxRoiOutputs,
    rois: ValueId,
    props: &Proposals,
    cfg: &TestCfg,
    meta: &PerImage,
) -> Result<(ValueId, ValueId, i64), ExportError> {
    let (n, c) = (props.n, r.num_classes);
    let score_thr = cfg
        .score_thr
        .ok_or_else(|| invalid("--end2end", "test_cfg.rcnn.score_thr: required"))?
        as f32;
    let max_per_img = cfg
        .max_per_img
        .ok_or_else(|| invalid("--end2end", "test_cfg.rcnn.max_per_img: required"))?;
    // `F.softmax(cls_score, dim=-1)`, then `multi_scores[:, :-1]`.
    let scores = g.op("Softmax", &[r.cls_score], vec![attr_i("axis", -1)]);
    let (s0, sc, ax1) = (i64s(g, &[0]), i64s(g, &[c]), i64s(g, &[1]));
    let scores = g.op("Slice", &[scores, s0, sc, ax1], vec![]);
    let per_roi = if r.class_agnostic { 1 } else { c };
    let shape = i64s(g, &[n, per_roi, 4]);
    let deltas = g.op("Reshape", &[r.bbox_pred, shape], vec![]);
    let rois3 = g.op("Unsqueeze", &[rois, ax1], vec![]);
    let boxes = delta2bbox(g, rois3, deltas, &r.coder);
    let boxes = if r.coder.clip_border {
        meta.clamp(g, boxes)
    } else {
        boxes
    };
    let flat = i64s(g, &[1, n * per_roi, 4]);
    let boxes = g.op("Reshape", &[boxes, flat], vec![]);
    // `scale_boxes(bboxes, [1 / s for s in scale_factor])` before the NMS.
    let boxes = meta.rescale(g, boxes);
    // multiclass_nms: class-agnostic boxes expanded to every class; (RoI, class) row-major.
    let boxes = if r.class_agnostic {
        let b4 = i64s(g, &[1, n, 1, 4]);
        let b = g.op("Reshape", &[boxes, b4], vec![]);
        let e = i64s(g, &[1, n, c, 4]);
        let b = g.op("Expand", &[b, e], vec![]);
        let flat = i64s(g, &[1, n * c, 4]);
        g.op("Reshape", &[b, flat], vec![])
    } else {
        boxes
    };
    let k = n * c;
    let flat2 = i64s(g, &[1, k]);
    let values = g.op("Reshape", &[scores, flat2], vec![]);
    let ids: Vec<i64> = (0..k).map(|i| i % c).collect();
    let labels = g.const_i64("class_ids", vec![1, k], &ids);
    // `scores > score_thr` of the image's RoIs (padding rows of the proposals are no candidates).
    let thr = g.const_f32("score_thr", vec![], &[score_thr]);
    let above = g.op("Greater", &[values, thr], vec![]);
    let ax2 = i64s(g, &[2]);
    let v3 = g.op("Unsqueeze", &[props.valid, ax2], vec![]);
    let e = i64s(g, &[1, n, c]);
    let v3 = g.op("Expand", &[v3, e], vec![]);
    let valid = g.op("Reshape", &[v3, flat2], vec![]);
    let mask = g.op("And", &[above, valid], vec![]);
    let kept = batched_nms(
        g,
        (boxes, values, labels, Some(mask)),
        c,
        k,
        cfg.nms.as_ref(),
    );
    let k_out = match cfg.nms.as_ref() {
        Some(nms) => keep_count(max_per_img, nms, k),
        None if max_per_img > 0 => max_per_img.min(k),
        None => k,
    };
    let kk = i64s(g, &[k_out]);
    let (top, idx, ok) = top_k_of(g, kept, kk, NOT_A_CANDIDATE / 2.0);
    let out_boxes = gather_rows(g, boxes, idx);
    let (dets, labels) = dets_and_labels(g, (out_boxes, labels), (top, idx, ok), ax2);
    Ok((dets, labels, k_out))
}
