//! mmyolo's `CSPNeXtPAFPN` (`mmyolo/models/necks/cspnext_pafpn.py` on
//! `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`). Module tree: `reduce_layers.{i}` (only
//! the last is a conv, the others `nn.Identity`), `upsample_layers` (no weights),
//! `top_down_layers.{j}` (a `CSPLayer`, or for all but the last a Sequential `CSPLayer` + 1×1 conv:
//! `top_down_layers.0.0`, `top_down_layers.0.1`), `downsample_layers`, `bottom_up_layers`,
//! `out_layers`. Channels: `int(c * widen_factor)`, blocks `round(num_csp_blocks * deepen_factor)`.

use tch::Tensor;

use crate::models::layers::conv_module::Fuse;

use super::{BottomUpNames, BottomUpPath, Upsample};
use crate::export::onnx::graph::attr_i;
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::cfg::{check_conv_cfg, py_int, py_round};
use crate::models::component::Neck;
use crate::models::layers::conv_module::{AnyConv, ConvSpec};
use crate::models::layers::csp_layer::{CspArgs, CspLayer, CspLayerSpec};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::cspnext_pafpn_mmyolo::MmyoloPafpnCfg;

/// `top_down_layers[j]`: a bare `CSPLayer` (the last one) or `Sequential(CSPLayer, conv)`.
#[derive(Debug)]
pub struct TopDown {
    pub csp: CspLayer,
    pub conv: Option<AnyConv>,
}

#[derive(Debug)]
pub struct MmyoloPafpn {
    pub in_channels: Vec<i64>,
    /// `reduce_layers[i]`: `None` for `nn.Identity`.
    pub reduce_layers: Vec<Option<AnyConv>>,
    pub upsample: Upsample,
    pub top_down_layers: Vec<TopDown>,
    /// `downsample_layers`, `bottom_up_layers`, `out_layers`.
    pub bottom_up: BottomUpPath,
    pub out_channels: i64,
}

impl MmyoloPafpn {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &MmyoloPafpnCfg = spec.args()?;
        let path = spec.path.as_str();
        check_conv_cfg(&cfg.conv_cfg, path)?;
        cfg.norm_cfg.validate(&format!("{path}.norm_cfg"))?;
        let act = Some(cfg.act_cfg.to_act(&format!("{path}.act_cfg"))?);
        let norm = Some(&cfg.norm_cfg);
        let upsample = Upsample::from_cfg(&cfg.upsample_cfg, &format!("{path}.upsample_cfg"))?;
        let inc: Vec<i64> = cfg
            .in_channels
            .iter()
            .map(|&c| py_int(c * cfg.widen_factor))
            .collect();
        let out = py_int(cfg.out_channels * cfg.widen_factor);
        let n = inc.len();
        if n < 2 {
            return Err(ModelError::Invalid {
                path: format!("{path}.in_channels"),
                message: "needs at least 2 levels".into(),
            });
        }
        let blocks = py_round(cfg.num_csp_blocks as f64 * cfg.deepen_factor);
        let dw = cfg.use_depthwise;
        // mmyolo's CSPLayers in this neck do not receive `use_depthwise` (only `self.conv` does).
        let csp_args = CspArgs {
            norm,
            act,
            use_depthwise: false,
        };
        let csp = |c: &Ctx, cin: i64, cout: i64| {
            CspLayer::new(
                c,
                CspLayerSpec {
                    cin,
                    cout,
                    expand_ratio: cfg.expand_ratio,
                    num_blocks: blocks,
                    add_identity: false,
                    channel_attention: false,
                },
                &csp_args,
            )
        };

