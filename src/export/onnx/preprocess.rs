//! The `<stem>.preprocess.json` written next to an exported model: what any runtime must do to an
//! image before `input` (the test pipeline as the spec stage parsed it, under upstream's transform
//! names, then the data preprocessor's channel swap and mean/std) and after the outputs (how
//! `predict_by_feat` rescales to the original image). Also stored in the model's metadata
//! (`mmcompat.preprocess`).

use serde_json::{json, Value};

use mmcompat_registry::spec::pipeline::{ResizeTarget, Transform};

use super::graph::Dim;
use super::write::{shape_json, OutputDoc};
use super::{ExportError, OnnxOptions};
use crate::models::Flavour;
use crate::Inferencer;

/// The export's `(H, W)`: `--input-size`, else the fixed size the test pipeline produces (the
/// last of `LetterResize`/`YOLOv5KeepRatioResize`/`Resize` scale and `Pad` size).
pub fn input_size(
    inferencer: &Inferencer,
    given: Option<(i64, i64)>,
) -> Result<(i64, i64), ExportError> {
    if let Some(s) = given {
        return Ok(s);
    }
    let mut size = None;
    for step in inferencer.pipeline().steps() {
        match step {
            Transform::LetterResize { scale, .. }
            | Transform::YoloV5KeepRatioResize { scale }
            | Transform::Resize {
                target: ResizeTarget::Scale(scale),
                ..
            } => size = Some((i64::from(scale.h), i64::from(scale.w))),
            Transform::FixShapeResize { width, height, .. } => {
                size = Some((i64::from(*height), i64::from(*width)))
            }
            Transform::Pad {
                size: Some(scale), ..
            } => size = Some((i64::from(scale.h), i64::from(scale.w))),
            _ => {}
        }
    }
    size.ok_or_else(|| ExportError::InvalidOption {
        option: "--input-size",
        message: "the test pipeline has no fixed output size; pass --input-size H,W".into(),
    })
}

/// The resize step's upstream name, its interpolation (mmcv's name: `bilinear`, `area`,
/// `bicubic` = OpenCV's `INTER_LINEAR`, `INTER_AREA`, `INTER_CUBIC`) and the pad value the
/// pipeline fills with (BGR).
fn resize_and_pad(inferencer: &Inferencer) -> (Value, Value, Value) {
    let mut resize = Value::Null;
    let mut interpolation = Value::Null;
    let mut pad = Value::Null;
    for step in inferencer.pipeline().steps() {
        match step {
            Transform::LetterResize {
                pad_val,
                interpolation: i,
                ..
            } => {
                resize = json!("LetterResize");
                interpolation = json!(i);
                pad = json!(pad_val);
            }
            Transform::YoloV5KeepRatioResize { .. } => {
                resize = json!("YOLOv5KeepRatioResize");
                // `mmcv.imrescale(..., interpolation='area' if ratio < 1 else 'bilinear')`.
                interpolation = json!("area when shrinking, else bilinear");
            }
            Transform::Resize {
                keep_ratio,
                interpolation: i,
                ..
            } => {
                resize = json!(if *keep_ratio {
                    "Resize(keep_ratio=True)"
                } else {
                    "Resize(keep_ratio=False)"
                });
                interpolation = json!(i);
            }
            Transform::FixShapeResize {
                interpolation: i, ..
            } => {
                // A stretch to exactly width × height (no keep ratio, no padding):
                // scale_factor = (width / w, height / h).
                resize = json!("FixShapeResize(keep_ratio=False)");
                interpolation = json!(i);
            }
            Transform::Pad { pad_val, .. } => pad = json!(pad_val),
            _ => {}
        }
    }
    (resize, interpolation, pad)
}

