//! mmyolo's YOLO bricks (`mmyolo/models/layers/yolo_bricks.py`): its `DarknetBottleneck` (mmdet's
//! with a kernel size and padding per conv) and `CSPLayerWithTwoConv` (YOLOv8's C2f), plus the
//! channel and depth rules of `mmyolo/models/utils/misc.py` that YOLOv5/v8/YOLOX modules apply.
//! `SPPFBottleneck` lives in `spp.rs`.
//!
//! Never: parse config dicts (the component files pass plain numbers).

use tch::Tensor;

use crate::export::onnx::graph::{attr_i, OnnxGraph, ValueId};
use crate::export::onnx::ExportError;
use crate::models::cfg::{py_int, py_round, Act, NormCfg};
use crate::models::layers::conv_module::{AnyConv, ConvModule, ConvSpec, Fuse};
use crate::models::param::Ctx;

/// `make_divisible(x, widen_factor, divisor=8)`: `math.ceil(x * widen_factor / divisor) * divisor`
/// (`mmyolo/models/utils/misc.py`), in float64 as Python computes it.
pub fn make_divisible(x: f64, widen_factor: f64) -> i64 {
    const DIVISOR: f64 = 8.0;
    (x * widen_factor / DIVISOR).ceil() as i64 * DIVISOR as i64
}

/// `make_round(x, deepen_factor)`: `max(round(x * deepen_factor), 1) if x > 1 else x`
/// (`mmyolo/models/utils/misc.py`; `round` is Python's, ties to even).
pub fn make_round(x: f64, deepen_factor: f64) -> i64 {
    if x > 1.0 {
        py_round(x * deepen_factor).max(1)
    } else {
        py_int(x)
    }
}

/// Geometry of one [`DarknetBottleneck`].
#[derive(Debug, Clone, Copy)]
pub struct BottleneckSpec {
    pub cin: i64,
    pub cout: i64,
    pub expansion: f64,
    /// `kernel_size` of conv1 and conv2 (mmdet's bottleneck: `(1, 3)`).
    pub kernels: (i64, i64),
    /// `padding` of conv1 and conv2 (mmdet's bottleneck: `(0, 1)`).
    pub paddings: (i64, i64),
    pub add_identity: bool,
    /// conv2 is a `DepthwiseSeparableConvModule` (conv1 never is).
    pub use_depthwise: bool,
}

/// `DarknetBottleneck` (`mmyolo/models/layers/yolo_bricks.py`, forward of
/// `mmdet/models/layers/csp_layer.py: DarknetBottleneck.forward`): `conv1` → `conv2`, plus the
/// input when `add_identity and in_channels == out_channels`.
#[derive(Debug)]
pub struct DarknetBottleneck {
    pub conv1: ConvModule,
    pub conv2: AnyConv,
    pub add_identity: bool,
}

