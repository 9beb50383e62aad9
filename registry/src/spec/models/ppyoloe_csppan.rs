//! Arguments of mmyolo's `PPYOLOECSPPAFPN` (`mmyolo/models/necks/ppyoloe_csppan.py:
//! PPYOLOECSPPAFPN.__init__`, on `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use super::ppyoloe_csp_resnet::PpyoloeBasicBlockCfg;
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section, type_of};
use crate::spec::SpecError;

fn channels_256_512_1024() -> Vec<f64> {
    vec![256.0, 512.0, 1024.0]
}
fn neck_block() -> PpyoloeBasicBlockCfg {
    PpyoloeBasicBlockCfg::with(false, false)
}

/// Arguments of `PPYOLOECSPPAFPN.__init__` (defaults as upstream).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PpyoloeCspPafpnCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "channels_256_512_1024")]
    pub in_channels: Vec<f64>,
    #[serde(default = "channels_256_512_1024")]
    pub out_channels: Vec<f64>,
    #[serde(default = "d::f_one")]
    pub deepen_factor: f64,
    #[serde(default = "d::f_one")]
    pub widen_factor: f64,
    #[serde(default)]
    pub freeze_all: bool,
    #[serde(default = "d::i_one")]
    pub num_csplayer: i64,
    #[serde(default = "d::i_three")]
    pub num_blocks_per_layer: i64,
    #[serde(default = "neck_block")]
    pub block_cfg: PpyoloeBasicBlockCfg,
    #[serde(default = "d::bn_torch")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    /// `mmdet.DropBlock` after each CSPResLayer: the identity at inference
    /// (`mmdet/models/layers/dropblock.py: DropBlock.forward` returns `x` unless training).
    #[serde(default)]
    pub drop_block_cfg: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    #[serde(default)]
    pub use_spp: bool,
}

fn parse_csppan(ctx: &ComponentCtx<'_>, value: &Value, path: &str) -> Result<Parsed, SpecError> {
    let cfg: PpyoloeCspPafpnCfg = parse_section(value, ctx.type_name, path)?;
    cfg.block_cfg.validate(&join(path, "block_cfg"))?;
    if let Some(drop) = cfg.drop_block_cfg.as_ref().filter(|v| !v.is_null()) {
        // `assert drop_block_cfg is None or isinstance(drop_block_cfg, dict)`, then MODELS.build:
        // only DropBlock (parameter-free, the identity in eval mode) is known to be harmless.
        let name = type_of(drop).unwrap_or_default();
        if name.rsplit('.').next() != Some("DropBlock") {
            return Err(SpecError::Unsupported {
                what: format!("drop_block_cfg type `{name}`"),
                path: join(path, "drop_block_cfg"),
                hint: "mmdet.DropBlock (the identity at inference) or None".into(),
            });
        }
    }
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmyolo", name: "PPYOLOECSPPAFPN", kind: Neck, parse: parse_csppan);
