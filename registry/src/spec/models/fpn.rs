//! Arguments of mmdet's `FPN` neck (`mmdet/models/necks/fpn.py: FPN.__init__`), checked as its
//! asserts check them: the level range (`start_level`, `end_level`, `num_outs`) and
//! `add_extra_convs` (`False`, `True` = `'on_input'`, or one of the three source names).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::layers::{ActCfg, NormCfg, UpsampleCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{closest_key, join, parse_section};
use crate::spec::SpecError;

fn minus_one() -> i64 {
    -1
}
/// `upsample_cfg=dict(mode='nearest')`: interpolation to the lower level's size.
fn nearest_by_size() -> UpsampleCfg {
    UpsampleCfg {
        scale_factor: None,
        ..UpsampleCfg::default()
    }
}

/// `add_extra_convs`: a bool or a source name.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AddExtraConvs {
    Flag(bool),
    Source(String),
}

impl Default for AddExtraConvs {
    fn default() -> Self {
        AddExtraConvs::Flag(false)
    }
}

/// Where the first extra convolution reads from (`FPN.forward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExtraSource {
    /// The last backbone level used (`inputs[backbone_end_level - 1]`).
    OnInput,
    /// The last lateral (`laterals[-1]`).
    OnLateral,
    /// The last output (`outs[-1]`).
    OnOutput,
}

const EXTRA_SOURCES: [&str; 3] = ["on_input", "on_lateral", "on_output"];

/// Keyword arguments of `FPN.__init__` (mmdet 3.3.0, `fpn.py:70-160`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FpnCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub in_channels: Vec<i64>,
    pub out_channels: i64,
    pub num_outs: i64,
    #[serde(default)]
    pub start_level: i64,
    #[serde(default = "minus_one")]
    pub end_level: i64,
    #[serde(default)]
    pub add_extra_convs: AddExtraConvs,
    #[serde(default)]
    pub relu_before_extra_convs: bool,
    #[serde(default)]
    pub no_norm_on_lateral: bool,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    #[serde(default)]
    pub act_cfg: Option<ActCfg>,
    #[serde(default = "nearest_by_size")]
    pub upsample_cfg: UpsampleCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

impl FpnCfg {
    /// `backbone_end_level` (exclusive): all inputs when `end_level` is -1 or the last one.
    pub fn backbone_end_level(&self) -> i64 {
        let num_ins = self.in_channels.len() as i64;
        if self.end_level == -1 || self.end_level == num_ins - 1 {
            num_ins
        } else {
            self.end_level + 1
        }
    }

    /// The source of the extra convolutions, `None` for max-pooled extra levels.
    pub fn extra_source(&self) -> Option<ExtraSource> {
        match &self.add_extra_convs {
            AddExtraConvs::Flag(false) => None,
            AddExtraConvs::Flag(true) => Some(ExtraSource::OnInput),
            AddExtraConvs::Source(s) => match s.as_str() {
                "on_lateral" => Some(ExtraSource::OnLateral),
                "on_output" => Some(ExtraSource::OnOutput),
                _ => Some(ExtraSource::OnInput),
            },
        }
    }
}

/// Parses and checks an `FPN` dict as `FPN.__init__` asserts.
pub fn parse_fpn(ctx: &ComponentCtx<'_>, value: &Value, path: &str) -> Result<Parsed, SpecError> {
    let cfg: FpnCfg = parse_section(value, ctx.type_name, path)?;
    let invalid = |key: &str, message: String| SpecError::Invalid {
        path: join(path, key),
        type_name: ctx.type_name.to_string(),
        message,
    };
    let num_ins = cfg.in_channels.len() as i64;
    if num_ins == 0 {
        return Err(invalid("in_channels", "needs at least one level".into()));
    }
    if cfg.start_level < 0 || cfg.start_level >= num_ins {
        return Err(invalid(
            "start_level",
            format!(
                "start_level {} is outside the {num_ins} input levels",
                cfg.start_level
            ),
        ));
    }
    if cfg.end_level == -1 || cfg.end_level == num_ins - 1 {
        if cfg.num_outs < num_ins - cfg.start_level {
            return Err(invalid(
                "num_outs",
                format!(
                    "num_outs >= len(in_channels) - start_level is required, got {} < {}",
                    cfg.num_outs,
                    num_ins - cfg.start_level
                ),
            ));
        }
    } else {
        if cfg.end_level >= num_ins || cfg.end_level < cfg.start_level {
            return Err(invalid(
                "end_level",
                format!(
                    "end_level {} must lie in [start_level, len(in_channels)) = [{}, {num_ins})",
                    cfg.end_level, cfg.start_level
                ),
            ));
        }
        if cfg.num_outs != cfg.end_level - cfg.start_level + 1 {
            return Err(invalid(
                "num_outs",
                format!(
                    "num_outs == end_level - start_level + 1 is required, got {} != {}",
                    cfg.num_outs,
                    cfg.end_level - cfg.start_level + 1
                ),
            ));
        }
    }
    if let AddExtraConvs::Source(s) = &cfg.add_extra_convs {
        if !EXTRA_SOURCES.contains(&s.as_str()) {
            let hint = closest_key(s, EXTRA_SOURCES.iter().copied())
                .map(|c| format!("; did you mean '{c}'?"))
                .unwrap_or_default();
            return Err(invalid(
                "add_extra_convs",
                format!(
                    "'{s}' is not one of 'on_input', 'on_lateral', 'on_output' (or True/False){hint}"
                ),
            ));
        }
    }
    if cfg.conv_cfg.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(SpecError::Unsupported {
            what: "FPN `conv_cfg`".into(),
            path: join(path, "conv_cfg"),
            hint: "plain Conv2d only (conv_cfg=None)".into(),
        });
    }
    if let Some(norm) = &cfg.norm_cfg {
        norm.validate_conv_module(&join(path, "norm_cfg"))?;
    }
    if let Some(act) = &cfg.act_cfg {
        act.to_act(&join(path, "act_cfg"))?;
    }
    let up = &cfg.upsample_cfg;
    if up.mode != "nearest" || up.size.is_some() || up.align_corners.is_some() {
        return Err(SpecError::Unsupported {
            what: format!("upsample_cfg mode '{}'", up.mode),
            path: join(path, "upsample_cfg"),
            hint: "only mode='nearest' (by size, or with a scale_factor) is implemented".into(),
        });
    }
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmdet", name: "FPN", kind: Neck, parse: parse_fpn);
