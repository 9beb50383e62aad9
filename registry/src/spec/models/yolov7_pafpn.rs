//! Arguments of mmyolo's `YOLOv7PAFPN` (`mmyolo/models/necks/yolov7_pafpn.py:
//! YOLOv7PAFPN.__init__`, on `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`) and of the
//! blocks its `block_cfg` may name (`mmyolo/models/layers/yolo_bricks.py`: `ELANBlock`,
//! `EELANBlock`, `TinyDownSampleBlock`). The neck fills in `in_channels`/`out_channels` of the
//! block and `setdefault`s its `norm_cfg`/`act_cfg` to the neck's, so those are optional here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section, type_of};
use crate::spec::SpecError;

fn half() -> f64 {
    0.5
}
fn two() -> i64 {
    2
}
fn three() -> i64 {
    3
}

/// `YOLOv7PAFPN.__init__`'s default `block_cfg`.
fn default_block_cfg() -> Value {
    serde_json::json!({"type": "ELANBlock", "middle_ratio": 0.5, "block_ratio": 0.25,
                       "num_blocks": 4, "num_convs_in_block": 1})
}

/// `ELANBlock(in, out, middle_ratio, block_ratio, num_blocks=2, num_convs_in_block=1, ...)`;
/// `num_elan_block` only for `EELANBlock` (which passes the rest to each of its ELANBlocks).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ElanBlockCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub middle_ratio: f64,
    pub block_ratio: f64,
    #[serde(default = "two")]
    pub num_blocks: i64,
    #[serde(default = "d::i_one")]
    pub num_convs_in_block: i64,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    #[serde(default)]
    pub act_cfg: Option<ActCfg>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// `EELANBlock(num_elan_block, **ELANBlock kwargs)`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EElanBlockCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_elan_block: i64,
    pub middle_ratio: f64,
    pub block_ratio: f64,
    #[serde(default = "two")]
    pub num_blocks: i64,
    #[serde(default = "d::i_one")]
    pub num_convs_in_block: i64,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    #[serde(default)]
    pub act_cfg: Option<ActCfg>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// `TinyDownSampleBlock(in, out, middle_ratio=1.0, kernel_sizes=3, ...)`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TinyDownSampleBlockCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "d::f_one")]
    pub middle_ratio: f64,
    #[serde(default = "three")]
    pub kernel_sizes: i64,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    #[serde(default)]
    pub act_cfg: Option<ActCfg>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// The block a `YOLOv7PAFPN` builds in its top-down and bottom-up paths.
#[derive(Debug, Clone)]
pub enum YoloV7BlockCfg {
    Elan(ElanBlockCfg),
    EElan(EElanBlockCfg),
    TinyDownSample(TinyDownSampleBlockCfg),
}

impl YoloV7BlockCfg {
    /// Reads `block_cfg` as `MODELS.build` would, by its `type`; what no shipped config uses
    /// (`conv_cfg`, zero blocks) is refused naming the key.
    pub fn parse(value: &Value, path: &str) -> Result<Self, SpecError> {
        let ty = type_of(value).unwrap_or_default();
        let block = match ty.rsplit('.').next() {
            Some("ELANBlock") => Self::Elan(parse_section(value, "mmyolo.ELANBlock", path)?),
            Some("EELANBlock") => Self::EElan(parse_section(value, "mmyolo.EELANBlock", path)?),
            Some("TinyDownSampleBlock") => {
                Self::TinyDownSample(parse_section(value, "mmyolo.TinyDownSampleBlock", path)?)
            }
            _ => {
                return Err(SpecError::Unsupported {
                    what: format!("block type `{ty}`"),
                    path: join(path, "type"),
                    hint: "YOLOv7PAFPN is implemented with ELANBlock, EELANBlock and \
                           TinyDownSampleBlock"
                        .into(),
                })
            }
        };
        let (conv_cfg, norm, act, counts) = match &block {
            Self::Elan(b) => (
                &b.conv_cfg,
                &b.norm_cfg,
                &b.act_cfg,
                vec![b.num_blocks, b.num_convs_in_block],
            ),
            Self::EElan(b) => (
                &b.conv_cfg,
                &b.norm_cfg,
                &b.act_cfg,
                vec![b.num_elan_block, b.num_blocks, b.num_convs_in_block],
            ),
            Self::TinyDownSample(b) => (&b.conv_cfg, &b.norm_cfg, &b.act_cfg, vec![1]),
        };
        if conv_cfg.as_ref().is_some_and(|c| !c.is_null()) {
            return Err(SpecError::Unsupported {
                what: "conv_cfg".into(),
                path: join(path, "conv_cfg"),
                hint: "no shipped YOLOv7 config sets it; remove it".into(),
            });
        }
        if counts.iter().any(|&n| n < 1) {
            return Err(SpecError::Invalid {
                path: path.to_string(),
                type_name: format!("mmyolo.{}", ty.rsplit('.').next().unwrap_or(ty)),
                message: "num_blocks, num_convs_in_block and num_elan_block must be at least 1 \
                          (asserted upstream)"
                    .into(),
            });
        }
        if let Some(n) = norm {
            n.validate(&join(path, "norm_cfg"))?;
        }
        if let Some(a) = act {
            a.to_act(&join(path, "act_cfg"))?;
        }
        Ok(block)
    }
}

/// Arguments of `YOLOv7PAFPN.__init__` (defaults as upstream). `block_cfg` is kept as given and
/// read by [`YoloV7BlockCfg::parse`] (checked here, in the spec stage).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV7PafpnCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub in_channels: Vec<f64>,
    pub out_channels: Vec<f64>,
    #[serde(default = "default_block_cfg")]
    pub block_cfg: Value,
    #[serde(default = "d::f_one")]
    pub deepen_factor: f64,
    #[serde(default = "d::f_one")]
    pub widen_factor: f64,
    #[serde(default = "half")]
    pub spp_expand_ratio: f64,
    #[serde(default)]
    pub is_tiny_version: bool,
    #[serde(default = "d::yes")]
    pub use_maxpool_in_downsample: bool,
    #[serde(default)]
    pub use_in_channels_in_downsample: bool,
    #[serde(default = "d::yes")]
    pub use_repconv_outs: bool,
    #[serde(default)]
    pub upsample_feats_cat_first: bool,
    #[serde(default)]
    pub freeze_all: bool,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

fn parse_yolov7_pafpn(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: YoloV7PafpnCfg = parse_section(value, ctx.type_name, path)?;
    YoloV7BlockCfg::parse(&cfg.block_cfg, &join(path, "block_cfg"))?;
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmyolo", name: "YOLOv7PAFPN", kind: Neck, parse: parse_yolov7_pafpn);
