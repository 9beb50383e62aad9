//! mmyolo's YOLOv7 bricks (`mmyolo/models/layers/yolo_bricks.py`): `ELANBlock`, `EELANBlock`,
//! `MaxPoolAndStrideConvBlock`, `TinyDownSampleBlock`, `SPPFCSPBlock`, `ImplicitA`, `ImplicitM`,
//! plus `nn.MaxPool2d` as a layer. Channel arithmetic is upstream's `int(c * ratio)` in float64.
//!
//! Never: parse config dicts (the component files pass plain numbers), or change an implicit
//! tensor in `forward` (the `Inferencer` is shared between threads).

use tch::{Kind, TchError, Tensor};

use crate::export::onnx::graph::{attr_i, attr_ints};
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::cfg::{py_int, Act, NormCfg};
use crate::models::layers::conv_module::{Conv2d, ConvModule, ConvSpec, Fuse};
use crate::models::layers::{Layer, Sequential};
use crate::models::param::Ctx;

/// Norm and activation every ConvModule of a brick shares.
#[derive(Debug, Clone, Copy)]
pub struct ConvArgs<'a> {
    pub norm: Option<&'a NormCfg>,
    pub act: Option<Act>,
}

impl ConvArgs<'_> {
    /// A ConvModule `cin → cout`, `kernel`×`kernel`, `stride`, padding `kernel / 2`.
    pub fn conv(&self, ctx: &Ctx, (cin, cout, kernel, stride): (i64, i64, i64, i64)) -> ConvModule {
        let spec = ConvSpec::new(cin, cout, kernel)
            .stride(stride)
            .padding((kernel - 1) / 2);
        ConvModule::new(ctx, spec, self.norm, self.act)
    }
}

/// `nn.MaxPool2d(kernel, stride, padding)` (floor mode; no weights).
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
}

impl Layer for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        x.f_max_pool2d([k, k], [s, s], [p, p], [1, 1], false)
    }
    fn fuse(&mut self, _mode: Fuse) {}
    /// ONNX `MaxPool` (floor mode, padding with -inf in both).
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        Ok(max_pool(g, x, self.kernel, self.stride, self.padding))
    }
}

fn max_pool(g: &mut OnnxGraph, x: ValueId, k: i64, s: i64, p: i64) -> ValueId {
    g.op(
        "MaxPool",
        &[x],
        vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("pads", &[p, p, p, p]),
            attr_ints("strides", &[s, s]),
        ],
    )
}

fn concat(g: &mut OnnxGraph, parts: &[ValueId]) -> ValueId {
    g.op("Concat", parts, vec![attr_i("axis", 1)])
}

fn emit_run(g: &mut OnnxGraph, convs: &[ConvModule], x: ValueId) -> Result<ValueId, ExportError> {
    convs.iter().try_fold(x, |x, c| c.emit_onnx(g, x))
}

/// Geometry of one [`ElanBlock`].
#[derive(Debug, Clone, Copy)]
pub struct ElanSpec {
    pub cin: i64,
    pub cout: i64,
    pub middle_ratio: f64,
    pub block_ratio: f64,
    pub num_blocks: i64,
    pub num_convs_in_block: i64,
}

/// `ELANBlock`: `short_conv`, `main_conv` (1×1 to `int(in·middle_ratio)`), `blocks` chained 3×3
/// ConvModules (a Sequential of `num_convs_in_block` each when more than one), `final_conv` 1×1
/// on `cat(blocks[::-1], main, short)`.
#[derive(Debug)]
pub struct ElanBlock {
    pub main_conv: ConvModule,
    pub short_conv: ConvModule,
    pub blocks: Vec<Box<dyn Layer>>,
    pub final_conv: ConvModule,
}

