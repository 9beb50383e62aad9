//! Necks: the two `CSPNeXtPAFPN`s (same idea, different module trees and state-dict names).

pub mod base;
pub mod cspnext_pafpn_mmdet;
pub mod cspnext_pafpn_mmyolo;
pub mod fpn;
pub mod ppyoloe_csppan;
pub mod yolov5_pafpn;
pub mod yolov6_bi_pafpn;
pub mod yolov6_csp_rep_pafpn;
pub mod yolov6_rep_pafpn;
pub mod yolov7_pafpn;
pub mod yolov8_pafpn;
pub mod yolox_pafpn;

use tch::Tensor;

use crate::export::onnx::graph::{attr_i, attr_s};
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::layers::conv_module::{AnyConv, ConvSpec, Fuse};
use crate::models::layers::csp_layer::{CspArgs, CspLayer};
use crate::models::param::Ctx;
use crate::models::ModelError;

pub use crate::models::cfg::UpsampleCfg;

/// A validated nearest-neighbour upsampling by `scale` (`nn.Upsample`; no weights).
#[derive(Debug, Clone, Copy)]
pub struct Upsample {
    pub scale: f64,
}

impl Upsample {
    pub fn from_cfg(cfg: &UpsampleCfg, path: &str) -> Result<Self, ModelError> {
        match (cfg.mode.as_str(), cfg.scale_factor, &cfg.size) {
            ("nearest", Some(s), None) if s > 0.0 => Ok(Upsample { scale: s }),
            _ => Err(ModelError::Unsupported {
                what: format!("upsample_cfg {cfg:?}"),
                path: path.to_string(),
                hint: "only mode='nearest' with a scale_factor is implemented".into(),
            }),
        }
    }

    /// `F.interpolate(x, scale_factor=s, mode='nearest')`: output `floor(H*s)`, source index
    /// `floor(dst * (1/s))` (the scale is passed through, as PyTorch does without
    /// `recompute_scale_factor`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let size = x.size();
        let (h, w) = (size[2], size[3]);
        let oh = (h as f64 * self.scale).floor() as i64;
        let ow = (w as f64 * self.scale).floor() as i64;
        x.f_upsample_nearest2d([oh, ow], Some(self.scale), Some(self.scale))
    }

    /// ONNX `Resize` (nearest, `asymmetric` + `floor`: source index `floor(dst / scale)`, as
    /// PyTorch's `nearest` computes it; the output size is `floor(H * scale)` in both).
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let s = self.scale as f32;
        let scales = g.const_f32("upsample_scales", vec![4], &[1.0, 1.0, s, s]);
        Ok(g.op_multi(
            "Resize",
            vec![Some(x), None, Some(scales)],
            1,
            vec![
                attr_s("coordinate_transformation_mode", "asymmetric"),
                attr_s("mode", "nearest"),
                attr_s("nearest_mode", "floor"),
            ],
        )[0])
    }
}

/// The bottom-up half that both PAFPNs share, module for module: for each level after the first,
/// a 3×3 stride-2 conv of the previous output, concatenated with the next top-down feature,
/// through a `CSPLayer`; then a 3×3 out conv per level. Only the attribute names differ: mmdet's
/// `downsamples`/`bottom_up_blocks`/`out_convs`, mmyolo's `downsample_layers`/`bottom_up_layers`/
/// `out_layers`.
#[derive(Debug)]
pub struct BottomUpPath {
    pub downsamples: Vec<AnyConv>,
    pub blocks: Vec<CspLayer>,
    pub out_convs: Vec<AnyConv>,
}

/// Attribute names of [`BottomUpPath`]'s three `ModuleList`s in one flavour.
pub struct BottomUpNames {
    pub downsamples: &'static str,
    pub blocks: &'static str,
    pub out_convs: &'static str,
}

impl BottomUpPath {
    /// Built list by list, so that parameter names are registered in state-dict order (Python
    /// creates the three `ModuleList`s one after the other). `conv` gives the norm, activation
    /// and `use_depthwise` of the downsample and out convs (in mmyolo the CSPLayers that `csp`
    /// builds do not get `use_depthwise`, the convs do).
    pub fn new(
        ctx: &Ctx,
        names: BottomUpNames,
        in_channels: &[i64],
        out_channels: i64,
        csp: impl Fn(&Ctx, i64, i64) -> CspLayer,
        conv: &CspArgs,
    ) -> Self {
        let (norm, act, depthwise) = (conv.norm, conv.act, conv.use_depthwise);
        let n = in_channels.len();
        let dctx = ctx.sub(names.downsamples);
        let downsamples = in_channels[..n - 1]
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                AnyConv::new(
                    &dctx.sub(i),
                    ConvSpec::new(c, c, 3).stride(2).padding(1),
                    norm,
                    act,
                    depthwise,
                )
            })
            .collect();
        let bctx = ctx.sub(names.blocks);
        let blocks = (0..n - 1)
            .map(|i| csp(&bctx.sub(i), in_channels[i] * 2, in_channels[i + 1]))
            .collect();
        let octx = ctx.sub(names.out_convs);
        let out_convs = in_channels
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                AnyConv::new(
                    &octx.sub(i),
                    ConvSpec::new(c, out_channels, 3).padding(1),
                    norm,
                    act,
                    depthwise,
                )
            })
            .collect();
        BottomUpPath {
            downsamples,
            blocks,
            out_convs,
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.downsamples.iter_mut().for_each(|m| m.fuse(mode));
        self.blocks.iter_mut().for_each(|m| m.fuse(mode));
        self.out_convs.iter_mut().for_each(|m| m.fuse(mode));
    }

    /// From the top-down outputs (finest first) to the neck's outputs.
    pub fn forward(&self, inner_outs: &[Tensor]) -> Result<Vec<Tensor>, tch::TchError> {
        let mut outs = vec![inner_outs[0].shallow_clone()];
        for (idx, (down, block)) in self.downsamples.iter().zip(&self.blocks).enumerate() {
            let d = down.forward(&outs[idx])?;
            let cat = Tensor::f_cat(&[&d, &inner_outs[idx + 1]], 1)?;
            outs.push(block.forward(&cat)?);
        }
        outs.iter()
            .zip(&self.out_convs)
            .map(|(x, c)| c.forward(x))
            .collect()
    }

    pub fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        inner_outs: &[ValueId],
    ) -> Result<Vec<ValueId>, ExportError> {
        let mut outs = vec![inner_outs[0]];
        for (idx, (down, block)) in self.downsamples.iter().zip(&self.blocks).enumerate() {
            let d = down.emit_onnx(g, outs[idx])?;
            let cat = g.op("Concat", &[d, inner_outs[idx + 1]], vec![attr_i("axis", 1)]);
            outs.push(block.emit_onnx(g, cat)?);
        }
        outs.iter()
            .zip(&self.out_convs)
            .map(|(&x, c)| c.emit_onnx(g, x))
            .collect()
    }
}

impl crate::models::layers::Layer for Upsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        Upsample::forward(self, x)
    }
    fn fuse(&mut self, _mode: Fuse) {}
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        Upsample::emit_onnx(self, g, x)
    }
}
