//! Building blocks shared by backbones, necks and heads (mmcv/mmdet/mmyolo bricks).

pub mod conv_module;
pub mod csp_layer;
pub mod group_norm;
pub mod ppyoloe_bricks;
pub mod rep_vgg;
pub mod spp;
pub mod yolo_bricks;
pub mod yolov6_bricks;
pub mod yolov7_bricks;

use std::fmt;

use tch::{TchError, Tensor};

use crate::export::onnx::{ExportError, OnnxGraph, ValueId};

use conv_module::{AnyConv, Conv2d, ConvModule, Fuse};
use csp_layer::CspLayer;
use rep_vgg::{ConvTranspose2d, RepStageBlock, RepVggBlock};
use spp::SppBottleneck;
use yolo_bricks::CspLayerWithTwoConv;

/// One member of an `nn.Sequential`: one tensor in, one out (what the generic backbone and neck
/// runners, `backbone/base.rs` and `necks/base.rs`, are built from).
pub trait Layer: fmt::Debug + Send {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError>;
    fn fuse(&mut self, mode: Fuse);
    /// The layer's ONNX nodes, next to its `forward` (`crate::export::onnx`). The default refuses,
    /// naming the Rust type (the export names the upstream component around it).
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let _ = (g, x);
        Err(ExportError::unsupported(
            std::any::type_name::<Self>()
                .rsplit("::")
                .next()
                .unwrap_or("layer"),
            "layer",
        ))
    }
}

macro_rules! layer_from_inherent {
    ($($t:ty),* $(,)?) => {$(
        impl Layer for $t {
            fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
                <$t>::forward(self, x)
            }
            fn fuse(&mut self, mode: Fuse) {
                <$t>::fuse(self, mode)
            }
            fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
                <$t>::emit_onnx(self, g, x)
            }
        }
    )*};
}

layer_from_inherent!(
    Conv2d,
    ConvModule,
    AnyConv,
    CspLayer,
    SppBottleneck,
    CspLayerWithTwoConv,
    RepVggBlock,
    RepStageBlock,
);

impl Layer for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        ConvTranspose2d::forward(self, x)
    }
    fn fuse(&mut self, mode: Fuse) {
        ConvTranspose2d::fuse(self, mode.kind)
    }
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        ConvTranspose2d::emit_onnx(self, g, x)
    }
}

/// `nn.Sequential` of layers (e.g. a top-down `CSPLayer` followed by a 1×1 `ConvModule`).
#[derive(Debug)]
pub struct Sequential(pub Vec<Box<dyn Layer>>);

impl Layer for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        self.0
            .iter()
            .try_fold(x.shallow_clone(), |x, l| l.forward(&x))
    }
    fn fuse(&mut self, mode: Fuse) {
        self.0.iter_mut().for_each(|l| l.fuse(mode));
    }
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        self.0.iter().try_fold(x, |x, l| l.emit_onnx(g, x))
    }
}

/// `layers` as trait objects, in order (for the generic runners).
pub fn boxed<L: Layer + 'static>(layers: Vec<L>) -> Vec<Box<dyn Layer>> {
    layers
        .into_iter()
        .map(|l| Box::new(l) as Box<dyn Layer>)
        .collect()
}
