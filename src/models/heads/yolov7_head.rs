//! mmyolo's `YOLOv7Head` with `YOLOv7HeadModule` or `YOLOv7p6HeadModule`
//! (`mmyolo/models/dense_heads/yolov7_head.py`). Both modules subclass `YOLOv5HeadModule` and
//! change only `_init_layers`; the forward (`YOLOv5HeadModule.forward_single`: class, box and
//! objectness logits, anchor-major) and `predict_by_feat` (`YOLOv5Head.predict_by_feat`, anchors
//! + objectness) are YOLOv5's, so this builds a [`YoloV5Head`] with YOLOv7's per-level modules:
//! * `YOLOv7HeadModule`: `convs_pred.{i}` = Sequential(`ImplicitA(C)`, 1×1 `Conv2d` with bias,
//!   `ImplicitM(A·(5+nc))`);
//! * `YOLOv7p6HeadModule`: `main_convs_pred.{i}` = Sequential(3×3 ConvModule to
//!   `main_out_channels[i]`, ImplicitA, Conv2d, ImplicitM); with `use_aux` (the default) also
//!   `aux_convs_pred.{i}` (3×3 ConvModule to `aux_out_channels[i]`, 1×1 Conv2d), whose weights
//!   are in the checkpoint but unused outside training (`forward_single` returns the main
//!   branch when `not self.training`): they are loaded and never run.

use tch::Tensor;

use crate::export::onnx::{ExportError, OnnxDecoder, OnnxGraph, OnnxHeadOutputs, ValueId};
use crate::models::cfg::{join, py_int};
use crate::models::component::{DenseHead, Flavour, HeadOutputs};
use crate::models::heads::yolov5_head::YoloV5Head;
use crate::models::layers::conv_module::{Conv2d, ConvModule, ConvSpec, Fuse};
use crate::models::layers::yolov7_bricks::{Implicit, ImplicitPred};
use crate::models::layers::{Layer, Sequential};
use crate::models::param::Ctx;
use crate::models::ModelError;
use crate::postprocess::{ImageMeta, PostprocessError, RawDetections, TestCfg};
use mmcompat_registry::spec::models::yolov5_head::YoloV5HeadModuleCfg;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov7_head::{YoloV7HeadCfg, YoloV7p6HeadModuleCfg};

/// `YOLOv7Head`: YOLOv5's head with YOLOv7's prediction modules.
#[derive(Debug)]
pub struct YoloV7Head {
    pub head: YoloV5Head,
    /// `YOLOv7p6HeadModule.aux_convs_pred` (training-only; loaded, never run).
    pub aux_convs_pred: Vec<(ConvModule, Conv2d)>,
}

/// `Sequential(ImplicitA(cin), Conv2d(cin, out, 1), ImplicitM(out))` under `ctx`, its members
/// numbered from `first`.
fn implicit_pred(ctx: &Ctx, first: usize, cin: i64, out: i64) -> Vec<Box<dyn Layer>> {
    vec![Box::new(ImplicitPred {
        add: Implicit::add(&ctx.sub(first), cin),
        conv: Conv2d::new(&ctx.sub(first + 1), ConvSpec::new(cin, out, 1), true),
        multiply: Implicit::multiply(&ctx.sub(first + 2), out),
    })]
}

