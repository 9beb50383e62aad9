//! mmyolo's `YOLOv5Head` wrapping `YOLOv5HeadModule` (`mmyolo/models/dense_heads/yolov5_head.py`).
//! Weights: `bbox_head.head_module.convs_pred.{level}.{weight,bias}`, one 1×1 `nn.Conv2d` per
//! level to `num_base_priors · (5 + num_classes)` channels, anchor-major `[x, y, w, h, obj,
//! cls...]`. The forward splits them into class logits `(N, A·C, H, W)`, box logits `(N, A·4, H,
//! W)` and objectness logits `(N, A, H, W)` (`YOLOv5HeadModule.forward_single`);
//! `predict_by_feat` is `YOLOv5Head.predict_by_feat` with `mmdet.YOLOAnchorGenerator` priors and
//! `YOLOv5BBoxCoder` (`crate::postprocess::yolov5`). The P6 configs use the same code with four
//! levels.

use tch::Tensor;

use crate::export::onnx::graph::attr_i;
use crate::export::onnx::{ExportError, OnnxDecoder, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::cfg::join;
use crate::models::component::{DenseHead, Flavour, HeadOutputs};
use crate::models::layers::conv_module::{Conv2d, ConvSpec, Fuse};
use crate::models::layers::yolo_bricks::make_divisible;
use crate::models::layers::Layer;
use crate::models::param::Ctx;
use crate::models::ModelError;
use crate::postprocess::yolov5::{self as post, AnchorLevelSpec};
use crate::postprocess::{ImageMeta, PostprocessError, RawDetections, TestCfg};
use mmcompat_registry::spec::models::prior_generator::YoloAnchorGeneratorCfg;
use mmcompat_registry::spec::models::yolov8_pafpn::ChannelsCfg;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov5_head::{YoloV5HeadCfg, YoloV5HeadModuleCfg};

#[derive(Debug)]
pub struct YoloV5Head {
    /// Per level the module giving `num_base_priors · (5 + num_classes)` channels (a 1×1 conv;
    /// YOLOv7's heads build theirs through [`YoloV5Head::build_with`]).
    pub convs_pred: Vec<Box<dyn Layer>>,
    pub num_classes: i64,
    pub num_base_priors: i64,
    /// `make_divisible(in_channels[i], widen_factor)` per level.
    pub in_channels: Vec<i64>,
    /// Anchors and decode stride of each level.
    pub levels: Vec<AnchorLevelSpec>,
}

impl YoloV5Head {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &YoloV5HeadCfg = spec.args()?;
        let path = spec.path.as_str();
        let module = spec.require_child("head_module")?;
        let hpath = module.path.clone();
        if module.qualified_name() != "mmyolo.YOLOv5HeadModule" {
            return Err(ModelError::Unsupported {
                what: format!("head_module type {}", module.qualified_name()),
                path: hpath,
                hint: "YOLOv5Head is implemented with YOLOv5HeadModule only".into(),
            });
        }
        let m: &YoloV5HeadModuleCfg = module.args()?;
        // YOLOv5HeadModule._init_layers.
        let cctx = ctx.sub("head_module").sub("convs_pred");
        let pred = |i: usize, cin: i64, out: i64| -> Box<dyn Layer> {
            Box::new(Conv2d::new(&cctx.sub(i), ConvSpec::new(cin, out, 1), true))
        };
        Self::build_with(cfg, m, (path, &hpath), &pred)
    }

    /// The `YOLOv5Head` / `YOLOv5HeadModule` arguments' checks and priors, with `pred(level,
    /// in_channels, out_channels)` building each level's prediction module (subclasses such as
    /// YOLOv7's change only `_init_layers`).
    pub fn build_with(
        cfg: &YoloV5HeadCfg,
        m: &YoloV5HeadModuleCfg,
        (path, hpath): (&str, &str),
        pred: &dyn Fn(usize, i64, i64) -> Box<dyn Layer>,
    ) -> Result<Self, ModelError> {
        let hpath = hpath.to_string();
        let levels = m.featmap_strides.len();
        if m.num_classes < 1 || m.num_base_priors < 1 || levels == 0 {
            return Err(ModelError::Invalid {
                path: hpath,
                message: format!(
                    "num_classes ({}), num_base_priors ({}) and the number of featmap_strides \
                     ({levels}) must be positive",
                    m.num_classes, m.num_base_priors
                ),
            });
        }
        // YOLOv5HeadModule.__init__: an int is used for every level.
        let in_channels: Vec<i64> = match &m.in_channels {
            ChannelsCfg::Single(c) => vec![make_divisible(*c, m.widen_factor); levels],
            ChannelsCfg::PerLevel(v) if v.len() >= levels => (v[..levels].iter())
                .map(|&c| make_divisible(c, m.widen_factor))
                .collect(),
            ChannelsCfg::PerLevel(v) => {
                return Err(ModelError::Invalid {
                    path: join(&hpath, "in_channels"),
                    message: format!(
                        "{} entries for {levels} featmap_strides (IndexError in _init_layers)",
                        v.len()
                    ),
                })
            }
        };
        // YOLOv5Head.special_init: `assert len(obj_level_weights) == len(featmap_strides)`.
        if cfg.obj_level_weights.len() != levels {
            return Err(ModelError::Invalid {
                path: join(path, "obj_level_weights"),
                message: format!(
                    "{} weights for {levels} featmap_strides (AssertionError in special_init)",
                    cfg.obj_level_weights.len()
                ),
            });
        }
        let gen_path = join(path, "prior_generator");
        let gen = YoloAnchorGeneratorCfg::parse(&cfg.prior_generator, &gen_path)?;
        let base_sizes = gen.base_sizes_wh();
        // `grid_priors` asserts one generator level per feature map, and the priors must number
        // as many per location as the head module predicts (`num_base_priors`).
        if base_sizes.len() != levels || base_sizes[0].len() as i64 != m.num_base_priors {
            return Err(ModelError::Invalid {
                path: join(&gen_path, "base_sizes"),
                message: format!(
                    "{} levels of {} anchors, but head_module has {levels} featmap_strides and \
                     num_base_priors={}",
                    base_sizes.len(),
                    base_sizes[0].len(),
                    m.num_base_priors
                ),
            });
        }
        let levels_spec = (gen.strides_wh().into_iter().zip(base_sizes))
            .zip(&m.featmap_strides)
            .map(|((stride, base_sizes), &s)| AnchorLevelSpec {
                stride,
                base_sizes,
                decode_stride: s as f64,
            })
            .collect();
        let out = m.num_base_priors * (5 + m.num_classes);
        let convs_pred = (in_channels.iter().enumerate())
            .map(|(i, &cin)| pred(i, cin, out))
            .collect();
        Ok(YoloV5Head {
            convs_pred,
            num_classes: m.num_classes,
            num_base_priors: m.num_base_priors,
            in_channels,
            levels: levels_spec,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.convs_pred.iter_mut().for_each(|c| c.fuse(mode));
    }

    /// `YOLOv5HeadModule.forward_single`: `pred_map.view(N, A, 5 + C, H, W)`, then
    /// `[:, :, 5:]`, `[:, :, :4]` and `[:, :, 4:5]`, each reshaped to `(N, -1, H, W)`.
    fn forward_level(&self, i: usize, x: &Tensor) -> Result<[Tensor; 3], tch::TchError> {
        let pred = self.convs_pred[i].forward(x)?;
        let (b, _, h, w) = pred.size4()?;
        let (a, c) = (self.num_base_priors, self.num_classes);
        let pred = pred.f_view([b, a, 5 + c, h, w])?;
        let part = |start: i64, len: i64| -> Result<Tensor, tch::TchError> {
            pred.f_narrow(2, start, len)?.f_reshape([b, -1, h, w])
        };
        Ok([part(5, c)?, part(0, 4)?, part(4, 1)?])
    }

    /// [`YoloV5Head::forward_level`] as ONNX nodes: `Reshape [B, A, 5 + C, H·W]`, a `Slice` per
    /// part on axis 2, each reshaped to `[B, -1, H, W]` (H, W from the prediction's shape).
    fn emit_level(
        &self,
        g: &mut OnnxGraph,
        i: usize,
        x: ValueId,
    ) -> Result<[ValueId; 3], ExportError> {
        let pred = self.convs_pred[i].emit_onnx(g, x)?;
        let (a, c) = (self.num_base_priors, self.num_classes);
        let view = g.const_i64("yolov5_view", vec![4], &[0, a, 5 + c, -1]);
        let v = g.op("Reshape", &[pred, view], vec![]);
        // `Shape(start=2)` (opset 15+): [H, W].
        let hw = g.op("Shape", &[pred], vec![attr_i("start", 2)]);
        let b1 = g.const_i64("yolov5_b1", vec![2], &[0, -1]);
        let out_shape = g.op("Concat", &[b1, hw], vec![attr_i("axis", 0)]);
        let axis = g.const_i64("yolov5_axis", vec![1], &[2]);
        let part = |g: &mut OnnxGraph, start: i64, len: i64| {
            let s = g.const_i64("yolov5_start", vec![1], &[start]);
            let e = g.const_i64("yolov5_end", vec![1], &[start + len]);
            let p = g.op("Slice", &[v, s, e, axis], vec![]);
            g.op("Reshape", &[p, out_shape], vec![])
        };
        Ok([part(g, 5, c), part(g, 0, 4), part(g, 4, 1)])
    }

    /// `YOLOv5HeadModule.forward`: per level `(cls_score, bbox_pred, objectness)`.
    pub fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        if feats.len() != self.convs_pred.len() {
            return Err(tch::TchError::Shape(format!(
                "YOLOv5HeadModule: {} feature levels for {} featmap_strides",
                feats.len(),
                self.convs_pred.len()
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

impl DenseHead for YoloV5Head {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        YoloV5Head::forward(self, feats)
    }
    fn in_channels(&self) -> Vec<i64> {
        self.in_channels.clone()
    }
    fn num_classes(&self) -> i64 {
        self.num_classes
    }
    /// The anchor generator's strides.
    fn strides(&self) -> Vec<(f64, f64)> {
        self.levels.iter().map(|l| l.stride).collect()
    }
    /// Anchors are centred at `stride / 2` (`YOLOAnchorGenerator.centers`): offset 0.5.
    fn prior_offset(&self) -> f64 {
        0.5
    }
    fn flavour(&self) -> Flavour {
        Flavour::Mmyolo
    }
    fn fuse(&mut self, mode: Fuse) {
        YoloV5Head::fuse(self, mode)
    }
    /// `YOLOv5HeadModule.forward` as ONNX nodes: per level the three parts of the prediction.
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = OnnxHeadOutputs::default();
        for (i, &x) in feats.iter().enumerate() {
            let [cls, bbox, obj] = self.emit_level(g, i, x)?;
            out.cls_scores.push(cls);
            out.bbox_preds.push(bbox);
            out.objectnesses.push(obj);
        }
        Ok(out)
    }
    fn onnx_decoder(&self) -> OnnxDecoder {
        OnnxDecoder::Yolov5Anchors(self.levels.clone())
    }
    /// `mmyolo/models/dense_heads/yolov5_head.py: YOLOv5Head.predict_by_feat` with objectness:
    /// `crate::postprocess::yolov5`.
    fn predict_by_feat(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError> {
        let host = post::anchor_head_outputs_to_host(
            &outputs.cls_scores,
            &outputs.bbox_preds,
            &outputs.objectnesses,
            &self.levels,
        )?;
        post::predict_by_feat(&host, metas, cfg)
    }
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv5Head", DenseHead: |s, c| Ok(Box::new(YoloV5Head::build(s, c)?)));
crate::register_tch_component!(scope: "mmyolo", name: "YOLOv5HeadModule", BuiltByParent);
