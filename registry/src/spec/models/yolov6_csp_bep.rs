//! Arguments of mmyolo's `YOLOv6CSPBep` (`mmyolo/models/backbones/efficient_rep.py:
//! YOLOv6CSPBep.__init__`, a `YOLOv6EfficientRep` subclass): the YOLOv6 m/l backbone (v2 and
//! 3.0), with `hidden_ratio` for its `BepC3StageBlock`s and `ConvWrapper` as the default block.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use super::yolov6_block::{conv_wrapper_value, YoloV6BlockCfg};
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

/// Arguments of `YOLOv6CSPBep.__init__` (defaults as upstream: SiLU, `ConvWrapper` blocks).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV6CspBepCfg {
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
    /// `hidden_channels = int(out_channels * hidden_ratio)` of each `BepC3StageBlock`.
    #[serde(default = "d::f_half")]
    pub hidden_ratio: f64,
    #[serde(default = "d::out_indices_234")]
    pub out_indices: Vec<i64>,
    #[serde(default = "d::minus_one")]
    pub frozen_stages: i64,
    /// Set by the 3.0 configs, but without effect upstream: `YOLOv6CSPBep.__init__` does not
    /// pass it to `YOLOv6EfficientRep.__init__`, which resets it to False, so the last stage
    /// keeps an `SPPFBottleneck` (the backend mirrors that).
    #[serde(default)]
    pub use_cspsppf: bool,
    /// The `BepC3StageBlock` 1×1 convs and the SPPF bottleneck; the blocks take `block_cfg`'s.
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub norm_eval: bool,
    /// As given; [`Self::block`] is its typed form.
    #[serde(default = "conv_wrapper_value")]
    pub block_cfg: Value,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    /// `block_cfg` parsed by the spec stage (`YoloV6BlockCfg::parse`).
    #[serde(skip)]
    pub block: YoloV6BlockCfg,
}

fn parse_csp_bep(ctx: &ComponentCtx<'_>, value: &Value, path: &str) -> Result<Parsed, SpecError> {
    let mut cfg: YoloV6CspBepCfg = parse_section(value, ctx.type_name, path)?;
    cfg.block = YoloV6BlockCfg::parse(&cfg.block_cfg, &join(path, "block_cfg"))?;
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmyolo", name: "YOLOv6CSPBep", kind: Backbone, parse: parse_csp_bep);
