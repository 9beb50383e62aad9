//! Arguments of mmdet's `RetinaHead` (`mmdet/models/dense_heads/retina_head.py`, on `AnchorHead`:
//! its keywords are accepted too) and the `RetinaNet` detector (`mmdet/models/detectors/retinanet.py`,
//! a plain `SingleStageDetector`). Losses, `train_cfg` and `init_cfg` are train-time only.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::anchor_head::{AnchorGeneratorCfg, DeltaXywhCoderCfg};
use super::detector::parse_single_stage;
use crate::spec::layers::NormCfg;
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

fn four() -> i64 {
    4
}
fn c256() -> i64 {
    256
}

/// Keyword arguments of `RetinaHead.__init__` and `AnchorHead.__init__` (mmdet 3.3.0).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetinaHeadArgs {
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
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    #[serde(default)]
    pub anchor_generator: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    // AnchorHead
    #[serde(default = "c256")]
    pub feat_channels: i64,
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

/// A `RetinaHead` as the backend builds it: the arguments plus the parsed anchor generator and
/// coder.
#[derive(Debug, Clone, Serialize)]
pub struct RetinaHeadCfg {
    #[serde(flatten)]
    pub args: RetinaHeadArgs,
    pub anchors: AnchorGeneratorCfg,
    pub coder: DeltaXywhCoderCfg,
    /// `loss_cls.use_sigmoid` (default True): `cls_out_channels = num_classes`, else `+ 1` and
    /// softmax scores.
    pub use_sigmoid: bool,
}

/// `RetinaHead`'s default `anchor_generator`.
fn default_anchor_generator() -> Value {
    serde_json::json!({
        "type": "AnchorGenerator",
        "octave_base_scale": 4,
        "scales_per_octave": 3,
        "ratios": [0.5, 1.0, 2.0],
        "strides": [8, 16, 32, 64, 128],
    })
}

/// Parses a `RetinaHead` dict with its anchor generator and coder.
pub fn parse_retina_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let args: RetinaHeadArgs = parse_section(value, ctx.type_name, path)?;
    let gen = args
        .anchor_generator
        .clone()
        .filter(|v| !v.is_null())
        .unwrap_or_else(default_anchor_generator);
    let anchors = AnchorGeneratorCfg::parse(&gen, &join(path, "anchor_generator"))?;
    let coder = DeltaXywhCoderCfg::parse(args.bbox_coder.as_ref(), "RetinaHead", path)?;
    if args.conv_cfg.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(SpecError::Unsupported {
            what: "RetinaHead `conv_cfg`".into(),
            path: join(path, "conv_cfg"),
            hint: "plain Conv2d only (conv_cfg=None)".into(),
        });
    }
    if let Some(norm) = &args.norm_cfg {
        norm.validate_conv_module(&join(path, "norm_cfg"))?;
    }
    if args.num_classes < 1 || args.in_channels < 1 || args.feat_channels < 1 {
        return Err(SpecError::Invalid {
            path: path.to_string(),
            type_name: ctx.type_name.to_string(),
            message: "num_classes, in_channels and feat_channels must be positive".into(),
        });
    }
    // AnchorHead: `use_sigmoid_cls = loss_cls.get('use_sigmoid', False)`; the default loss is
    // CrossEntropyLoss(use_sigmoid=True).
    let use_sigmoid = match &args.loss_cls {
        None | Some(Value::Null) => true,
        Some(l) => l
            .get("use_sigmoid")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let cfg = RetinaHeadCfg {
        args,
        anchors,
        coder,
        use_sigmoid,
    };
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmdet", name: "RetinaHead", kind: DenseHead, parse: parse_retina_head);
crate::register_component!(scope: "mmdet", name: "RetinaNet", kind: Detector, parse: parse_single_stage);
