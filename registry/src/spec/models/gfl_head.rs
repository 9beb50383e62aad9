//! Arguments of mmdet's `GFLHead` (`mmdet/models/dense_heads/gfl_head.py`, on `AnchorHead`: its
//! keywords are accepted too) and the `GFL` detector (`mmdet/models/detectors/gfl.py`, a plain
//! `SingleStageDetector`). Losses (`loss_cls` QFL, `loss_dfl`, `loss_bbox`), `train_cfg`
//! (ATSSAssigner, sampler) and `init_cfg` are train-time only: accepted and ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::anchor_head::AnchorGeneratorCfg;
use super::atss_head::{c256, four, gn32, parse_anchor_head_common};
use super::detector::parse_single_stage;
use crate::spec::layers::NormCfg;
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

fn sixteen() -> i64 {
    16
}
fn yes() -> bool {
    true
}

/// Keyword arguments of `GFLHead.__init__` and `AnchorHead.__init__` (mmdet 3.3.0).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GflHeadArgs {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_classes: i64,
    pub in_channels: i64,
    #[serde(default = "four")]
    pub stacked_convs: i64,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default = "gn32")]
    pub norm_cfg: Value,
    #[serde(default)]
    pub loss_dfl: Option<Value>,
    #[serde(default)]
    pub bbox_coder: Option<Value>,
    /// `Integral(reg_max)`: `reg_max + 1` bins per side (`gfl_head.py:36-40`).
    #[serde(default = "sixteen")]
    pub reg_max: i64,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    // AnchorHead
    #[serde(default = "c256")]
    pub feat_channels: i64,
    #[serde(default)]
    pub anchor_generator: Option<Value>,
    #[serde(default)]
    pub reg_decoded_bbox: Option<bool>,
    #[serde(default)]
    pub loss_cls: Option<Value>,
    #[serde(default)]
    pub loss_bbox: Option<Value>,
    #[serde(default)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
}

/// `DistancePointBBoxCoder.__init__` keywords (`mmdet/models/task_modules/coders/
/// distance_point_bbox_coder.py:24-26`, `use_box_type` from `BaseBBoxCoder`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DistancePointCoderCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    /// `clip_border=False` decodes without the clamp to `img_shape` (`max_shape = None`).
    #[serde(default = "yes")]
    pub clip_border: bool,
    #[serde(default)]
    pub use_box_type: bool,
}

/// A `GFLHead` as the backend builds it.
#[derive(Debug, Clone, Serialize)]
pub struct GflHeadCfg {
    #[serde(flatten)]
    pub args: GflHeadArgs,
    /// The towers' norm (`None`: `norm_cfg=None`, biased convs).
    pub norm: Option<NormCfg>,
    pub anchors: AnchorGeneratorCfg,
    pub coder: DistancePointCoderCfg,
}

/// Parses a `GFLHead` dict with its anchor generator and coder, checking what `GFLHead` asserts:
/// one anchor per location (`gfl_head.py:166`, "anchor free version") and square strides
/// (`:453`).
pub fn parse_gfl_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let args: GflHeadArgs = parse_section(value, ctx.type_name, path)?;
    let common = parse_anchor_head_common(
        "GFLHead",
        path,
        &args.norm_cfg,
        args.conv_cfg.as_ref(),
        args.anchor_generator.as_ref(),
        args.loss_cls.as_ref(),
        [args.num_classes, args.in_channels, args.feat_channels],
        args.stacked_convs,
    )?;
    let invalid = |key: &str, message: String| SpecError::Invalid {
        path: join(path, key),
        type_name: "mmdet.GFLHead".into(),
        message,
    };
    if common.anchors.num_base_priors() != 1 {
        return Err(invalid(
            "anchor_generator",
            format!(
                "GFLHead needs one anchor per location (`assert self.num_anchors == 1`), \
                 these ratios and scales give {}; use ratios=[1.0] and one scale",
                common.anchors.num_base_priors()
            ),
        ));
    }
    if let Some((w, h)) = common
        .anchors
        .strides_wh()
        .into_iter()
        .find(|(w, h)| w != h)
    {
        return Err(invalid(
            "anchor_generator.strides",
            format!(
                "GFLHead needs square strides (`assert stride[0] == stride[1]`), got ({w}, {h})"
            ),
        ));
    }
    if args.reg_max < 1 {
        return Err(invalid(
            "reg_max",
            format!("reg_max {} must be at least 1", args.reg_max),
        ));
    }
    // GFLHead scores with `.sigmoid()` whatever the loss says (`gfl_head.py:458-459`); with
    // `use_sigmoid=False` AnchorHead would add a background channel that sigmoid then scores
    // as a class, which no config does.
    if !common.use_sigmoid {
        return Err(SpecError::Unsupported {
            what: "GFLHead with loss_cls.use_sigmoid=False".into(),
            path: join(path, "loss_cls"),
            hint: "GFLHead's scores are sigmoids; set use_sigmoid=True (QualityFocalLoss)".into(),
        });
    }
    let coder = match args.bbox_coder.as_ref().filter(|v| !v.is_null()) {
        None => DistancePointCoderCfg {
            type_name: "DistancePointBBoxCoder".into(),
            scope: None,
            clip_border: true,
            use_box_type: false,
        },
        Some(v) => {
            super::require_coder(v, "DistancePointBBoxCoder", "GFLHead", path)?;
            let coder_path = join(path, "bbox_coder");
            let c: DistancePointCoderCfg =
                parse_section(v, "mmdet.DistancePointBBoxCoder", &coder_path)?;
            if c.use_box_type {
                return Err(SpecError::Unsupported {
                    what: "use_box_type=True".into(),
                    path: join(&coder_path, "use_box_type"),
                    hint: "boxes are plain tensors here; leave it False".into(),
                });
            }
            c
        }
    };
    let cfg = GflHeadCfg {
        args,
        norm: common.norm,
        anchors: common.anchors,
        coder,
    };
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmdet", name: "GFLHead", kind: DenseHead, parse: parse_gfl_head);
crate::register_component!(scope: "mmdet", name: "GFL", kind: Detector, parse: parse_single_stage);
