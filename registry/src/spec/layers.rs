//! Typed config dicts shared by every model component: the `norm_cfg` / `act_cfg` / `conv_cfg`
//! of mmcv's `ConvModule` (`mmcv/cnn/bricks/conv_module.py`) and Python's number conversions that
//! channel arithmetic relies on.
//!
//! Every struct rejects unknown keys, as Python rejects an unexpected keyword argument. Keys the
//! Python registry strips before calling the constructor (`type`, `_scope_`) are accepted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::parse::{closest_key, join, type_of};
use super::SpecError;

/// Python's `round()` on a float: ties go to the even neighbour (`round(2.5) == 2`).
pub fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// Python's `int(x)` on a float: truncation toward zero.
pub fn py_int(x: f64) -> i64 {
    x.trunc() as i64
}

/// `norm_cfg` of `mmcv.cnn.build_norm_layer`: batch norms (at inference `SyncBN` is a plain BN,
/// mmengine `revert_sync_batchnorm`) and, for the mmdet heads and necks that use it (GFL, ATSS,
/// FCOS, RepPoints), `GN` (`nn.GroupNorm(num_groups, channels, eps, affine)`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NormCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default = "default_bn_eps")]
    pub eps: f64,
    #[serde(default = "default_bn_momentum")]
    pub momentum: Option<f64>,
    #[serde(default = "default_true")]
    pub affine: bool,
    #[serde(default = "default_true")]
    pub track_running_stats: bool,
    /// `build_norm_layer` pops it; irrelevant at inference.
    #[serde(default = "default_true")]
    pub requires_grad: bool,
    /// `GN` only (`nn.GroupNorm`'s first argument; `build_norm_layer` asserts it is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_groups: Option<i64>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
}

fn default_bn_eps() -> f64 {
    1e-5
}
fn default_bn_momentum() -> Option<f64> {
    Some(0.1)
}
fn default_true() -> bool {
    true
}

impl NormCfg {
    /// The norm config a Python default `dict(type='BN', momentum=0.03, eps=0.001)` stands for.
    pub fn bn(eps: f64, momentum: f64) -> Self {
        NormCfg {
            type_name: "BN".into(),
            eps,
            momentum: Some(momentum),
            affine: true,
            track_running_stats: true,
            requires_grad: true,
            num_groups: None,
            scope: None,
        }
    }

    /// The type name without a scope prefix (`mmdet.GN` → `GN`).
    fn short_name(&self) -> &str {
        self.type_name.rsplit('.').next().unwrap_or(&self.type_name)
    }

    /// `GN` / `GroupNorm` (the registry aliases of `nn.GroupNorm`).
    pub fn is_group_norm(&self) -> bool {
        matches!(self.short_name(), "GN" | "GroupNorm")
    }

    /// Checks the norm is a batch norm we can run; `path` names the dict for the error. For the
    /// components whose Python code builds the norm itself (not through `ConvModule`), which only
    /// ever use batch norms upstream; see [`NormCfg::validate_conv_module`] for the others.
    pub fn validate(&self, path: &str) -> Result<(), SpecError> {
        if self.is_group_norm() {
            return Err(SpecError::Unsupported {
                what: "norm type `GN` here".into(),
                path: path.to_string(),
                hint: "this component runs batch norms only (BN, BN2d, SyncBN); group norm is \
                       implemented for mmcv ConvModules (mmdet FPN and dense heads)"
                    .into(),
            });
        }
        self.validate_conv_module(path)
    }

