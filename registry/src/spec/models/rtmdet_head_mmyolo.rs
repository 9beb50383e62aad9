//! Arguments of mmyolo's `RTMDetHead` and its `RTMDetSepBNHeadModule`
//! (`mmyolo/models/dense_heads/rtmdet_head.py`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::models::prior_generator::PointGeneratorCfg;
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

fn two() -> i64 {
    2
}
fn f256() -> f64 {
    256.0
}
fn default_prior_generator() -> Value {
    serde_json::json!({"type": "mmdet.MlvlPointGenerator", "offset": 0, "strides": [8, 16, 32]})
}

/// Arguments of `RTMDetSepBNHeadModule.__init__`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeadModuleCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_classes: i64,
    pub in_channels: f64,
    #[serde(default = "d::f_one")]
    pub widen_factor: f64,
    #[serde(default = "d::i_one")]
    pub num_base_priors: i64,
    #[serde(default = "f256")]
    pub feat_channels: f64,
    #[serde(default = "two")]
    pub stacked_convs: i64,
    #[serde(default = "d::strides_8_16_32")]
    pub featmap_strides: Vec<i64>,
    #[serde(default = "d::yes")]
    pub share_conv: bool,
    #[serde(default = "d::i_one")]
    pub pred_kernel_size: i64,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default = "d::bn_torch")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// Arguments of mmyolo `RTMDetHead.__init__` (losses, coder and train config are kept as given:
/// inference never builds them).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MmyoloRtmdetHeadCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub head_module: Value,
    #[serde(default = "default_prior_generator")]
    pub prior_generator: Value,
    #[serde(default)]
    pub bbox_coder: Option<Value>,
    #[serde(default)]
    pub loss_cls: Option<Value>,
    #[serde(default)]
    pub loss_bbox: Option<Value>,
    #[serde(default)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// `RTMDetHead` builds its `head_module` with `MODELS.build` in the scope in effect; the prior
/// generator is checked here so a wrong one fails in the spec stage.
fn parse_rtmdet_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: MmyoloRtmdetHeadCfg = parse_section(value, ctx.type_name, path)?;
    PointGeneratorCfg::parse(&cfg.prior_generator, &join(path, "prior_generator"))?;
    let head_module = cfg.head_module.clone();
    ctx.with_head_module(Box::new(cfg), &head_module, path)
}

crate::register_component!(scope: "mmyolo", name: "RTMDetHead", kind: DenseHead, parse: parse_rtmdet_head);
crate::register_component!(scope: "mmyolo", name: "RTMDetSepBNHeadModule", kind: HeadModule, args: HeadModuleCfg);
