//! Arguments of mmdet's `RepPointsHead` (`mmdet/models/dense_heads/reppoints_head.py:22-138`, on
//! `AnchorFreeHead`: its keywords are accepted too) and the `RepPointsDetector`
//! (`mmdet/models/detectors/reppoints_detector.py`, a plain `SingleStageDetector`).
//!
//! Inference uses: the towers (`stacked_convs` GN ConvModules), `num_points` (an odd square: the
//! deformable kernel is `sqrt(num_points)` wide, asserted at `:87-91`), `point_feat_channels`,
//! `gradient_mul` (in the DCN offset `(1 - g)·p + g·p`, a no-op at inference kept as upstream
//! writes it), `point_strides` (priors with offset 0 and the decode scale), `center_init` /
//! `point_base_scale` (initial points), `transform_method` (`moment` with `moment_mul`,
//! `minmax`, `partial_minmax`). `use_grid_points=True` (the `reppoints-bbox_*-grid` configs) is
//! refused by name. `RepPointsHead._init_layers` ignores
//! `dcn_on_last_conv`, `conv_bias` and `strides` (`:140-182`): accepted, without effect, as there.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::anchor_free_head::{
    check_strides, default_strides, gn32, AnchorFreeArgs, AnchorFreeCommon, ConvBias,
};
use super::detector::parse_single_stage;
use super::prior_generator::StrideCfg;
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::parse::{closest_key, join, parse_section};
use crate::spec::SpecError;

fn four() -> i64 {
    4
}
fn nine() -> i64 {
    9
}
fn c256() -> i64 {
    256
}
fn yes() -> bool {
    true
}
fn gradient_mul() -> f64 {
    0.1
}
fn moment_mul() -> f64 {
    0.01
}
fn moment() -> String {
    "moment".into()
}
/// `points2bbox`'s transforms (`reppoints_head.py:201-237`).
const TRANSFORMS: [&str; 3] = ["moment", "minmax", "partial_minmax"];

/// `point_strides=[8, 16, 32, 64, 128]`.
fn point_strides() -> Vec<StrideCfg> {
    [8.0, 16.0, 32.0, 64.0, 128.0]
        .into_iter()
        .map(StrideCfg::Square)
        .collect()
}

/// Keyword arguments of `RepPointsHead.__init__` and `AnchorFreeHead.__init__` (mmdet 3.3.0).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepPointsHeadArgs {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_classes: i64,
    pub in_channels: i64,
    #[serde(default = "c256")]
    pub point_feat_channels: i64,
    #[serde(default = "nine")]
    pub num_points: i64,
    #[serde(default = "gradient_mul")]
    pub gradient_mul: f64,
    #[serde(default = "point_strides")]
    pub point_strides: Vec<StrideCfg>,
    #[serde(default = "four")]
    pub point_base_scale: i64,
    #[serde(default)]
    pub loss_cls: Option<Value>,
    #[serde(default)]
    pub loss_bbox_init: Option<Value>,
    #[serde(default)]
    pub loss_bbox_refine: Option<Value>,
    #[serde(default)]
    pub use_grid_points: bool,
    #[serde(default = "yes")]
    pub center_init: bool,
    #[serde(default = "moment")]
    pub transform_method: String,
    #[serde(default = "moment_mul")]
    pub moment_mul: f64,
    #[serde(default)]
    pub init_cfg: Option<Value>,
    // AnchorFreeHead
    #[serde(default = "c256")]
    pub feat_channels: i64,
    #[serde(default = "four")]
    pub stacked_convs: i64,
    /// `AnchorFreeHead`'s point generator, replaced by `point_strides`' (`:111-112`).
    #[serde(default = "default_strides")]
    pub strides: Vec<StrideCfg>,
    #[serde(default)]
    pub dcn_on_last_conv: bool,
    #[serde(default)]
    pub conv_bias: ConvBias,
    #[serde(default)]
    pub bbox_coder: Option<Value>,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default = "gn32")]
    pub norm_cfg: Value,
    #[serde(default)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
}

/// A `RepPointsHead` as the backend builds it.
#[derive(Debug, Clone, Serialize)]
pub struct RepPointsHeadCfg {
    #[serde(flatten)]
    pub args: RepPointsHeadArgs,
    #[serde(flatten)]
    pub common: AnchorFreeCommon,
    /// `dcn_kernel = int(sqrt(num_points))`.
    pub dcn_kernel: i64,
    /// `(w, h)` of each level (`MlvlPointGenerator(point_strides, offset=0.)`).
    pub strides_wh: Vec<(f64, f64)>,
}

/// Parses a `RepPointsHead` dict.
pub fn parse_reppoints_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let args: RepPointsHeadArgs = parse_section(value, ctx.type_name, path)?;
    // `_init_layers` builds its towers with `norm_cfg` and mmcv's default `bias='auto'`, whatever
    // `conv_bias` says (`reppoints_head.py:140-163`); AnchorFreeHead still asserts its value.
    let mut common = AnchorFreeArgs {
        head: "RepPointsHead",
        path,
        norm_cfg: &args.norm_cfg,
        conv_cfg: args.conv_cfg.as_ref(),
        conv_bias: &args.conv_bias,
        loss_cls: args.loss_cls.as_ref(),
        channels: [args.num_classes, args.in_channels, args.feat_channels],
        stacked_convs: args.stacked_convs,
    }
    .parse()?;
    common.tower_bias = common.norm.is_none();
    let invalid = |key: &str, message: String| SpecError::Invalid {
        path: join(path, key),
        type_name: "mmdet.RepPointsHead".into(),
        message,
    };
    let k = (args.num_points.max(0) as f64).sqrt() as i64;
    if args.num_points < 1 || k * k != args.num_points || k % 2 == 0 {
        return Err(invalid(
            "num_points",
            format!(
                "num_points {} must be an odd square number (9, 25, ...): the deformable kernel \
                 is sqrt(num_points) wide with a centre",
                args.num_points
            ),
        ));
    }
    if args.point_feat_channels < 1 {
        return Err(invalid(
            "point_feat_channels",
            format!("must be positive, got {}", args.point_feat_channels),
        ));
    }
    if args.use_grid_points {
        return Err(SpecError::Unsupported {
            what: "RepPointsHead `use_grid_points=True` (bounding-box grid points)".into(),
            path: join(path, "use_grid_points"),
            hint: "only point sets are implemented (use_grid_points=False, e.g. \
                   reppoints-moment_r50_fpn-gn_head-gn_2x_coco); the reppoints-bbox_*-grid \
                   configs are not supported"
                .into(),
        });
    }
    if !TRANSFORMS.contains(&args.transform_method.as_str()) {
        let hint = closest_key(&args.transform_method, TRANSFORMS.iter().copied())
            .map(|c| format!("; did you mean '{c}'?"))
            .unwrap_or_default();
        return Err(invalid(
            "transform_method",
            format!(
                "'{}' is not one of 'moment', 'minmax', 'partial_minmax' (upstream raises \
                 NotImplementedError in points2bbox){hint}",
                args.transform_method
            ),
        ));
    }
    check_strides(&args.strides, "RepPointsHead", &join(path, "strides"))?;
    let strides_wh = check_strides(
        &args.point_strides,
        "RepPointsHead",
        &join(path, "point_strides"),
    )?;
    let cfg = RepPointsHeadCfg {
        args,
        common,
        dcn_kernel: k,
        strides_wh,
    };
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmdet", name: "RepPointsHead", kind: DenseHead, parse: parse_reppoints_head);
crate::register_component!(scope: "mmdet", name: "RepPointsDetector", kind: Detector, parse: parse_single_stage);
