//! mmdet's `CSPNeXtPAFPN` (`mmdet/models/necks/cspnext_pafpn.py`). Module tree: `reduce_layers.{j}`
//! (1×1 `ConvModule`s, top-down order), `top_down_blocks.{j}`, `downsamples.{i}`,
//! `bottom_up_blocks.{i}`, `out_convs.{i}`. No widen/deepen factors: the config gives the final
//! channel counts and `num_csp_blocks`.

use tch::Tensor;

use crate::models::layers::conv_module::Fuse;

use super::{BottomUpNames, BottomUpPath, Upsample};
use crate::export::onnx::graph::attr_i;
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::cfg::check_conv_cfg;
use crate::models::component::Neck;
use crate::models::layers::conv_module::{ConvModule, ConvSpec};
use crate::models::layers::csp_layer::{CspArgs, CspLayer, CspLayerSpec};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::cspnext_pafpn_mmdet::MmdetPafpnCfg;

#[derive(Debug)]
pub struct MmdetPafpn {
    pub in_channels: Vec<i64>,
    pub upsample: Upsample,
    pub reduce_layers: Vec<ConvModule>,
    pub top_down_blocks: Vec<CspLayer>,
    /// `downsamples`, `bottom_up_blocks`, `out_convs`.
    pub bottom_up: BottomUpPath,
    pub out_channels: i64,
}

impl MmdetPafpn {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &MmdetPafpnCfg = spec.args()?;
        let path = spec.path.as_str();
        check_conv_cfg(&cfg.conv_cfg, path)?;
        cfg.norm_cfg.validate(&format!("{path}.norm_cfg"))?;
        let act = Some(cfg.act_cfg.to_act(&format!("{path}.act_cfg"))?);
        let norm = Some(&cfg.norm_cfg);
        let upsample = Upsample::from_cfg(&cfg.upsample_cfg, &format!("{path}.upsample_cfg"))?;
        let inc = cfg.in_channels.clone();
        let n = inc.len();
        if n < 2 {
            return Err(ModelError::Invalid {
                path: format!("{path}.in_channels"),
                message: "needs at least 2 levels".into(),
            });
        }
        let dw = cfg.use_depthwise;
        let args = CspArgs {
            norm,
            act,
            use_depthwise: dw,
        };
        let csp = |c: &Ctx, cin: i64, cout: i64| {
            CspLayer::new(
                c,
                CspLayerSpec {
                    cin,
                    cout,
                    expand_ratio: cfg.expand_ratio,
                    num_blocks: cfg.num_csp_blocks,
                    add_identity: false,
                    channel_attention: false,
                },
                &args,
            )
        };
        let (rctx, tctx) = (ctx.sub("reduce_layers"), ctx.sub("top_down_blocks"));
        let mut reduce_layers = Vec::new();
        let mut top_down_blocks = Vec::new();
        // Built list by list so that names are registered in state-dict order (each ModuleList
        // is an attribute created before the loop that fills both).
        for (j, idx) in (1..n).rev().enumerate() {
            reduce_layers.push(ConvModule::new(
                &rctx.sub(j),
                ConvSpec::new(inc[idx], inc[idx - 1], 1),
                norm,
                act,
            ));
        }
        for (j, idx) in (1..n).rev().enumerate() {
            top_down_blocks.push(csp(&tctx.sub(j), inc[idx - 1] * 2, inc[idx - 1]));
        }
        let bottom_up = BottomUpPath::new(
            ctx,
            BottomUpNames {
                downsamples: "downsamples",
                blocks: "bottom_up_blocks",
                out_convs: "out_convs",
            },
            &inc,
            cfg.out_channels,
            csp,
            &args,
        );
        Ok(MmdetPafpn {
            in_channels: inc,
            upsample,
            reduce_layers,
            top_down_blocks,
            bottom_up,
            out_channels: cfg.out_channels,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.reduce_layers.iter_mut().for_each(|m| m.fuse(mode));
        self.top_down_blocks.iter_mut().for_each(|m| m.fuse(mode));
        self.bottom_up.fuse(mode);
    }

    /// `CSPNeXtPAFPN.forward`: the reduced high-level feature replaces `inner_outs[0]` before
    /// upsampling, so the bottom-up path sees reduced features.
    pub fn forward(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, tch::TchError> {
        let n = self.in_channels.len();
        let mut inner_outs = vec![inputs[n - 1].shallow_clone()];
        for idx in (1..n).rev() {
            let j = n - 1 - idx;
            let high = self.reduce_layers[j].forward(&inner_outs[0])?;
            let up = self.upsample.forward(&high)?;
            inner_outs[0] = high;
            let cat = Tensor::f_cat(&[&up, &inputs[idx - 1]], 1)?;
            inner_outs.insert(0, self.top_down_blocks[j].forward(&cat)?);
        }
        self.bottom_up.forward(&inner_outs)
    }
}

impl Neck for MmdetPafpn {
    fn forward(&self, feats: &[Tensor]) -> Result<Vec<Tensor>, tch::TchError> {
        MmdetPafpn::forward(self, feats)
    }
    fn in_channels(&self) -> Vec<i64> {
        self.in_channels.clone()
    }
    fn out_channels(&self) -> Vec<i64> {
        vec![self.out_channels; self.in_channels.len()]
    }
    fn fuse(&mut self, mode: Fuse) {
        MmdetPafpn::fuse(self, mode)
    }
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>, ExportError> {
        let n = self.in_channels.len();
        let mut inner_outs = vec![inputs[n - 1]];
        for idx in (1..n).rev() {
            let j = n - 1 - idx;
            let high = self.reduce_layers[j].emit_onnx(g, inner_outs[0])?;
            let up = self.upsample.emit_onnx(g, high)?;
            inner_outs[0] = high;
            let cat = g.op("Concat", &[up, inputs[idx - 1]], vec![attr_i("axis", 1)]);
            inner_outs.insert(0, self.top_down_blocks[j].emit_onnx(g, cat)?);
        }
        self.bottom_up.emit_onnx(g, &inner_outs)
    }
}

crate::register_tch_component!(scope: "mmdet", name: "CSPNeXtPAFPN", Neck: |s, c| Ok(Box::new(MmdetPafpn::build(s, c)?)));
