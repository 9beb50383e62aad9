//! The YOLOv6 m/l and 3.0 bricks (`mmyolo/models/layers/yolo_bricks.py`): the configurable
//! block (`RepVGGBlock` or `ConvWrapper`, by `block_cfg`), `BottleRep` (two blocks and a learned
//! `alpha` on the residual), `BepC3StageBlock` (a CSP block around a stage of `BottleRep`s),
//! `CSPSPPFBottleneck` (3.0's CSP version of the SPPF) and `BiFusion` (3.0's neck upsampling,
//! fusing three levels).
//!
//! Never: parse config dicts (the spec stage did: [`YoloV6BlockCfg`]), or fuse RepVGG branches
//! unless asked (`Fuse::fold_bn`; see `rep_vgg.rs`).

use tch::{TchError, Tensor};

use crate::export::onnx::graph::{attr_i, attr_ints};
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::cfg::{join, Act, NormCfg};
use crate::models::layers::conv_module::{ConvModule, ConvSpec, Fuse};
use crate::models::layers::rep_vgg::{ConvTranspose2d, RepVggBlock};
use crate::models::layers::Layer;
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::yolov6_block::YoloV6BlockCfg;

/// Where a block is built: upstream adds `kernel_size=3, stride=2` to `block_cfg` for the stem
/// and each stage's first block (`YOLOv6EfficientRep.build_stem_layer/build_stage_layer`) and
/// nothing inside `RepStageBlock`/`BottleRep` (the block's own defaults, stride 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockPlace {
    StridedDown,
    InStage,
}

/// `MODELS.build(block_cfg)` of a YOLOv6 module.
#[derive(Debug)]
pub enum YoloV6Block {
    RepVgg(RepVggBlock),
    /// `ConvWrapper`: its `block`, a ConvModule (conv with bias by default, norm, act).
    ConvWrapper(ConvModule),
}

