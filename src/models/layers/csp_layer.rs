//! mmdet's `CSPLayer` with `CSPNeXtBlock`s and `ChannelAttention`
//! (`mmdet/models/layers/csp_layer.py`, `mmdet/models/layers/se_layer.py`); mmyolo imports the
//! same classes. Blocks are `CSPNeXtBlock`s (`use_cspnext_block=True`, RTMDet) or
//! `DarknetBottleneck`s (the default, YOLOv5's [`CspLayer::with_darknet_blocks`]).

use tch::Tensor;

use crate::models::layers::conv_module::Fuse;

use crate::export::onnx::graph::{OnnxGraph, ValueId};
use crate::export::onnx::ExportError;
use crate::models::cfg::{Act, NormCfg};
use crate::models::layers::conv_module::{
    AnyConv, Conv2d, ConvModule, ConvSpec, DepthwiseSeparableConvModule,
};
use crate::models::layers::yolo_bricks::{BottleneckSpec, DarknetBottleneck};
use crate::models::param::Ctx;

/// `ChannelAttention(channels)`: global average pool → 1×1 conv `fc` (with bias) → hard sigmoid,
/// multiplied onto the input.
#[derive(Debug)]
pub struct ChannelAttention {
    pub fc: Conv2d,
}

impl ChannelAttention {
    pub fn new(ctx: &Ctx, channels: i64) -> Self {
        ChannelAttention {
            fc: Conv2d::new(&ctx.sub("fc"), ConvSpec::new(channels, channels, 1), true),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let pooled = x.f_adaptive_avg_pool2d([1, 1])?;
        let gate = self.fc.forward(&pooled)?.f_hardsigmoid()?;
        x.f_mul(&gate)
    }

    /// `GlobalAveragePool` → `Conv` → `HardSigmoid(1/6, 1/2)` (torch's `hardsigmoid`:
    /// `relu6(x + 3) / 6`) → `Mul`.
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        use crate::export::onnx::graph::attr_f;
        let pooled = g.op("GlobalAveragePool", &[x], vec![]);
        let fc = self.fc.emit_onnx(g, pooled)?;
        let gate = g.op(
            "HardSigmoid",
            &[fc],
            vec![attr_f("alpha", 1.0 / 6.0), attr_f("beta", 0.5)],
        );
        Ok(g.op("Mul", &[x, gate], vec![]))
    }
}

/// `CSPNeXtBlock(cin, cout, expansion, add_identity, use_depthwise, kernel_size=5)`:
/// `conv1` 3×3 (depthwise-separable if `use_depthwise`), `conv2` depthwise-separable k×k.
#[derive(Debug)]
pub struct CspNextBlock {
    pub conv1: AnyConv,
    pub conv2: DepthwiseSeparableConvModule,
    pub add_identity: bool,
}

/// Arguments shared by the CSP layers of one model.
#[derive(Debug, Clone)]
pub struct CspArgs<'c> {
    pub norm: Option<&'c NormCfg>,
    pub act: Option<Act>,
    pub use_depthwise: bool,
}

