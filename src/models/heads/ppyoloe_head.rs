//! mmyolo's `PPYOLOEHead` wrapping `PPYOLOEHeadModule` (`mmyolo/models/dense_heads/ppyoloe_head.py`).
//! Weights live under `bbox_head.head_module.{cls_preds,reg_preds}.{level}` (3×3 `nn.Conv2d`s
//! with bias) and `{cls_stems,reg_stems}.{level}` (`PPYOLOESELayer`: `fc`, a 1×1 `nn.Conv2d`, and
//! `conv`, a 1×1 ConvModule), in that registration order. Per level, with
//! `avg = adaptive_avg_pool2d(x, 1)` and `stem(x, avg) = conv(x · sigmoid(fc(avg)))`:
//! `cls = cls_preds(cls_stem(x, avg) + x)` (logits) and `reg = reg_preds(reg_stem(x, avg))`,
//! `4 · (reg_max + 1)` channels turned into l, t, r, b distances in stride units by the DFL
//! integral over `proj = arange(reg_max + 1)` when `reg_max > 1` (used as they are otherwise).
//! `predict_by_feat` is `YOLOv5Head.predict_by_feat` (neither `PPYOLOEHead` nor `YOLOv6Head`
//! overrides it) with `DistancePointBBoxCoder`: the trait's default, as for YOLOv8.

use tch::Tensor;

use crate::export::onnx::{ExportError, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::cfg::{join, py_int, Act, NormCfg};
use crate::models::component::{DenseHead, Flavour, HeadOutputs};
use crate::models::layers::conv_module::{Conv2d, ConvModule, ConvSpec, Fuse};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::prior_generator::PointGeneratorCfg;
use mmcompat_registry::spec::models::yolov8_pafpn::ChannelsCfg;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::ppyoloe_head::{PpyoloeHeadCfg, PpyoloeHeadModuleCfg};

/// `PPYOLOESELayer(c, norm_cfg, act_cfg)` (`mmyolo/models/layers/yolo_bricks.py`).
#[derive(Debug)]
pub struct PpyoloeSeLayer {
    pub fc: Conv2d,
    pub conv: ConvModule,
}

impl PpyoloeSeLayer {
    fn new(ctx: &Ctx, c: i64, norm: &NormCfg, act: Act) -> Self {
        PpyoloeSeLayer {
            fc: Conv2d::new(&ctx.sub("fc"), ConvSpec::new(c, c, 1), true),
            conv: ConvModule::new(
                &ctx.sub("conv"),
                ConvSpec::new(c, c, 1),
                Some(norm),
                Some(act),
            ),
        }
    }

    fn fuse(&mut self, mode: Fuse) {
        self.fc.fuse(mode);
        self.conv.fuse(mode);
    }

    /// `PPYOLOESELayer.forward(feat, avg_feat)`: `conv(feat * sigmoid(fc(avg_feat)))`.
    fn forward(&self, feat: &Tensor, avg: &Tensor) -> Result<Tensor, tch::TchError> {
        let weight = self.fc.forward(avg)?.f_sigmoid()?;
        self.conv.forward(&feat.f_mul(&weight)?)
    }

    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feat: ValueId,
        avg: ValueId,
    ) -> Result<ValueId, ExportError> {
        let w = self.fc.emit_onnx(g, avg)?;
        let w = g.op("Sigmoid", &[w], vec![]);
        let y = g.op("Mul", &[feat, w], vec![]);
        self.conv.emit_onnx(g, y)
    }
}

#[derive(Debug)]
pub struct PpyoloeHead {
    pub cls_preds: Vec<Conv2d>,
    pub reg_preds: Vec<Conv2d>,
    pub cls_stems: Vec<PpyoloeSeLayer>,
    pub reg_stems: Vec<PpyoloeSeLayer>,
    pub reg_max: i64,
    pub num_classes: i64,
    /// `int(c * widen_factor)` per level.
    pub in_channels: Vec<i64>,
    pub prior_generator: PointGeneratorCfg,
}

