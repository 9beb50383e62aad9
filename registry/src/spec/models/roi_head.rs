//! mmdet's RoI head of a two-stage detector: `StandardRoIHead`
//! (`mmdet/models/roi_heads/standard_roi_head.py`, keywords of `base_roi_head.py: BaseRoIHead`)
//! with its `SingleRoIExtractor` (`roi_extractors/single_level_roi_extractor.py`, on
//! `base_roi_extractor.py`) and its box head `Shared2FCBBoxHead` / `ConvFCBBoxHead`
//! (`bbox_heads/convfc_bbox_head.py`, on `bbox_heads/bbox_head.py: BBoxHead`).
//!
//! Only the box branch runs: a mask branch, a shared head, convolutions in the box head and
//! another RoI layer than mmcv's `RoIAlign` are refused by name. Losses, assigners, samplers and
//! `train_cfg` are accepted and ignored (training only).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::anchor_head::DeltaXywhCoderCfg;
use crate::register_component;
use crate::spec::model::{ComponentCtx, ComponentKind, Parsed};
use crate::spec::parse::{join, parse_section, type_of};
use crate::spec::SpecError;

/// Keyword arguments of `BaseRoIHead.__init__` (`base_roi_head.py:15-24`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StandardRoiHeadCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing)]
    pub bbox_roi_extractor: Option<Value>,
    #[serde(default, skip_serializing)]
    pub bbox_head: Option<Value>,
    #[serde(default, skip_serializing)]
    pub mask_roi_extractor: Option<Value>,
    #[serde(default, skip_serializing)]
    pub mask_head: Option<Value>,
    #[serde(default, skip_serializing)]
    pub shared_head: Option<Value>,
    #[serde(default, skip_serializing)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

fn present(v: &Option<Value>) -> Option<&Value> {
    v.as_ref().filter(|v| !v.is_null())
}

/// Children: `bbox_roi_extractor` and `bbox_head` (built by the RoI head:
/// `standard_roi_head.py:27-33: init_bbox_head`).
fn parse_standard_roi_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: StandardRoiHeadCfg = parse_section(value, ctx.type_name, path)?;
    for (key, v, hint) in [
        (
            "mask_head",
            &cfg.mask_head,
            "instance masks (Mask R-CNN) are not implemented; remove the mask branch to run \
             the boxes alone",
        ),
        (
            "mask_roi_extractor",
            &cfg.mask_roi_extractor,
            "instance masks (Mask R-CNN) are not implemented",
        ),
        (
            "shared_head",
            &cfg.shared_head,
            "the C4 shared head (ResLayer) is not implemented; FPN-based RoI heads run",
        ),
    ] {
        if let Some(v) = present(v) {
            return Err(SpecError::Unsupported {
                what: format!(
                    "{} `{key}` ({})",
                    ctx.type_name,
                    type_of(v).unwrap_or("no type")
                ),
                path: join(path, key),
                hint: hint.into(),
            });
        }
    }
    let (Some(extractor), Some(head)) = (present(&cfg.bbox_roi_extractor), present(&cfg.bbox_head))
    else {
        return Err(SpecError::Missing {
            path: join(path, "bbox_head"),
            message: "the RoI head needs `bbox_roi_extractor` and `bbox_head` (TwoStageDetector.\
                      predict asserts 'Bbox head must be implemented.')"
                .into(),
        });
    };
    let mut head = head.clone();
    if let Some(obj) = head.as_object_mut() {
        // Not a BBoxHead keyword: the RoI head passes its test_cfg at predict time.
        obj.remove("test_cfg");
    }
    let extractor = ctx.child(
        extractor,
        &join(path, "bbox_roi_extractor"),
        ComponentKind::HeadModule,
    )?;
    let head = ctx.child(&head, &join(path, "bbox_head"), ComponentKind::HeadModule)?;
    Ok((
        Box::new(cfg),
        vec![
            ("bbox_roi_extractor".to_string(), extractor),
            ("bbox_head".to_string(), head),
        ],
    ))
}

fn c56() -> i64 {
    56
}

/// Keyword arguments of `SingleRoIExtractor.__init__` (`single_level_roi_extractor.py:31-36`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SingleRoiExtractorArgs {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub roi_layer: Value,
    pub out_channels: i64,
    pub featmap_strides: Vec<f64>,
    #[serde(default = "c56")]
    pub finest_scale: i64,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

