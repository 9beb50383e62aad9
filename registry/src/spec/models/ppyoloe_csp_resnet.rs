//! Arguments of mmyolo's `PPYOLOECSPResNet` (`mmyolo/models/backbones/csp_resnet.py:
//! PPYOLOECSPResNet.__init__`, on `mmyolo/models/backbones/base_backbone.py: BaseBackbone`) and of
//! the blocks its `CSPResLayer`s build from `block_cfg` / `attention_cfg`
//! (`mmyolo/models/layers/yolo_bricks.py: PPYOLOEBasicBlock, EffectiveSELayer`), shared with
//! `PPYOLOECSPPAFPN`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

fn basic_block() -> String {
    "PPYOLOEBasicBlock".into()
}
fn effective_se() -> String {
    "EffectiveSELayer".into()
}
fn hsigmoid() -> ActCfg {
    ActCfg::named("HSigmoid")
}

/// `block_cfg=dict(type='PPYOLOEBasicBlock', ...)`: `CSPResLayer.build_blocks_layer` adds
/// `in_channels`/`out_channels` and `setdefault`s the layer's `norm_cfg`/`act_cfg`, so those two
/// are `None` unless the config gives them. Field defaults are `PPYOLOEBasicBlock.__init__`'s.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PpyoloeBasicBlockCfg {
    #[serde(default = "basic_block", rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "d::yes")]
    pub shortcut: bool,
    #[serde(default)]
    pub use_alpha: bool,
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    #[serde(default)]
    pub act_cfg: Option<ActCfg>,
}

impl PpyoloeBasicBlockCfg {
    /// The dict a constructor uses when the config gives no `block_cfg`.
    pub fn with(shortcut: bool, use_alpha: bool) -> Self {
        PpyoloeBasicBlockCfg {
            type_name: basic_block(),
            scope: None,
            shortcut,
            use_alpha,
            norm_cfg: None,
            act_cfg: None,
        }
    }

    /// Only `PPYOLOEBasicBlock` builds the shipped configs' CSPResLayers.
    pub fn validate(&self, path: &str) -> Result<(), SpecError> {
        let name = self.type_name.rsplit('.').next().unwrap_or(&self.type_name);
        if name != "PPYOLOEBasicBlock" {
            return Err(SpecError::Unsupported {
                what: format!("block type `{}`", self.type_name),
                path: join(path, "type"),
                hint: "CSPResLayer is implemented with PPYOLOEBasicBlock (every shipped PPYOLOE \
                       config)"
                    .into(),
            });
        }
        if let Some(n) = &self.norm_cfg {
            n.validate(&join(path, "norm_cfg"))?;
        }
        if let Some(a) = &self.act_cfg {
            a.to_act(&join(path, "act_cfg"))?;
        }
        Ok(())
    }
}

/// `attention_cfg=dict(type='EffectiveSELayer', act_cfg=...)` (`channels` is added by
/// `CSPResLayer`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EffectiveSeCfg {
    #[serde(default = "effective_se", rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "hsigmoid")]
    pub act_cfg: ActCfg,
}

impl EffectiveSeCfg {
    pub fn validate(&self, path: &str) -> Result<(), SpecError> {
        let name = self.type_name.rsplit('.').next().unwrap_or(&self.type_name);
        if name != "EffectiveSELayer" {
            return Err(SpecError::Unsupported {
                what: format!("attention type `{}`", self.type_name),
                path: join(path, "type"),
                hint: "CSPResLayer is implemented with EffectiveSELayer".into(),
            });
        }
        self.act_cfg.to_act(&join(path, "act_cfg"))?;
        Ok(())
    }
}

fn backbone_block() -> PpyoloeBasicBlockCfg {
    PpyoloeBasicBlockCfg::with(true, true)
}
fn default_attention() -> Option<EffectiveSeCfg> {
    Some(EffectiveSeCfg {
        type_name: effective_se(),
        scope: None,
        act_cfg: hsigmoid(),
    })
}

/// Arguments of `PPYOLOECSPResNet.__init__` (defaults as upstream; `arch_ovewrite` is spelt as
/// upstream spells it).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PpyoloeCspResNetCfg {
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
    /// `[[in, out, num_blocks], ...]` replacing `arch_settings[arch]`.
    #[serde(default)]
    pub arch_ovewrite: Option<Vec<[f64; 3]>>,
    #[serde(default = "backbone_block")]
    pub block_cfg: PpyoloeBasicBlockCfg,
    #[serde(default = "d::bn_torch")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default = "default_attention")]
    pub attention_cfg: Option<EffectiveSeCfg>,
    #[serde(default)]
    pub norm_eval: bool,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    #[serde(default)]
    pub use_large_stem: bool,
}

/// The dict, plus the block and attention checks, so that an unsupported one fails in the spec
/// stage.
fn parse_csp_resnet(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: PpyoloeCspResNetCfg = parse_section(value, ctx.type_name, path)?;
    cfg.block_cfg.validate(&join(path, "block_cfg"))?;
    if let Some(a) = &cfg.attention_cfg {
        a.validate(&join(path, "attention_cfg"))?;
    }
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmyolo", name: "PPYOLOECSPResNet", kind: Backbone, parse: parse_csp_resnet);
