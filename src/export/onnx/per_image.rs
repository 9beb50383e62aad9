//! The per-image graph inputs of `--end2end` exports, so that the graph rescales the boxes to the
//! original image *before* NMS, exactly where upstream does (mmcv's `batched_nms` offsets each
//! class's boxes by the largest coordinate + 1 of the rescaled boxes; rescaling after NMS in the
//! caller changed the float32 rounding of those IoUs and, on PPYOLOE/astronaut, which boxes
//! survive at the 300 cap). Every one of them has a default (an initializer of the same name, see
//! `OnnxGraph::input_with_default`) that makes it the identity, so callers that feed only `input`
//! get the boxes in network-input pixels as before and rescale them themselves.
//!
//! * `scale_factor` float64 `[B, 2]` (w, h), default 1: the pipeline's `scale_factor`, float64
//!   as Python's floats; mmdet multiplies by `float32(1 / s)` (`scale_boxes(bboxes, [1 / s for s
//!   in scale_factor])`, base_dense_head.py `_bbox_post_process`), mmyolo divides by
//!   `float32(s)` (yolov5_head.py `predict_by_feat`).
//! * mmyolo `pad_param` float32 `[B, 4]` (top, bottom, left, right; LetterResize's), default 0:
//!   subtracted before the division; `ori_shape` int64 `[B, 2]` (h, w), default unbounded: the
//!   clamp after NMS (`results.bboxes[:, 0::2].clamp_(0, ori_shape[1])`; its lower bound 0
//!   applies with the default too, which commutes with the caller's own rescale and clamp).
//! * mmdet `img_shape` int64 `[B, 2]` (h, w), default the export size: the decoders' clamp
//!   (`max_shape=img_shape`); it differs from the input size when the pipeline does not pad and
//!   the data preprocessor pads to `pad_size_divisor` (RetinaNet).

use super::graph::{attr_i, Dim, OnnxGraph, ValueId};
use super::proto::data_type;
use crate::models::Flavour;

/// The per-image values as `[B or 1, 1, 4]` float32 rows, ready to broadcast over `[B, K, 4]`.
#[derive(Debug, Clone, Copy)]
pub struct PerImage {
    flavour: Flavour,
    /// mmdet: `float32(1 / s)`; mmyolo: `float32(s)`; as (w, h, w, h).
    scale: ValueId,
    /// mmyolo: (left, top, left, top).
    pad: Option<ValueId>,
    /// mmyolo: (w, h, w, h) of `ori_shape`; mmdet: of `img_shape`.
    bound: ValueId,
}

/// The names of the per-image inputs of `flavour`, in graph order.
pub fn input_names(flavour: Flavour) -> &'static [&'static str] {
    match flavour {
        Flavour::Mmyolo => &["scale_factor", "pad_param", "ori_shape"],
        Flavour::Mmdet => &["scale_factor", "img_shape"],
    }
}

fn bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

/// `x [B, n]` gathered at `idx` on axis 1, as `[B, 1, 4]`.
fn row4(g: &mut OnnxGraph, x: ValueId, idx: [i64; 4]) -> ValueId {
    let i = g.const_i64("meta_index", vec![4], &idx);
    let r = g.op("Gather", &[x, i], vec![attr_i("axis", 1)]);
    let ax = g.const_i64("shape", vec![1], &[1]);
    g.op("Unsqueeze", &[r, ax], vec![])
}

/// Declares the inputs of `flavour` (export size `(h, w)`).
pub fn declare(g: &mut OnnxGraph, flavour: Flavour, batch: &Dim, (h, w): (i64, i64)) -> PerImage {
    let dims = |n: i64| vec![batch.clone(), Dim::Fixed(n)];
    let sf = g.input_with_default(
        "scale_factor",
        data_type::DOUBLE,
        dims(2),
        "float64 (w, h): the test pipeline's scale_factor; default 1 (boxes in input pixels)",
        (vec![1, 2], bytes(&[1f64, 1.0], f64::to_le_bytes)),
    );
    let sf4 = row4(g, sf, [0, 1, 0, 1]);
    match flavour {
        Flavour::Mmdet => {
            let one = g.op("Reciprocal", &[sf4], vec![]);
            let scale = g.cast(one, data_type::FLOAT);
            let shape = g.input_with_default(
                "img_shape",
                data_type::INT64,
                dims(2),
                "int64 (h, w) of the resized image before the batch padding (the decode clamp); \
                 default the input size",
                (vec![1, 2], bytes(&[h, w], i64::to_le_bytes)),
            );
            let b = row4(g, shape, [1, 0, 1, 0]);
            let bound = g.cast(b, data_type::FLOAT);
            PerImage {
                flavour,
                scale,
                pad: None,
                bound,
            }
        }
        Flavour::Mmyolo => {
            let scale = g.cast(sf4, data_type::FLOAT);
            let pad = g.input_with_default(
                "pad_param",
                data_type::FLOAT,
                dims(4),
                "float32 (top, bottom, left, right): LetterResize's pad_param; default 0",
                (vec![1, 4], bytes(&[0f32; 4], f32::to_le_bytes)),
            );
            let pad = row4(g, pad, [2, 0, 2, 0]);
            let ori = g.input_with_default(
                "ori_shape",
                data_type::INT64,
                dims(2),
                "int64 (h, w) of the original image (the clamp after NMS); default unbounded",
                (
                    vec![1, 2],
                    bytes(&[i64::from(i32::MAX); 2], i64::to_le_bytes),
                ),
            );
            let b = row4(g, ori, [1, 0, 1, 0]);
            let bound = g.cast(b, data_type::FLOAT);
            PerImage {
                flavour,
                scale,
                pad: Some(pad),
                bound,
            }
        }
    }
}

impl PerImage {
    /// The rescale to the original image of candidate boxes `[B, K, 4]`, before NMS.
    pub fn rescale(&self, g: &mut OnnxGraph, boxes: ValueId) -> ValueId {
        match self.flavour {
            Flavour::Mmdet => g.op("Mul", &[boxes, self.scale], vec![]),
            Flavour::Mmyolo => {
                let b = match self.pad {
                    Some(p) => g.op("Sub", &[boxes, p], vec![]),
                    None => boxes,
                };
                g.op("Div", &[b, self.scale], vec![])
            }
        }
    }

    /// `clamp(0, bound)` on `[B, K, 4]` boxes: mmdet's decode clamp to `img_shape`, mmyolo's
    /// clamp to `ori_shape` after NMS.
    pub fn clamp(&self, g: &mut OnnxGraph, boxes: ValueId) -> ValueId {
        let zero = g.const_f32("zero", vec![], &[0.0]);
        let b = g.op("Max", &[boxes, zero], vec![]);
        g.op("Min", &[b, self.bound], vec![])
    }
}
