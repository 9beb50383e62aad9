//! Arguments of mmyolo's `YOLOXHead` and its `YOLOXHeadModule`
//! (`mmyolo/models/dense_heads/yolox_head.py`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{check_conv_cfg, ActCfg, NormCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::models::prior_generator::PointGeneratorCfg;
use crate::spec::models::yolov8_pafpn::ChannelsCfg;
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

fn f256() -> f64 {
    256.0
}
fn two() -> i64 {
    2
}
fn auto() -> Value {
    Value::String("auto".into())
}
fn default_prior_generator() -> Value {
    serde_json::json!({"type": "mmdet.MlvlPointGenerator", "offset": 0, "strides": [8, 16, 32]})
}
fn default_bbox_coder() -> Value {
    serde_json::json!({"type": "YOLOXBBoxCoder"})
}

/// Arguments of `YOLOXHeadModule.__init__`. `in_channels` is `Union[int, Sequence]` upstream, but
/// only an int builds (`_build_stacked_convs` passes it as a conv's channel count).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloXHeadModuleCfg {
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
    #[serde(default = "f256")]
    pub feat_channels: f64,
    #[serde(default = "two")]
    pub stacked_convs: i64,
    #[serde(default = "d::strides_8_16_32")]
    pub featmap_strides: Vec<i64>,
    #[serde(default)]
    pub use_depthwise: bool,
    #[serde(default)]
    pub dcn_on_last_conv: bool,
    /// `'auto'` (a bias only without norm) or a bool; `assert conv_bias == 'auto' or
    /// isinstance(conv_bias, bool)`.
    #[serde(default = "auto")]
    pub conv_bias: Value,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// Arguments of `YOLOXHead.__init__` (losses and train config are kept as given: inference never
/// builds them).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloXHeadCfg {
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
    #[serde(default)]
    pub loss_bbox_aux: Option<Value>,
    #[serde(default)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// `YOLOXHeadModule`: the arguments, the conv options mmcompat does not implement refused in the
/// spec stage (DCNv2 on the last conv, a conv type other than Conv2d, a non-`auto` conv bias).
fn parse_yolox_head_module(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: YoloXHeadModuleCfg = parse_section(value, ctx.type_name, path)?;
    check_conv_cfg(&cfg.conv_cfg, &join(path, "conv_cfg"))?;
    if cfg.dcn_on_last_conv {
        return Err(SpecError::Unsupported {
            path: join(path, "dcn_on_last_conv"),
            what: "dcn_on_last_conv=True (DCNv2)".into(),
            hint: "no shipped YOLOX config uses it; set it to False".into(),
        });
    }
    match &cfg.conv_bias {
        Value::String(s) if s == "auto" => {}
        Value::Bool(_) => {
            return Err(SpecError::Unsupported {
                path: join(path, "conv_bias"),
                what: format!("conv_bias={}", cfg.conv_bias),
                hint: "only conv_bias='auto' (every shipped config) is implemented".into(),
            })
        }
        other => {
            return Err(SpecError::Invalid {
                path: join(path, "conv_bias"),
                type_name: ctx.type_name.to_string(),
                message: format!(
                    "must be 'auto' or a bool, found {other} (AssertionError in __init__)"
                ),
            })
        }
    }
    Ok((Box::new(cfg), Vec::new()))
}

/// `YOLOXHead` builds its `head_module` with `MODELS.build` in the scope in effect; the prior
/// generator and the box coder are checked here so that a wrong one fails in the spec stage.
fn parse_yolox_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: YoloXHeadCfg = parse_section(value, ctx.type_name, path)?;
    PointGeneratorCfg::parse(&cfg.prior_generator, &join(path, "prior_generator"))?;
    super::require_coder(&cfg.bbox_coder, "YOLOXBBoxCoder", "YOLOXHead", path)?;
    let head_module = cfg.head_module.clone();
    ctx.with_head_module(Box::new(cfg), &head_module, path)
}

crate::register_component!(scope: "mmyolo", name: "YOLOXHead", kind: DenseHead, parse: parse_yolox_head);
crate::register_component!(scope: "mmyolo", name: "YOLOXHeadModule", kind: HeadModule, parse: parse_yolox_head_module);
