//! Typed arguments of every model type mmcompat builds, one file per upstream component (the
//! struct mirrors the Python `__init__` keywords: unknown keys are rejected as Python would), and
//! their declarations to the scoped registries. Adding a family = adding its files here and their
//! `register_component!` lines; nothing else in the spec stage changes.

pub mod anchor_free_head;
pub mod anchor_head;
pub mod atss_head;
pub mod cspnext;
pub mod cspnext_pafpn_mmdet;
pub mod cspnext_pafpn_mmyolo;
pub mod defaults;
pub mod detector;
pub mod fcos_head;
pub mod fpn;
pub mod gfl_head;
pub mod ppyoloe_csp_resnet;
pub mod ppyoloe_csppan;
pub mod ppyoloe_head;
pub mod prior_generator;
pub mod rep_vgg_block;
pub mod reppoints_head;
pub mod resnet;
pub mod retina_head;
pub mod roi_head;
pub mod rtmdet_head_mmdet;
pub mod rtmdet_head_mmyolo;
pub mod two_stage;
pub mod yolov5_csp_darknet;
pub mod yolov5_head;
pub mod yolov5_pafpn;
pub mod yolov6_block;
pub mod yolov6_csp_bep;
pub mod yolov6_csp_rep_pafpn;
pub mod yolov6_efficient_rep;
pub mod yolov6_head;
pub mod yolov6_rep_pafpn;
pub mod yolov7_backbone;
pub mod yolov7_head;
pub mod yolov7_pafpn;
pub mod yolov8_csp_darknet;
pub mod yolov8_head;
pub mod yolov8_pafpn;
pub mod yolox_csp_darknet;
pub mod yolox_head;
pub mod yolox_pafpn;

use serde_json::Value;

use super::parse::{join, type_of};
use super::SpecError;

/// A head's `bbox_coder` must be the one its `predict_by_feat` implements (`owner` decodes with
/// `expected`); any other is refused in the spec stage, naming the key.
pub(crate) fn require_coder(
    bbox_coder: &Value,
    expected: &str,
    owner: &str,
    path: &str,
) -> Result<(), SpecError> {
    let coder = type_of(bbox_coder).unwrap_or_default();
    if coder.rsplit('.').next() == Some(expected) {
        return Ok(());
    }
    Err(SpecError::Unsupported {
        what: format!("bbox_coder `{coder}`"),
        path: join(path, "bbox_coder"),
        hint: format!("{owner} decodes with {expected}"),
    })
}