fn zero() -> i64 {
    0
}
fn avg() -> String {
    "avg".into()
}
fn yes() -> bool {
    true
}

/// mmcv `RoIAlign.__init__` keywords (`mmcv/ops/roi_align.py:187-193`) except `spatial_scale`,
/// which `BaseRoIExtractor.build_roi_layers` passes (`1 / stride`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoiAlignArgs {
    #[serde(rename = "type")]
    pub type_name: String,
    pub output_size: Value,
    #[serde(default = "zero")]
    pub sampling_ratio: i64,
    #[serde(default = "avg")]
    pub pool_mode: String,
    #[serde(default = "yes")]
    pub aligned: bool,
    #[serde(default)]
    pub use_torchvision: bool,
}

/// A `SingleRoIExtractor` as the backend builds it.
#[derive(Debug, Clone, Serialize)]
pub struct SingleRoiExtractorCfg {
    #[serde(flatten)]
    pub args: SingleRoiExtractorArgs,
    pub roi_align: RoiAlignArgs,
    /// `(pooled_h, pooled_w)` from `output_size` (`_pair`).
    pub output_size: (i64, i64),
}

fn parse_single_roi_extractor(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let args: SingleRoiExtractorArgs = parse_section(value, ctx.type_name, path)?;
    let layer_path = join(path, "roi_layer");
    let layer_type = type_of(&args.roi_layer).unwrap_or_default();
    if layer_type.rsplit('.').next() != Some("RoIAlign") {
        return Err(SpecError::Unsupported {
            what: format!("roi_layer `{layer_type}`"),
            path: layer_path,
            hint: "mmcv's RoIAlign is implemented (RoIPool and others are not)".into(),
        });
    }
    if args.roi_layer.get("spatial_scale").is_some() {
        return Err(SpecError::Invalid {
            path: join(&layer_path, "spatial_scale"),
            type_name: "mmcv.RoIAlign".into(),
            message: "the extractor passes spatial_scale=1/stride itself (Python raises \
                      'got multiple values for keyword argument'); remove it"
                .into(),
        });
    }
    let roi_align: RoiAlignArgs = parse_section(&args.roi_layer, "mmcv.RoIAlign", &layer_path)?;
    let invalid = |key: &str, message: String| SpecError::Invalid {
        path: join(&layer_path, key),
        type_name: "mmcv.RoIAlign".into(),
        message,
    };
    let output_size = match &roi_align.output_size {
        Value::Number(n) => n.as_i64().map(|s| (s, s)),
        Value::Array(a) if a.len() == 2 => a[0].as_i64().zip(a[1].as_i64()),
        _ => None,
    }
    .filter(|&(h, w)| h > 0 && w > 0)
    .ok_or_else(|| {
        invalid(
            "output_size",
            format!(
                "expected a positive int or [h, w], got {}",
                roi_align.output_size
            ),
        )
    })?;
    if !matches!(roi_align.pool_mode.as_str(), "avg" | "max") {
        return Err(invalid(
            "pool_mode",
            format!(
                "'{}' is not one of 'avg', 'max' (mmcv asserts)",
                roi_align.pool_mode
            ),
        ));
    }
    if roi_align.use_torchvision {
        return Err(SpecError::Unsupported {
            what: "RoIAlign use_torchvision=True".into(),
            path: join(&layer_path, "use_torchvision"),
            hint: "mmcv's own kernel is implemented; leave use_torchvision=False".into(),
        });
    }
    if args.featmap_strides.is_empty()
        || args.featmap_strides.iter().any(|&s| s <= 0.0)
        || args.out_channels < 1
        || args.finest_scale <= 0
    {
        return Err(SpecError::Invalid {
            path: path.to_string(),
            type_name: ctx.type_name.to_string(),
            message: "featmap_strides must be positive (at least one), out_channels and \
                      finest_scale positive"
                .into(),
        });
    }
    let cfg = SingleRoiExtractorCfg {
        args,
        roi_align,
        output_size,
    };
    Ok((Box::new(cfg), Vec::new()))
}

fn c1024() -> i64 {
    1024
}
fn c256() -> i64 {
    256
}
fn c7() -> Value {
    7.into()
}
fn c80() -> i64 {
    80
}
fn hbox() -> String {
    "hbox".into()
}