impl ElanBlock {
    pub fn new(ctx: &Ctx, s: ElanSpec, a: ConvArgs) -> Self {
        let mut middle = py_int(s.cin as f64 * s.middle_ratio);
        let block = py_int(s.cin as f64 * s.block_ratio);
        let final_in = s.num_blocks * block + 2 * middle;
        // Registration order: main_conv, short_conv, blocks, final_conv.
        let main_conv = a.conv(&ctx.sub("main_conv"), (s.cin, middle, 1, 1));
        let short_conv = a.conv(&ctx.sub("short_conv"), (s.cin, middle, 1, 1));
        let bctx = ctx.sub("blocks");
        let mut blocks: Vec<Box<dyn Layer>> = Vec::new();
        for i in 0..s.num_blocks {
            if s.num_convs_in_block == 1 {
                blocks.push(Box::new(a.conv(&bctx.sub(i), (middle, block, 3, 1))));
            } else {
                let mut convs: Vec<Box<dyn Layer>> = Vec::new();
                for j in 0..s.num_convs_in_block {
                    convs.push(Box::new(a.conv(&bctx.sub(i).sub(j), (middle, block, 3, 1))));
                    middle = block;
                }
                blocks.push(Box::new(Sequential(convs)));
            }
            middle = block;
        }
        let final_conv = a.conv(&ctx.sub("final_conv"), (final_in, s.cout, 1, 1));
        ElanBlock {
            main_conv,
            short_conv,
            blocks,
            final_conv,
        }
    }
}

impl Layer for ElanBlock {
    /// `ELANBlock.forward`.
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let short = self.short_conv.forward(x)?;
        let main = self.main_conv.forward(x)?;
        let mut outs = Vec::with_capacity(self.blocks.len() + 2);
        let mut y = main.shallow_clone();
        for block in &self.blocks {
            y = block.forward(&y)?;
            outs.push(y.shallow_clone());
        }
        outs.reverse();
        outs.push(main);
        outs.push(short);
        self.final_conv.forward(&Tensor::f_cat(&outs, 1)?)
    }
    fn fuse(&mut self, mode: Fuse) {
        self.main_conv.fuse(mode);
        self.short_conv.fuse(mode);
        self.blocks.iter_mut().for_each(|b| b.fuse(mode));
        self.final_conv.fuse(mode);
    }
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let short = self.short_conv.emit_onnx(g, x)?;
        let main = self.main_conv.emit_onnx(g, x)?;
        let mut outs = Vec::with_capacity(self.blocks.len() + 2);
        let mut y = main;
        for block in &self.blocks {
            y = block.emit_onnx(g, y)?;
            outs.push(y);
        }
        outs.reverse();
        outs.push(main);
        outs.push(short);
        let cat = concat(g, &outs);
        self.final_conv.emit_onnx(g, cat)
    }
}

/// `EELANBlock`: `sum(e_elan_blocks[i](x))`, summed left to right as Python's `sum` (from 0).
#[derive(Debug)]
pub struct EElanBlock {
    pub e_elan_blocks: Vec<ElanBlock>,
}

impl EElanBlock {
    pub fn new(ctx: &Ctx, num_elan_block: i64, s: ElanSpec, a: ConvArgs) -> Self {
        let c = ctx.sub("e_elan_blocks");
        EElanBlock {
            e_elan_blocks: (0..num_elan_block)
                .map(|i| ElanBlock::new(&c.sub(i), s, a))
                .collect(),
        }
    }
}

impl Layer for EElanBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let mut blocks = self.e_elan_blocks.iter();
        let first = blocks.next().expect("num_elan_block >= 1").forward(x)?;
        // `sum(outs)` = ((0 + o0) + o1) + ...; 0 + o0 is exact.
        blocks.try_fold(first, |acc, b| acc.f_add(&b.forward(x)?))
    }
    fn fuse(&mut self, mode: Fuse) {
        self.e_elan_blocks.iter_mut().for_each(|b| b.fuse(mode));
    }
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let mut acc: Option<ValueId> = None;
        for b in &self.e_elan_blocks {
            let y = b.emit_onnx(g, x)?;
            acc = Some(match acc {
                Some(a) => g.op("Add", &[a, y], vec![]),
                None => y,
            });
        }
        acc.ok_or_else(|| ExportError::unsupported("EELANBlock without blocks", "layer"))
    }
}

