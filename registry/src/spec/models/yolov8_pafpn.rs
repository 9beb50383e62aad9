//! Arguments of mmyolo's `YOLOv8PAFPN` (`mmyolo/models/necks/yolov8_pafpn.py:
//! YOLOv8PAFPN.__init__`, on `YOLOv5PAFPN` and `BaseYOLONeck`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};

/// `out_channels: Union[List[int], int]`. The YOLOv8 layers index it per level
/// (`self.out_channels[idx]`), so an int fails in Python's constructor; it is accepted here and
/// rejected by the backend with the same meaning.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ChannelsCfg {
    PerLevel(Vec<f64>),
    Single(f64),
}

/// Arguments of `YOLOv8PAFPN.__init__` (defaults as upstream).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV8PafpnCfg {
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
    #[serde(default = "d::i_three")]
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

crate::register_component!(scope: "mmyolo", name: "YOLOv8PAFPN", kind: Neck, args: YoloV8PafpnCfg);