        let rctx = ctx.sub("reduce_layers");
        let reduce_layers = (0..n)
            .map(|i| {
                (i == n - 1).then(|| {
                    AnyConv::new(
                        &rctx.sub(i),
                        ConvSpec::new(inc[i], inc[i - 1], 1),
                        norm,
                        act,
                        dw,
                    )
                })
            })
            .collect();
        let tctx = ctx.sub("top_down_layers");
        let mut top_down_layers = Vec::new();
        for (j, idx) in (1..n).rev().enumerate() {
            let t = tctx.sub(j);
            if idx == 1 {
                top_down_layers.push(TopDown {
                    csp: csp(&t, inc[0] * 2, inc[0]),
                    conv: None,
                });
            } else {
                let c = csp(&t.sub(0), inc[idx - 1] * 2, inc[idx - 1]);
                let conv = AnyConv::new(
                    &t.sub(1),
                    ConvSpec::new(inc[idx - 1], inc[idx - 2], 1),
                    norm,
                    act,
                    dw,
                );
                top_down_layers.push(TopDown {
                    csp: c,
                    conv: Some(conv),
                });
            }
        }
        let bottom_up = BottomUpPath::new(
            ctx,
            BottomUpNames {
                downsamples: "downsample_layers",
                blocks: "bottom_up_layers",
                out_convs: "out_layers",
            },
            &inc,
            out,
            csp,
            &CspArgs {
                norm,
                act,
                use_depthwise: dw,
            },
        );
        Ok(MmyoloPafpn {
            in_channels: inc,
            reduce_layers,
            upsample,
            top_down_layers,
            bottom_up,
            out_channels: out,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        for r in self.reduce_layers.iter_mut().flatten() {
            r.fuse(mode);
        }
        for t in &mut self.top_down_layers {
            t.csp.fuse(mode);
            if let Some(c) = &mut t.conv {
                c.fuse(mode);
            }
        }
        self.bottom_up.fuse(mode);
    }

    /// `BaseYOLONeck.forward` with `upsample_feats_cat_first=True`.
    pub fn forward(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, tch::TchError> {
        let n = self.in_channels.len();
        let mut reduce_outs = Vec::with_capacity(n);
        for (x, r) in inputs.iter().zip(&self.reduce_layers) {
            reduce_outs.push(match r {
                Some(conv) => conv.forward(x)?,
                None => x.shallow_clone(),
            });
        }
        let mut inner_outs = vec![reduce_outs[n - 1].shallow_clone()];
        for idx in (1..n).rev() {
            let up = self.upsample.forward(&inner_outs[0])?;
            let cat = Tensor::f_cat(&[&up, &reduce_outs[idx - 1]], 1)?;
            let td = &self.top_down_layers[n - 1 - idx];
            let mut y = td.csp.forward(&cat)?;
            if let Some(c) = &td.conv {
                y = c.forward(&y)?;
            }
            inner_outs.insert(0, y);
        }
        self.bottom_up.forward(&inner_outs)
    }
}

impl Neck for MmyoloPafpn {
    fn forward(&self, feats: &[Tensor]) -> Result<Vec<Tensor>, tch::TchError> {
        MmyoloPafpn::forward(self, feats)
    }
    fn in_channels(&self) -> Vec<i64> {
        self.in_channels.clone()
    }
    fn out_channels(&self) -> Vec<i64> {
        vec![self.out_channels; self.in_channels.len()]
    }
    fn fuse(&mut self, mode: Fuse) {
        MmyoloPafpn::fuse(self, mode)
    }
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>, ExportError> {
        let n = self.in_channels.len();
        let mut reduce_outs = Vec::with_capacity(n);
        for (&x, r) in inputs.iter().zip(&self.reduce_layers) {
            reduce_outs.push(match r {
                Some(conv) => conv.emit_onnx(g, x)?,
                None => x,
            });
        }
        let mut inner_outs = vec![reduce_outs[n - 1]];
        for idx in (1..n).rev() {
            let up = self.upsample.emit_onnx(g, inner_outs[0])?;
            let cat = g.op(
                "Concat",
                &[up, reduce_outs[idx - 1]],
                vec![attr_i("axis", 1)],
            );
            let td = &self.top_down_layers[n - 1 - idx];
            let mut y = td.csp.emit_onnx(g, cat)?;
            if let Some(c) = &td.conv {
                y = c.emit_onnx(g, y)?;
            }
            inner_outs.insert(0, y);
        }
        self.bottom_up.emit_onnx(g, &inner_outs)
    }
}

crate::register_tch_component!(scope: "mmyolo", name: "CSPNeXtPAFPN", Neck: |s, c| Ok(Box::new(MmyoloPafpn::build(s, c)?)));
