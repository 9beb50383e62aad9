//! mmyolo's `YOLOv6Head` wrapping `YOLOv6HeadModule` (`mmyolo/models/dense_heads/yolov6_head.py`).
//! Weights live under `bbox_head.head_module.{cls_convs,reg_convs,cls_preds,reg_preds,stems}.{level}`
//! (registration order): per level a 1×1 ConvModule `stems`, 3×3 ConvModules `cls_convs` and
//! `reg_convs` on the stem's output, and 1×1 `nn.Conv2d` `cls_preds` (class logits) and
//! `reg_preds`. With `reg_max = 0` (v2 and v3 n/t/s) the box output is the raw l, t, r, b distances
//! in stride units (no exp, no relu); with `reg_max > 1` (v3 m/l) it is the DFL expectation over
//! `reg_max + num_base_priors` bins. `predict_by_feat` is `YOLOv5Head.predict_by_feat`
//! (YOLOv6Head does not override it; no objectness: `loss_obj = None` and the module returns two
//! outputs) with `DistancePointBBoxCoder`.

use tch::Tensor;

use crate::export::onnx::{ExportError, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::cfg::{join, py_int};
use crate::models::component::DenseHead;
use crate::models::component::{Flavour, HeadOutputs};
use crate::models::layers::conv_module::{Conv2d, ConvModule, ConvSpec, Fuse};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::prior_generator::PointGeneratorCfg;
use mmcompat_registry::spec::models::yolov6_head::HeadChannelsCfg;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov6_head::{YoloV6HeadCfg, YoloV6HeadModuleCfg};

#[derive(Debug)]
pub struct YoloV6Head {
    pub stems: Vec<ConvModule>,
    pub cls_convs: Vec<ConvModule>,
    pub reg_convs: Vec<ConvModule>,
    pub cls_preds: Vec<Conv2d>,
    pub reg_preds: Vec<Conv2d>,
    pub reg_max: i64,
    pub num_base_priors: i64,
    pub num_classes: i64,
    /// `int(in_channels[i] * widen_factor)` per level.
    pub in_channels: Vec<i64>,
    pub prior_generator: PointGeneratorCfg,
}

impl YoloV6Head {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &YoloV6HeadCfg = spec.args()?;
        let path = spec.path.as_str();
        let module = spec.require_child("head_module")?;
        let hpath = module.path.clone();
        if module.qualified_name() != "mmyolo.YOLOv6HeadModule" {
            return Err(ModelError::Unsupported {
                what: format!("head_module type {}", module.qualified_name()),
                path: hpath,
                hint: "YOLOv6Head is implemented with YOLOv6HeadModule only".into(),
            });
        }
        let m: &YoloV6HeadModuleCfg = module.args()?;
        m.norm_cfg.validate(&join(&hpath, "norm_cfg"))?;
        let levels = m.featmap_strides.len();
        if m.num_classes < 1 || levels == 0 || m.reg_max < 0 {
            return Err(ModelError::Invalid {
                path: hpath,
                message: format!(
                    "num_classes ({}) and the number of featmap_strides ({levels}) must be \
                     positive, reg_max ({}) non-negative",
                    m.num_classes, m.reg_max
                ),
            });
        }
        // The shared post-processing reads one prior per location (`cls_scores` as
        // `N × C × H × W`); every YOLOv6 config has `num_base_priors=1`.
        if m.num_base_priors != 1 {
            return Err(ModelError::Unsupported {
                what: format!("num_base_priors {}", m.num_base_priors),
                path: join(&hpath, "num_base_priors"),
                hint: "YOLOv6's point priors are one per location".into(),
            });
        }
        // YOLOv6HeadModule.__init__: an int is repeated per level; a list is indexed per level.
        let in_channels: Vec<i64> = match &m.in_channels {
            HeadChannelsCfg::Single(c) => vec![py_int(c * m.widen_factor); levels],
            HeadChannelsCfg::PerLevel(v) if v.len() >= levels => v[..levels]
                .iter()
                .map(|&c| py_int(c * m.widen_factor))
                .collect(),
            HeadChannelsCfg::PerLevel(v) => {
                return Err(ModelError::Invalid {
                    path: join(&hpath, "in_channels"),
                    message: format!(
                        "{} entries for {levels} featmap_strides (IndexError in _init_layers)",
                        v.len()
                    ),
                })
            }
        };
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
        let act = Some(m.act_cfg.to_act(&join(&hpath, "act_cfg"))?);
        let norm = Some(&m.norm_cfg);
        // YOLOv6HeadModule._init_layers: ModuleLists created in this order (= state-dict order).
        let hctx = ctx.sub("head_module");
        let conv = |name: &str, k: i64| -> Vec<ConvModule> {
            let c = hctx.sub(name);
            (in_channels.iter().enumerate())
                .map(|(i, &ch)| {
                    ConvModule::new(
                        &c.sub(i),
                        ConvSpec::new(ch, ch, k).padding(k / 2),
                        norm,
                        act,
                    )
                })
                .collect()
        };
        let pred = |name: &str, cout: i64| -> Vec<Conv2d> {
            let c = hctx.sub(name);
            (in_channels.iter().enumerate())
                .map(|(i, &ch)| Conv2d::new(&c.sub(i), ConvSpec::new(ch, cout, 1), true))
                .collect()
        };
        let cls_convs = conv("cls_convs", 3);
        let reg_convs = conv("reg_convs", 3);
        let cls_preds = pred("cls_preds", m.num_base_priors * m.num_classes);
        let reg_preds = pred("reg_preds", (m.num_base_priors + m.reg_max) * 4);
        let stems = conv("stems", 1);
        Ok(YoloV6Head {
            stems,
            cls_convs,
            reg_convs,
            cls_preds,
            reg_preds,
            reg_max: m.reg_max,
            num_base_priors: m.num_base_priors,
            num_classes: m.num_classes,
            in_channels,
            prior_generator,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        for c in [&mut self.stems, &mut self.cls_convs, &mut self.reg_convs] {
            c.iter_mut().for_each(|m| m.fuse(mode));
        }
        for c in [&mut self.cls_preds, &mut self.reg_preds] {
            c.iter_mut().for_each(|m| m.fuse(mode));
        }
    }

    /// `YOLOv6HeadModule.forward_single` in eval mode: `(cls_score, bbox_preds)`.
    fn forward_level(&self, i: usize, x: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
        let y = self.stems[i].forward(x)?;
        let cls = self.cls_preds[i].forward(&self.cls_convs[i].forward(&y)?)?;
        let dist = self.reg_preds[i].forward(&self.reg_convs[i].forward(&y)?)?;
        if self.reg_max <= 1 {
            return Ok((cls, dist));
        }
        // `proj = torch.arange(reg_max + num_base_priors)`: `reg_max + 1` bins.
        let bbox = super::dfl_integral(&dist, self.reg_max + self.num_base_priors)?;
        Ok((cls, bbox))
    }

    /// `YOLOv6HeadModule.forward`: per level `(cls_score, bbox_pred)`.
    pub fn forward(&self, feats: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>), tch::TchError> {
        super::per_level("YOLOv6HeadModule", self.stems.len(), feats, |i, x| {
            self.forward_level(i, x)
        })
    }
}

impl DenseHead for YoloV6Head {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let (cls_scores, bbox_preds) = YoloV6Head::forward(self, feats)?;
        Ok(HeadOutputs::new(cls_scores, bbox_preds))
    }
    /// `int(c * widen_factor)` per level.
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
    /// `mmyolo/models/dense_heads/yolov5_head.py: YOLOv5Head.predict_by_feat` without objectness
    /// (`objectnesses is None`: no `obj > score_thr` filter, no product): sigmoid scores, priors
    /// `MlvlPointGenerator(offset=0.5)`, `DistancePointBBoxCoder.decode` (distances × stride,
    /// `distance2bbox`, no clamp), joint multi-label top-k, unpad + unscale, batched NMS,
    /// `max_per_img`, clamp to `ori_shape`: the shared mmyolo post-processing.
    fn flavour(&self) -> Flavour {
        Flavour::Mmyolo
    }
    fn fuse(&mut self, mode: Fuse) {
        YoloV6Head::fuse(self, mode)
    }
    /// `YOLOv6HeadModule.forward_single` as ONNX nodes (DFL as YOLOv8's with `reg_max > 1`).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = OnnxHeadOutputs::default();
        for (i, &x) in feats.iter().enumerate() {
            let y = self.stems[i].emit_onnx(g, x)?;
            let c = self.cls_convs[i].emit_onnx(g, y)?;
            out.cls_scores.push(self.cls_preds[i].emit_onnx(g, c)?);
            let r = self.reg_convs[i].emit_onnx(g, y)?;
            let dist = self.reg_preds[i].emit_onnx(g, r)?;
            out.bbox_preds.push(if self.reg_max <= 1 {
                dist
            } else {
                super::yolov8_head::emit_dfl(g, dist, self.reg_max + self.num_base_priors)
            });
        }
        Ok(out)
    }
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv6Head", DenseHead: |s, c| Ok(Box::new(YoloV6Head::build(s, c)?)));
crate::register_tch_component!(scope: "mmyolo", name: "YOLOv6HeadModule", BuiltByParent);
