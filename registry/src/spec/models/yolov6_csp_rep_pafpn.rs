//! Arguments of mmyolo's `YOLOv6CSPRepPAFPN` (v2 m/l) and `YOLOv6CSPRepBiPAFPN` (3.0 m/l)
//! (`mmyolo/models/necks/yolov6_pafpn.py`): the keywords of `YOLOv6RepPAFPN` plus
//! `hidden_ratio` and `block_act_cfg` for their `BepC3StageBlock`s. Both `__init__`s take the
//! same keywords.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use super::rep_vgg_block::relu_inplace;
use super::yolov6_block::{repvgg_block_value, YoloV6BlockCfg};
use super::yolov6_rep_pafpn::twelve;
use super::yolov8_pafpn::ChannelsCfg;
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

/// Arguments of `YOLOv6CSPRepPAFPN.__init__` / `YOLOv6CSPRepBiPAFPN.__init__` (defaults as
/// upstream).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV6CspRepPafpnCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub in_channels: Vec<f64>,
    pub out_channels: ChannelsCfg,
    #[serde(default = "d::f_one")]
    pub deepen_factor: f64,
    #[serde(default = "d::f_one")]
    pub widen_factor: f64,
    #[serde(default = "d::f_half")]
    pub hidden_ratio: f64,
    #[serde(default = "twelve")]
    pub num_csp_blocks: i64,
    #[serde(default)]
    pub freeze_all: bool,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    /// Reduce, downsample and top-down 1×1 convs (and the BiFusion convs).
    #[serde(default = "relu_inplace")]
    pub act_cfg: ActCfg,
    /// The `BepC3StageBlock` 1×1 convs (conv1/conv2/conv3).
    #[serde(default = "d::silu_inplace")]
    pub block_act_cfg: ActCfg,
    /// As given; [`Self::block`] is its typed form.
    #[serde(default = "repvgg_block_value")]
    pub block_cfg: Value,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    /// `block_cfg` parsed by the spec stage (`YoloV6BlockCfg::parse`).
    #[serde(skip)]
    pub block: YoloV6BlockCfg,
}

fn parse_csp_rep_pafpn(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let mut cfg: YoloV6CspRepPafpnCfg = parse_section(value, ctx.type_name, path)?;
    cfg.block = YoloV6BlockCfg::parse(&cfg.block_cfg, &join(path, "block_cfg"))?;
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmyolo", name: "YOLOv6CSPRepPAFPN", kind: Neck, parse: parse_csp_rep_pafpn);
crate::register_component!(scope: "mmyolo", name: "YOLOv6CSPRepBiPAFPN", kind: Neck, parse: parse_csp_rep_pafpn);
