//! Arguments of mmyolo's `PPYOLOEHead` and its `PPYOLOEHeadModule`
//! (`mmyolo/models/dense_heads/ppyoloe_head.py`; `PPYOLOEHead` is a `YOLOv6Head` whose
//! `predict_by_feat` is `YOLOv5Head`'s).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use super::yolov8_pafpn::ChannelsCfg;
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

/// Arguments of `PPYOLOEHeadModule.__init__`. `in_channels` may be one int (the same width on
/// every level) or one per level.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PpyoloeHeadModuleCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_classes: i64,
    pub in_channels: ChannelsCfg,
    #[serde(default = "d::f_one")]
    pub widen_factor: f64,
    #[serde(default = "d::i_one")]
    pub num_base_priors: i64,
    #[serde(default = "d::strides_8_16_32")]
    pub featmap_strides: Vec<i64>,
    #[serde(default = "sixteen")]
    pub reg_max: i64,
    #[serde(default = "d::bn_torch")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// Arguments of `PPYOLOEHead.__init__` (losses and train config are kept as given: inference never
/// builds them).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PpyoloeHeadCfg {
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

/// `PPYOLOEHead` builds its `head_module` with `MODELS.build` in the scope in effect; the prior
/// generator and the box coder are checked here so that a wrong one fails in the spec stage.
fn parse_ppyoloe_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: PpyoloeHeadCfg = parse_section(value, ctx.type_name, path)?;
    PointGeneratorCfg::parse(&cfg.prior_generator, &join(path, "prior_generator"))?;
    super::require_coder(
        &cfg.bbox_coder,
        "DistancePointBBoxCoder",
        "PPYOLOEHead",
        path,
    )?;
    let head_module = cfg.head_module.clone();
    ctx.with_head_module(Box::new(cfg), &head_module, path)
}

crate::register_component!(scope: "mmyolo", name: "PPYOLOEHead", kind: DenseHead, parse: parse_ppyoloe_head);
crate::register_component!(scope: "mmyolo", name: "PPYOLOEHeadModule", kind: HeadModule, args: PpyoloeHeadModuleCfg);