/// `MaxPoolAndStrideConvBlock(in, out, maxpool_kernel_sizes=2, use_in_channels_of_middle)`:
/// `cat(stride_conv_branches(x), maxpool_branches(x))`, each `out // 2` channels.
#[derive(Debug)]
pub struct MaxPoolAndStrideConvBlock {
    pub maxpool_conv: ConvModule,
    pub stride_convs: [ConvModule; 2],
}

impl MaxPoolAndStrideConvBlock {
    pub fn new(ctx: &Ctx, (cin, cout): (i64, i64), use_in_channels: bool, a: ConvArgs) -> Self {
        let middle = if use_in_channels { cin } else { cout / 2 };
        // maxpool_branches = Sequential(MaxPool2d, ConvModule): the conv is `.1`.
        let maxpool_conv = a.conv(&ctx.sub("maxpool_branches").sub(1), (cin, cout / 2, 1, 1));
        let s = ctx.sub("stride_conv_branches");
        let stride_convs = [
            a.conv(&s.sub(0), (cin, middle, 1, 1)),
            a.conv(&s.sub(1), (middle, cout / 2, 3, 2)),
        ];
        MaxPoolAndStrideConvBlock {
            maxpool_conv,
            stride_convs,
        }
    }
}

impl Layer for MaxPoolAndStrideConvBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let pooled = x.f_max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)?;
        let maxpool_out = self.maxpool_conv.forward(&pooled)?;
        let stride_out = self.stride_convs[1].forward(&self.stride_convs[0].forward(x)?)?;
        Tensor::f_cat(&[stride_out, maxpool_out], 1)
    }
    fn fuse(&mut self, mode: Fuse) {
        self.maxpool_conv.fuse(mode);
        self.stride_convs.iter_mut().for_each(|c| c.fuse(mode));
    }
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let pooled = max_pool(g, x, 2, 2, 0);
        let maxpool_out = self.maxpool_conv.emit_onnx(g, pooled)?;
        let stride_out = emit_run(g, &self.stride_convs, x)?;
        Ok(concat(g, &[stride_out, maxpool_out]))
    }
}

/// `TinyDownSampleBlock(in, out, middle_ratio, kernel_sizes)`: `short_conv` 1×1, `main_convs`
/// (1×1, then two `kernel`×`kernel`, chained), `final_conv` 1×1 on `cat(main[::-1], short)`.
#[derive(Debug)]
pub struct TinyDownSampleBlock {
    pub short_conv: ConvModule,
    pub main_convs: Vec<ConvModule>,
    pub final_conv: ConvModule,
}

impl TinyDownSampleBlock {
    pub fn new(
        ctx: &Ctx,
        (cin, cout): (i64, i64),
        middle_ratio: f64,
        kernel: i64,
        a: ConvArgs,
    ) -> Self {
        let middle = py_int(cin as f64 * middle_ratio);
        let short_conv = a.conv(&ctx.sub("short_conv"), (cin, middle, 1, 1));
        let m = ctx.sub("main_convs");
        let main_convs = vec![
            a.conv(&m.sub(0), (cin, middle, 1, 1)),
            a.conv(&m.sub(1), (middle, middle, kernel, 1)),
            a.conv(&m.sub(2), (middle, middle, kernel, 1)),
        ];
        let final_conv = a.conv(&ctx.sub("final_conv"), (middle * 4, cout, 1, 1));
        TinyDownSampleBlock {
            short_conv,
            main_convs,
            final_conv,
        }
    }
}

impl Layer for TinyDownSampleBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let short = self.short_conv.forward(x)?;
        let mut outs = Vec::with_capacity(4);
        let mut y = x.shallow_clone();
        for conv in &self.main_convs {
            y = conv.forward(&y)?;
            outs.push(y.shallow_clone());
        }
        outs.reverse();
        outs.push(short);
        self.final_conv.forward(&Tensor::f_cat(&outs, 1)?)
    }
    fn fuse(&mut self, mode: Fuse) {
        self.short_conv.fuse(mode);
        self.main_convs.iter_mut().for_each(|c| c.fuse(mode));
        self.final_conv.fuse(mode);
    }
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let short = self.short_conv.emit_onnx(g, x)?;
        let mut outs = Vec::with_capacity(4);
        let mut y = x;
        for conv in &self.main_convs {
            y = conv.emit_onnx(g, y)?;
            outs.push(y);
        }
        outs.reverse();
        outs.push(short);
        let cat = concat(g, &outs);
        self.final_conv.emit_onnx(g, cat)
    }
}

