//! Arguments of mmyolo's `YOLOv7Backbone` (`mmyolo/models/backbones/yolov7_backbone.py:
//! YOLOv7Backbone.__init__`, on `mmyolo/models/backbones/base_backbone.py: BaseBackbone`). Its
//! stage blocks come from the fixed `arch_settings` table, not from the config.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};

/// `arch='L'`.
fn arch_l() -> String {
    "L".into()
}

/// Arguments of `YOLOv7Backbone.__init__` (defaults as upstream).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV7BackboneCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "arch_l")]
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
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub norm_eval: bool,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

crate::register_component!(scope: "mmyolo", name: "YOLOv7Backbone", kind: Backbone, args: YoloV7BackboneCfg);
