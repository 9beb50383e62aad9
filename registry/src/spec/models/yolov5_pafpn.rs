//! Arguments of mmyolo's `YOLOv5PAFPN` (`mmyolo/models/necks/yolov5_pafpn.py:
//! YOLOv5PAFPN.__init__`, on `BaseYOLONeck`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::models::yolov8_pafpn::ChannelsCfg;

/// Arguments of `YOLOv5PAFPN.__init__` (defaults as upstream). `out_channels` is stored by
/// `BaseYOLONeck` but never read by YOLOv5's layers (its out layers are `nn.Identity`), so an int
/// or a list both build.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV5PafpnCfg {
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
    #[serde(default = "d::i_one")]
    pub num_csp_blocks: i64,
    #[serde(default)]
    pub freeze_all: bool,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

crate::register_component!(scope: "mmyolo", name: "YOLOv5PAFPN", kind: Neck, args: YoloV5PafpnCfg);
