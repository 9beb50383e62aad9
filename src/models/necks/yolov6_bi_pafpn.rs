//! The forward of YOLOv6 3.0's necks (`mmyolo/models/necks/yolov6_pafpn.py:
//! YOLOv6RepBiPAFPN.forward`, also `YOLOv6CSPRepBiPAFPN`'s): like `BaseYOLONeck.forward`
//! (`necks/base.rs`), but with one extra, finer input (the backbone's `out_indices` (1, 2, 3,
//! 4)) and a top-down step that fuses three levels: `top_down(BiFusion(high, cur, low))`. The
//! layers are built by `yolov6_rep_pafpn.rs: build_rep_pafpn`; this runs them.

use tch::{TchError, Tensor};

use crate::export::onnx::graph::attr_i;
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::component::Neck;
use crate::models::layers::conv_module::Fuse;
use crate::models::layers::yolov6_bricks::BiFusion;
use crate::models::layers::Layer;

/// The layers of a YOLOv6 Bi neck, as built (lists indexed as upstream's).
#[derive(Debug)]
pub struct BiNeck {
    /// The upstream class, for error messages.
    pub name: &'static str,
    /// Channels each input must have: the extra finer level, then the neck's levels.
    pub in_channels: Vec<i64>,
    pub out_channels: Vec<i64>,
    /// One per level (not for the extra input); `None` = `nn.Identity`.
    pub reduce_layers: Vec<Option<Box<dyn Layer>>>,
    /// `upsample_layers[j]` and `top_down_layers[j]` work on level `n - 1 - j`.
    pub upsample_layers: Vec<BiFusion>,
    pub top_down_layers: Vec<Box<dyn Layer>>,
    pub downsample_layers: Vec<Box<dyn Layer>>,
    pub bottom_up_layers: Vec<Box<dyn Layer>>,
}

impl Neck for BiNeck {
    /// `YOLOv6RepBiPAFPN.forward` (out layers are `nn.Identity`).
    fn forward(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, TchError> {
        let n = self.reduce_layers.len();
        if inputs.len() != n + 1 {
            return Err(TchError::Shape(format!(
                "{}: {} input levels for {} in_channels (`assert len(inputs) == \
                 len(self.in_channels) + 1`)",
                self.name,
                inputs.len(),
                n + 1
            )));
        }
        // reduce_outs = [inputs[0]] + reduce_layers[idx](inputs[idx + 1]).
        let mut reduce_outs = vec![inputs[0].shallow_clone()];
        for (x, layer) in inputs[1..].iter().zip(&self.reduce_layers) {
            reduce_outs.push(match layer {
                Some(l) => l.forward(x)?,
                None => x.shallow_clone(),
            });
        }
        // top-down path: feat_cur = reduce_outs[idx], feat_low = reduce_outs[idx - 1] (the
        // extra input sits at 0, so level idx - 1 of the neck is reduce_outs[idx]).
        let mut inner_outs = vec![reduce_outs[n].shallow_clone()];
        for idx in (1..n).rev() {
            let j = n - 1 - idx;
            let fused = self.upsample_layers[j].forward(
                &inner_outs[0],
                &reduce_outs[idx],
                &reduce_outs[idx - 1],
            )?;
            inner_outs.insert(0, self.top_down_layers[j].forward(&fused)?);
        }
        // bottom-up path, as BaseYOLONeck's.
        let mut outs = vec![inner_outs[0].shallow_clone()];
        for idx in 0..n - 1 {
            let down = self.downsample_layers[idx].forward(&outs[idx])?;
            let cat = Tensor::f_cat(&[&down, &inner_outs[idx + 1]], 1)?;
            outs.push(self.bottom_up_layers[idx].forward(&cat)?);
        }
        Ok(outs)
    }
    /// [`BiNeck::forward`] as ONNX nodes (the caller checked the level count when it ran).
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>, ExportError> {
        let n = self.reduce_layers.len();
        let mut reduce_outs = vec![inputs[0]];
        for (&x, layer) in inputs[1..].iter().zip(&self.reduce_layers) {
            reduce_outs.push(match layer {
                Some(l) => l.emit_onnx(g, x)?,
                None => x,
            });
        }
        let mut inner_outs = vec![reduce_outs[n]];
        for idx in (1..n).rev() {
            let j = n - 1 - idx;
            let fused = self.upsample_layers[j]
                .emit_onnx(g, (inner_outs[0], reduce_outs[idx], reduce_outs[idx - 1]))?;
            inner_outs.insert(0, self.top_down_layers[j].emit_onnx(g, fused)?);
        }
        let mut outs = vec![inner_outs[0]];
        for idx in 0..n - 1 {
            let down = self.downsample_layers[idx].emit_onnx(g, outs[idx])?;
            let cat = g.op(
                "Concat",
                &[down, inner_outs[idx + 1]],
                vec![attr_i("axis", 1)],
            );
            outs.push(self.bottom_up_layers[idx].emit_onnx(g, cat)?);
        }
        Ok(outs)
    }
    fn in_channels(&self) -> Vec<i64> {
        self.in_channels.clone()
    }
    fn out_channels(&self) -> Vec<i64> {
        self.out_channels.clone()
    }
    fn fuse(&mut self, mode: Fuse) {
        for l in self.reduce_layers.iter_mut().flatten() {
            l.fuse(mode);
        }
        self.upsample_layers.iter_mut().for_each(|l| l.fuse(mode));
        let lists = self
            .top_down_layers
            .iter_mut()
            .chain(self.downsample_layers.iter_mut())
            .chain(self.bottom_up_layers.iter_mut());
        for l in lists {
            l.fuse(mode);
        }
    }
}
