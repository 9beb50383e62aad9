//! mmyolo's `RTMDetHead` wrapping `RTMDetSepBNHeadModule`
//! (`mmyolo/models/dense_heads/rtmdet_head.py`). Weights live under `bbox_head.head_module.*`.
//! The forward returns the raw `rtm_reg` distances (in stride units); `predict_by_feat` multiplies
//! them by the stride during decoding.

use serde::Deserialize;
use serde_json::Value;
use tch::Tensor;

use crate::models::layers::conv_module::Fuse;

use super::sep_bn::{PointGeneratorCfg, SepBnTowers, TowerSpec};
use crate::models::cfg::{check_conv_cfg, join, parse_section, py_int, ActCfg, NormCfg};
use crate::models::param::Ctx;
use crate::models::ModelError;

fn one() -> f64 {
    1.0
}
fn one_i() -> i64 {
    1
}
fn two() -> i64 {
    2
}
fn f256() -> f64 {
    256.0
}
fn strides() -> Vec<i64> {
    vec![8, 16, 32]
}
fn yes() -> bool {
    true
}
fn plain_bn() -> NormCfg {
    NormCfg::bn(1e-5, 0.1)
}
fn silu() -> ActCfg {
    ActCfg::named("SiLU")
}
fn default_prior_generator() -> Value {
    serde_json::json!({"type": "mmdet.MlvlPointGenerator", "offset": 0, "strides": [8, 16, 32]})
}

/// Arguments of `RTMDetSepBNHeadModule.__init__`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadModuleCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub num_classes: i64,
    pub in_channels: f64,
    #[serde(default = "one")]
    pub widen_factor: f64,
    #[serde(default = "one_i")]
    pub num_base_priors: i64,
    #[serde(default = "f256")]
    pub feat_channels: f64,
    #[serde(default = "two")]
    pub stacked_convs: i64,
    #[serde(default = "strides")]
    pub featmap_strides: Vec<i64>,
    #[serde(default = "yes")]
    pub share_conv: bool,
    #[serde(default = "one_i")]
    pub pred_kernel_size: i64,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default = "plain_bn")]
    pub norm_cfg: NormCfg,
    #[serde(default = "silu")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// Arguments of mmyolo `RTMDetHead.__init__` (losses, coder and train config are kept as given:
/// inference never builds them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmyoloRtmdetHeadCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub head_module: Value,
    #[serde(default = "default_prior_generator")]
    pub prior_generator: Value,
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
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

#[derive(Debug)]
pub struct MmyoloRtmdetHead {
    pub towers: SepBnTowers,
    pub num_classes: i64,
    pub featmap_strides: Vec<i64>,
    pub prior_generator: PointGeneratorCfg,
    pub in_channels: i64,
}

impl MmyoloRtmdetHead {
    /// `head_module_check` validates the nested `head_module` type (resolved by the caller).
    pub fn build(ctx: &Ctx, value: &Value, path: &str) -> Result<Self, ModelError> {
        let cfg: MmyoloRtmdetHeadCfg = parse_section(value, "mmyolo.RTMDetHead", path)?;
        let hpath = join(path, "head_module");
        let m: HeadModuleCfg =
            parse_section(&cfg.head_module, "mmyolo.RTMDetSepBNHeadModule", &hpath)?;
        check_conv_cfg(&m.conv_cfg, &hpath)?;
        m.norm_cfg.validate(&join(&hpath, "norm_cfg"))?;
        let act = Some(m.act_cfg.to_act(&join(&hpath, "act_cfg"))?);
        let prior_generator =
            PointGeneratorCfg::parse(&cfg.prior_generator, &join(path, "prior_generator"))?;
        if prior_generator.strides.len() != m.featmap_strides.len() {
            return Err(ModelError::Invalid {
                path: join(path, "prior_generator.strides"),
                message: format!(
                    "{} prior strides for {} head levels (featmap_strides)",
                    prior_generator.strides.len(),
                    m.featmap_strides.len()
                ),
            });
        }
        // `loss_cls.use_sigmoid` is read by RTMDetHead only to set cls_out_channels, which the
        // head module does not use: rtm_cls always has num_base_priors * num_classes outputs.
        let in_channels = py_int(m.in_channels * m.widen_factor);
        let spec = TowerSpec {
            levels: m.featmap_strides.len(),
            in_channels,
            feat_channels: py_int(m.feat_channels * m.widen_factor),
            stacked_convs: m.stacked_convs,
            cls_out: m.num_base_priors * m.num_classes,
            reg_out: m.num_base_priors * 4,
            pred_kernel: m.pred_kernel_size,
            share_conv: m.share_conv,
            use_depthwise: false,
            with_objectness: false,
        };
        let towers = SepBnTowers::new(
            &ctx.sub("head_module"),
            spec,
            Some(&m.norm_cfg),
            act,
            &hpath,
        )?;
        Ok(MmyoloRtmdetHead {
            towers,
            num_classes: m.num_classes,
            featmap_strides: m.featmap_strides,
            prior_generator,
            in_channels,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.towers.fuse(mode);
    }

    /// `RTMDetSepBNHeadModule.forward`: per level `(cls_score, reg_dist)`.
    pub fn forward(&self, feats: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>), tch::TchError> {
        let mut cls = Vec::with_capacity(feats.len());
        let mut reg = Vec::with_capacity(feats.len());
        for (i, x) in feats.iter().enumerate() {
            let o = self.towers.forward_level(i, x)?;
            cls.push(o.cls);
            reg.push(o.reg);
        }
        Ok((cls, reg))
    }
}
