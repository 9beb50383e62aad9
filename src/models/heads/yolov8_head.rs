//! mmyolo's `YOLOv8Head` wrapping `YOLOv8HeadModule` (`mmyolo/models/dense_heads/yolov8_head.py`).
//! Weights live under `bbox_head.head_module.{cls_preds,reg_preds}.{level}.{0,1,2}`: two 3×3
//! ConvModules and a 1×1 `nn.Conv2d` per level and branch. The forward returns the class logits
//! and the DFL-decoded distances (l, t, r, b) in stride units; `predict_by_feat` is
//! `YOLOv5Head.predict_by_feat` (YOLOv8Head does not override it) with `DistancePointBBoxCoder`.

use tch::Tensor;

use crate::export::onnx::graph::{attr_i, attr_ints};
use crate::export::onnx::{ExportError, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::cfg::{join, Act, NormCfg};
use crate::models::component::DenseHead;
use crate::models::component::{Flavour, HeadOutputs};
use crate::models::layers::conv_module::{Conv2d, ConvModule, ConvSpec, Fuse};
use crate::models::layers::yolo_bricks::make_divisible;
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::prior_generator::PointGeneratorCfg;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov8_head::{YoloV8HeadCfg, YoloV8HeadModuleCfg};

/// One level's `nn.Sequential(ConvModule 3×3, ConvModule 3×3, nn.Conv2d 1×1)`.
#[derive(Debug)]
pub struct PredBranch {
    pub convs: [ConvModule; 2],
    pub pred: Conv2d,
}

impl PredBranch {
    fn new(
        ctx: &Ctx,
        (cin, width, cout): (i64, i64, i64),
        norm: Option<&NormCfg>,
        act: Option<Act>,
    ) -> Self {
        let conv3 = |i: i64, cin: i64| {
            ConvModule::new(
                &ctx.sub(i),
                ConvSpec::new(cin, width, 3).padding(1),
                norm,
                act,
            )
        };
        PredBranch {
            convs: [conv3(0, cin), conv3(1, width)],
            pred: Conv2d::new(&ctx.sub(2), ConvSpec::new(width, cout, 1), true),
        }
    }

    fn fuse(&mut self, mode: Fuse) {
        self.convs.iter_mut().for_each(|c| c.fuse(mode));
        self.pred.fuse(mode);
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let y = self.convs[1].forward(&self.convs[0].forward(x)?)?;
        self.pred.forward(&y)
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let y = self.convs[0].emit_onnx(g, x)?;
        let y = self.convs[1].emit_onnx(g, y)?;
        self.pred.emit_onnx(g, y)
    }
}

/// `super::dfl_integral` as ONNX nodes: `[B, 4·bins, H, W]` → softmax over the bins of each side
/// → dot with `arange(bins)` → `[B, 4, H, W]` (H, W read from the input's shape).
pub(crate) fn emit_dfl(g: &mut OnnxGraph, dist: ValueId, bins: i64) -> ValueId {
    let split = g.const_i64("dfl_shape", vec![4], &[0, 4, bins, -1]);
    let r = g.op("Reshape", &[dist, split], vec![]);
    let t = g.op("Transpose", &[r], vec![attr_ints("perm", &[0, 3, 1, 2])]);
    let s = g.op("Softmax", &[t], vec![attr_i("axis", 3)]);
    let proj: Vec<f32> = (0..bins).map(|b| b as f32).collect();
    let proj = g.weight("dfl_proj", vec![bins, 1], &proj);
    let m = g.op("MatMul", &[s, proj], vec![]);
    let last = g.const_i64("dfl_squeeze", vec![1], &[-1]);
    let m = g.op("Squeeze", &[m, last], vec![]);
    let m = g.op("Transpose", &[m], vec![attr_ints("perm", &[0, 2, 1])]);
    // `Shape(start=2)` (opset 15+): [H, W].
    let hw = g.op("Shape", &[dist], vec![attr_i("start", 2)]);
    let b4 = g.const_i64("dfl_b4", vec![2], &[0, 4]);
    let out_shape = g.op("Concat", &[b4, hw], vec![attr_i("axis", 0)]);
    g.op("Reshape", &[m, out_shape], vec![])
}

#[derive(Debug)]
pub struct YoloV8Head {
    pub cls_preds: Vec<PredBranch>,
    pub reg_preds: Vec<PredBranch>,
    pub reg_max: i64,
    pub num_classes: i64,
    /// `make_divisible(in_channels[i], widen_factor)` per level.
    pub in_channels: Vec<i64>,
    pub prior_generator: PointGeneratorCfg,
}

impl YoloV8Head {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &YoloV8HeadCfg = spec.args()?;
        let path = spec.path.as_str();
        let module = spec.require_child("head_module")?;
        let hpath = module.path.clone();
        if module.qualified_name() != "mmyolo.YOLOv8HeadModule" {
            return Err(ModelError::Unsupported {
                what: format!("head_module type {}", module.qualified_name()),
                path: hpath,
                hint: "YOLOv8Head is implemented with YOLOv8HeadModule only".into(),
            });
        }
        let m: &YoloV8HeadModuleCfg = module.args()?;
        m.norm_cfg.validate(&join(&hpath, "norm_cfg"))?;
        let levels = m.featmap_strides.len();
        if m.in_channels.len() < levels {
            return Err(ModelError::Invalid {
                path: join(&hpath, "in_channels"),
                message: format!(
                    "{} entries for {levels} featmap_strides (IndexError in _init_layers)",
                    m.in_channels.len()
                ),
            });
        }
        if m.reg_max < 1 || m.num_classes < 1 || levels == 0 {
            return Err(ModelError::Invalid {
                path: hpath,
                message: format!(
                    "reg_max ({}), num_classes ({}) and the number of featmap_strides ({levels}) \
                     must be positive",
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
        let in_channels: Vec<i64> = m.in_channels[..levels]
            .iter()
            .map(|&c| make_divisible(c, m.widen_factor))
            .collect();
        // YOLOv8HeadModule._init_layers.
        let reg_width = 16.max(in_channels[0].div_euclid(4)).max(m.reg_max * 4);
        let cls_width = in_channels[0].max(m.num_classes);
        // `cls_preds` is registered before `reg_preds`: state-dict order.
        let hctx = ctx.sub("head_module");
        let (cctx, rctx) = (hctx.sub("cls_preds"), hctx.sub("reg_preds"));
        let act = Some(m.act_cfg.to_act(&join(&hpath, "act_cfg"))?);
        let norm = Some(&m.norm_cfg);
        let branches = |c: &Ctx, width: i64, cout: i64| -> Vec<PredBranch> {
            (in_channels.iter().enumerate())
                .map(|(i, &cin)| PredBranch::new(&c.sub(i), (cin, width, cout), norm, act))
                .collect()
        };
        let cls_preds = branches(&cctx, cls_width, m.num_classes);
        let reg_preds = branches(&rctx, reg_width, 4 * m.reg_max);
        Ok(YoloV8Head {
            cls_preds,
            reg_preds,
            reg_max: m.reg_max,
            num_classes: m.num_classes,
            in_channels,
            prior_generator,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.cls_preds.iter_mut().for_each(|b| b.fuse(mode));
        self.reg_preds.iter_mut().for_each(|b| b.fuse(mode));
    }

    /// `YOLOv8HeadModule.forward_single` in eval mode: `(cls_logit, bbox_preds)`. With
    /// `reg_max > 1` the distances are the expectation of the softmax over `reg_max` bins (DFL),
    /// computed with the very same ops as upstream (`softmax(3).matmul(proj.view([-1, 1]))`).
    fn forward_level(&self, i: usize, x: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
        let cls = self.cls_preds[i].forward(x)?;
        let dist = self.reg_preds[i].forward(x)?;
        if self.reg_max <= 1 {
            return Ok((cls, dist));
        }
        let bbox = super::dfl_integral(&dist, self.reg_max)?;
        Ok((cls, bbox))
    }

    /// `YOLOv8HeadModule.forward`: per level `(cls_score, bbox_pred)`.
    pub fn forward(&self, feats: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>), tch::TchError> {
        super::per_level("YOLOv8HeadModule", self.cls_preds.len(), feats, |i, x| {
            self.forward_level(i, x)
        })
    }
}

impl DenseHead for YoloV8Head {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        let (cls_scores, bbox_preds) = YoloV8Head::forward(self, feats)?;
        Ok(HeadOutputs::new(cls_scores, bbox_preds))
    }
    /// `[make_divisible(c, widen_factor) for c in in_channels]`: one width per level.
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
    /// Post-processing (the trait's default `predict_by_feat`) mirrors:
    /// `mmyolo/models/dense_heads/yolov5_head.py: YOLOv5Head.predict_by_feat` without
    /// objectness: sigmoid scores, priors `MlvlPointGenerator(offset=0.5)`,
    /// `DistancePointBBoxCoder.decode` (distances × stride, `distance2bbox`, no clamp), joint
    /// multi-label top-k, unpad + unscale, batched NMS, `max_per_img`, clamp to `ori_shape`: the
    /// shared mmyolo post-processing (`crate::postprocess`).
    fn flavour(&self) -> Flavour {
        Flavour::Mmyolo
    }
    fn fuse(&mut self, mode: Fuse) {
        YoloV8Head::fuse(self, mode)
    }
    /// `YOLOv8HeadModule.forward` as ONNX nodes: class logits and the DFL-integrated distances.
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        let mut out = OnnxHeadOutputs::default();
        for (i, &x) in feats.iter().enumerate() {
            out.cls_scores.push(self.cls_preds[i].emit_onnx(g, x)?);
            let dist = self.reg_preds[i].emit_onnx(g, x)?;
            out.bbox_preds.push(if self.reg_max <= 1 {
                dist
            } else {
                emit_dfl(g, dist, self.reg_max)
            });
        }
        Ok(out)
    }
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv8Head", DenseHead: |s, c| Ok(Box::new(YoloV8Head::build(s, c)?)));
crate::register_tch_component!(scope: "mmyolo", name: "YOLOv8HeadModule", BuiltByParent);
