//! Arguments of mmdet's `ATSSHead` (`mmdet/models/dense_heads/atss_head.py`, on `AnchorHead`: its
//! keywords are accepted too) and the `ATSS` detector (`mmdet/models/detectors/atss.py`, a plain
//! `SingleStageDetector`), plus what `ATSSHead` and `GFLHead` (`gfl_head.rs`) share: GN towers by
//! default, the anchor generator, `use_sigmoid_cls`. Losses, `train_cfg` (assigner, sampler) and
//! `init_cfg` are train-time only: accepted and ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::anchor_head::{AnchorGeneratorCfg, DeltaXywhCoderCfg};
use super::detector::parse_single_stage;
use crate::spec::layers::NormCfg;
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

pub(crate) fn three() -> i64 {
    3
}
pub(crate) fn four() -> i64 {
    4
}
pub(crate) fn c256() -> i64 {
    256
}
/// `norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)`, the default of both heads
/// (`atss_head.py:54-55`, `gfl_head.py:103-104`). Kept as a dict until parsed, so that an explicit
/// `norm_cfg=None` (plain biased convs) stays distinguishable from an absent key.
pub(crate) fn gn32() -> Value {
    serde_json::json!({"type": "GN", "num_groups": 32, "requires_grad": true})
}

/// Keyword arguments of `ATSSHead.__init__` and `AnchorHead.__init__` (mmdet 3.3.0).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AtssHeadArgs {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_classes: i64,
    pub in_channels: i64,
    #[serde(default = "three")]
    pub pred_kernel_size: i64,
    #[serde(default = "four")]
    pub stacked_convs: i64,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default = "gn32")]
    pub norm_cfg: Value,
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

/// An `ATSSHead` as the backend builds it.
#[derive(Debug, Clone, Serialize)]
pub struct AtssHeadCfg {
    #[serde(flatten)]
    pub args: AtssHeadArgs,
    /// The towers' norm (`None`: `norm_cfg=None`, biased convs).
    pub norm: Option<NormCfg>,
    pub anchors: AnchorGeneratorCfg,
    pub coder: DeltaXywhCoderCfg,
    /// `loss_cls.use_sigmoid`: sigmoid scores, else `num_classes + 1` channels and softmax.
    pub use_sigmoid: bool,
}

/// What `AnchorHead.__init__` builds and checks for both heads: the norm of the towers, the
/// anchor generator (`default_gen` when absent: AnchorHead's own default), `use_sigmoid_cls`.
pub(crate) struct AnchorHeadCommon {
    pub norm: Option<NormCfg>,
    pub anchors: AnchorGeneratorCfg,
    pub use_sigmoid: bool,
}

/// `AnchorHead`'s default `anchor_generator` (`anchor_head.py:49-53`).
fn anchor_head_default_generator() -> Value {
    serde_json::json!({
        "type": "AnchorGenerator",
        "scales": [8, 16, 32],
        "ratios": [0.5, 1.0, 2.0],
        "strides": [4, 8, 16, 32, 64],
    })
}

/// The checks both heads share; `head` names the type in messages.
#[allow(clippy::too_many_arguments)]
pub(crate) fn parse_anchor_head_common(
    head: &str,
    path: &str,
    norm_cfg: &Value,
    conv_cfg: Option<&Value>,
    anchor_generator: Option<&Value>,
    loss_cls: Option<&Value>,
    channels: [i64; 3],
    stacked_convs: i64,
) -> Result<AnchorHeadCommon, SpecError> {
    if conv_cfg.is_some_and(|v| !v.is_null()) {
        return Err(SpecError::Unsupported {
            what: format!("{head} `conv_cfg`"),
            path: join(path, "conv_cfg"),
            hint: "plain Conv2d only (conv_cfg=None)".into(),
        });
    }
    let norm_path = join(path, "norm_cfg");
    let norm: Option<NormCfg> = if norm_cfg.is_null() {
        None
    } else {
        let n: NormCfg = parse_section(norm_cfg, "norm_cfg", &norm_path)?;
        n.validate_conv_module(&norm_path)?;
        Some(n)
    };
    // `nn.GroupNorm(num_groups, feat_channels)` raises "num_channels must be divisible by
    // num_groups" (every tower conv outputs feat_channels).
    if let Some(g) = norm
        .as_ref()
        .filter(|n| n.is_group_norm())
        .and_then(|n| n.num_groups)
    {
        if stacked_convs > 0 && channels[2] % g != 0 {
            return Err(SpecError::Invalid {
                path: join(&norm_path, "num_groups"),
                type_name: format!("mmdet.{head}"),
                message: format!(
                    "GroupNorm needs feat_channels ({}) divisible by num_groups ({g}); \
                     change one of them",
                    channels[2]
                ),
            });
        }
    }
    if channels.iter().any(|&c| c < 1) || stacked_convs < 0 {
        return Err(SpecError::Invalid {
            path: path.to_string(),
            type_name: format!("mmdet.{head}"),
            message: "num_classes, in_channels and feat_channels must be positive, \
                      stacked_convs not negative"
                .into(),
        });
    }
    let gen = anchor_generator
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or_else(anchor_head_default_generator);
    let anchors = AnchorGeneratorCfg::parse(&gen, &join(path, "anchor_generator"))?;
    // AnchorHead: `use_sigmoid_cls = loss_cls.get('use_sigmoid', False)` (`anchor_head.py:73`);
    // the default loss is CrossEntropyLoss(use_sigmoid=True).
    let use_sigmoid = match loss_cls {
        None | Some(Value::Null) => true,
        Some(l) => l
            .get("use_sigmoid")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    Ok(AnchorHeadCommon {
        norm,
        anchors,
        use_sigmoid,
    })
}

/// Parses an `ATSSHead` dict with its anchor generator and coder.
pub fn parse_atss_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let args: AtssHeadArgs = parse_section(value, ctx.type_name, path)?;
    let common = parse_anchor_head_common(
        "ATSSHead",
        path,
        &args.norm_cfg,
        args.conv_cfg.as_ref(),
        args.anchor_generator.as_ref(),
        args.loss_cls.as_ref(),
        [args.num_classes, args.in_channels, args.feat_channels],
        args.stacked_convs,
    )?;
    // `padding=pred_kernel_size // 2` (`atss_head.py:110`): an even kernel would change the map
    // size, which no shipped config does.
    if args.pred_kernel_size < 1 || args.pred_kernel_size % 2 == 0 {
        return Err(SpecError::Invalid {
            path: join(path, "pred_kernel_size"),
            type_name: "mmdet.ATSSHead".into(),
            message: format!(
                "pred_kernel_size {} must be a positive odd number (3 or 1)",
                args.pred_kernel_size
            ),
        });
    }
    let coder = DeltaXywhCoderCfg::parse(args.bbox_coder.as_ref(), "ATSSHead", path)?;
    let cfg = AtssHeadCfg {
        args,
        norm: common.norm,
        anchors: common.anchors,
        coder,
        use_sigmoid: common.use_sigmoid,
    };
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmdet", name: "ATSSHead", kind: DenseHead, parse: parse_atss_head);
crate::register_component!(scope: "mmdet", name: "ATSS", kind: Detector, parse: parse_single_stage);
