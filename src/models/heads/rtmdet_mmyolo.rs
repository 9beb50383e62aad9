//! mmyolo's `RTMDetHead` wrapping `RTMDetSepBNHeadModule`
//! (`mmyolo/models/dense_heads/rtmdet_head.py`). Weights live under `bbox_head.head_module.*`.
//! The forward returns the raw `rtm_reg` distances (in stride units); `predict_by_feat` multiplies
//! them by the stride during decoding.

use tch::Tensor;

use crate::models::layers::conv_module::Fuse;

use super::sep_bn::{PointGeneratorCfg, SepBnTowers, TowerSpec};
use crate::export::onnx::{ExportError, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::cfg::{check_conv_cfg, join, py_int};
use crate::models::component::DenseHead;
use crate::models::component::{Flavour, HeadOutputs};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::rtmdet_head_mmyolo::{HeadModuleCfg, MmyoloRtmdetHeadCfg};

#[derive(Debug)]
pub struct MmyoloRtmdetHead {
    pub towers: SepBnTowers,
    pub num_classes: i64,
    pub featmap_strides: Vec<i64>,
    pub prior_generator: PointGeneratorCfg,
    pub in_channels: i64,
}

impl MmyoloRtmdetHead {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &MmyoloRtmdetHeadCfg = spec.args()?;
        let path = spec.path.as_str();
        let module = spec.require_child("head_module")?;
        let hpath = module.path.clone();
        if module.qualified_name() != "mmyolo.RTMDetSepBNHeadModule" {
            return Err(ModelError::Unsupported {
                what: format!("head_module type {}", module.qualified_name()),
                path: hpath,
                hint: "mmyolo RTMDetHead is implemented with RTMDetSepBNHeadModule only".into(),
            });
        }
        let m: &HeadModuleCfg = module.args()?;
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
            featmap_strides: m.featmap_strides.clone(),
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

impl DenseHead for MmyoloRtmdetHead {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let (cls_scores, bbox_preds) = MmyoloRtmdetHead::forward(self, feats)?;
        Ok(HeadOutputs::new(cls_scores, bbox_preds))
    }
    fn in_channels(&self) -> Vec<i64> {
        vec![self.in_channels; self.prior_generator.strides.len()]
    }
    fn num_classes(&self) -> i64 {
        self.num_classes
    }
    fn strides(&self) -> Vec<(f64, f64)> {
        self.prior_generator.strides_wh()
    }
    fn prior_offset(&self) -> f64 {
        self.prior_generator.offset
    }
    /// Post-processing (the trait's default `predict_by_feat`) mirrors:
    /// `mmyolo/models/dense_heads/rtmdet_head.py: RTMDetHead.predict_by_feat` (YOLOv5Head's).
    fn flavour(&self) -> Flavour {
        Flavour::Mmyolo
    }
    fn fuse(&mut self, mode: Fuse) {
        MmyoloRtmdetHead::fuse(self, mode)
    }
    /// `RTMDetSepBNHeadModule.forward`: per level the class logits and the raw distances.
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = OnnxHeadOutputs::default();
        for (i, &x) in feats.iter().enumerate() {
            let (cls, reg, _) = self.towers.emit_level(g, i, x)?;
            out.cls_scores.push(cls);
            out.bbox_preds.push(reg);
        }
        Ok(out)
    }
}

crate::register_tch_component!(scope: "mmyolo", name: "RTMDetHead", DenseHead: |s, c| Ok(Box::new(MmyoloRtmdetHead::build(s, c)?)));
crate::register_tch_component!(scope: "mmyolo", name: "RTMDetSepBNHeadModule", BuiltByParent);
