//! Arguments of mmdet's `FCOSHead` (`mmdet/models/dense_heads/fcos_head.py:20-130`, on
//! `AnchorFreeHead`: its keywords are accepted too) and the `FCOS` detector
//! (`mmdet/models/detectors/fcos.py`, a plain `SingleStageDetector`). Training-only keywords
//! (`regress_ranges`, `center_sampling`, `center_sample_radius`, losses, `train_cfg`, `init_cfg`)
//! are accepted and ignored; what changes the inference graph is read or refused by name.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::anchor_free_head::{
    check_strides, default_strides, gn32, AnchorFreeArgs, AnchorFreeCommon, ConvBias,
};
use super::detector::parse_single_stage;
use super::prior_generator::StrideCfg;
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

fn four() -> i64 {
    4
}
fn c256() -> i64 {
    256
}
fn c1_5() -> f64 {
    1.5
}
fn yes() -> bool {
    true
}

/// Keyword arguments of `FCOSHead.__init__` and `AnchorFreeHead.__init__` (mmdet 3.3.0).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FcosHeadArgs {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_classes: i64,
    pub in_channels: i64,
    /// Target assignment only.
    #[serde(default)]
    pub regress_ranges: Option<Value>,
    /// Target assignment only.
    #[serde(default)]
    pub center_sampling: bool,
    /// Target assignment only.
    #[serde(default = "c1_5")]
    pub center_sample_radius: f64,
    /// `True`: `bbox_pred = relu(Scale(x)) · stride` at test time, else `exp(Scale(x))`
    /// (`fcos_head.py:179-188`).
    #[serde(default)]
    pub norm_on_bbox: bool,
    /// Centerness from the regression tower instead of the classification one (`:174-177`).
    #[serde(default)]
    pub centerness_on_reg: bool,
    #[serde(default)]
    pub loss_cls: Option<Value>,
    #[serde(default)]
    pub loss_bbox: Option<Value>,
    #[serde(default)]
    pub loss_centerness: Option<Value>,
    #[serde(default = "gn32")]
    pub norm_cfg: Value,
    /// `NormedConv2d` classifier (`:118-124`): refused.
    #[serde(default)]
    pub cls_predictor_cfg: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    // AnchorFreeHead
    #[serde(default = "c256")]
    pub feat_channels: i64,
    #[serde(default = "four")]
    pub stacked_convs: i64,
    #[serde(default = "default_strides")]
    pub strides: Vec<StrideCfg>,
    /// `DCNv2` as the last tower conv (`anchor_free_head.py:118-119`): refused.
    #[serde(default)]
    pub dcn_on_last_conv: bool,
    #[serde(default)]
    pub conv_bias: ConvBias,
    #[serde(default)]
    pub bbox_coder: Option<Value>,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
}

/// `DistancePointBBoxCoder(clip_border=True)` keywords
/// (`mmdet/models/task_modules/coders/distance_point_bbox_coder.py`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DistancePointCoderCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "yes")]
    pub clip_border: bool,
    #[serde(default)]
    pub use_box_type: bool,
}

/// An `FCOSHead` as the backend builds it.
#[derive(Debug, Clone, Serialize)]
pub struct FcosHeadCfg {
    #[serde(flatten)]
    pub args: FcosHeadArgs,
    #[serde(flatten)]
    pub common: AnchorFreeCommon,
    /// `(w, h)` of each level (`MlvlPointGenerator(strides)`, offset 0.5).
    pub strides_wh: Vec<(f64, f64)>,
    /// `DistancePointBBoxCoder.clip_border`: decode clamps to `img_shape`.
    pub clip_border: bool,
}

/// Parses an `FCOSHead` dict.
pub fn parse_fcos_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let args: FcosHeadArgs = parse_section(value, ctx.type_name, path)?;
    let common = AnchorFreeArgs {
        head: "FCOSHead",
        path,
        norm_cfg: &args.norm_cfg,
        conv_cfg: args.conv_cfg.as_ref(),
        conv_bias: &args.conv_bias,
        loss_cls: args.loss_cls.as_ref(),
        channels: [args.num_classes, args.in_channels, args.feat_channels],
        stacked_convs: args.stacked_convs,
    }
    .parse()?;
    if args.dcn_on_last_conv {
        return Err(SpecError::Unsupported {
            what: "FCOSHead `dcn_on_last_conv=True` (a DCNv2 last tower conv)".into(),
            path: join(path, "dcn_on_last_conv"),
            hint: "only plain 3x3 tower convs are implemented; set dcn_on_last_conv=False \
                   (the fcos_r50-dcn-caffe_* configs use it)"
                .into(),
        });
    }
    if args
        .cls_predictor_cfg
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Err(SpecError::Unsupported {
            what: "FCOSHead `cls_predictor_cfg` (a NormedConv2d classifier)".into(),
            path: join(path, "cls_predictor_cfg"),
            hint: "only the plain 3x3 conv_cls is implemented; leave cls_predictor_cfg=None".into(),
        });
    }
    let strides_wh = check_strides(&args.strides, "FCOSHead", &join(path, "strides"))?;
    let clip_border = match args.bbox_coder.as_ref().filter(|v| !v.is_null()) {
        None => true,
        Some(v) => {
            super::require_coder(v, "DistancePointBBoxCoder", "FCOSHead", path)?;
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
            c.clip_border
        }
    };
    let cfg = FcosHeadCfg {
        args,
        common,
        strides_wh,
        clip_border,
    };
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmdet", name: "FCOSHead", kind: DenseHead, parse: parse_fcos_head);
crate::register_component!(scope: "mmdet", name: "FCOS", kind: Detector, parse: parse_single_stage);
