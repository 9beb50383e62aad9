//! Arguments of mmyolo's `YOLOXCSPDarknet` (`mmyolo/models/backbones/csp_darknet.py:
//! YOLOXCSPDarknet.__init__`, on `mmyolo/models/backbones/base_backbone.py: BaseBackbone`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};

/// `spp_kernal_sizes` (sic, upstream's spelling): a tuple gives `SPPFBottleneck` parallel pools
/// (the default `(5, 9, 13)`), an int one pool applied three times in series.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SppKernelSizes {
    Serial(i64),
    Parallel(Vec<i64>),
}

fn spp_5_9_13() -> SppKernelSizes {
    SppKernelSizes::Parallel(vec![5, 9, 13])
}

/// Arguments of `YOLOXCSPDarknet.__init__` (defaults as upstream; `arch` is `P5` only).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloXCspDarknetCfg {
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
    /// Stored by `BaseBackbone`; the Focus stem is built with 3 input channels whatever it says.
    #[serde(default = "d::i_three")]
    pub input_channels: i64,
    #[serde(default = "d::out_indices_234")]
    pub out_indices: Vec<i64>,
    #[serde(default = "d::minus_one")]
    pub frozen_stages: i64,
    #[serde(default)]
    pub use_depthwise: bool,
    #[serde(default = "spp_5_9_13")]
    pub spp_kernal_sizes: SppKernelSizes,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub norm_eval: bool,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

crate::register_component!(scope: "mmyolo", name: "YOLOXCSPDarknet", kind: Backbone, args: YoloXCspDarknetCfg);
