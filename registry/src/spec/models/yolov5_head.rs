//! Arguments of mmyolo's `YOLOv5Head` and its `YOLOv5HeadModule`
//! (`mmyolo/models/dense_heads/yolov5_head.py`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::models::prior_generator::YoloAnchorGeneratorCfg;
use crate::spec::models::yolov8_pafpn::ChannelsCfg;
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

pub(super) fn three() -> i64 {
    3
}
pub(super) fn four() -> f64 {
    4.0
}
pub(super) fn minus_one() -> f64 {
    -1.0
}
pub(super) fn obj_level_weights() -> Vec<f64> {
    vec![4.0, 1.0, 0.4]
}
/// `YOLOv5Head.__init__`'s default `prior_generator` (the P5 COCO anchors).
pub(super) fn default_prior_generator() -> Value {
    serde_json::json!({
        "type": "mmdet.YOLOAnchorGenerator",
        "base_sizes": [[[10, 13], [16, 30], [33, 23]],
                       [[30, 61], [62, 45], [59, 119]],
                       [[116, 90], [156, 198], [373, 326]]],
        "strides": [8, 16, 32]
    })
}
pub(super) fn default_bbox_coder() -> Value {
    serde_json::json!({"type": "YOLOv5BBoxCoder"})
}

/// Arguments of `YOLOv5HeadModule.__init__`. `in_channels` may be one int for every level.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV5HeadModuleCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_classes: i64,
    pub in_channels: ChannelsCfg,
    #[serde(default = "d::f_one")]
    pub widen_factor: f64,
    #[serde(default = "three")]
    pub num_base_priors: i64,
    #[serde(default = "d::strides_8_16_32")]
    pub featmap_strides: Vec<i64>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// Arguments of `YOLOv5Head.__init__` (losses and training keywords are kept as given: inference
/// never builds them).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV5HeadCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub head_module: Value,
    #[serde(default = "default_prior_generator")]
    pub prior_generator: Value,
    #[serde(default = "default_bbox_coder")]
    pub bbox_coder: Value,
    #[serde(default)]
    pub loss_cls: Option<Value>,
    #[serde(default)]
    pub loss_bbox: Option<Value>,
    #[serde(default)]
    pub loss_obj: Option<Value>,
    #[serde(default = "four")]
    pub prior_match_thr: f64,
    #[serde(default = "d::f_half")]
    pub near_neighbor_thr: f64,
    #[serde(default = "minus_one")]
    pub ignore_iof_thr: f64,
    #[serde(default = "obj_level_weights")]
    pub obj_level_weights: Vec<f64>,
    #[serde(default)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// `YOLOv5Head` builds its `head_module` with `MODELS.build` in the scope in effect; the prior
/// generator and the box coder are checked here so that a wrong one fails in the spec stage.
fn parse_yolov5_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: YoloV5HeadCfg = parse_section(value, ctx.type_name, path)?;
    YoloAnchorGeneratorCfg::parse(&cfg.prior_generator, &join(path, "prior_generator"))?;
    super::require_coder(&cfg.bbox_coder, "YOLOv5BBoxCoder", "YOLOv5Head", path)?;
    let head_module = cfg.head_module.clone();
    ctx.with_head_module(Box::new(cfg), &head_module, path)
}

crate::register_component!(scope: "mmyolo", name: "YOLOv5Head", kind: DenseHead, parse: parse_yolov5_head);
crate::register_component!(scope: "mmyolo", name: "YOLOv5HeadModule", kind: HeadModule, args: YoloV5HeadModuleCfg);