    /// Checks the norm is one mmcv's `ConvModule` can run here: a batch norm or `GN` with
    /// `num_groups` (`mmcv/cnn/bricks/norm.py:build_norm_layer`).
    pub fn validate_conv_module(&self, path: &str) -> Result<(), SpecError> {
        match self.short_name() {
            "BN" | "BN2d" | "SyncBN" | "MMSyncBN" | "BatchNorm2d" | "SyncBatchNorm" => {}
            "GN" | "GroupNorm" => {
                return match self.num_groups {
                    Some(g) if g > 0 => Ok(()),
                    Some(g) => Err(SpecError::Invalid {
                        path: join(path, "num_groups"),
                        type_name: "GN".into(),
                        message: format!("num_groups must be >= 1, got {g}"),
                    }),
                    // build_norm_layer: `assert 'num_groups' in cfg_`.
                    None => Err(SpecError::Missing {
                        path: path.to_string(),
                        message: "GN needs `num_groups` (e.g. dict(type='GN', num_groups=32, \
                                  requires_grad=True))"
                            .into(),
                    }),
                };
            }
            other => {
                return Err(SpecError::Unsupported {
                    what: format!("norm type `{other}`"),
                    path: path.to_string(),
                    hint: "batch norms (BN, BN2d, SyncBN) and GN are implemented".into(),
                })
            }
        }
        if let Some(g) = self.num_groups {
            return Err(SpecError::Invalid {
                path: join(path, "num_groups"),
                type_name: self.short_name().to_string(),
                message: format!(
                    "a batch norm takes no num_groups (got {g}); did you mean type='GN'?"
                ),
            });
        }
        if !self.affine || !self.track_running_stats {
            return Err(SpecError::Unsupported {
                what: "a batch norm without affine parameters or running statistics".into(),
                path: path.to_string(),
                hint: "set affine=True and track_running_stats=True".into(),
            });
        }
        Ok(())
    }
}

/// An activation of `mmcv.cnn.build_activation_layer`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    ReLU,
    LeakyReLU(f64),
    ReLU6,
    SiLU,
    Sigmoid,
    Tanh,
    /// mmcv `HSigmoid(bias, divisor, min_value, max_value)`: clamp((x + bias) / divisor, min, max).
    HSigmoid {
        bias: f64,
        divisor: f64,
        min: f64,
        max: f64,
    },
    HSwish,
    Gelu,
    Elu(f64),
    Clamp {
        min: f64,
        max: f64,
    },
}

/// `act_cfg` dict: the union of the keyword arguments of the activations in [`Act`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default)]
    pub inplace: Option<bool>,
    #[serde(default)]
    pub negative_slope: Option<f64>,
    #[serde(default)]
    pub alpha: Option<f64>,
    #[serde(default)]
    pub bias: Option<f64>,
    #[serde(default)]
    pub divisor: Option<f64>,
    #[serde(default)]
    pub min_value: Option<f64>,
    #[serde(default)]
    pub max_value: Option<f64>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub approximate: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
}

impl ActCfg {
    pub fn named(name: &str) -> Self {
        ActCfg {
            type_name: name.to_string(),
            inplace: None,
            negative_slope: None,
            alpha: None,
            bias: None,
            divisor: None,
            min_value: None,
            max_value: None,
            min: None,
            max: None,
            approximate: None,
            scope: None,
        }
    }

