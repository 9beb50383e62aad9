//! Arguments of mmdet's `ResNet` backbone (`mmdet/models/backbones/resnet.py: ResNet.__init__`),
//! checked as its asserts check them. Train-time keywords (`frozen_stages`, `norm_eval`,
//! `with_cp`, `zero_init_residual`, `pretrained`, `init_cfg`) are accepted and have no effect on
//! inference. What changes the module tree and is not implemented here (`deep_stem`, `avg_down`,
//! `dcn`, `plugins`) is refused, naming the key.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::layers::NormCfg;
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

fn pytorch() -> String {
    "pytorch".into()
}
fn three() -> i64 {
    3
}
fn c64() -> i64 {
    64
}
fn four() -> i64 {
    4
}
fn strides_1222() -> Vec<i64> {
    vec![1, 2, 2, 2]
}
fn ones4() -> Vec<i64> {
    vec![1, 1, 1, 1]
}
fn out_0123() -> Vec<i64> {
    vec![0, 1, 2, 3]
}
fn minus_one() -> i64 {
    -1
}
fn bn_requires_grad() -> NormCfg {
    NormCfg::bn(1e-5, 0.1)
}

/// Which residual block a depth uses (`ResNet.arch_settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ResNetBlock {
    /// `BasicBlock` (expansion 1): two 3×3 convolutions.
    Basic,
    /// `Bottleneck` (expansion 4): 1×1, 3×3, 1×1.
    Bottleneck,
}

impl ResNetBlock {
    /// `block.expansion`.
    pub fn expansion(self) -> i64 {
        match self {
            ResNetBlock::Basic => 1,
            ResNetBlock::Bottleneck => 4,
        }
    }
}

/// `ResNet.arch_settings`: the block type and blocks per stage of each depth.
pub fn arch_settings(depth: i64) -> Option<(ResNetBlock, [i64; 4])> {
    Some(match depth {
        18 => (ResNetBlock::Basic, [2, 2, 2, 2]),
        34 => (ResNetBlock::Basic, [3, 4, 6, 3]),
        50 => (ResNetBlock::Bottleneck, [3, 4, 6, 3]),
        101 => (ResNetBlock::Bottleneck, [3, 4, 23, 3]),
        152 => (ResNetBlock::Bottleneck, [3, 8, 36, 3]),
        _ => return None,
    })
}

/// Keyword arguments of `ResNet.__init__` (mmdet 3.3.0, `resnet.py:326-420`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub depth: i64,
    #[serde(default = "three")]
    pub in_channels: i64,
    /// `None` → `base_channels`.
    #[serde(default)]
    pub stem_channels: Option<i64>,
    #[serde(default = "c64")]
    pub base_channels: i64,
    #[serde(default = "four")]
    pub num_stages: i64,
    #[serde(default = "strides_1222")]
    pub strides: Vec<i64>,
    #[serde(default = "ones4")]
    pub dilations: Vec<i64>,
    #[serde(default = "out_0123")]
    pub out_indices: Vec<i64>,
    /// `pytorch`: stride on the 3×3 conv of a Bottleneck; `caffe`: on the first 1×1.
    #[serde(default = "pytorch")]
    pub style: String,
    #[serde(default)]
    pub deep_stem: bool,
    #[serde(default)]
    pub avg_down: bool,
    #[serde(default = "minus_one")]
    pub frozen_stages: i64,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default = "bn_requires_grad")]
    pub norm_cfg: NormCfg,
    #[serde(default)]
    pub norm_eval: Option<bool>,
    #[serde(default)]
    pub dcn: Option<Value>,
    #[serde(default)]
    pub stage_with_dcn: Option<Value>,
    #[serde(default)]
    pub plugins: Option<Value>,
    #[serde(default)]
    pub with_cp: Option<bool>,
    #[serde(default)]
    pub zero_init_residual: Option<bool>,
    #[serde(default)]
    pub pretrained: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

