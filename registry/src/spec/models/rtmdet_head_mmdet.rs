//! Arguments of mmdet's `RTMDetSepBNHead` and its bases (`mmdet/models/dense_heads/rtmdet_head.py`,
//! `atss_head.py`, `anchor_head.py`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};

fn four() -> i64 {
    4
}
fn c256() -> i64 {
    256
}

/// Keyword arguments of `RTMDetSepBNHead` and its bases.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MmdetSepBnHeadCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_classes: i64,
    pub in_channels: i64,
    #[serde(default = "d::yes")]
    pub share_conv: bool,
    #[serde(default)]
    pub use_depthwise: bool,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu")]
    pub act_cfg: ActCfg,
    #[serde(default = "d::i_one")]
    pub pred_kernel_size: i64,
    #[serde(default)]
    pub exp_on_reg: bool,
    // RTMDetHead
    #[serde(default = "d::yes")]
    pub with_objectness: bool,
    // ATSSHead
    #[serde(default = "four")]
    pub stacked_convs: i64,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default)]
    pub reg_decoded_bbox: Option<bool>,
    #[serde(default)]
    pub loss_centerness: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    // AnchorHead
    #[serde(default = "c256")]
    pub feat_channels: i64,
    #[serde(default)]
    pub anchor_generator: Option<Value>,
    #[serde(default)]
    pub bbox_coder: Option<Value>,
    #[serde(default)]
    pub loss_cls: Option<Value>,
    #[serde(default)]
    pub loss_bbox: Option<Value>,
    #[serde(default)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
}

crate::register_component!(scope: "mmdet", name: "RTMDetSepBNHead", kind: DenseHead, args: MmdetSepBnHeadCfg);
