//! Arguments of mmyolo's `YOLOv5CSPDarknet` (`mmyolo/models/backbones/csp_darknet.py:
//! YOLOv5CSPDarknet.__init__`, on `mmyolo/models/backbones/base_backbone.py: BaseBackbone`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};

/// Arguments of `YOLOv5CSPDarknet.__init__` (defaults as upstream; `arch` is `P5` or `P6`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV5CspDarknetCfg {
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
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub norm_eval: bool,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

crate::register_component!(scope: "mmyolo", name: "YOLOv5CSPDarknet", kind: Backbone, args: YoloV5CspDarknetCfg);