impl DarknetBottleneck {
    pub fn new(ctx: &Ctx, s: BottleneckSpec, norm: Option<&NormCfg>, act: Option<Act>) -> Self {
        let hidden = py_int(s.cout as f64 * s.expansion);
        DarknetBottleneck {
            conv1: ConvModule::new(
                &ctx.sub("conv1"),
                ConvSpec::new(s.cin, hidden, s.kernels.0).padding(s.paddings.0),
                norm,
                act,
            ),
            conv2: AnyConv::new(
                &ctx.sub("conv2"),
                ConvSpec::new(hidden, s.cout, s.kernels.1).padding(s.paddings.1),
                norm,
                act,
                s.use_depthwise,
            ),
            add_identity: s.add_identity && s.cin == s.cout,
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.conv1.fuse(mode);
        self.conv2.fuse(mode);
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let out = self.conv2.forward(&self.conv1.forward(x)?)?;
        if self.add_identity {
            out.f_add(x)
        } else {
            Ok(out)
        }
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let y = self.conv1.emit_onnx(g, x)?;
        let out = self.conv2.emit_onnx(g, y)?;
        Ok(if self.add_identity {
            g.op("Add", &[out, x], vec![])
        } else {
            out
        })
    }
}

/// `CSPLayerWithTwoConv(cin, cout, expand_ratio=0.5, num_blocks, add_identity)`
/// (`mmyolo/models/layers/yolo_bricks.py: CSPLayerWithTwoConv`): `main_conv` 1×1 to `2·mid`,
/// split in two, each bottleneck (3×3, 3×3, expansion 1) on the previous chunk, `final_conv` 1×1
/// on all chunks. State-dict order: `main_conv`, `final_conv`, `blocks` (registration order).
#[derive(Debug)]
pub struct CspLayerWithTwoConv {
    pub mid_channels: i64,
    pub main_conv: ConvModule,
    pub final_conv: ConvModule,
    pub blocks: Vec<DarknetBottleneck>,
}

/// Shape of one [`CspLayerWithTwoConv`].
#[derive(Debug, Clone, Copy)]
pub struct CspTwoConvSpec {
    pub cin: i64,
    pub cout: i64,
    pub expand_ratio: f64,
    pub num_blocks: i64,
    pub add_identity: bool,
}

impl CspLayerWithTwoConv {
    pub fn new(ctx: &Ctx, s: CspTwoConvSpec, norm: Option<&NormCfg>, act: Option<Act>) -> Self {
        let mid = py_int(s.cout as f64 * s.expand_ratio);
        let blocks_n = s.num_blocks.max(0);
        let main_conv = ConvModule::new(
            &ctx.sub("main_conv"),
            ConvSpec::new(s.cin, 2 * mid, 1),
            norm,
            act,
        );
        let final_conv = ConvModule::new(
            &ctx.sub("final_conv"),
            ConvSpec::new((2 + blocks_n) * mid, s.cout, 1),
            norm,
            act,
        );
        let bctx = ctx.sub("blocks");
        let blocks = (0..blocks_n)
            .map(|i| {
                DarknetBottleneck::new(
                    &bctx.sub(i),
                    BottleneckSpec {
                        cin: mid,
                        cout: mid,
                        expansion: 1.0,
                        kernels: (3, 3),
                        paddings: (1, 1),
                        add_identity: s.add_identity,
                        use_depthwise: false,
                    },
                    norm,
                    act,
                )
            })
            .collect();
        CspLayerWithTwoConv {
            mid_channels: mid,
            main_conv,
            final_conv,
            blocks,
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.main_conv.fuse(mode);
        self.final_conv.fuse(mode);
        self.blocks.iter_mut().for_each(|b| b.fuse(mode));
    }

    /// `x_main = list(main_conv(x).split((mid, mid), 1))`, then
    /// `x_main.extend(block(x_main[-1]) for block in blocks)`: `list.extend` appends while it
    /// iterates, so each block takes the previous block's output.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let mid = self.mid_channels;
        let mut chunks = self
            .main_conv
            .forward(x)?
            .f_split_with_sizes([mid, mid], 1)?;
        for block in &self.blocks {
            let last = chunks.last().expect("split gives two chunks");
            let y = block.forward(last)?;
            chunks.push(y);
        }
        self.final_conv.forward(&Tensor::f_cat(&chunks, 1)?)
    }

    /// `Split` (sizes as an int64 input, opset 13+) then the same chain and `Concat`.
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let mid = self.mid_channels;
        let y = self.main_conv.emit_onnx(g, x)?;
        let sizes = g.const_i64("split_sizes", vec![2], &[mid, mid]);
        let mut chunks = g.op_multi(
            "Split",
            vec![Some(y), Some(sizes)],
            2,
            vec![attr_i("axis", 1)],
        );
        for block in &self.blocks {
            let last = chunks[chunks.len() - 1];
            let y = block.emit_onnx(g, last)?;
            chunks.push(y);
        }
        let cat = g.op("Concat", &chunks, vec![attr_i("axis", 1)]);
        self.final_conv.emit_onnx(g, cat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from the shipped YOLOv8 configs (mmyolo 0.6.0, `yolov8_{n,s,m}`).
    #[test]
    fn channel_and_depth_rules_follow_mmyolo() {
        assert_eq!(make_divisible(64.0, 0.25), 16);
        assert_eq!(make_divisible(1024.0, 0.25), 256);
        assert_eq!(make_divisible(768.0, 0.75), 576);
        assert_eq!(make_divisible(64.0, 0.0625), 8);
        assert_eq!(make_divisible(1536.0, 0.03125), 48);
        assert_eq!(make_round(3.0, 0.33), 1);
        assert_eq!(make_round(6.0, 0.33), 2);
        assert_eq!(make_round(3.0, 0.67), 2);
        assert_eq!(make_round(3.0, 0.167), 1); // round(0.501) = 1
        assert_eq!(make_round(6.0, 0.25), 2); // round(1.5) = 2 (ties to even)
        assert_eq!(make_round(10.0, 0.25), 2); // round(2.5) = 2 (ties to even)
        assert_eq!(make_round(1.0, 0.33), 1); // x <= 1 is returned as is
    }
}