/// `SPPFCSPBlock(in, out, expand_ratio, kernel_sizes=k, is_tiny_version)` with an int kernel (as
/// `YOLOv7PAFPN` builds it): `main_layers` (1×1; full: 1×1, 3×3, 1×1) to `mid =
/// int(2·out·expand_ratio)`, the same pool three times in series, `fuse_layers` on
/// `cat(x1, y1, y2, y3)` (tiny: reversed; full: 1×1 then 3×3), `short_layer` 1×1, `final_conv`
/// 1×1 on `cat(x1, short)`.
#[derive(Debug)]
pub struct SppfCspBlock {
    pub main_layers: Vec<ConvModule>,
    pub fuse_layers: Vec<ConvModule>,
    pub short_layer: ConvModule,
    pub final_conv: ConvModule,
    pub kernel: i64,
    pub is_tiny: bool,
}

impl SppfCspBlock {
    pub fn new(
        ctx: &Ctx,
        (cin, cout): (i64, i64),
        (expand_ratio, kernel, is_tiny): (f64, i64, bool),
        a: ConvArgs,
    ) -> Self {
        let mid = py_int(2.0 * cout as f64 * expand_ratio);
        // A single ConvModule (tiny) is the module itself; a Sequential names its members .0, .1.
        let seq = |c: &Ctx, convs: &[(i64, i64, i64, i64)]| -> Vec<ConvModule> {
            if is_tiny {
                vec![a.conv(c, convs[0])]
            } else {
                (convs.iter().enumerate())
                    .map(|(i, &g)| a.conv(&c.sub(i), g))
                    .collect()
            }
        };
        let main_layers = seq(
            &ctx.sub("main_layers"),
            &[(cin, mid, 1, 1), (mid, mid, 3, 1), (mid, mid, 1, 1)],
        );
        let fuse_layers = seq(
            &ctx.sub("fuse_layers"),
            &[(4 * mid, mid, 1, 1), (mid, mid, 3, 1)],
        );
        let short_layer = a.conv(&ctx.sub("short_layer"), (cin, mid, 1, 1));
        let final_conv = a.conv(&ctx.sub("final_conv"), (2 * mid, cout, 1, 1));
        SppfCspBlock {
            main_layers,
            fuse_layers,
            short_layer,
            final_conv,
            kernel,
            is_tiny,
        }
    }
}

fn run(convs: &[ConvModule], x: &Tensor) -> Result<Tensor, TchError> {
    convs
        .iter()
        .try_fold(x.shallow_clone(), |x, c| c.forward(&x))
}

impl Layer for SppfCspBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let x1 = run(&self.main_layers, x)?;
        let k = self.kernel;
        let pool = |t: &Tensor| t.f_max_pool2d([k, k], [1, 1], [k / 2, k / 2], [1, 1], false);
        let y1 = pool(&x1)?;
        let y2 = pool(&y1)?;
        let y3 = pool(&y2)?;
        let mut cat = vec![x1, y1, y2, y3];
        if self.is_tiny {
            cat.reverse();
        }
        let x1 = run(&self.fuse_layers, &Tensor::f_cat(&cat, 1)?)?;
        let x2 = self.short_layer.forward(x)?;
        self.final_conv.forward(&Tensor::f_cat(&[x1, x2], 1)?)
    }
    fn fuse(&mut self, mode: Fuse) {
        (self.main_layers.iter_mut())
            .chain(self.fuse_layers.iter_mut())
            .for_each(|c| c.fuse(mode));
        self.short_layer.fuse(mode);
        self.final_conv.fuse(mode);
    }
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let x1 = emit_run(g, &self.main_layers, x)?;
        let k = self.kernel;
        let y1 = max_pool(g, x1, k, 1, k / 2);
        let y2 = max_pool(g, y1, k, 1, k / 2);
        let y3 = max_pool(g, y2, k, 1, k / 2);
        let mut cat = vec![x1, y1, y2, y3];
        if self.is_tiny {
            cat.reverse();
        }
        let cat = concat(g, &cat);
        let x1 = emit_run(g, &self.fuse_layers, cat)?;
        let x2 = self.short_layer.emit_onnx(g, x)?;
        let cat = concat(g, &[x1, x2]);
        self.final_conv.emit_onnx(g, cat)
    }
}