/// Keyword arguments of `ConvFCBBoxHead.__init__` (`convfc_bbox_head.py:25-38`) and
/// `BBoxHead.__init__` (`bbox_head.py:27-50`). `Shared2FCBBoxHead` fixes `num_shared_fcs=2` and
/// the other branch counts to 0 (`convfc_bbox_head.py:221-233`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConvFcBBoxHeadArgs {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default)]
    pub num_shared_convs: i64,
    #[serde(default)]
    pub num_shared_fcs: i64,
    #[serde(default)]
    pub num_cls_convs: i64,
    #[serde(default)]
    pub num_cls_fcs: i64,
    #[serde(default)]
    pub num_reg_convs: i64,
    #[serde(default)]
    pub num_reg_fcs: i64,
    #[serde(default = "c256")]
    pub conv_out_channels: i64,
    #[serde(default = "c1024")]
    pub fc_out_channels: i64,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default)]
    pub norm_cfg: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    // BBoxHead
    #[serde(default)]
    pub with_avg_pool: bool,
    #[serde(default = "yes")]
    pub with_cls: bool,
    #[serde(default = "yes")]
    pub with_reg: bool,
    #[serde(default = "c7")]
    pub roi_feat_size: Value,
    #[serde(default = "c256")]
    pub in_channels: i64,
    #[serde(default = "c80")]
    pub num_classes: i64,
    #[serde(default)]
    pub bbox_coder: Option<Value>,
    #[serde(default = "hbox")]
    pub predict_box_type: String,
    #[serde(default)]
    pub reg_class_agnostic: bool,
    #[serde(default)]
    pub reg_decoded_bbox: bool,
    #[serde(default)]
    pub reg_predictor_cfg: Option<Value>,
    #[serde(default)]
    pub cls_predictor_cfg: Option<Value>,
    #[serde(default)]
    pub loss_cls: Option<Value>,
    #[serde(default)]
    pub loss_bbox: Option<Value>,
}

/// A box head of the conv/fc family as the backend builds it (fully connected branches only).
#[derive(Debug, Clone, Serialize)]
pub struct ConvFcBBoxHeadCfg {
    #[serde(flatten)]
    pub args: ConvFcBBoxHeadArgs,
    pub coder: DeltaXywhCoderCfg,
    /// `_pair(roi_feat_size)`.
    pub roi_feat_size: (i64, i64),
}

/// `BBoxHead`'s default coder (`bbox_head.py:34-38`).
fn bbox_head_default_coder() -> DeltaXywhCoderCfg {
    DeltaXywhCoderCfg {
        target_stds: vec![0.1, 0.1, 0.2, 0.2],
        ..DeltaXywhCoderCfg::anchor_head_default()
    }
}

