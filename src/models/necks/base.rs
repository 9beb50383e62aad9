//! mmyolo's `BaseYOLONeck.forward` (`mmyolo/models/necks/base_yolo_neck.py`), which every YOLO
//! PAFPN shares: reduce each level, a top-down path (upsample the coarser result, concatenate
//! `[upsampled, lower]`, a top-down layer), a bottom-up path (downsample, concatenate
//! `[downsampled, inner]`, a bottom-up layer), then the out layers. A family builds the layers in
//! the module tree's order; this runs them. `nn.Identity` layers are `None`.

use tch::{TchError, Tensor};

use crate::export::onnx::graph::attr_i;
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::component::Neck;
use crate::models::layers::conv_module::Fuse;
use crate::models::layers::Layer;

/// The layers of a `BaseYOLONeck` subclass, as built (lists indexed as upstream's).
#[derive(Debug)]
pub struct YoloNeck {
    /// The upstream class, for error messages.
    pub name: &'static str,
    /// Channels each input level must have.
    pub in_channels: Vec<i64>,
    /// Channels of each output level.
    pub out_channels: Vec<i64>,
    pub reduce_layers: Vec<Option<Box<dyn Layer>>>,
    /// `upsample_layers[j]` and `top_down_layers[j]` work on level `n - 1 - j` (coarsest first).
    pub upsample_layers: Vec<Box<dyn Layer>>,
    pub top_down_layers: Vec<Box<dyn Layer>>,
    pub downsample_layers: Vec<Box<dyn Layer>>,
    pub bottom_up_layers: Vec<Box<dyn Layer>>,
    pub out_layers: Vec<Option<Box<dyn Layer>>>,
}

fn apply(layer: &Option<Box<dyn Layer>>, x: &Tensor) -> Result<Tensor, TchError> {
    match layer {
        Some(l) => l.forward(x),
        None => Ok(x.shallow_clone()),
    }
}

impl Neck for YoloNeck {
    /// `BaseYOLONeck.forward` with `upsample_feats_cat_first=True`.
    fn forward(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, TchError> {
        self.forward_with(inputs, true)
    }
    fn in_channels(&self) -> Vec<i64> {
        self.in_channels.clone()
    }
    fn out_channels(&self) -> Vec<i64> {
        self.out_channels.clone()
    }
    fn fuse(&mut self, mode: Fuse) {
        self.fuse_layers(mode)
    }
    fn emit_onnx(&self, g: &mut OnnxGraph, feats: &[ValueId]) -> Result<Vec<ValueId>, ExportError> {
        self.emit_onnx_with(g, feats, true)
    }
}

impl YoloNeck {
    /// `BaseYOLONeck.forward`: the top-down path concatenates `[upsampled, lower]` when
    /// `upsample_feats_cat_first`, `[lower, upsampled]` otherwise (YOLOv7).
    pub fn forward_with(
        &self,
        inputs: &[Tensor],
        upsample_feats_cat_first: bool,
    ) -> Result<Vec<Tensor>, TchError> {
        let n = self.in_channels.len();
        if inputs.len() != n {
            return Err(TchError::Shape(format!(
                "{}: {} input levels for {n} in_channels",
                self.name,
                inputs.len()
            )));
        }
        let reduce_outs = inputs
            .iter()
            .zip(&self.reduce_layers)
            .map(|(x, layer)| apply(layer, x))
            .collect::<Result<Vec<_>, _>>()?;
        // top-down path
        let mut inner_outs = vec![reduce_outs[n - 1].shallow_clone()];
        for idx in (1..n).rev() {
            let j = n - 1 - idx;
            let up = self.upsample_layers[j].forward(&inner_outs[0])?;
            let cat = if upsample_feats_cat_first {
                Tensor::f_cat(&[&up, &reduce_outs[idx - 1]], 1)?
            } else {
                Tensor::f_cat(&[&reduce_outs[idx - 1], &up], 1)?
            };
            inner_outs.insert(0, self.top_down_layers[j].forward(&cat)?);
        }
        // bottom-up path
        let mut outs = vec![inner_outs[0].shallow_clone()];
        for idx in 0..n - 1 {
            let down = self.downsample_layers[idx].forward(&outs[idx])?;
            let cat = Tensor::f_cat(&[&down, &inner_outs[idx + 1]], 1)?;
            outs.push(self.bottom_up_layers[idx].forward(&cat)?);
        }
        outs.iter()
            .zip(&self.out_layers)
            .map(|(x, layer)| apply(layer, x))
            .collect()
    }

    /// [`YoloNeck::forward_with`] as ONNX nodes.
    pub fn emit_onnx_with(
        &self,
        g: &mut OnnxGraph,
        inputs: &[ValueId],
        upsample_feats_cat_first: bool,
    ) -> Result<Vec<ValueId>, ExportError> {
        let n = self.in_channels.len();
        let apply = |g: &mut OnnxGraph, l: &Option<Box<dyn Layer>>, x: ValueId| match l {
            Some(l) => l.emit_onnx(g, x),
            None => Ok(x),
        };
        let mut reduce_outs = Vec::with_capacity(n);
        for (&x, l) in inputs.iter().zip(&self.reduce_layers) {
            reduce_outs.push(apply(g, l, x)?);
        }
        let cat1 = vec![attr_i("axis", 1)];
        let mut inner_outs = vec![reduce_outs[n - 1]];
        for idx in (1..n).rev() {
            let j = n - 1 - idx;
            let up = self.upsample_layers[j].emit_onnx(g, inner_outs[0])?;
            let parts = if upsample_feats_cat_first {
                [up, reduce_outs[idx - 1]]
            } else {
                [reduce_outs[idx - 1], up]
            };
            let cat = g.op("Concat", &parts, cat1.clone());
            inner_outs.insert(0, self.top_down_layers[j].emit_onnx(g, cat)?);
        }
        let mut outs = vec![inner_outs[0]];
        for idx in 0..n - 1 {
            let down = self.downsample_layers[idx].emit_onnx(g, outs[idx])?;
            let cat = g.op("Concat", &[down, inner_outs[idx + 1]], cat1.clone());
            outs.push(self.bottom_up_layers[idx].emit_onnx(g, cat)?);
        }
        outs.iter()
            .zip(&self.out_layers)
            .map(|(&x, l)| apply(g, l, x))
            .collect()
    }

    /// Freezes every layer (`Neck::fuse`).
    pub fn fuse_layers(&mut self, mode: Fuse) {
        let optional = self
            .reduce_layers
            .iter_mut()
            .chain(self.out_layers.iter_mut())
            .flatten();
        let lists = self
            .upsample_layers
            .iter_mut()
            .chain(self.top_down_layers.iter_mut())
            .chain(self.downsample_layers.iter_mut())
            .chain(self.bottom_up_layers.iter_mut());
        for l in optional.chain(lists) {
            l.fuse(mode);
        }
    }
}

/// `n` `nn.Identity` layers (the reduce or out layers of most YOLO necks).
pub fn identities(n: usize) -> Vec<Option<Box<dyn Layer>>> {
    std::iter::repeat_with(|| None).take(n).collect()
}

/// `n` `nn.Upsample(scale_factor=2, mode='nearest')` layers (`upsample_cfg` default).
pub fn nearest_x2(n: usize) -> Vec<Box<dyn Layer>> {
    std::iter::repeat_with(|| Box::new(super::Upsample { scale: 2.0 }) as Box<dyn Layer>)
        .take(n)
        .collect()
}