impl PpyoloeHead {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &PpyoloeHeadCfg = spec.args()?;
        let path = spec.path.as_str();
        let module = spec.require_child("head_module")?;
        let hpath = module.path.clone();
        if module.qualified_name() != "mmyolo.PPYOLOEHeadModule" {
            return Err(ModelError::Unsupported {
                what: format!("head_module type {}", module.qualified_name()),
                path: hpath,
                hint: "PPYOLOEHead is implemented with PPYOLOEHeadModule only".into(),
            });
        }
        let m: &PpyoloeHeadModuleCfg = module.args()?;
        m.norm_cfg.validate(&join(&hpath, "norm_cfg"))?;
        let levels = m.featmap_strides.len();
        // PPYOLOEHeadModule.__init__: one int is every level's width.
        let in_channels: Vec<i64> = match &m.in_channels {
            ChannelsCfg::Single(c) => vec![py_int(c * m.widen_factor); levels],
            ChannelsCfg::PerLevel(v) => v.iter().map(|&c| py_int(c * m.widen_factor)).collect(),
        };
        if in_channels.len() != levels || levels == 0 {
            return Err(ModelError::Invalid {
                path: join(&hpath, "in_channels"),
                message: format!(
                    "{} entries for {levels} featmap_strides (one per level: the forward's \
                     `assert len(x) == self.num_levels` / multi_apply)",
                    in_channels.len()
                ),
            });
        }
        // reg_max == 1 gives 8 raw channels that neither the DFL integral (`reg_max > 1`) nor
        // the distance coder (4 channels) can use.
        if m.reg_max < 0 || m.reg_max == 1 || m.num_classes < 1 {
            return Err(ModelError::Invalid {
                path: hpath,
                message: format!(
                    "reg_max ({}) must be 0 (raw distances) or above 1 (DFL), num_classes ({}) \
                     positive",
                    m.reg_max, m.num_classes
                ),
            });
        }
        let prior_generator =
            PointGeneratorCfg::parse(&cfg.prior_generator, &join(path, "prior_generator"))?;
        // YOLOv5Head.predict_by_feat places the priors with prior_generator.strides but scales
        // the distances with head_module.featmap_strides; the shared decode uses one stride per
        // level, so both must agree (they do in every shipped config).
        let same = prior_generator.strides.len() == levels
            && prior_generator
                .strides
                .iter()
                .zip(&m.featmap_strides)
                .all(|(p, &s)| p.wh() == (s as f64, s as f64));
        if !same {
            return Err(ModelError::Unsupported {
                what: format!(
                    "prior_generator.strides {:?} differing from head_module.featmap_strides {:?}",
                    prior_generator
                        .strides
                        .iter()
                        .map(|s| s.wh())
                        .collect::<Vec<_>>(),
                    m.featmap_strides
                ),
                path: join(path, "prior_generator.strides"),
                hint: "give both the same square strides".into(),
            });
        }
        let act = m.act_cfg.to_act(&join(&hpath, "act_cfg"))?;
        // PPYOLOEHeadModule._init_layers: the four ModuleLists are registered in this order.
        let hctx = ctx.sub("head_module");
        let preds = |name: &str, cout: i64| -> Vec<Conv2d> {
            let c = hctx.sub(name);
            (in_channels.iter().enumerate())
                .map(|(i, &cin)| {
                    Conv2d::new(&c.sub(i), ConvSpec::new(cin, cout, 3).padding(1), true)
                })
                .collect()
        };
        let cls_preds = preds("cls_preds", m.num_classes);
        let reg_preds = preds("reg_preds", 4 * (m.reg_max + 1));
        let stems = |name: &str| -> Vec<PpyoloeSeLayer> {
            let c = hctx.sub(name);
            (in_channels.iter().enumerate())
                .map(|(i, &ch)| PpyoloeSeLayer::new(&c.sub(i), ch, &m.norm_cfg, act))
                .collect()
        };
        let cls_stems = stems("cls_stems");
        let reg_stems = stems("reg_stems");
        Ok(PpyoloeHead {
            cls_preds,
            reg_preds,
            cls_stems,
            reg_stems,
            reg_max: m.reg_max,
            num_classes: m.num_classes,
            in_channels,
            prior_generator,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.cls_preds.iter_mut().for_each(|c| c.fuse(mode));
        self.reg_preds.iter_mut().for_each(|c| c.fuse(mode));
        self.cls_stems.iter_mut().for_each(|s| s.fuse(mode));
        self.reg_stems.iter_mut().for_each(|s| s.fuse(mode));
    }

    /// `PPYOLOEHeadModule.forward_single` in eval mode: `(cls_logit, bbox_preds)`.
    fn forward_level(&self, i: usize, x: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
        let avg = x.f_adaptive_avg_pool2d([1, 1])?;
        let cls = self.cls_preds[i].forward(&self.cls_stems[i].forward(x, &avg)?.f_add(x)?)?;
        let dist = self.reg_preds[i].forward(&self.reg_stems[i].forward(x, &avg)?)?;
        if self.reg_max <= 1 {
            return Ok((cls, dist));
        }
        Ok((cls, super::dfl_integral(&dist, self.reg_max + 1)?))
    }

    /// `PPYOLOEHeadModule.forward`: per level `(cls_score, bbox_pred)`.
    pub fn forward(&self, feats: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>), tch::TchError> {
        super::per_level("PPYOLOEHeadModule", self.cls_preds.len(), feats, |i, x| {
            self.forward_level(i, x)
        })
    }
}

impl DenseHead for PpyoloeHead {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let (cls_scores, bbox_preds) = PpyoloeHead::forward(self, feats)?;
        Ok(HeadOutputs::new(cls_scores, bbox_preds))
    }
    fn in_channels(&self) -> Vec<i64> {
        self.in_channels.clone()
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
    /// Post-processing (the trait's default `predict_by_feat`) mirrors
    /// `mmyolo/models/dense_heads/yolov5_head.py: YOLOv5Head.predict_by_feat` without
    /// objectness: sigmoid scores, priors `MlvlPointGenerator(offset=0.5)`,
    /// `DistancePointBBoxCoder.decode`, joint multi-label top-k (`nms_pre`), rescale, batched
    /// NMS, `max_per_img`, clamp to `ori_shape` (`crate::postprocess`).
    fn flavour(&self) -> Flavour {
        Flavour::Mmyolo
    }
    fn fuse(&mut self, mode: Fuse) {
        PpyoloeHead::fuse(self, mode)
    }
    /// `PPYOLOEHeadModule.forward_single` as ONNX nodes (`adaptive_avg_pool2d(x, 1)` is
    /// `GlobalAveragePool`; DFL as YOLOv8's over `reg_max + 1` bins).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = OnnxHeadOutputs::default();
        for (i, &x) in feats.iter().enumerate() {
            let avg = g.op("GlobalAveragePool", &[x], vec![]);
            let c = self.cls_stems[i].emit_onnx(g, x, avg)?;
            let c = g.op("Add", &[c, x], vec![]);
            out.cls_scores.push(self.cls_preds[i].emit_onnx(g, c)?);
            let r = self.reg_stems[i].emit_onnx(g, x, avg)?;
            let dist = self.reg_preds[i].emit_onnx(g, r)?;
            out.bbox_preds.push(if self.reg_max <= 1 {
                dist
            } else {
                super::yolov8_head::emit_dfl(g, dist, self.reg_max + 1)
            });
        }
        Ok(out)
    }
}

crate::register_tch_component!(scope: "mmyolo", name: "PPYOLOEHead", DenseHead: |s, c| Ok(Box::new(PpyoloeHead::build(s, c)?)));
crate::register_tch_component!(scope: "mmyolo", name: "PPYOLOEHeadModule", BuiltByParent);