impl YoloV7Head {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &YoloV7HeadCfg = spec.args()?;
        let head_cfg = cfg.yolov5_args();
        let module = spec.require_child("head_module")?;
        let paths = (spec.path.as_str(), module.path.as_str());
        let mctx = ctx.sub("head_module");
        match module.qualified_name().as_str() {
            "mmyolo.YOLOv7HeadModule" => {
                let m: &YoloV5HeadModuleCfg = module.args()?;
                let cctx = mctx.sub("convs_pred");
                let pred = |i: usize, cin: i64, out: i64| -> Box<dyn Layer> {
                    Box::new(Sequential(implicit_pred(&cctx.sub(i), 0, cin, out)))
                };
                let head = YoloV5Head::build_with(&head_cfg, m, paths, &pred)?;
                Ok(YoloV7Head {
                    head,
                    aux_convs_pred: Vec::new(),
                })
            }
            "mmyolo.YOLOv7p6HeadModule" => {
                let p6: &YoloV7p6HeadModuleCfg = module.args()?;
                let levels = p6.featmap_strides.len();
                let widths = |v: &[f64], key: &str| -> Result<Vec<i64>, ModelError> {
                    if v.len() < levels {
                        return Err(ModelError::Invalid {
                            path: join(&module.path, key),
                            message: format!(
                                "{} entries for {levels} featmap_strides (IndexError in \
                                 _init_layers)",
                                v.len()
                            ),
                        });
                    }
                    Ok(v.iter().map(|&c| py_int(c)).collect())
                };
                let main = widths(&p6.main_out_channels, "main_out_channels")?;
                let aux = widths(&p6.aux_out_channels, "aux_out_channels")?;
                let act = p6.act_cfg.to_act(&join(&module.path, "act_cfg"))?;
                let norm = Some(&p6.norm_cfg);
                let tower = |c: &Ctx, cin: i64, cout: i64| {
                    ConvModule::new(c, ConvSpec::new(cin, cout, 3).padding(1), norm, Some(act))
                };
                let cctx = mctx.sub("main_convs_pred");
                let pred = |i: usize, cin: i64, out: i64| -> Box<dyn Layer> {
                    let c = cctx.sub(i);
                    let mut layers: Vec<Box<dyn Layer>> =
                        vec![Box::new(tower(&c.sub(0), cin, main[i]))];
                    layers.extend(implicit_pred(&c, 1, main[i], out));
                    Box::new(Sequential(layers))
                };
                let head = YoloV5Head::build_with(&head_cfg, &p6.yolov5_args(), paths, &pred)?;
                // Registered after every main_convs_pred level, as upstream.
                let actx = mctx.sub("aux_convs_pred");
                let out = head.num_base_priors * (5 + head.num_classes);
                let aux_convs_pred = if p6.use_aux {
                    (head.in_channels.iter().enumerate())
                        .map(|(i, &cin)| {
                            let c = actx.sub(i);
                            let conv = ConvSpec::new(aux[i], out, 1);
                            (
                                tower(&c.sub(0), cin, aux[i]),
                                Conv2d::new(&c.sub(1), conv, true),
                            )
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                Ok(YoloV7Head {
                    head,
                    aux_convs_pred,
                })
            }
            other => Err(ModelError::Unsupported {
                what: format!("head_module type {other}"),
                path: module.path.clone(),
                hint: "YOLOv7Head is implemented with YOLOv7HeadModule and YOLOv7p6HeadModule"
                    .into(),
            }),
        }
    }
}

impl DenseHead for YoloV7Head {
    fn forward(&self, feats: &[Tensor]) -> Result<HeadOutputs, tch::TchError> {
        self.head.forward(feats)
    }
    fn in_channels(&self) -> Vec<i64> {
        self.head.in_channels()
    }
    fn num_classes(&self) -> i64 {
        self.head.num_classes
    }
    fn strides(&self) -> Vec<(f64, f64)> {
        DenseHead::strides(&self.head)
    }
    fn prior_offset(&self) -> f64 {
        self.head.prior_offset()
    }
    fn flavour(&self) -> Flavour {
        Flavour::Mmyolo
    }
    /// The auxiliary branch never runs, so only the main modules are frozen.
    fn fuse(&mut self, mode: Fuse) {
        self.head.fuse(mode)
    }
    /// The main branch as `YOLOv5HeadModule`'s (the auxiliary one never runs at inference).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        feats: &[ValueId],
    ) -> Result<OnnxHeadOutputs, ExportError> {
        self.head.emit_onnx(g, feats)
    }
    fn onnx_decoder(&self) -> OnnxDecoder {
        self.head.onnx_decoder()
    }
    /// `YOLOv5Head.predict_by_feat` (inherited by `YOLOv7Head`).
    fn predict_by_feat(
        &self,
        outputs: &HeadOutputs,
        metas: &[ImageMeta],
        cfg: &TestCfg,
    ) -> Result<Vec<RawDetections>, PostprocessError> {
        self.head.predict_by_feat(outputs, metas, cfg)
    }
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv7Head", DenseHead: |s, c| Ok(Box::new(YoloV7Head::build(s, c)?)));
crate::register_tch_component!(scope: "mmyolo", name: "YOLOv7HeadModule", BuiltByParent);
crate::register_tch_component!(scope: "mmyolo", name: "YOLOv7p6HeadModule", BuiltByParent);
