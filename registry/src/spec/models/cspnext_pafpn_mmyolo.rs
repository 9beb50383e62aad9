//! Arguments of mmyolo's `CSPNeXtPAFPN` (`mmyolo/models/necks/cspnext_pafpn.py`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg, UpsampleCfg};

/// Arguments of mmyolo's `CSPNeXtPAFPN.__init__`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MmyoloPafpnCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub in_channels: Vec<f64>,
    pub out_channels: f64,
    #[serde(default = "d::f_one")]
    pub deepen_factor: f64,
    #[serde(default = "d::f_one")]
    pub widen_factor: f64,
    #[serde(default = "d::i_three")]
    pub num_csp_blocks: i64,
    #[serde(default)]
    pub freeze_all: bool,
    #[serde(default)]
    pub use_depthwise: bool,
    #[serde(default = "d::f_half")]
    pub expand_ratio: f64,
    #[serde(default)]
    pub upsample_cfg: UpsampleCfg,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default = "d::bn_torch")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

crate::register_component!(scope: "mmyolo", name: "CSPNeXtPAFPN", kind: Neck, args: MmyoloPafpnCfg);