/// `ImplicitA` (`implicit + x`) or `ImplicitM` (`implicit * x`): one `(1, C, 1, 1)` parameter
/// `implicit`.
#[derive(Debug)]
pub struct Implicit {
    pub implicit: Tensor,
    pub multiply: bool,
    fused: Option<Tensor>,
    /// `<prefix>.implicit` (ONNX initializer name).
    name: String,
}

impl Implicit {
    /// `ImplicitA(channels)`.
    pub fn add(ctx: &Ctx, channels: i64) -> Self {
        Self::new(ctx, channels, false)
    }

    /// `ImplicitM(channels)`.
    pub fn multiply(ctx: &Ctx, channels: i64) -> Self {
        Self::new(ctx, channels, true)
    }

    fn new(ctx: &Ctx, channels: i64, multiply: bool) -> Self {
        Implicit {
            implicit: ctx.param("implicit", &[1, channels, 1, 1]),
            multiply,
            fused: None,
            name: ctx.name("implicit"),
        }
    }
}

impl Layer for Implicit {
    /// `self.implicit + x` / `self.implicit * x`.
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let p = self.fused.as_ref().unwrap_or(&self.implicit);
        if self.multiply {
            p.f_mul(x)
        } else {
            p.f_add(x)
        }
    }
    fn fuse(&mut self, mode: Fuse) {
        self.fused = Some(self.implicit.to_kind(mode.kind));
    }
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let p = g.weight_tensor(&self.name, &self.implicit)?;
        Ok(g.op(if self.multiply { "Mul" } else { "Add" }, &[p, x], vec![]))
    }
}

/// YOLOv7's prediction conv between its implicit knowledge: `ImplicitM(conv(ImplicitA(x)))`
/// (the `.{first}`, `.{first + 1}`, `.{first + 2}` members of `convs_pred[i]`).
#[derive(Debug)]
pub struct ImplicitPred {
    pub add: Implicit,
    pub conv: Conv2d,
    pub multiply: Implicit,
}

impl Layer for ImplicitPred {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let y = self.add.forward(x)?;
        let y = self.conv.forward(&y)?;
        self.multiply.forward(&y)
    }
    fn fuse(&mut self, mode: Fuse) {
        self.add.fuse(mode);
        self.conv.fuse(mode);
        self.multiply.fuse(mode);
    }
    /// With the graph's `fold_bn` (the default) the implicits are folded into the 1×1 conv, as
    /// YOLOv7's `IDetect.fuse` does (WongKinYiu/yolov7 `models/yolo.py`): `m·(W(x + a) + b) = (m·W) x + m·(W a + b)`, in float64;
    /// without it, `Add` → `Conv` → `Mul` as PyTorch runs them.
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let size = self.conv.weight.size();
        if !g.fold_bn() || size[2] != 1 || size[3] != 1 || self.conv.groups != 1 {
            let y = self.add.emit_onnx(g, x)?;
            let y = self.conv.emit_onnx(g, y)?;
            return self.multiply.emit_onnx(g, y);
        }
        let d = |t: &Tensor| t.to_kind(Kind::Double);
        let w = d(&self.conv.weight).reshape([size[0], size[1]]);
        let a = d(&self.add.implicit).reshape([size[1], 1]);
        let m = d(&self.multiply.implicit).reshape([size[0]]);
        let b = match &self.conv.bias {
            Some(b) => d(b),
            None => Tensor::zeros([size[0]], (Kind::Double, w.device())),
        };
        let wa = w.matmul(&a).reshape([size[0]]);
        let fb = (wa + b) * &m;
        let fw = d(&self.conv.weight) * m.reshape([size[0], 1, 1, 1]);
        self.conv.emit_weights(g, x, &fw, Some(&fb))
    }
}
