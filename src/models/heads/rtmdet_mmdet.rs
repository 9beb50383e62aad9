//! mmdet's `RTMDetSepBNHead` (`mmdet/models/dense_heads/rtmdet_head.py`, on `RTMDetHead` →
//! `ATSSHead` → `AnchorHead`: their keyword arguments are all accepted here). Weights live directly
//! under `bbox_head.*`. Unlike mmyolo, the forward already multiplies the distances by the stride
//! (`reg.exp() * stride` with `exp_on_reg`) and, with `with_objectness`, folds the objectness
//! into the class logits (`inverse_sigmoid(sqrt(sigmoid(cls) * sigmoid(obj)))`).

use serde_json::Value;
use tch::Tensor;

use crate::models::layers::conv_module::Fuse;

use super::sep_bn::{PointGeneratorCfg, SepBnTowers, TowerSpec};
use crate::export::onnx::{ExportError, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::cfg::{check_conv_cfg, join};
use crate::models::component::DenseHead;
use crate::models::component::{Flavour, HeadOutputs};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::rtmdet_head_mmdet::MmdetSepBnHeadCfg;

#[derive(Debug)]
pub struct MmdetSepBnHead {
    pub towers: SepBnTowers,
    pub num_classes: i64,
    pub prior_generator: PointGeneratorCfg,
    pub exp_on_reg: bool,
    pub with_objectness: bool,
    pub in_channels: i64,
}

impl MmdetSepBnHead {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &MmdetSepBnHeadCfg = spec.args()?;
        let path = spec.path.as_str();
        check_conv_cfg(&cfg.conv_cfg, path)?;
        cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
        let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
        let gpath = join(path, "anchor_generator");
        let Some(gen) = &cfg.anchor_generator else {
            return Err(ModelError::Unsupported {
                what: "the default AnchorGenerator".into(),
                path: gpath,
                hint:
                    "RTMDet configs set anchor_generator=dict(type='MlvlPointGenerator', offset=0, \
                       strides=[8, 16, 32])"
                        .into(),
            });
        };
        let prior_generator = PointGeneratorCfg::parse(gen, &gpath)?;
        // AnchorHead: `cls_out_channels = num_classes` with a sigmoid loss (the default
        // CrossEntropyLoss has use_sigmoid=True), else num_classes + 1.
        let use_sigmoid = match &cfg.loss_cls {
            None => true,
            Some(l) => l
                .get("use_sigmoid")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        let cls_out = if use_sigmoid {
            cfg.num_classes
        } else {
            cfg.num_classes + 1
        };
        let spec = TowerSpec {
            levels: prior_generator.strides.len(),
            in_channels: cfg.in_channels,
            feat_channels: cfg.feat_channels,
            stacked_convs: cfg.stacked_convs,
            cls_out,
            reg_out: 4,
            pred_kernel: cfg.pred_kernel_size,
            share_conv: cfg.share_conv,
            use_depthwise: cfg.use_depthwise,
            with_objectness: cfg.with_objectness,
        };
        let towers = SepBnTowers::new(ctx, spec, Some(&cfg.norm_cfg), act, path)?;
        Ok(MmdetSepBnHead {
            towers,
            num_classes: cfg.num_classes,
            prior_generator,
            exp_on_reg: cfg.exp_on_reg,
            with_objectness: cfg.with_objectness,
            in_channels: cfg.in_channels,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.towers.fuse(mode);
    }

    /// `RTMDetSepBNHead.forward`.
    pub fn forward(&self, feats: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>), tch::TchError> {
        let mut cls_scores = Vec::with_capacity(feats.len());
        let mut bbox_preds = Vec::with_capacity(feats.len());
        for (i, x) in feats.iter().enumerate() {
            let o = self.towers.forward_level(i, x)?;
            let (stride, _) = self.prior_generator.strides[i].wh();
            let mut cls = o.cls;
            if let Some(obj) = o.obj {
                // mmdet/models/utils/misc.py: sigmoid_geometric_mean, then
                // mmdet/models/layers/transformer/utils.py: inverse_sigmoid(eps=1e-5).
                let p = cls
                    .f_sigmoid()?
                    .f_mul(&obj.f_sigmoid()?)?
                    .f_sqrt()?
                    .f_clamp(0.0, 1.0)?;
                let x1 = p.f_clamp_min(1e-5)?;
                let x2 = p.f_neg()?.f_add_scalar(1.0)?.f_clamp_min(1e-5)?;
                cls = x1.f_div(&x2)?.f_log()?;
            }
            let reg = if self.exp_on_reg {
                o.reg.f_exp()?
            } else {
                o.reg
            };
            bbox_preds.push(reg.f_mul_scalar(stride)?);
            cls_scores.push(cls);
        }
        Ok((cls_scores, bbox_preds))
    }
}

impl DenseHead for MmdetSepBnHead {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let (cls_scores, bbox_preds) = MmdetSepBnHead::forward(self, feats)?;
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
    /// `mmdet/models/dense_heads/base_dense_head.py: BaseDenseHead.predict_by_feat`.
    fn flavour(&self) -> Flavour {
        Flavour::Mmdet
    }
    fn fuse(&mut self, mode: Fuse) {
        MmdetSepBnHead::fuse(self, mode)
    }
    /// `RTMDetSepBNHead.forward` as ONNX nodes (the same operations as `forward` above).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = OnnxHeadOutputs::default();
        for (i, &x) in feats.iter().enumerate() {
            let (mut cls, reg, obj) = self.towers.emit_level(g, i, x)?;
            if let Some(obj) = obj {
                let (zero, one, eps) = (g.scalar(0.0), g.scalar(1.0), g.scalar(1e-5));
                let sc = g.op("Sigmoid", &[cls], vec![]);
                let so = g.op("Sigmoid", &[obj], vec![]);
                let p = g.op("Mul", &[sc, so], vec![]);
                let p = g.op("Sqrt", &[p], vec![]);
                let p = g.op("Clip", &[p, zero, one], vec![]);
                let x1 = g.op("Max", &[p, eps], vec![]);
                let q = g.op("Sub", &[one, p], vec![]);
                let x2 = g.op("Max", &[q, eps], vec![]);
                let r = g.op("Div", &[x1, x2], vec![]);
                cls = g.op("Log", &[r], vec![]);
            }
            let reg = if self.exp_on_reg {
                g.op("Exp", &[reg], vec![])
            } else {
                reg
            };
            let stride = g.scalar(self.prior_generator.strides[i].wh().0 as f32);
            out.bbox_preds.push(g.op("Mul", &[reg, stride], vec![]));
            out.cls_scores.push(cls);
        }
        Ok(out)
    }
}

crate::register_tch_component!(scope: "mmdet", name: "RTMDetSepBNHead", DenseHead: |s, c| Ok(Box::new(MmdetSepBnHead::build(s, c)?)));