impl YoloV6Block {
    pub fn new(
        ctx: &Ctx,
        (cin, cout): (i64, i64),
        place: BlockPlace,
        cfg: &YoloV6BlockCfg,
        path: &str,
    ) -> Result<Self, ModelError> {
        let stride = if place == BlockPlace::StridedDown {
            2
        } else {
            1
        };
        match cfg {
            YoloV6BlockCfg::RepVgg(c) => Ok(YoloV6Block::RepVgg(RepVggBlock::new(
                ctx,
                (cin, cout, stride),
                c,
                path,
            )?)),
            YoloV6BlockCfg::ConvWrapper(c) => {
                let k = if place == BlockPlace::StridedDown {
                    3
                } else {
                    c.kernel_size
                };
                if cin % c.groups != 0 || cout % c.groups != 0 {
                    return Err(ModelError::Invalid {
                        path: join(path, "groups"),
                        message: format!(
                            "groups {} does not divide {cin} input and {cout} output channels",
                            c.groups
                        ),
                    });
                }
                let act = match &c.act_cfg {
                    Some(a) => Some(a.to_act(&join(path, "act_cfg"))?),
                    None => None,
                };
                // ConvWrapper.__init__: ConvModule(k, stride, padding=k // 2, groups, bias, ...).
                let spec = ConvSpec::new(cin, cout, k)
                    .stride(stride)
                    .padding(k / 2)
                    .groups(c.groups);
                Ok(YoloV6Block::ConvWrapper(ConvModule::with_bias(
                    &ctx.sub("block"),
                    spec,
                    c.bias,
                    c.norm_cfg.as_ref(),
                    act,
                )))
            }
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        match self {
            YoloV6Block::RepVgg(b) => b.fuse(mode),
            YoloV6Block::ConvWrapper(b) => b.fuse(mode),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        match self {
            YoloV6Block::RepVgg(b) => b.forward(x),
            YoloV6Block::ConvWrapper(b) => b.forward(x),
        }
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        match self {
            YoloV6Block::RepVgg(b) => b.emit_onnx(g, x),
            YoloV6Block::ConvWrapper(b) => b.emit_onnx(g, x),
        }
    }
}

/// `BottleRep(cin, cout, block_cfg, adaptive_weight=True)` as `RepStageBlock` builds it for
/// `BepC3StageBlock`: `conv2(conv1(x)) + alpha * x` when `cin == cout`, else no shortcut.
#[derive(Debug)]
pub struct BottleRep {
    /// `nn.Parameter(torch.ones(1))`: registered before the convs (state-dict order).
    pub alpha: Tensor,
    pub conv1: YoloV6Block,
    pub conv2: YoloV6Block,
    pub shortcut: bool,
    fused_alpha: Option<Tensor>,
    /// `<prefix>.alpha` (ONNX initializer name).
    alpha_name: String,
}

impl BottleRep {
    pub fn new(
        ctx: &Ctx,
        (cin, cout): (i64, i64),
        cfg: &YoloV6BlockCfg,
        path: &str,
    ) -> Result<Self, ModelError> {
        let alpha = ctx.param("alpha", &[1]);
        let alpha_name = ctx.name("alpha");
        let conv1 = YoloV6Block::new(
            &ctx.sub("conv1"),
            (cin, cout),
            BlockPlace::InStage,
            cfg,
            path,
        )?;
        let conv2 = YoloV6Block::new(
            &ctx.sub("conv2"),
            (cout, cout),
            BlockPlace::InStage,
            cfg,
            path,
        )?;
        Ok(BottleRep {
            alpha,
            conv1,
            conv2,
            shortcut: cin == cout,
            fused_alpha: None,
            alpha_name,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.fused_alpha = Some(self.alpha.to_kind(mode.kind));
        self.conv1.fuse(mode);
        self.conv2.fuse(mode);
    }

    /// `BottleRep.forward`: `outputs + self.alpha * x if self.shortcut else outputs`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let y = self.conv2.forward(&self.conv1.forward(x)?)?;
        if !self.shortcut {
            return Ok(y);
        }
        let alpha = self.fused_alpha.as_ref().unwrap_or(&self.alpha);
        y.f_add(&alpha.f_mul(x)?)
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let y = self.conv1.emit_onnx(g, x)?;
        let y = self.conv2.emit_onnx(g, y)?;
        if !self.shortcut {
            return Ok(y);
        }
        let a = g.weight_tensor(&self.alpha_name, &self.alpha)?;
        let ax = g.op("Mul", &[a, x], vec![]);
        Ok(g.op("Add", &[y, ax], vec![]))
    }
}

/// `RepStageBlock(hidden, hidden, num_blocks, block_cfg, bottle_block=BottleRep)`: `conv1`
/// (a BottleRep), then `block`, a Sequential of `num_blocks // 2 - 1` BottleReps, absent when
/// `num_blocks // 2 <= 1` (`mmyolo/models/layers/yolo_bricks.py: RepStageBlock.__init__`).
#[derive(Debug)]
pub struct BottleRepStage {
    pub conv1: BottleRep,
    pub block: Vec<BottleRep>,
}

impl BottleRepStage {
    pub fn new(
        ctx: &Ctx,
        (cin, cout, num_blocks): (i64, i64, i64),
        cfg: &YoloV6BlockCfg,
        path: &str,
    ) -> Result<Self, ModelError> {
        let conv1 = BottleRep::new(&ctx.sub("conv1"), (cin, cout), cfg, path)?;
        let bctx = ctx.sub("block");
        // Python's floor division (num_blocks is positive after make_round).
        let pairs = num_blocks.div_euclid(2);
        let block = (0..(pairs - 1).max(0))
            .map(|i| BottleRep::new(&bctx.sub(i), (cout, cout), cfg, path))
            .collect::<Result<_, _>>()?;
        Ok(BottleRepStage { conv1, block })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.conv1.fuse(mode);
        self.block.iter_mut().for_each(|b| b.fuse(mode));
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let y = self.conv1.forward(x)?;
        self.block.iter().try_fold(y, |y, b| b.forward(&y))
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let y = self.conv1.emit_onnx(g, x)?;
        self.block.iter().try_fold(y, |y, b| b.emit_onnx(g, y))
    }
}

/// `BepC3StageBlock(cin, cout, num_blocks, hidden_ratio, concat_all_layer=True, block_cfg,
/// norm_cfg, act_cfg)`: `conv3(cat(block(conv1(x)), conv2(x)))`, the 1×1 ConvModules without
/// bias, `hidden = int(cout * hidden_ratio)`. No caller sets `concat_all_layer`.
#[derive(Debug)]
pub struct BepC3StageBlock {
    pub conv1: ConvModule,
    pub conv2: ConvModule,
    pub conv3: ConvModule,
    pub block: BottleRepStage,
}

/// Geometry of a [`BepC3StageBlock`]: in, out, num_blocks, hidden_ratio.
pub type BepC3Geometry = (i64, i64, i64, f64);

impl BepC3StageBlock {
    pub fn new(
        ctx: &Ctx,
        (cin, cout, num_blocks, hidden_ratio): BepC3Geometry,
        (block_cfg, block_path): (&YoloV6BlockCfg, &str),
        norm: &NormCfg,
        act: Act,
    ) -> Result<Self, ModelError> {
        let hidden = crate::models::cfg::py_int(cout as f64 * hidden_ratio);
        let conv = |name: &str, i: i64, o: i64| {
            ConvModule::new(
                &ctx.sub(name),
                ConvSpec::new(i, o, 1),
                Some(norm),
                Some(act),
            )
        };
        // Registration order: conv1, conv2, conv3, block.
        let conv1 = conv("conv1", cin, hidden);
        let conv2 = conv("conv2", cin, hidden);
        let conv3 = conv("conv3", 2 * hidden, cout);
        let block = BottleRepStage::new(
            &ctx.sub("block"),
            (hidden, hidden, num_blocks),
            block_cfg,
            block_path,
        )?;
        Ok(BepC3StageBlock {
            conv1,
            conv2,
            conv3,
            block,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.conv1.fuse(mode);
        self.conv2.fuse(mode);
        self.conv3.fuse(mode);
        self.block.fuse(mode);
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let main = self.block.forward(&self.conv1.forward(x)?)?;
        let short = self.conv2.forward(x)?;
        self.conv3.forward(&Tensor::f_cat(&[&main, &short], 1)?)
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let main = self.conv1.emit_onnx(g, x)?;
        let main = self.block.emit_onnx(g, main)?;
        let short = self.conv2.emit_onnx(g, x)?;
        let cat = g.op("Concat", &[main, short], vec![attr_i("axis", 1)]);
        self.conv3.emit_onnx(g, cat)
    }
}

/// `CSPSPPFBottleneck(cin, cout, kernel_sizes=5, use_conv_first=True, mid_channels_scale=0.5,
/// norm_cfg, act_cfg)` as YOLOv6's backbones build it (`use_cspsppf=True`): `x0 =
/// conv4(conv3(conv1(x)))`, three serial 5×5 max pools of `x0`, `conv6(conv5(cat))`, then
/// `conv7(cat(conv2(x), that))`.
#[derive(Debug)]
pub struct CspSppfBottleneck {
    pub conv1: ConvModule,
    pub conv3: ConvModule,
    pub conv4: ConvModule,
    pub conv2: ConvModule,
    pub conv5: ConvModule,
    pub conv6: ConvModule,
    pub conv7: ConvModule,
    pub kernel: i64,
}

impl CspSppfBottleneck {
    pub fn new(ctx: &Ctx, (cin, cout): (i64, i64), norm: &NormCfg, act: Act) -> Self {
        let mid = crate::models::cfg::py_int(cin as f64 * 0.5);
        let conv = |name: &str, i: i64, o: i64, k: i64| {
            ConvModule::new(
                &ctx.sub(name),
                ConvSpec::new(i, o, k).padding(k / 2),
                Some(norm),
                Some(act),
            )
        };
        // Registration order of CSPSPPFBottleneck.__init__ (conv1, conv3, conv4, conv2, ...).
        CspSppfBottleneck {
            conv1: conv("conv1", cin, mid, 1),
            conv3: conv("conv3", mid, mid, 3),
            conv4: conv("conv4", mid, mid, 1),
            conv2: conv("conv2", cin, mid, 1),
            conv5: conv("conv5", 4 * mid, mid, 1),
            conv6: conv("conv6", mid, mid, 3),
            conv7: conv("conv7", 2 * mid, cout, 1),
            kernel: 5,
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        for c in [
            &mut self.conv1,
            &mut self.conv3,
            &mut self.conv4,
            &mut self.conv2,
            &mut self.conv5,
            &mut self.conv6,
            &mut self.conv7,
        ] {
            c.fuse(mode);
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let k = self.kernel;
        let pool = |t: &Tensor| t.f_max_pool2d([k, k], [1, 1], [k / 2, k / 2], [1, 1], false);
        let x0 = self
            .conv4
            .forward(&self.conv3.forward(&self.conv1.forward(x)?)?)?;
        let y = self.conv2.forward(x)?;
        let x1 = pool(&x0)?;
        let x2 = pool(&x1)?;
        let x3 = Tensor::f_cat(&[&x0, &x1, &x2, &pool(&x2)?], 1)?;
        let x3 = self.conv6.forward(&self.conv5.forward(&x3)?)?;
        self.conv7.forward(&Tensor::f_cat(&[&y, &x3], 1)?)
    }

    /// The pools as ONNX `MaxPool`s (stride 1, padding k/2, as `SppBottleneck::emit_onnx`).
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let k = self.kernel;
        let pool = |g: &mut OnnxGraph, t: ValueId| {
            let p = k / 2;
            g.op(
                "MaxPool",
                &[t],
                vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("pads", &[p, p, p, p]),
                    attr_ints("strides", &[1, 1]),
                ],
            )
        };
        let x0 = self.conv1.emit_onnx(g, x)?;
        let x0 = self.conv3.emit_onnx(g, x0)?;
        let x0 = self.conv4.emit_onnx(g, x0)?;
        let y = self.conv2.emit_onnx(g, x)?;
        let x1 = pool(g, x0);
        let x2 = pool(g, x1);
        let x3 = pool(g, x2);
        let cat = g.op("Concat", &[x0, x1, x2, x3], vec![attr_i("axis", 1)]);
        let x3 = self.conv5.emit_onnx(g, cat)?;
        let x3 = self.conv6.emit_onnx(g, x3)?;
        let cat = g.op("Concat", &[y, x3], vec![attr_i("axis", 1)]);
        self.conv7.emit_onnx(g, cat)
    }
}

/// `BiFusion(in0, in1, out, norm_cfg, act_cfg)` (YOLOv6 3.0 neck): `conv3(cat(upsample(high),
/// conv1(cur), downsample(conv2(low))))`, `upsample` a ConvTranspose2d(k2, s2, bias), the
/// ConvModules without bias.
#[derive(Debug)]
pub struct BiFusion {
    pub conv1: ConvModule,
    pub conv2: ConvModule,
    pub conv3: ConvModule,
    pub upsample: ConvTranspose2d,
    pub downsample: ConvModule,
}

impl BiFusion {
    pub fn new(ctx: &Ctx, (in0, in1, out): (i64, i64, i64), norm: &NormCfg, act: Act) -> Self {
        let conv = |name: &str, spec: ConvSpec| {
            ConvModule::new(&ctx.sub(name), spec, Some(norm), Some(act))
        };
        BiFusion {
            conv1: conv("conv1", ConvSpec::new(in0, out, 1)),
            conv2: conv("conv2", ConvSpec::new(in1, out, 1)),
            conv3: conv("conv3", ConvSpec::new(out * 3, out, 1)),
            upsample: ConvTranspose2d::new(&ctx.sub("upsample"), (out, out, 2, 2)),
            downsample: conv(
                "downsample",
                ConvSpec::new(out, out, 3).stride(2).padding(1),
            ),
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.conv1.fuse(mode);
        self.conv2.fuse(mode);
        self.conv3.fuse(mode);
        self.upsample.fuse(mode.kind);
        self.downsample.fuse(mode);
    }

    /// `BiFusion.forward([high, cur, low])`.
    pub fn forward(&self, high: &Tensor, cur: &Tensor, low: &Tensor) -> Result<Tensor, TchError> {
        let x0 = self.upsample.forward(high)?;
        let x1 = self.conv1.forward(cur)?;
        let x2 = self.downsample.forward(&self.conv2.forward(low)?)?;
        self.conv3.forward(&Tensor::f_cat(&[&x0, &x1, &x2], 1)?)
    }

    pub fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        (high, cur, low): (ValueId, ValueId, ValueId),
    ) -> Result<ValueId, ExportError> {
        let x0 = self.upsample.emit_onnx(g, high)?;
        let x1 = self.conv1.emit_onnx(g, cur)?;
        let x2 = self.conv2.emit_onnx(g, low)?;
        let x2 = self.downsample.emit_onnx(g, x2)?;
        let cat = g.op("Concat", &[x0, x1, x2], vec![attr_i("axis", 1)]);
        self.conv3.emit_onnx(g, cat)
    }
}

macro_rules! layer_impls {
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

layer_impls!(YoloV6Block, BepC3StageBlock, CspSppfBottleneck);
