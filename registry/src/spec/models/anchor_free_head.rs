//! What mmdet's `AnchorFreeHead.__init__` (`mmdet/models/dense_heads/anchor_free_head.py:54-108`)
//! reads and checks for the heads built on it (FCOSHead, RepPointsHead): the towers' `norm_cfg`
//! (GN by default in both heads), `conv_cfg`, `conv_bias`, `use_sigmoid_cls`, the strides of its
//! `MlvlPointGenerator`. Losses, `train_cfg` and `init_cfg` are train-time only: accepted, ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::prior_generator::StrideCfg;
use crate::spec::layers::NormCfg;
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

/// `norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)`: FCOSHead's default
/// (`fcos_head.py:93-94`); the RepPoints configs set the same. Kept as a dict until parsed, so an
/// explicit `norm_cfg=None` (biased convs, no norm) stays distinguishable from an absent key.
pub(crate) fn gn32() -> Value {
    serde_json::json!({"type": "GN", "num_groups": 32, "requires_grad": true})
}

/// `AnchorFreeHead`'s `strides=(4, 8, 16, 32, 64)` (`anchor_free_head.py:59`).
pub(crate) fn default_strides() -> Vec<StrideCfg> {
    [4.0, 8.0, 16.0, 32.0, 64.0]
        .into_iter()
        .map(StrideCfg::Square)
        .collect()
}

/// `conv_bias`: `'auto'` (a bias only without norm) or a bool
/// (`assert conv_bias == 'auto' or isinstance(conv_bias, bool)`, `anchor_free_head.py:96`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ConvBias {
    Flag(bool),
    Auto(String),
}

impl Default for ConvBias {
    fn default() -> Self {
        ConvBias::Auto("auto".into())
    }
}

/// What both heads' backends need from `AnchorFreeHead.__init__`.
#[derive(Debug, Clone, Serialize)]
pub struct AnchorFreeCommon {
    /// The towers' norm (`None`: `norm_cfg=None`).
    pub norm: Option<NormCfg>,
    /// The towers' conv bias, `'auto'` resolved (mmcv `ConvModule`: `bias = norm_cfg is None`).
    pub tower_bias: bool,
    /// `loss_cls.use_sigmoid` (`anchor_free_head.py:83`, default False when the key is absent,
    /// but the heads' default loss is FocalLoss(use_sigmoid=True)): `num_classes` channels, else
    /// `num_classes + 1` and softmax scores.
    pub use_sigmoid: bool,
}

/// The keyword arguments `AnchorFreeHead.__init__` checks; `head` names the type in messages.
pub(crate) struct AnchorFreeArgs<'a> {
    pub head: &'a str,
    pub path: &'a str,
    pub norm_cfg: &'a Value,
    pub conv_cfg: Option<&'a Value>,
    pub conv_bias: &'a ConvBias,
    pub loss_cls: Option<&'a Value>,
    /// num_classes, in_channels, feat_channels
    pub channels: [i64; 3],
    pub stacked_convs: i64,
}

impl AnchorFreeArgs<'_> {
    pub(crate) fn parse(&self) -> Result<AnchorFreeCommon, SpecError> {
        let (head, path) = (self.head, self.path);
        if self.conv_cfg.is_some_and(|v| !v.is_null()) {
            return Err(SpecError::Unsupported {
                what: format!("{head} `conv_cfg`"),
                path: join(path, "conv_cfg"),
                hint: "plain Conv2d towers only (conv_cfg=None)".into(),
            });
        }
        let norm_path = join(path, "norm_cfg");
        let norm: Option<NormCfg> = if self.norm_cfg.is_null() {
            None
        } else {
            let n: NormCfg = parse_section(self.norm_cfg, "norm_cfg", &norm_path)?;
            n.validate_conv_module(&norm_path)?;
            Some(n)
        };
        let tower_bias = match self.conv_bias {
            ConvBias::Flag(b) => *b,
            ConvBias::Auto(s) if s == "auto" => norm.is_none(),
            ConvBias::Auto(s) => {
                return Err(SpecError::Invalid {
                    path: join(path, "conv_bias"),
                    type_name: format!("mmdet.{head}"),
                    message: format!("conv_bias must be 'auto', True or False, got '{s}'"),
                })
            }
        };
        if self.channels.iter().any(|&c| c < 1) || self.stacked_convs < 0 {
            return Err(SpecError::Invalid {
                path: path.to_string(),
                type_name: format!("mmdet.{head}"),
                message: format!(
                    "num_classes, in_channels and feat_channels must be positive and \
                     stacked_convs not negative, got {:?} and {}",
                    self.channels, self.stacked_convs
                ),
            });
        }
        if let Some(n) = &norm {
            let g = n.num_groups.unwrap_or(1);
            let feat = self.channels[2];
            if n.is_group_norm() && feat % g != 0 {
                // nn.GroupNorm: "num_channels must be divisible by num_groups".
                return Err(SpecError::Invalid {
                    path: join(&norm_path, "num_groups"),
                    type_name: "GN".into(),
                    message: format!(
                        "feat_channels {feat} is not divisible by num_groups {g} \
                         (nn.GroupNorm requires it)"
                    ),
                });
            }
        }
        // `loss_cls.get('use_sigmoid', False)`; the heads' default loss_cls is
        // FocalLoss(use_sigmoid=True).
        let use_sigmoid = match self.loss_cls {
            None | Some(Value::Null) => true,
            Some(l) => l
                .get("use_sigmoid")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        Ok(AnchorFreeCommon {
            norm,
            tower_bias,
            use_sigmoid,
        })
    }
}

/// Checks a stride list (`MlvlPointGenerator(strides)`): at least one level, all positive.
pub(crate) fn check_strides(
    strides: &[StrideCfg],
    head: &str,
    path: &str,
) -> Result<Vec<(f64, f64)>, SpecError> {
    let wh: Vec<(f64, f64)> = strides.iter().map(StrideCfg::wh).collect();
    if wh.is_empty() || wh.iter().any(|&(w, h)| w <= 0.0 || h <= 0.0) {
        return Err(SpecError::Invalid {
            path: path.to_string(),
            type_name: format!("mmdet.{head}"),
            message: format!("needs at least one level and positive strides, got {wh:?}"),
        });
    }
    Ok(wh)
}
