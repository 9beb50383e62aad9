//! Arguments of mmyolo's `RepVGGBlock` (`mmyolo/models/layers/yolo_bricks.py:
//! RepVGGBlock.__init__`) as YOLOv6's modules receive them in `block_cfg`: the callers add
//! `in_channels`/`out_channels` (and, in the backbone, `kernel_size=3, stride=2`), so those are
//! not config keys here. YOLOv6's modules read their `block_cfg` through
//! `yolov6_block::YoloV6BlockCfg` (`RepVGGBlock` or `ConvWrapper`).

use serde::{Deserialize, Serialize};

use super::defaults as d;
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::parse::join;
use crate::spec::SpecError;

fn three() -> i64 {
    3
}
fn zeros() -> String {
    "zeros".into()
}
fn repvgg_block() -> String {
    "RepVGGBlock".into()
}

/// `dict(type='ReLU', inplace=True)`: the YOLOv6 n/t/s default activation.
pub fn relu_inplace() -> ActCfg {
    let mut act = ActCfg::named("ReLU");
    act.inplace = Some(true);
    act
}

/// `block_cfg=dict(type='RepVGGBlock', ...)` (defaults as `RepVGGBlock.__init__`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepVggBlockCfg {
    #[serde(default = "repvgg_block", rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "three")]
    pub kernel_size: i64,
    #[serde(default = "d::i_one")]
    pub padding: i64,
    #[serde(default = "d::i_one")]
    pub dilation: i64,
    #[serde(default = "d::i_one")]
    pub groups: i64,
    #[serde(default = "zeros")]
    pub padding_mode: String,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "relu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub use_se: bool,
    #[serde(default)]
    pub use_alpha: bool,
    #[serde(default = "d::yes")]
    pub use_bn_first: bool,
    #[serde(default)]
    pub deploy: bool,
}

impl Default for RepVggBlockCfg {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("defaults deserialise")
    }
}

impl RepVggBlockCfg {
    /// What `RepVGGBlock.__init__` asserts or refuses, and what mmcompat leaves out.
    pub fn validate(&self, path: &str) -> Result<(), SpecError> {
        let name = self.type_name.rsplit('.').next().unwrap_or(&self.type_name);
        if name != "RepVGGBlock" {
            return Err(SpecError::Unsupported {
                what: format!("block type `{}`", self.type_name),
                path: join(path, "type"),
                hint: "YOLOv6EfficientRep / YOLOv6RepPAFPN are implemented with RepVGGBlock \
                       (the n/t/s configs)"
                    .into(),
            });
        }
        let refuse = |key: &str, what: String, hint: &str| SpecError::Unsupported {
            what,
            path: join(path, key),
            hint: hint.into(),
        };
        if self.kernel_size != 3 || self.padding != 1 {
            return Err(refuse(
                if self.kernel_size != 3 {
                    "kernel_size"
                } else {
                    "padding"
                },
                format!(
                    "kernel_size {} / padding {}",
                    self.kernel_size, self.padding
                ),
                "RepVGGBlock asserts kernel_size == 3 and padding == 1",
            ));
        }
        if self.use_se {
            return Err(refuse(
                "use_se",
                "use_se=True".into(),
                "RepVGGBlock raises NotImplementedError('se block not supported yet')",
            ));
        }
        if self.dilation != 1 {
            return Err(refuse(
                "dilation",
                format!("dilation {}", self.dilation),
                "no shipped config dilates RepVGG blocks",
            ));
        }
        if self.padding_mode != "zeros" {
            return Err(refuse(
                "padding_mode",
                format!("padding_mode `{}`", self.padding_mode),
                "use 'zeros'",
            ));
        }
        if self.groups < 1 {
            return Err(SpecError::Invalid {
                path: join(path, "groups"),
                type_name: "mmyolo.RepVGGBlock".into(),
                message: format!("groups must be positive, got {}", self.groups),
            });
        }
        self.norm_cfg.validate(&join(path, "norm_cfg"))?;
        self.act_cfg.to_act(&join(path, "act_cfg"))?;
        Ok(())
    }
}
