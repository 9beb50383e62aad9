//! Arguments of mmyolo's `YOLOXPAFPN` (`mmyolo/models/necks/yolox_pafpn.py: YOLOXPAFPN.__init__`,
//! on `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};

/// Arguments of `YOLOXPAFPN.__init__` (defaults as upstream). `out_channels` is one int for every
/// level (`int(out_channels * widen_factor)`: a list raises TypeError upstream).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloXPafpnCfg {
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
    pub use_depthwise: bool,
    #[serde(default)]
    pub freeze_all: bool,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

crate::register_component!(scope: "mmyolo", name: "YOLOXPAFPN", kind: Neck, args: YoloXPafpnCfg);