impl CspNextBlock {
    pub fn new(
        ctx: &Ctx,
        cin: i64,
        cout: i64,
        expansion: f64,
        add_identity: bool,
        a: &CspArgs,
    ) -> Self {
        let hidden = crate::models::cfg::py_int(cout as f64 * expansion);
        let kernel = 5;
        CspNextBlock {
            conv1: AnyConv::new(
                &ctx.sub("conv1"),
                ConvSpec::new(cin, hidden, 3).padding(1),
                a.norm,
                a.act,
                a.use_depthwise,
            ),
            conv2: DepthwiseSeparableConvModule::new(
                &ctx.sub("conv2"),
                ConvSpec::new(hidden, cout, kernel).padding(kernel / 2),
                a.norm,
                a.act,
            ),
            add_identity: add_identity && cin == cout,
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

/// One of `CSPLayer.blocks`: `CSPNeXtBlock if use_cspnext_block else DarknetBottleneck`.
#[derive(Debug)]
pub enum CspBlock {
    Next(Box<CspNextBlock>),
    Darknet(Box<DarknetBottleneck>),
}

impl CspBlock {
    fn fuse(&mut self, mode: Fuse) {
        match self {
            CspBlock::Next(b) => b.fuse(mode),
            CspBlock::Darknet(b) => b.fuse(mode),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        match self {
            CspBlock::Next(b) => b.forward(x),
            CspBlock::Darknet(b) => b.forward(x),
        }
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        match self {
            CspBlock::Next(b) => b.emit_onnx(g, x),
            CspBlock::Darknet(b) => b.emit_onnx(g, x),
        }
    }
}

/// `CSPLayer(cin, cout, expand_ratio, num_blocks, add_identity, use_depthwise,
/// use_cspnext_block, channel_attention)`.
#[derive(Debug)]
pub struct CspLayer {
    pub main_conv: ConvModule,
    pub short_conv: ConvModule,
    pub final_conv: ConvModule,
    pub blocks: Vec<CspBlock>,
    pub attention: Option<ChannelAttention>,
}

/// Shape of one `CSPLayer`.
#[derive(Debug, Clone, Copy)]
pub struct CspLayerSpec {
    pub cin: i64,
    pub cout: i64,
    pub expand_ratio: f64,
    pub num_blocks: i64,
    pub add_identity: bool,
    pub channel_attention: bool,
}

impl CspLayer {
    /// `use_cspnext_block=True` (RTMDet).
    pub fn new(ctx: &Ctx, s: CspLayerSpec, a: &CspArgs) -> Self {
        Self::build(ctx, s, a, |c, mid| {
            CspBlock::Next(Box::new(CspNextBlock::new(
                c,
                mid,
                mid,
                1.0,
                s.add_identity,
                a,
            )))
        })
    }

    /// `use_cspnext_block=False`: `DarknetBottleneck(mid, mid, 1.0, add_identity,
    /// use_depthwise)`, a 1×1 then a 3×3 ConvModule (YOLOv5, YOLOX).
    pub fn with_darknet_blocks(ctx: &Ctx, s: CspLayerSpec, a: &CspArgs) -> Self {
        Self::build(ctx, s, a, |c, mid| {
            let spec = BottleneckSpec {
                cin: mid,
                cout: mid,
                expansion: 1.0,
                kernels: (1, 3),
                paddings: (0, 1),
                add_identity: s.add_identity,
                use_depthwise: a.use_depthwise,
            };
            CspBlock::Darknet(Box::new(DarknetBottleneck::new(c, spec, a.norm, a.act)))
        })
    }

    fn build(
        ctx: &Ctx,
        s: CspLayerSpec,
        a: &CspArgs,
        block: impl Fn(&Ctx, i64) -> CspBlock,
    ) -> Self {
        let mid = crate::models::cfg::py_int(s.cout as f64 * s.expand_ratio);
        let main_conv = ConvModule::new(
            &ctx.sub("main_conv"),
            ConvSpec::new(s.cin, mid, 1),
            a.norm,
            a.act,
        );
        let short_conv = ConvModule::new(
            &ctx.sub("short_conv"),
            ConvSpec::new(s.cin, mid, 1),
            a.norm,
            a.act,
        );
        let final_conv = ConvModule::new(
            &ctx.sub("final_conv"),
            ConvSpec::new(2 * mid, s.cout, 1),
            a.norm,
            a.act,
        );
        let bctx = ctx.sub("blocks");
        let blocks = (0..s.num_blocks.max(0))
            .map(|i| block(&bctx.sub(i), mid))
            .collect();
        let attention = s
            .channel_attention
            .then(|| ChannelAttention::new(&ctx.sub("attention"), 2 * mid));
        CspLayer {
            main_conv,
            short_conv,
            final_conv,
            blocks,
            attention,
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.main_conv.fuse(mode);
        self.short_conv.fuse(mode);
        self.final_conv.fuse(mode);
        for b in &mut self.blocks {
            b.fuse(mode);
        }
        if let Some(att) = &mut self.attention {
            att.fc.fuse(mode);
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let x_short = self.short_conv.forward(x)?;
        let mut x_main = self.main_conv.forward(x)?;
        for b in &self.blocks {
            x_main = b.forward(&x_main)?;
        }
        let mut x_final = Tensor::f_cat(&[x_main, x_short], 1)?;
        if let Some(att) = &self.attention {
            x_final = att.forward(&x_final)?;
        }
        self.final_conv.forward(&x_final)
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        use crate::export::onnx::graph::attr_i;
        let x_short = self.short_conv.emit_onnx(g, x)?;
        let mut x_main = self.main_conv.emit_onnx(g, x)?;
        for b in &self.blocks {
            x_main = b.emit_onnx(g, x_main)?;
        }
        let mut x_final = g.op("Concat", &[x_main, x_short], vec![attr_i("axis", 1)]);
        if let Some(att) = &self.attention {
            x_final = att.emit_onnx(g, x_final)?;
        }
        self.final_conv.emit_onnx(g, x_final)
    }
}
