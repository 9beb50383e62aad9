//! mmcv `RoIAlign` ([`super::roi_align`]) as the standard ONNX `RoiAlign` node, for the export of
//! two-stage detectors (`crate::export::onnx::two_stage`).
//!
//! ONNX `RoiAlign` (opset 16 for `coordinate_transformation_mode`) is the Caffe2/Detectron kernel
//! mmcv's CPU kernel was written from: the same sample grid (`sampling_ratio` 0 = adaptive
//! `ceil(roi_size / pooled)`), the same bilinear boundary rules and `count = max(grid, 1)`.
//! mmcv's `aligned=True` (roi start `x · spatial_scale − 0.5`, sizes not clamped to 1) is
//! `half_pixel`; `aligned=False` (no offset, sizes clamped to ≥ 1) is `output_half_pixel`.
//! onnxruntime 1.31's results against the real stack are in tests/fixtures/onnx/onnxruntime.json.
//!
//! Never: emit `mode="max"`: the ONNX kernels take the maximum of each sample's weighted corner
//! values rather than of the bilinear sample mmcv maximises, so max pooling is refused.

use super::{PoolMode, RoiAlignCfg};
use crate::export::onnx::graph::{attr_f, attr_i, attr_s};
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};

/// `RoiAlign(feat [B, C, H, W], rois [K, 4], batch_indices [K] int64) → [K, C, ph, pw]` with the
/// attributes of `cfg` (float32 values).
pub fn emit_roi_align(
    g: &mut OnnxGraph,
    feat: ValueId,
    rois: ValueId,
    batch_indices: ValueId,
    cfg: &RoiAlignCfg,
) -> Result<ValueId, ExportError> {
    if cfg.pool_mode == PoolMode::Max {
        // Named as the extractor, whose `REFUSED` entry says why.
        return Err(ExportError::unsupported(
            "mmdet.SingleRoIExtractor (its RoIAlign with pool_mode='max')",
            "RoI extractor",
        ));
    }
    if g.opset() < 16 {
        return Err(ExportError::InvalidOption {
            option: "--opset",
            message: format!(
                "{}: RoIAlign needs opset 16 or later (RoiAlign's coordinate_transformation_mode, \
                 mmcv's aligned=True as half_pixel); try --opset 17",
                g.opset()
            ),
        });
    }
    let mode = if cfg.aligned {
        "half_pixel"
    } else {
        "output_half_pixel"
    };
    Ok(g.op(
        "RoiAlign",
        &[feat, rois, batch_indices],
        vec![
            attr_s("coordinate_transformation_mode", mode),
            attr_s("mode", "avg"),
            attr_i("output_height", cfg.output_size.0),
            attr_i("output_width", cfg.output_size.1),
            // mmcv: `sampling_ratio > 0 ? sampling_ratio : adaptive`; ONNX: 0 = adaptive.
            attr_i("sampling_ratio", cfg.sampling_ratio.max(0)),
            attr_f("spatial_scale", cfg.spatial_scale),
        ],
    ))
}