fn parse_bbox_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
    shared2fc: bool,
) -> Result<Parsed, SpecError> {
    let mut args: ConvFcBBoxHeadArgs = parse_section(value, ctx.type_name, path)?;
    if shared2fc {
        // `Shared2FCBBoxHead(fc_out_channels=1024, *args, **kwargs)` passes the branch counts
        // itself: giving one again is Python's "multiple values for keyword argument".
        for key in [
            "num_shared_convs",
            "num_shared_fcs",
            "num_cls_convs",
            "num_cls_fcs",
            "num_reg_convs",
            "num_reg_fcs",
        ] {
            if value.get(key).is_some() {
                return Err(SpecError::Invalid {
                    path: join(path, key),
                    type_name: ctx.type_name.to_string(),
                    message: format!(
                        "Shared2FCBBoxHead sets {key} itself; use ConvFCBBoxHead to choose it"
                    ),
                });
            }
        }
        args.num_shared_fcs = 2;
    }
    let unsupported = |key: &str, what: String, hint: &str| SpecError::Unsupported {
        what,
        path: join(path, key),
        hint: hint.into(),
    };
    let convs = args.num_shared_convs + args.num_cls_convs + args.num_reg_convs;
    if convs > 0 {
        return Err(unsupported(
            "num_shared_convs",
            format!("{} with convolutions ({convs})", ctx.type_name),
            "the fully connected box heads (Shared2FCBBoxHead) are implemented; \
             Shared4Conv1FCBBoxHead is not",
        ));
    }
    if args.num_shared_fcs + args.num_cls_fcs + args.num_reg_fcs == 0 {
        return Err(SpecError::Invalid {
            path: path.to_string(),
            type_name: ctx.type_name.to_string(),
            message: "needs at least one conv or fc (ConvFCBBoxHead asserts)".into(),
        });
    }
    if args.with_avg_pool {
        return Err(unsupported(
            "with_avg_pool",
            "with_avg_pool=True".into(),
            "leave with_avg_pool=False",
        ));
    }
    if !args.with_cls || !args.with_reg {
        return Err(unsupported(
            "with_reg",
            "a box head without classification or regression".into(),
            "detection needs both (with_cls=True, with_reg=True)",
        ));
    }
    if args.predict_box_type != "hbox" || args.reg_decoded_bbox {
        return Err(unsupported(
            "predict_box_type",
            format!(
                "predict_box_type='{}', reg_decoded_bbox={}",
                args.predict_box_type, args.reg_decoded_bbox
            ),
            "horizontal boxes with delta regression only",
        ));
    }
    for (key, v) in [
        ("conv_cfg", &args.conv_cfg),
        ("norm_cfg", &args.norm_cfg),
        ("reg_predictor_cfg", &args.reg_predictor_cfg),
        ("cls_predictor_cfg", &args.cls_predictor_cfg),
    ] {
        let plain = match present(v) {
            None => true,
            Some(v) if key.ends_with("predictor_cfg") => {
                type_of(v).is_some_and(|t| t.rsplit('.').next() == Some("Linear"))
            }
            Some(_) => false,
        };
        if !plain {
            return Err(unsupported(
                key,
                format!(
                    "{key} {}",
                    v.as_ref().map(Value::to_string).unwrap_or_default()
                ),
                "plain nn.Linear predictors without norm (the shipped box heads)",
            ));
        }
    }
    // `custom_cls_channels` losses (e.g. SeesawLoss) change the class activation.
    if let Some(loss) = present(&args.loss_cls) {
        let t = type_of(loss).unwrap_or_default();
        let sigmoid = loss.get("use_sigmoid").and_then(Value::as_bool) == Some(true);
        if t.rsplit('.').next() != Some("CrossEntropyLoss") || sigmoid {
            return Err(unsupported(
                "loss_cls",
                format!("loss_cls `{t}` (use_sigmoid={sigmoid})"),
                "the box head's scores are implemented as softmax with a background class \
                 (CrossEntropyLoss, use_sigmoid=False)",
            ));
        }
    }
    let coder = match present(&args.bbox_coder) {
        None => bbox_head_default_coder(),
        Some(v) => DeltaXywhCoderCfg::parse(Some(v), ctx.type_name, path)?,
    };
    let roi_feat_size = match &args.roi_feat_size {
        Value::Number(n) => n.as_i64().map(|s| (s, s)),
        Value::Array(a) if a.len() == 2 => a[0].as_i64().zip(a[1].as_i64()),
        _ => None,
    }
    .filter(|&(h, w)| h > 0 && w > 0)
    .ok_or_else(|| SpecError::Invalid {
        path: join(path, "roi_feat_size"),
        type_name: ctx.type_name.to_string(),
        message: format!(
            "expected a positive int or [h, w], got {}",
            args.roi_feat_size
        ),
    })?;
    if args.in_channels < 1 || args.num_classes < 1 || args.fc_out_channels < 1 {
        return Err(SpecError::Invalid {
            path: path.to_string(),
            type_name: ctx.type_name.to_string(),
            message: "in_channels, num_classes and fc_out_channels must be positive".into(),
        });
    }
    let cfg = ConvFcBBoxHeadCfg {
        args,
        coder,
        roi_feat_size,
    };
    Ok((Box::new(cfg), Vec::new()))
}

fn parse_shared2fc(ctx: &ComponentCtx<'_>, value: &Value, path: &str) -> Result<Parsed, SpecError> {
    parse_bbox_head(ctx, value, path, true)
}

fn parse_convfc(ctx: &ComponentCtx<'_>, value: &Value, path: &str) -> Result<Parsed, SpecError> {
    parse_bbox_head(ctx, value, path, false)
}

register_component!(scope: "mmdet", name: "StandardRoIHead", kind: RoiHead, parse: parse_standard_roi_head);
register_component!(scope: "mmdet", name: "SingleRoIExtractor", kind: HeadModule, parse: parse_single_roi_extractor);
register_component!(scope: "mmdet", name: "Shared2FCBBoxHead", kind: HeadModule, parse: parse_shared2fc);
register_component!(scope: "mmdet", name: "ConvFCBBoxHead", kind: HeadModule, parse: parse_convfc);