/// What the data preprocessor does at test time, in words.
fn data_preprocessor_note(type_name: Option<&str>) -> &'static str {
    match type_name.map(|t| t.rsplit('.').next().unwrap_or(t)) {
        // mmyolo/models/data_preprocessors/data_preprocessor.py: `if not training: return
        // super().forward(data, training)`.
        Some("PPYOLOEDetDataPreprocessor") => {
            "PPYOLOEDetDataPreprocessor: at test time DetDataPreprocessor.forward (its batch \
             resizing is training-only): channel swap, (x - mean) / std, pad to pad_size_divisor"
        }
        Some("YOLOv5DetDataPreprocessor") => {
            "YOLOv5DetDataPreprocessor: channel swap, (x - mean) / std (DetDataPreprocessor's \
             test-time path)"
        }
        _ => "DetDataPreprocessor: channel swap, (x - mean) / std, pad to pad_size_divisor",
    }
}

pub(crate) fn preprocess_json(
    inferencer: &Inferencer,
    opts: &OnnxOptions,
    model_file: &str,
    (h, w): (i64, i64),
    input_dims: &[Dim],
    outputs: &[OutputDoc],
) -> Value {
    let det = inferencer.detector();
    let dp = det.data_preprocessor();
    let (resize, interpolation, pad_value) = resize_and_pad(inferencer);
    let rescale = match det.flavour() {
        Flavour::Mmyolo => {
            "mmyolo YOLOv5Head.predict_by_feat: boxes minus [pad_left, pad_top] (LetterResize \
             pad_param [top, bottom, left, right]; no pad_param: nothing), divided by \
             scale_factor (w, h); after NMS clamped to the original image"
        }
        Flavour::Mmdet => {
            "mmdet BaseDenseHead: boxes clamped to the input size, multiplied by 1/scale_factor \
             (w, h)"
        }
    };
    json!({
        "format": "mmcompat.onnx.preprocess/1",
        "model": model_file,
        "detector": det.type_name(),
        "input": {
            "name": "input",
            "shape": shape_json(input_dims),
            "dtype": "float32",
            "layout": "NCHW",
            "size_hw": [h, w],
        },
        "resize": resize,
        "interpolation": interpolation,
        "pad_value_bgr": pad_value,
        "test_pipeline": inferencer.pipeline().steps(),
        "channel_order": if dp.bgr_to_rgb { "RGB" } else { "BGR" },
        "normalize": {
            "mean": dp.mean,
            "std": dp.std,
            "note": "(pixel - mean) / std per channel, after the channel swap",
        },
        "data_preprocessor": dp,
        "data_preprocessor_at_test": data_preprocessor_note(dp.type_name.as_deref()),
        "outputs": outputs.iter().map(|o| json!({
            "name": o.name,
            "shape": shape_json(&o.shape),
            "doc": o.doc,
        })).collect::<Vec<_>>(),
        "postprocess": {
            "flavour": match det.flavour() { Flavour::Mmyolo => "mmyolo", Flavour::Mmdet => "mmdet" },
            "end2end": opts.end2end,
            "strides": det.strides().iter().map(|s| [s.0, s.1]).collect::<Vec<_>>(),
            "prior_offset": det.prior_offset(),
            "num_classes": det.num_classes(),
            "test_cfg": det.test_cfg(),
            "rescale": rescale,
            // `--end2end`: optional graph inputs that make the graph do the rescale itself,
            // before NMS as upstream (src/export/onnx/per_image.rs); omitted, the identity.
            // Two-stage graphs declare them in both modes (`img_shape` clamps the proposals).
            "per_image_inputs": if opts.end2end || det.onnx_roi_head().is_some() {
                json!({
                    "names": super::per_image::input_names(det.flavour()),
                    "scale_factor": "float64 [B, 2] (w, h), the pipeline's scale_factor; default 1",
                    "pad_param": "mmyolo: float32 [B, 4] (top, bottom, left, right), \
                                  LetterResize's pad_param; default 0",
                    "ori_shape": "mmyolo: int64 [B, 2] (h, w), the clamp after NMS; default none",
                    "img_shape": "mmdet: int64 [B, 2] (h, w), the resized image before batch \
                                  padding (the decode clamp); default the input size",
                    "note": "fed: dets are in original-image pixels and upstream's detections \
                             exactly; omitted: dets are in input pixels (mmyolo: clamped at 0), \
                             rescale them as `rescale` says",
                })
            } else {
                Value::Null
            },
        },
        "half": opts.half,
        "fold_bn": opts.fold_bn,
        "classes": inferencer.class_names(),
    })
}
