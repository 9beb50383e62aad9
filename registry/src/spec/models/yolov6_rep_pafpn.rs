//! Arguments of mmyolo's `YOLOv6RepPAFPN` (`mmyolo/models/necks/yolov6_pafpn.py:
//! YOLOv6RepPAFPN.__init__`, on `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`) and of
//! YOLOv6 3.0's `YOLOv6RepBiPAFPN` (same file), whose `__init__` takes the same keywords (its
//! `in_channels` has one more, finer level: the BiFusion's extra input).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use super::rep_vgg_block::relu_inplace;
use super::yolov6_block::{repvgg_block_value, YoloV6BlockCfg};
use super::yolov8_pafpn::ChannelsCfg;
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

pub(crate) fn twelve() -> i64 {
    12
}

/// Arguments of `YOLOv6RepPAFPN.__init__` (defaults as upstream). `out_channels` is typed `int`
/// upstream but indexed per level, so only a list builds (checked by the backend).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV6RepPafpnCfg {
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
    #[serde(default = "twelve")]
    pub num_csp_blocks: i64,
    #[serde(default)]
    pub freeze_all: bool,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "relu_inplace")]
    pub act_cfg: ActCfg,
    /// As given; [`Self::block`] is its typed form.
    #[serde(default = "repvgg_block_value")]
    pub block_cfg: Value,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    /// `block_cfg` parsed by the spec stage (`YoloV6BlockCfg::parse`).
    #[serde(skip)]
    pub block: YoloV6BlockCfg,
}

fn parse_rep_pafpn(ctx: &ComponentCtx<'_>, value: &Value, path: &str) -> Result<Parsed, SpecError> {
    let mut cfg: YoloV6RepPafpnCfg = parse_section(value, ctx.type_name, path)?;
    cfg.block = YoloV6BlockCfg::parse(&cfg.block_cfg, &join(path, "block_cfg"))?;
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmyolo", name: "YOLOv6RepPAFPN", kind: Neck, parse: parse_rep_pafpn);
crate::register_component!(scope: "mmyolo", name: "YOLOv6RepBiPAFPN", kind: Neck, parse: parse_rep_pafpn);
