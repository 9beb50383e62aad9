//! `block_cfg` of the YOLOv6 modules (`mmyolo/models/backbones/efficient_rep.py`,
//! `mmyolo/models/necks/yolov6_pafpn.py`, `mmyolo/models/layers/yolo_bricks.py:
//! RepStageBlock/BottleRep`): a dict that upstream hands to `MODELS.build` after adding
//! `in_channels`/`out_channels` (and, for the stem and the stride-2 stage blocks,
//! `kernel_size=3, stride=2`). Two block types build the shipped configs: `RepVGGBlock` (n/t/s
//! and m) and `ConvWrapper` (l). The dict is parsed here, in the spec stage, so that a misspelt
//! key or another block type fails before any checkpoint byte is read; the backend receives the
//! typed [`YoloV6BlockCfg`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use super::rep_vgg_block::RepVggBlockCfg;
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::parse::{join, parse_section, type_of};
use crate::spec::SpecError;

fn three() -> i64 {
    3
}
fn silu_some() -> Option<ActCfg> {
    Some(d::silu())
}

/// `dict(type='RepVGGBlock')`: the default `block_cfg` of every module but `YOLOv6CSPBep`.
pub fn repvgg_block_value() -> Value {
    serde_json::json!({"type": "RepVGGBlock"})
}

/// `dict(type='ConvWrapper')`: `YOLOv6CSPBep`'s default `block_cfg`.
pub fn conv_wrapper_value() -> Value {
    serde_json::json!({"type": "ConvWrapper"})
}

/// Arguments of `ConvWrapper.__init__` (`mmyolo/models/layers/yolo_bricks.py: ConvWrapper`):
/// a `ConvModule(k, stride, padding=k // 2, groups, bias, norm_cfg, act_cfg)` named `block`.
/// The callers set `in_channels`/`out_channels`, and `stride` only for the stride-2 blocks, so
/// those are not config keys here (as for [`RepVggBlockCfg`]).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConvWrapperCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "three")]
    pub kernel_size: i64,
    #[serde(default = "d::i_one")]
    pub groups: i64,
    /// `bias=True` by default, also next to a norm (keys `block.conv.bias` and `block.bn.*`).
    #[serde(default = "d::yes")]
    pub bias: bool,
    /// `None` by default: then the block is a bare conv + act.
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    /// `dict(type='SiLU')` by default; `None` leaves the activation out.
    #[serde(default = "silu_some")]
    pub act_cfg: Option<ActCfg>,
}

impl ConvWrapperCfg {
    fn validate(&self, path: &str) -> Result<(), SpecError> {
        let invalid = |key: &str, message: String| SpecError::Invalid {
            path: join(path, key),
            type_name: "mmyolo.ConvWrapper".into(),
            message,
        };
        if self.kernel_size < 1 || self.kernel_size % 2 == 0 {
            return Err(invalid(
                "kernel_size",
                format!(
                    "kernel_size {} must be odd and positive (padding is kernel_size // 2, so an \
                     even kernel changes the feature size)",
                    self.kernel_size
                ),
            ));
        }
        if self.groups < 1 {
            return Err(invalid(
                "groups",
                format!("groups must be positive, got {}", self.groups),
            ));
        }
        if let Some(norm) = &self.norm_cfg {
            norm.validate(&join(path, "norm_cfg"))?;
        }
        if let Some(act) = &self.act_cfg {
            act.to_act(&join(path, "act_cfg"))?;
        }
        Ok(())
    }
}

/// A YOLOv6 module's `block_cfg`, by its `type`.
#[derive(Debug, Clone, Serialize)]
pub enum YoloV6BlockCfg {
    RepVgg(RepVggBlockCfg),
    ConvWrapper(ConvWrapperCfg),
}

impl Default for YoloV6BlockCfg {
    /// `dict(type='RepVGGBlock')`.
    fn default() -> Self {
        YoloV6BlockCfg::RepVgg(RepVggBlockCfg::default())
    }
}

impl YoloV6BlockCfg {
    /// Parses the `block_cfg` dict at `path` as the block type it names, with that type's checks.
    pub fn parse(value: &Value, path: &str) -> Result<Self, SpecError> {
        let Some(type_name) = type_of(value) else {
            return Err(SpecError::Invalid {
                path: path.to_string(),
                type_name: "block_cfg".into(),
                message: "a block config needs a `type` (MODELS.build raises KeyError): \
                          'RepVGGBlock' or 'ConvWrapper'"
                    .into(),
            });
        };
        match type_name.rsplit('.').next().unwrap_or(type_name) {
            "RepVGGBlock" => {
                let cfg: RepVggBlockCfg = parse_section(value, "mmyolo.RepVGGBlock", path)?;
                cfg.validate(path)?;
                Ok(YoloV6BlockCfg::RepVgg(cfg))
            }
            "ConvWrapper" => {
                let cfg: ConvWrapperCfg = parse_section(value, "mmyolo.ConvWrapper", path)?;
                cfg.validate(path)?;
                Ok(YoloV6BlockCfg::ConvWrapper(cfg))
            }
            _ => Err(SpecError::Unsupported {
                what: format!("block type `{type_name}`"),
                path: join(path, "type"),
                hint: "the YOLOv6 modules are implemented with RepVGGBlock (n/t/s/m) and \
                       ConvWrapper (l)"
                    .into(),
            }),
        }
    }
}
