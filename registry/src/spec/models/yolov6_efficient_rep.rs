//! Arguments of mmyolo's `YOLOv6EfficientRep` (`mmyolo/models/backbones/efficient_rep.py:
//! YOLOv6EfficientRep.__init__`, on `mmyolo/models/backbones/base_backbone.py: BaseBackbone`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use super::rep_vgg_block::relu_inplace;
use super::yolov6_block::{repvgg_block_value, YoloV6BlockCfg};
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

/// Arguments of `YOLOv6EfficientRep.__init__` (defaults as upstream).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV6EfficientRepCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "d::arch_p5")]
    pub arch: String,
    #[serde(default)]
    pub plugins: Option<Value>,
    #[serde(default = "d::f_one")]
    pub deepen_factor: f64,
    #[serde(default = "d::f_one")]
    pub widen_factor: f64,
    #[serde(default = "d::i_three")]
    pub input_channels: i64,
    #[serde(default = "d::out_indices_234")]
    pub out_indices: Vec<i64>,
    #[serde(default = "d::minus_one")]
    pub frozen_stages: i64,
    /// `True` (the 3.0 configs): `CSPSPPFBottleneck` instead of `SPPFBottleneck`.
    #[serde(default)]
    pub use_cspsppf: bool,
    /// Used by the SPPF bottleneck only: the blocks take `block_cfg`'s own norm and act.
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "relu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub norm_eval: bool,
    /// As given (rendered by `mmcompat config --spec`); [`Self::block`] is its typed form.
    #[serde(default = "repvgg_block_value")]
    pub block_cfg: Value,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    /// `block_cfg` parsed by the spec stage (`YoloV6BlockCfg::parse`).
    #[serde(skip)]
    pub block: YoloV6BlockCfg,
}

/// The dict, plus `block_cfg` parsed as its block type, so that an unsupported block fails in
/// the spec stage.
fn parse_efficient_rep(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let mut cfg: YoloV6EfficientRepCfg = parse_section(value, ctx.type_name, path)?;
    cfg.block = YoloV6BlockCfg::parse(&cfg.block_cfg, &join(path, "block_cfg"))?;
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmyolo", name: "YOLOv6EfficientRep", kind: Backbone, parse: parse_efficient_rep);
