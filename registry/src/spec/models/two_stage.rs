//! mmdet's two-stage detectors and their region proposal head: `FasterRCNN`
//! (`mmdet/models/detectors/faster_rcnn.py`, a plain `TwoStageDetector`,
//! `mmdet/models/detectors/two_stage.py`) and `RPNHead` (`mmdet/models/dense_heads/rpn_head.py`, on
//! `AnchorHead`). The RoI head's types are in `roi_head.rs`.
//!
//! Never: accept a detector without an RPN (proposals from the data samples are a training and
//! evaluation feature) or without `test_cfg.rpn` / `test_cfg.rcnn` (upstream reads them as
//! attributes in `TwoStageDetector.__init__`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::anchor_head::{AnchorGeneratorCfg, DeltaXywhCoderCfg};
use crate::register_component;
use crate::spec::model::{ComponentCtx, ComponentKind, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

/// Keyword arguments of `TwoStageDetector.__init__` (`two_stage.py:22-31`). `rpn_head` and
/// `roi_head` become child components.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TwoStageDetectorCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(skip_serializing)]
    pub backbone: Value,
    #[serde(default, skip_serializing)]
    pub neck: Option<Value>,
    #[serde(default, skip_serializing)]
    pub rpn_head: Option<Value>,
    #[serde(default, skip_serializing)]
    pub roi_head: Option<Value>,
    /// Training only (assigners, samplers, `rpn_proposal`).
    #[serde(default, skip_serializing)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
    #[serde(default)]
    pub data_preprocessor: Option<Value>,
    /// Training from scratch only.
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// `test_cfg.<key>` as `TwoStageDetector.__init__` reads it (`test_cfg.rpn`, `test_cfg.rcnn`:
/// attribute access, so a missing key fails there).
fn stage_cfg(cfg: &TwoStageDetectorCfg, key: &str, path: &str) -> Result<Value, SpecError> {
    cfg.test_cfg
        .as_ref()
        .and_then(|t| t.get(key))
        .filter(|v| !v.is_null())
        .cloned()
        .ok_or_else(|| SpecError::Missing {
            path: join(path, &format!("test_cfg.{key}")),
            message: format!(
                "a two-stage detector needs test_cfg.{key} (TwoStageDetector.__init__ passes it \
                 to the {} head); copy it from the shipped faster-rcnn_r50_fpn config",
                if key == "rpn" { "RPN" } else { "RoI" }
            ),
        })
}

/// Children in module order: `backbone`, `neck`, `rpn_head` (with `test_cfg=test_cfg.rpn`),
/// `roi_head` (with `test_cfg=test_cfg.rcnn`), as `two_stage.py:33-62` updates them.
pub fn parse_two_stage(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: TwoStageDetectorCfg = parse_section(value, ctx.type_name, path)?;
    let mut children = vec![(
        "backbone".to_string(),
        ctx.child(
            &cfg.backbone,
            &join(path, "backbone"),
            ComponentKind::Backbone,
        )?,
    )];
    if let Some(neck) = cfg.neck.as_ref().filter(|v| !v.is_null()) {
        children.push((
            "neck".to_string(),
            ctx.child(neck, &join(path, "neck"), ComponentKind::Neck)?,
        ));
    }
    let required = |v: &Option<Value>, key: &str, what: &str| {
        v.clone()
            .filter(|v| !v.is_null())
            .ok_or_else(|| SpecError::Unsupported {
                what: format!("{} without `{key}`", ctx.type_name),
                path: join(path, key),
                hint: format!(
                    "inference needs {what}: give a `{key}` dict as faster-rcnn_r50_fpn.py does"
                ),
            })
    };
    let mut rpn = required(&cfg.rpn_head, "rpn_head", "the RPN's proposals")?;
    let mut roi = required(&cfg.roi_head, "roi_head", "a RoI head")?;
    let (rpn_test, rcnn_test) = (
        stage_cfg(&cfg, "rpn", path)?,
        stage_cfg(&cfg, "rcnn", path)?,
    );
    if let Some(obj) = rpn.as_object_mut() {
        obj.insert("test_cfg".into(), rpn_test);
        // `two_stage.py:43-52`: an RPN's num_classes is forced to 1 (with a warning upstream).
        if obj
            .get("num_classes")
            .is_some_and(|n| n.as_i64() != Some(1))
        {
            tracing::warn!("{path}.rpn_head.num_classes is set to 1 (TwoStageDetector does)");
            obj.insert("num_classes".into(), 1.into());
        }
    }
    if let Some(obj) = roi.as_object_mut() {
        obj.insert("test_cfg".into(), rcnn_test);
    }
    children.push((
        "rpn_head".to_string(),
        ctx.child(&rpn, &join(path, "rpn_head"), ComponentKind::DenseHead)?,
    ));
    children.push((
        "roi_head".to_string(),
        ctx.child(&roi, &join(path, "roi_head"), ComponentKind::RoiHead)?,
    ));
    Ok((Box::new(cfg), children))
}

fn one() -> i64 {
    1
}
fn c256() -> i64 {
    256
}

/// Keyword arguments of `RPNHead.__init__` and `AnchorHead.__init__` (mmdet 3.3.0).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RpnHeadArgs {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub in_channels: i64,
    #[serde(default = "one")]
    pub num_classes: i64,
    #[serde(default = "one")]
    pub num_convs: i64,
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

/// An `RPNHead` as the backend builds it.
#[derive(Debug, Clone, Serialize)]
pub struct RpnHeadCfg {
    #[serde(flatten)]
    pub args: RpnHeadArgs,
    pub anchors: AnchorGeneratorCfg,
    pub coder: DeltaXywhCoderCfg,
    /// `loss_cls.use_sigmoid`: 1 score channel per anchor, else 2 and softmax without the last.
    pub use_sigmoid: bool,
}

/// `AnchorHead`'s default `anchor_generator` (`anchor_head.py:46-51`).
fn default_anchor_generator() -> Value {
    serde_json::json!({
        "type": "AnchorGenerator",
        "scales": [8, 16, 32],
        "ratios": [0.5, 1.0, 2.0],
        "strides": [4, 8, 16, 32, 64],
    })
}

/// Parses an `RPNHead` dict with its anchor generator and coder.
pub fn parse_rpn_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let args: RpnHeadArgs = parse_section(value, ctx.type_name, path)?;
    let invalid = |key: &str, message: String| SpecError::Invalid {
        path: join(path, key),
        type_name: ctx.type_name.to_string(),
        message,
    };
    // `rpn_head.py:43`: `assert num_classes == 1`.
    if args.num_classes != 1 {
        return Err(invalid(
            "num_classes",
            format!(
                "an RPN has one class (`assert num_classes == 1`), got {}",
                args.num_classes
            ),
        ));
    }
    if args.num_convs < 1 || args.in_channels < 1 || args.feat_channels < 1 {
        return Err(invalid(
            "num_convs",
            "num_convs, in_channels and feat_channels must be positive".into(),
        ));
    }
    let gen = args
        .anchor_generator
        .clone()
        .filter(|v| !v.is_null())
        .unwrap_or_else(default_anchor_generator);
    let anchors = AnchorGeneratorCfg::parse(&gen, &join(path, "anchor_generator"))?;
    let coder = DeltaXywhCoderCfg::parse(args.bbox_coder.as_ref(), "RPNHead", path)?;
    // AnchorHead: `use_sigmoid_cls = loss_cls.get('use_sigmoid', False)`; the default loss is
    // CrossEntropyLoss(use_sigmoid=True).
    let use_sigmoid = match &args.loss_cls {
        None | Some(Value::Null) => true,
        Some(l) => l
            .get("use_sigmoid")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let cfg = RpnHeadCfg {
        args,
        anchors,
        coder,
        use_sigmoid,
    };
    Ok((Box::new(cfg), Vec::new()))
}

register_component!(scope: "mmdet", name: "FasterRCNN", kind: Detector, parse: parse_two_stage);
register_component!(scope: "mmdet", name: "RPNHead", kind: DenseHead, parse: parse_rpn_head);
