//! mmyolo's `YOLOXHead` wrapping `YOLOXHeadModule` (`mmyolo/models/dense_heads/yolox_head.py`).
//! Weights, in state-dict order: `bbox_head.head_module.multi_level_cls_convs.{level}.{i}` and
//! `multi_level_reg_convs.{level}.{i}` (`stacked_convs` 3×3 ConvModules, or
//! `DepthwiseSeparableConvModule`s with `use_depthwise`, to `int(feat_channels · widen_factor)`),
//! then the 1×1 `nn.Conv2d`s `multi_level_conv_cls` (→ num_classes), `multi_level_conv_reg` (→ 4)
//! and `multi_level_conv_obj` (→ 1, on the **reg** branch). The forward returns the three logits
//! per level (`YOLOXHeadModule.forward_single`); `predict_by_feat` is `YOLOv5Head.predict_by_feat`
//! (YOLOXHead does not override it) with `MlvlPointGenerator(offset=0)` priors, `YOLOXBBoxCoder`
//! and objectness, `yolox_style` from `test_cfg` (`crate::postprocess::yolov5`).

use tch::Tensor;

use crate::export::onnx::{ExportError, OnnxDecoder, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::cfg::{join, py_int};
use crate::models::component::{DenseHead, Flavour, HeadOutputs};
use crate::models::layers::conv_module::{AnyConv, Conv2d, ConvSpec, Fuse};
use crate::models::param::Ctx;
use crate::models::ModelError;
use crate::postprocess::yolov5 as post;
use crate::postprocess::{ImageMeta, PostprocessError, RawDetections, TestCfg};
use mmcompat_registry::spec::models::prior_generator::PointGeneratorCfg;
use mmcompat_registry::spec::models::yolov8_pafpn::ChannelsCfg;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolox_head::{YoloXHeadCfg, YoloXHeadModuleCfg};

#[derive(Debug)]
pub struct YoloXHead {
    /// `multi_level_cls_convs[level]` / `multi_level_reg_convs[level]` (Sequentials).
    pub cls_convs: Vec<Vec<AnyConv>>,
    pub reg_convs: Vec<Vec<AnyConv>>,
    pub conv_cls: Vec<Conv2d>,
    pub conv_reg: Vec<Conv2d>,
    pub conv_obj: Vec<Conv2d>,
    pub num_classes: i64,
    /// `int(in_channels · widen_factor)`, the same for every level.
    pub in_channels: i64,
    pub prior_generator: PointGeneratorCfg,
    /// `head_module.featmap_strides`: what `YOLOXBBoxCoder.decode` scales by.
    pub featmap_strides: Vec<i64>,
}

impl YoloXHead {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &YoloXHeadCfg = spec.args()?;
        let path = spec.path.as_str();
        let module = spec.require_child("head_module")?;
        let hpath = module.path.clone();
        if module.qualified_name() != "mmyolo.YOLOXHeadModule" {
            return Err(ModelError::Unsupported {
                what: format!("head_module type {}", module.qualified_name()),
                path: hpath,
                hint: "YOLOXHead is implemented with YOLOXHeadModule only".into(),
            });
        }
        let m: &YoloXHeadModuleCfg = module.args()?;
        m.norm_cfg.validate(&join(&hpath, "norm_cfg"))?;
        let levels = m.featmap_strides.len();
        if m.num_classes < 1 || levels == 0 || m.stacked_convs < 0 {
            return Err(ModelError::Invalid {
                path: hpath,
                message: format!(
                    "num_classes ({}) and the number of featmap_strides ({levels}) must be \
                     positive, stacked_convs ({}) not negative",
                    m.num_classes, m.stacked_convs
                ),
            });
        }
        // YOLOXHeadModule.__init__ widens an int only; a list reaches the first conv as its
        // channel count and fails there.
        let in_channels = match &m.in_channels {
            ChannelsCfg::Single(c) => py_int(c * m.widen_factor),
            ChannelsCfg::PerLevel(_) => {
                return Err(ModelError::Invalid {
                    path: join(&hpath, "in_channels"),
                    message: "must be an int (the stacked convs take it as their channel count; \
                              a list raises TypeError upstream)"
                        .into(),
                })
            }
        };
        let prior_generator =
            PointGeneratorCfg::parse(&cfg.prior_generator, &join(path, "prior_generator"))?;
        // YOLOv5Head.predict_by_feat places the priors with prior_generator.strides and scales
        // the predictions with head_module.featmap_strides (one grid per feature map).
        if prior_generator.strides.len() != levels {
            return Err(ModelError::Invalid {
                path: join(path, "prior_generator.strides"),
                message: format!(
                    "{} strides for {levels} head_module.featmap_strides",
                    prior_generator.strides.len()
                ),
            });
        }
        let feat = py_int(m.feat_channels * m.widen_factor);
        let act = Some(m.act_cfg.to_act(&join(&hpath, "act_cfg"))?);
        let norm = Some(&m.norm_cfg);
        let hctx = ctx.sub("head_module");
        // YOLOXHeadModule._build_stacked_convs; ModuleLists in registration order.
        let stacked = |name: &str| -> Vec<Vec<AnyConv>> {
            let lctx = hctx.sub(name);
            (0..levels)
                .map(|l| {
                    (0..m.stacked_convs)
                        .map(|i| {
                            let chn = if i == 0 { in_channels } else { feat };
                            AnyConv::new(
                                &lctx.sub(l).sub(i),
                                ConvSpec::new(chn, feat, 3).padding(1),
                                norm,
                                act,
                                m.use_depthwise,
                            )
                        })
                        .collect()
                })
                .collect()
        };
        let cls_convs = stacked("multi_level_cls_convs");
        let reg_convs = stacked("multi_level_reg_convs");
        // YOLOXHeadModule._build_predictor.
        let predictor = |name: &str, cout: i64| -> Vec<Conv2d> {
            let pctx = hctx.sub(name);
            (0..levels)
                .map(|l| Conv2d::new(&pctx.sub(l), ConvSpec::new(feat, cout, 1), true))
                .collect()
        };
        let conv_cls = predictor("multi_level_conv_cls", m.num_classes);
        let conv_reg = predictor("multi_level_conv_reg", 4);
        let conv_obj = predictor("multi_level_conv_obj", 1);
        Ok(YoloXHead {
            cls_convs,
            reg_convs,
            conv_cls,
            conv_reg,
            conv_obj,
            num_classes: m.num_classes,
            in_channels,
            prior_generator,
            featmap_strides: m.featmap_strides.clone(),
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        let convs = self.cls_convs.iter_mut().chain(self.reg_convs.iter_mut());
        convs.flatten().for_each(|c| c.fuse(mode));
        let preds = (self.conv_cls.iter_mut())
            .chain(self.conv_reg.iter_mut())
            .chain(self.conv_obj.iter_mut());
        preds.for_each(|c| c.fuse(mode));
    }

    /// `YOLOXHeadModule.forward_single`: `(cls_score, bbox_pred, objectness)` logits.
    fn forward_level(&self, i: usize, x: &Tensor) -> Result<[Tensor; 3], tch::TchError> {
        let run = |convs: &[AnyConv]| {
            convs
                .iter()
                .try_fold(x.shallow_clone(), |y, c| c.forward(&y))
        };
        let cls_feat = run(&self.cls_convs[i])?;
        let reg_feat = run(&self.reg_convs[i])?;
        Ok([
            self.conv_cls[i].forward(&cls_feat)?,
            self.conv_reg[i].forward(&reg_feat)?,
            self.conv_obj[i].forward(&reg_feat)?,
        ])
    }

    /// `YOLOXHeadModule.forward`: per level `(cls_score, bbox_pred, objectness)`.
    pub fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        if feats.len() != self.conv_cls.len() {
            return Err(tch::TchError::Shape(format!(
                "YOLOXHeadModule: {} feature levels for {} featmap_strides",
                feats.len(),
                self.conv_cls.len()
            )));
        }
        let mut out = HeadOutputs::new(Vec::new(), Vec::new());
        for (i, x) in feats.iter().enumerate() {
            let [cls, bbox, obj] = self.forward_level(i, x)?;
            out.cls_scores.push(cls);
            out.bbox_preds.push(bbox);
            out.objectnesses.push(obj);
        }
        Ok(out)
    }
}

impl DenseHead for YoloXHead {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        YoloXHead::forward(self, feats)
    }
    fn in_channels(&self) -> Vec<i64> {
        vec![self.in_channels; self.conv_cls.len()]
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
    fn flavour(&self) -> Flavour {
        Flavour::Mmyolo
    }
    fn fuse(&mut self, mode: Fuse) {
        YoloXHead::fuse(self, mode)
    }
    /// `YOLOXHeadModule.forward` as ONNX nodes (the objectness conv on the reg branch).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = OnnxHeadOutputs::default();
        for (i, &x) in feats.iter().enumerate() {
            let run = |g: &mut OnnxGraph, convs: &[AnyConv]| {
                convs.iter().try_fold(x, |y, c| c.emit_onnx(g, y))
            };
            let cls_feat = run(g, &self.cls_convs[i])?;
            let reg_feat = run(g, &self.reg_convs[i])?;
            out.cls_scores
                .push(self.conv_cls[i].emit_onnx(g, cls_feat)?);
            out.bbox_preds
                .push(self.conv_reg[i].emit_onnx(g, reg_feat)?);
            out.objectnesses
                .push(self.conv_obj[i].emit_onnx(g, reg_feat)?);
        }
        Ok(out)
    }
    fn onnx_decoder(&self) -> OnnxDecoder {
        OnnxDecoder::YoloxPoints {
            decode_strides: self.featmap_strides.iter().map(|&s| s as f64).collect(),
        }
    }
    /// `mmyolo/models/dense_heads/yolov5_head.py: YOLOv5Head.predict_by_feat` with objectness and
    /// `YOLOXBBoxCoder` (`mmyolo/models/task_modules/coders/yolox_bbox_coder.py`):
    /// `crate::postprocess::yolov5`.
    fn predict_by_feat(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError> {
        let levels: Vec<post::PointLevelSpec> = (self.strides().into_iter())
            .zip(&self.featmap_strides)
            .map(|(stride, &s)| post::PointLevelSpec {
                stride,
                offset: self.prior_offset(),
                decode_stride: s as f64,
            })
            .collect();
        let host = post::point_head_outputs_to_host(
            &outputs.cls_scores,
            &outputs.bbox_preds,
            &outputs.objectnesses,
            &levels,
        )?;
        post::predict_by_feat_points(&host, metas, cfg)
    }
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOXHead", DenseHead: |s, c| Ok(Box::new(YoloXHead::build(s, c)?)));
crate::register_tch_component!(scope: "mmyolo", name: "YOLOXHeadModule", BuiltByParent);
