//! Arguments of mmyolo's `YOLOv7Head` and its head modules `YOLOv7HeadModule` /
//! `YOLOv7p6HeadModule` (`mmyolo/models/dense_heads/yolov7_head.py`). All three subclass the
//! YOLOv5 ones: `YOLOv7Head` adds four training keywords to `YOLOv5Head.__init__`,
//! `YOLOv7HeadModule` takes `YOLOv5HeadModule`'s keywords unchanged, `YOLOv7p6HeadModule` adds its
//! tower widths, `use_aux` and the norm/act of its 3×3 ConvModules.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults as d;
use super::yolov5_head::{self as v5, YoloV5HeadCfg, YoloV5HeadModuleCfg};
use crate::spec::layers::{ActCfg, NormCfg};
use crate::spec::model::{ComponentCtx, Parsed};
use crate::spec::models::prior_generator::YoloAnchorGeneratorCfg;
use crate::spec::models::yolov8_pafpn::ChannelsCfg;
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

fn twenty() -> i64 {
    20
}
fn three_f() -> f64 {
    3.0
}
fn quarter() -> f64 {
    0.25
}
fn main_out_channels() -> Vec<f64> {
    vec![256.0, 512.0, 768.0, 1024.0]
}
fn aux_out_channels() -> Vec<f64> {
    vec![320.0, 640.0, 960.0, 1280.0]
}

/// Arguments of `YOLOv7Head.__init__`: `YOLOv5Head`'s (same defaults) plus the SimOTA assigner's
/// and the auxiliary loss weight (training only).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV7HeadCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub head_module: Value,
    #[serde(default = "v5::default_prior_generator")]
    pub prior_generator: Value,
    #[serde(default = "v5::default_bbox_coder")]
    pub bbox_coder: Value,
    #[serde(default)]
    pub loss_cls: Option<Value>,
    #[serde(default)]
    pub loss_bbox: Option<Value>,
    #[serde(default)]
    pub loss_obj: Option<Value>,
    #[serde(default = "v5::four")]
    pub prior_match_thr: f64,
    #[serde(default = "d::f_half")]
    pub near_neighbor_thr: f64,
    #[serde(default = "v5::minus_one")]
    pub ignore_iof_thr: f64,
    #[serde(default = "v5::obj_level_weights")]
    pub obj_level_weights: Vec<f64>,
    #[serde(default = "twenty")]
    pub simota_candidate_topk: i64,
    #[serde(default = "three_f")]
    pub simota_iou_weight: f64,
    #[serde(default = "d::f_one")]
    pub simota_cls_weight: f64,
    #[serde(default = "quarter")]
    pub aux_loss_weights: f64,
    #[serde(default)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

impl YoloV7HeadCfg {
    /// The `YOLOv5Head.__init__` part (what inference reads: priors, coder, level weights).
    pub fn yolov5_args(&self) -> YoloV5HeadCfg {
        YoloV5HeadCfg {
            type_name: self.type_name.clone(),
            scope: self.scope.clone(),
            head_module: self.head_module.clone(),
            prior_generator: self.prior_generator.clone(),
            bbox_coder: self.bbox_coder.clone(),
            loss_cls: self.loss_cls.clone(),
            loss_bbox: self.loss_bbox.clone(),
            loss_obj: self.loss_obj.clone(),
            prior_match_thr: self.prior_match_thr,
            near_neighbor_thr: self.near_neighbor_thr,
            ignore_iof_thr: self.ignore_iof_thr,
            obj_level_weights: self.obj_level_weights.clone(),
            train_cfg: self.train_cfg.clone(),
            test_cfg: self.test_cfg.clone(),
            init_cfg: self.init_cfg.clone(),
        }
    }
}

/// Arguments of `YOLOv7p6HeadModule.__init__`: `YOLOv5HeadModule`'s plus its own. The tower
/// widths are used as given (no `widen_factor`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloV7p6HeadModuleCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_classes: i64,
    pub in_channels: ChannelsCfg,
    #[serde(default = "d::f_one")]
    pub widen_factor: f64,
    #[serde(default = "v5::three")]
    pub num_base_priors: i64,
    #[serde(default = "d::strides_8_16_32")]
    pub featmap_strides: Vec<i64>,
    #[serde(default = "main_out_channels")]
    pub main_out_channels: Vec<f64>,
    #[serde(default = "aux_out_channels")]
    pub aux_out_channels: Vec<f64>,
    #[serde(default = "d::yes")]
    pub use_aux: bool,
    #[serde(default = "d::bn_yolo")]
    pub norm_cfg: NormCfg,
    #[serde(default = "d::silu_inplace")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

impl YoloV7p6HeadModuleCfg {
    /// The `YOLOv5HeadModule.__init__` part.
    pub fn yolov5_args(&self) -> YoloV5HeadModuleCfg {
        YoloV5HeadModuleCfg {
            type_name: self.type_name.clone(),
            scope: self.scope.clone(),
            num_classes: self.num_classes,
            in_channels: self.in_channels.clone(),
            widen_factor: self.widen_factor,
            num_base_priors: self.num_base_priors,
            featmap_strides: self.featmap_strides.clone(),
            init_cfg: self.init_cfg.clone(),
        }
    }
}

/// As `YOLOv5Head`: the head module is built with `MODELS.build` in the scope in effect; the
/// prior generator and the box coder are checked here.
fn parse_yolov7_head(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: YoloV7HeadCfg = parse_section(value, ctx.type_name, path)?;
    YoloAnchorGeneratorCfg::parse(&cfg.prior_generator, &join(path, "prior_generator"))?;
    super::require_coder(&cfg.bbox_coder, "YOLOv5BBoxCoder", "YOLOv7Head", path)?;
    let head_module = cfg.head_module.clone();
    ctx.with_head_module(Box::new(cfg), &head_module, path)
}

fn parse_yolov7_p6_head_module(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: YoloV7p6HeadModuleCfg = parse_section(value, ctx.type_name, path)?;
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    cfg.act_cfg.to_act(&join(path, "act_cfg"))?;
    Ok((Box::new(cfg), Vec::new()))
}

crate::register_component!(scope: "mmyolo", name: "YOLOv7Head", kind: DenseHead, parse: parse_yolov7_head);
crate::register_component!(scope: "mmyolo", name: "YOLOv7HeadModule", kind: HeadModule, args: YoloV5HeadModuleCfg);
crate::register_component!(scope: "mmyolo", name: "YOLOv7p6HeadModule", kind: HeadModule, parse: parse_yolov7_p6_head_module);