    /// Resolves the dict to an [`Act`], rejecting keys the chosen activation does not take (the
    /// Python constructor would raise `TypeError: unexpected keyword argument`).
    pub fn to_act(&self, path: &str) -> Result<Act, SpecError> {
        let name = self.type_name.rsplit('.').next().unwrap_or(&self.type_name);
        let given: Vec<(&str, bool)> = vec![
            ("inplace", self.inplace.is_some()),
            ("negative_slope", self.negative_slope.is_some()),
            ("alpha", self.alpha.is_some()),
            ("bias", self.bias.is_some()),
            ("divisor", self.divisor.is_some()),
            ("min_value", self.min_value.is_some()),
            ("max_value", self.max_value.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("approximate", self.approximate.is_some()),
        ];
        let (allowed, act): (&[&str], Act) =
            match name {
                "ReLU" => (&["inplace"], Act::ReLU),
                "LeakyReLU" => (
                    &["inplace", "negative_slope"],
                    Act::LeakyReLU(self.negative_slope.unwrap_or(0.01)),
                ),
                "ReLU6" => (&["inplace"], Act::ReLU6),
                "SiLU" => (&["inplace"], Act::SiLU),
                // mmcv Swish: x * sigmoid(x), no `inplace` argument (ConvModule does not add one).
                "Swish" => (&[], Act::SiLU),
                "Sigmoid" => (&[], Act::Sigmoid),
                "Tanh" => (&[], Act::Tanh),
                "HSigmoid" => (
                    &["bias", "divisor", "min_value", "max_value"],
                    Act::HSigmoid {
                        bias: self.bias.unwrap_or(3.0),
                        divisor: self.divisor.unwrap_or(6.0),
                        min: self.min_value.unwrap_or(0.0),
                        max: self.max_value.unwrap_or(1.0),
                    },
                ),
                "HSwish" => (&["inplace"], Act::HSwish),
                "GELU" => match self.approximate.as_deref() {
                    None | Some("none") => (&["approximate"], Act::Gelu),
                    Some(other) => {
                        return Err(SpecError::Unsupported {
                            what: format!("GELU approximate={other:?}"),
                            path: path.to_string(),
                            hint: "only the exact GELU is implemented".into(),
                        })
                    }
                },
                "ELU" => (&["inplace", "alpha"], Act::Elu(self.alpha.unwrap_or(1.0))),
                "Clamp" | "Clip" => (
                    &["min", "max"],
                    Act::Clamp {
                        min: self.min.unwrap_or(-1.0),
                        max: self.max.unwrap_or(1.0),
                    },
                ),
                other => return Err(SpecError::Unsupported {
                    what: format!("activation type `{other}`"),
                    path: path.to_string(),
                    hint:
                        "supported: ReLU, LeakyReLU, ReLU6, SiLU, Swish, Sigmoid, Tanh, HSigmoid, \
                           HSwish, GELU, ELU, Clamp"
                            .into(),
                }),
            };
        for (key, present) in given {
            if present && !allowed.contains(&key) {
                return Err(SpecError::UnknownKey {
                    key: key.to_string(),
                    type_name: name.to_string(),
                    path: path.to_string(),
                    closest: closest_key(key, allowed.iter().copied()),
                    accepted: allowed.iter().map(|k| k.to_string()).collect(),
                });
            }
        }
        Ok(act)
    }
}

/// `conv_cfg`: only `None` / `dict(type='Conv2d')` (a plain convolution) is implemented.
pub fn check_conv_cfg(conv_cfg: &Option<Value>, path: &str) -> Result<(), SpecError> {
    match conv_cfg {
        None | Some(Value::Null) => Ok(()),
        Some(v)
            if matches!(type_of(v), Some("Conv2d") | Some("Conv"))
                && v.as_object().is_some_and(|o| o.len() == 1) =>
        {
            Ok(())
        }
        Some(v) => Err(SpecError::Unsupported {
            what: format!("conv_cfg {v}"),
            path: path.to_string(),
            hint: "only plain Conv2d (conv_cfg=None) is implemented".into(),
        }),
    }
}

/// `upsample_cfg` of the PAFPNs: `nn.Upsample(**upsample_cfg)`; only nearest with a scale factor
/// is implemented (every RTMDet config).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpsampleCfg {
    #[serde(default)]
    pub scale_factor: Option<f64>,
    #[serde(default = "nearest")]
    pub mode: String,
    #[serde(default)]
    pub size: Option<serde_json::Value>,
    #[serde(default)]
    pub align_corners: Option<bool>,
}

fn nearest() -> String {
    "nearest".into()
}

impl Default for UpsampleCfg {
    fn default() -> Self {
        UpsampleCfg {
            scale_factor: Some(2.0),
            mode: nearest(),
            size: None,
            align_corners: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: Value) -> NormCfg {
        serde_json::from_value(v).unwrap()
    }

    /// `build_norm_layer` accepts GN only with `num_groups`; a batch norm with `num_groups` is a
    /// TypeError in Python (`BatchNorm2d.__init__` has no such argument); components that build
    /// batch norms themselves keep refusing GN.
    #[test]
    fn group_norm_validation() {
        let gn = norm(serde_json::json!({"type": "GN", "num_groups": 32, "requires_grad": true}));
        assert!(gn.is_group_norm());
        gn.validate_conv_module("bbox_head.norm_cfg").unwrap();
        let err = gn.validate("backbone.norm_cfg").unwrap_err().to_string();
        assert!(
            err.contains("backbone.norm_cfg") && err.contains("GN"),
            "{err}"
        );

        let missing = norm(serde_json::json!({"type": "GN"}));
        let err = missing.validate_conv_module("neck.norm_cfg").unwrap_err();
        assert!(err.to_string().contains("num_groups"), "{err}");

        let bn = norm(serde_json::json!({"type": "BN", "num_groups": 8}));
        let err = bn.validate_conv_module("neck.norm_cfg").unwrap_err();
        assert!(err.to_string().contains("did you mean type='GN'"), "{err}");

        let ln = norm(serde_json::json!({"type": "LN"}));
        let err = ln.validate_conv_module("neck.norm_cfg").unwrap_err();
        assert!(err.to_string().contains("norm type `LN`"), "{err}");
    }
}
