//! Arguments of `CSPNeXt`, the RTMDet backbone: mmyolo's (`mmyolo/models/backbones/cspnext.py`)
//! and mmdet's (`mmdet/models/backbones/cspnext.py`), which accept different keywords.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};

/// One row of `arch_settings`: in, out, num_blocks, add_identity, use_spp.
pub type StageSetting = (f64, f64, f64, bool, bool);

fn spp_kernels() -> Vec<i64> {
    vec![5, 9, 13]
}

/// Arguments of mmyolo's `CSPNeXt.__init__`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MmyoloCspNextCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "d::arch_p5")]
    pub arch: String,
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
    #[serde(default)]
    pub plugins: Option<Value>,
    #[serde(default)]
    pub use_depthwise: bool,
    #[serde(default = "d::f_half")]
    pub expand_ratio: f64,
    #[serde(default)]
    pub arch_ovewrite: Option<Vec<StageSetting>>,
    #[serde(default = "d::yes")]
    pub channel_attention: bool,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default = "d::bn_torch")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub norm_eval: bool,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// Arguments of mmdet's `CSPNeXt.__init__`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MmdetCspNextCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "d::arch_p5")]
    pub arch: String,
    #[serde(default = "d::f_one")]
    pub deepen_factor: f64,
    #[serde(default = "d::f_one")]
    pub widen_factor: f64,
    #[serde(default = "d::out_indices_234")]
    pub out_indices: Vec<i64>,
    #[serde(default = "d::minus_one")]
    pub frozen_stages: i64,
    #[serde(default)]
    pub use_depthwise: bool,
    #[serde(default = "d::f_half")]
    pub expand_ratio: f64,
    #[serde(default)]
    pub arch_ovewrite: Option<Vec<StageSetting>>,
    #[serde(default = "spp_kernels")]
    pub spp_kernel_sizes: Vec<i64>,
    #[serde(default = "d::yes")]
    pub channel_attention: bool,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub norm_eval: bool,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

crate::register_component!(scope: "mmyolo", name: "CSPNeXt", kind: Backbone, args: MmyoloCspNextCfg);
crate::register_component!(scope: "mmdet", name: "CSPNeXt", kind: Backbone, args: MmdetCspNextCfg);
