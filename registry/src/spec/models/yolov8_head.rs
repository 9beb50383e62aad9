//! Arguments of mmyolo's `YOLOv8Head` and its `YOLOv8HeadModule`
//! (`mmyolo/models/dense_heads/yolov8_head.py`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::models::prior_generator::PointGeneratorCfg;
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

fn sixteen() -> i64 {
    16
}
fn default_prior_generator() -> Value {
    serde_json::json!({"type": "mmdet.MlvlPointGenerator", "offset": 0.5, "strides": [8, 16, 32]})
}
fn default_bbox_coder() -> Value {
    serde_json::json!({"type": "DistancePointBBoxCoder"})
}

/// Arguments of `YOLOv8HeadModule.__init__`. `in_channels` is typed `Union[int, Sequence]`
/// upstream, but the constructor iterates it, so only a list builds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV8HeadModuleCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_classes: i64,
    pub in_channels: Vec<f64>,
    #[serde(default = "d::f_one")]
    pub widen_factor: f64,
    #[serde(default = "d::i_one")]
    pub num_base_priors: i64,
    #[serde(default = "d::strides_8_16_32")]
    pub featmap_strides: Vec<i64>,
    #[serde(default = "sixteen")]
    pub reg_max: i64,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// Arguments of `YOLOv8Head.__init__` (losses and train config are kept as given: inference never
/// builds them). Unlike `YOLOv5Head`, it takes no `loss_obj`/`prior_match_thr`/... keywords.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV8HeadCfg {
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
    pub loss_dfl: Option<Value>,
    #[serde(default)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// `YOLOv8Head` builds its `head_module` with `MODELS.build` in the scope in effect; the prior
/// generator and the box coder are checked here so that a wrong one fails in the spec stage.
fn parse_yolov8_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: YoloV8HeadCfg = parse_section(value, ctx.type_name, path)?;
    PointGeneratorCfg::parse(&cfg.prior_generator, &join(path, "prior_generator"))?;
    super::require_coder(
        &cfg.bbox_coder,
        "DistancePointBBoxCoder",
        "YOLOv8Head",
        path,
    )?;
    let head_module = cfg.head_module.clone();
    ctx.with_head_module(Box::new(cfg), &head_module, path)
}

crate::register_component!(scope: "mmyolo", name: "YOLOv8Head", kind: DenseHead, parse: parse_yolov8_head);
crate::register_component!(scope: "mmyolo", name: "YOLOv8HeadModule", kind: HeadModule, args: YoloV8HeadModuleCfg);