impl ResNetCfg {
    /// The block type and per-stage block counts, first `num_stages` stages
    /// (`self.stage_blocks = stage_blocks[:num_stages]`).
    pub fn stages(&self) -> (ResNetBlock, Vec<i64>) {
        let (block, blocks) = arch_settings(self.depth).unwrap_or((ResNetBlock::Basic, [0; 4]));
        (
            block,
            blocks[..self.num_stages.clamp(0, 4) as usize].to_vec(),
        )
    }

    /// `stem_channels`, defaulting to `base_channels`.
    pub fn stem_channels(&self) -> i64 {
        self.stem_channels.unwrap_or(self.base_channels)
    }

    /// Caffe style (stride on the first 1×1 of a Bottleneck).
    pub fn is_caffe(&self) -> bool {
        self.style == "caffe"
    }

    /// Output channels of each stage in `out_indices` (stage order, as `forward` appends).
    pub fn out_channels(&self) -> Vec<i64> {
        let (block, blocks) = self.stages();
        (0..blocks.len() as i64)
            .filter(|i| self.out_indices.contains(i))
            .map(|i| self.base_channels * (1 << i) * block.expansion())
            .collect()
    }
}

/// Parses and checks a `ResNet` dict as `ResNet.__init__` asserts, and refuses what is not
/// implemented.
pub fn parse_resnet(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: ResNetCfg = parse_section(value, ctx.type_name, path)?;
    let invalid = |key: &str, message: String| SpecError::Invalid {
        path: join(path, key),
        type_name: ctx.type_name.to_string(),
        message,
    };
    if arch_settings(cfg.depth).is_none() {
        // `raise KeyError(f'invalid depth {depth} for resnet')`
        return Err(invalid(
            "depth",
            format!(
                "invalid depth {} for resnet (one of 18, 34, 50, 101, 152)",
                cfg.depth
            ),
        ));
    }
    if !(1..=4).contains(&cfg.num_stages) {
        return Err(invalid(
            "num_stages",
            format!("num_stages must be 1 to 4, got {}", cfg.num_stages),
        ));
    }
    let n = cfg.num_stages as usize;
    if cfg.strides.len() != n || cfg.dilations.len() != n {
        return Err(invalid(
            "strides",
            format!(
                "len(strides) == len(dilations) == num_stages is required, got {} strides, {} \
                 dilations and num_stages {n}",
                cfg.strides.len(),
                cfg.dilations.len()
            ),
        ));
    }
    if cfg.strides.iter().chain(&cfg.dilations).any(|&v| v < 1) {
        return Err(invalid(
            "strides",
            "strides and dilations must be positive".into(),
        ));
    }
    if cfg.out_indices.is_empty() || cfg.out_indices.iter().any(|&i| i < 0 || i >= n as i64) {
        return Err(invalid(
            "out_indices",
            format!(
                "max(out_indices) < num_stages is required, got {:?} with num_stages {n}",
                cfg.out_indices
            ),
        ));
    }
    if cfg.style != "pytorch" && cfg.style != "caffe" {
        return Err(invalid(
            "style",
            format!("style must be 'pytorch' or 'caffe', got '{}'", cfg.style),
        ));
    }
    let unsupported = |key: &str, hint: &str| SpecError::Unsupported {
        what: format!("ResNet `{key}`"),
        path: join(path, key),
        hint: hint.to_string(),
    };
    if cfg.deep_stem {
        return Err(unsupported(
            "deep_stem",
            "the three-conv stem of ResNetV1c/V1d is not implemented; deep_stem=False only",
        ));
    }
    if cfg.avg_down {
        return Err(unsupported(
            "avg_down",
            "the AvgPool shortcut of ResNetV1d is not implemented; avg_down=False only",
        ));
    }
    if cfg.dcn.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "dcn",
            "deformable convolutions in the backbone are not implemented; dcn=None only",
        ));
    }
    if cfg.plugins.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "plugins",
            "backbone plugins are not implemented; plugins=None only",
        ));
    }
    if cfg.conv_cfg.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported("conv_cfg", "plain Conv2d only (conv_cfg=None)"));
    }
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmdet", name: "ResNet", kind: Backbone, parse: parse_resnet);
