//! PPYOLOE's bricks (`mmyolo/models/layers/yolo_bricks.py`): `CSPResLayer` (the stage of
//! `PPYOLOECSPResNet` and every layer of `PPYOLOECSPPAFPN`), its `PPYOLOEBasicBlock` (3×3
//! ConvModule, then a `RepVGGBlock` with `use_bn_first=False`, i.e. no identity branch, and
//! PPYOLOE+'s `alpha` on the 1×1 branch), `EffectiveSELayer`, and the neck's SPP
//! (`SPPFBottleneck(kernel_sizes=[5, 9, 13], use_conv_first=False)`: no `conv1`).
//!
//! Never: parse config dicts (the component files pass the spec's typed `block_cfg` /
//! `attention_cfg`), or fuse the RepVGG branches by default (see `rep_vgg.rs`).

use tch::{TchError, Tensor};

use crate::export::onnx::graph::{attr_i, attr_ints};
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::cfg::{join, Act, ActCfg, NormCfg};
use crate::models::layers::conv_module::{activate, emit_activation, ConvModule, ConvSpec, Fuse};
use crate::models::layers::rep_vgg::RepVggBlock;
use crate::models::layers::Layer;
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::ppyoloe_csp_resnet::{EffectiveSeCfg, PpyoloeBasicBlockCfg};
use mmcompat_registry::spec::models::rep_vgg_block::RepVggBlockCfg;

/// `EffectiveSELayer(channels, act_cfg)`: `x * act(fc(x.mean((2, 3), keepdim=True)))`, `fc` a
/// 1×1 ConvModule with a bias and neither norm nor activation.
#[derive(Debug)]
pub struct EffectiveSeLayer {
    pub fc: ConvModule,
    pub act: Act,
}

impl EffectiveSeLayer {
    pub fn new(ctx: &Ctx, channels: i64, act: Act) -> Self {
        EffectiveSeLayer {
            fc: ConvModule::new(
                &ctx.sub("fc"),
                ConvSpec::new(channels, channels, 1),
                None,
                None,
            ),
            act,
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.fc.fuse(mode);
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let se = x.f_mean_dim(&[2i64, 3][..], true, None)?;
        let se = self.fc.forward(&se)?;
        x.f_mul(&activate(self.act, &se)?)
    }

    /// `ReduceMean` over H, W (axes an input from opset 18), the fc, the activation, `Mul`.
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let se = if g.opset() >= 18 {
            let axes = g.const_i64("se_axes", vec![2], &[2, 3]);
            g.op("ReduceMean", &[x, axes], vec![attr_i("keepdims", 1)])
        } else {
            g.op(
                "ReduceMean",
                &[x],
                vec![attr_ints("axes", &[2, 3]), attr_i("keepdims", 1)],
            )
        };
        let se = self.fc.emit_onnx(g, se)?;
        let se = emit_activation(g, self.act, se)?;
        Ok(g.op("Mul", &[x, se], vec![]))
    }
}

/// `PPYOLOEBasicBlock(c, c, norm_cfg, act_cfg, shortcut, use_alpha)`.
#[derive(Debug)]
pub struct PpyoloeBasicBlock {
    pub conv1: ConvModule,
    pub conv2: RepVggBlock,
    pub shortcut: bool,
}

impl PpyoloeBasicBlock {
    /// `norm`/`act_cfg`: the block's own `norm_cfg`/`act_cfg`, else the layer's (the
    /// `setdefault`s of `CSPResLayer.build_blocks_layer`).
    pub fn new(
        ctx: &Ctx,
        channels: i64,
        cfg: &PpyoloeBasicBlockCfg,
        (norm, act_cfg): (&NormCfg, &ActCfg),
        path: &str,
    ) -> Result<Self, ModelError> {
        let norm = cfg.norm_cfg.as_ref().unwrap_or(norm);
        let act_cfg = cfg.act_cfg.as_ref().unwrap_or(act_cfg);
        let act = act_cfg.to_act(&join(path, "act_cfg"))?;
        let conv1 = ConvModule::new(
            &ctx.sub("conv1"),
            ConvSpec::new(channels, channels, 3).padding(1),
            Some(norm),
            Some(act),
        );
        let rep = RepVggBlockCfg {
            norm_cfg: norm.clone(),
            act_cfg: act_cfg.clone(),
            use_alpha: cfg.use_alpha,
            use_bn_first: false,
            ..RepVggBlockCfg::default()
        };
        let conv2 = RepVggBlock::new(&ctx.sub("conv2"), (channels, channels, 1), &rep, path)?;
        Ok(PpyoloeBasicBlock {
            conv1,
            conv2,
            shortcut: cfg.shortcut,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.conv1.fuse(mode);
        self.conv2.fuse(mode);
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let y = self.conv2.forward(&self.conv1.forward(x)?)?;
        if self.shortcut {
            x.f_add(&y)
        } else {
            Ok(y)
        }
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let y = self.conv1.emit_onnx(g, x)?;
        let y = self.conv2.emit_onnx(g, y)?;
        Ok(if self.shortcut {
            g.op("Add", &[x, y], vec![])
        } else {
            y
        })
    }
}

/// `SPPFBottleneck(c, c, kernel_sizes=[5, 9, 13], use_conv_first=False)`: parallel max pools on
/// `x`, `cat([x, pool5, pool9, pool13])`, then `conv2` (1×1, 4c → c).
#[derive(Debug)]
pub struct SppWithoutConv1 {
    pub conv2: ConvModule,
    pub kernel_sizes: [i64; 3],
}

impl SppWithoutConv1 {
    pub fn new(ctx: &Ctx, channels: i64, norm: &NormCfg, act: Act) -> Self {
        let kernel_sizes = [5, 9, 13];
        let cin = channels * (kernel_sizes.len() as i64 + 1);
        SppWithoutConv1 {
            conv2: ConvModule::new(
                &ctx.sub("conv2"),
                ConvSpec::new(cin, channels, 1),
                Some(norm),
                Some(act),
            ),
            kernel_sizes,
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.conv2.fuse(mode);
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let mut parts = vec![x.shallow_clone()];
        for k in self.kernel_sizes {
            parts.push(x.f_max_pool2d([k, k], [1, 1], [k / 2, k / 2], [1, 1], false)?);
        }
        self.conv2.forward(&Tensor::f_cat(&parts, 1)?)
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let mut parts = vec![x];
        for k in self.kernel_sizes {
            let p = k / 2;
            parts.push(g.op(
                "MaxPool",
                &[x],
                vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("pads", &[p, p, p, p]),
                    attr_ints("strides", &[1, 1]),
                ],
            ));
        }
        let cat = g.op("Concat", &parts, vec![attr_i("axis", 1)]);
        self.conv2.emit_onnx(g, cat)
    }
}

/// One member of `CSPResLayer.blocks` (an `nn.Sequential` of blocks, with `spp` inserted after
/// block `(num_block - 1) // 2` when `use_spp`).
#[derive(Debug)]
pub enum CspResBlock {
    Basic(PpyoloeBasicBlock),
    Spp(SppWithoutConv1),
}

/// The shape of a [`CspResLayer`]: channels, blocks, `stride` (2 in the backbone: a 3×3
/// `conv_down` first), `use_spp` (the neck's coarsest reduce layer).
#[derive(Debug, Clone, Copy)]
pub struct CspResSpec {
    pub cin: i64,
    pub cout: i64,
    pub num_blocks: i64,
    pub stride: i64,
    pub use_spp: bool,
}

/// `CSPResLayer(in, out, num_block, block_cfg, stride, norm_cfg, act_cfg, attention_cfg,
/// use_spp)`: `conv3(attn(cat(conv1(x), blocks(conv2(x)))))` after the optional `conv_down`.
#[derive(Debug)]
pub struct CspResLayer {
    pub conv_down: Option<ConvModule>,
    pub conv1: ConvModule,
    pub conv2: ConvModule,
    pub blocks: Vec<CspResBlock>,
    pub conv3: ConvModule,
    pub attn: Option<EffectiveSeLayer>,
}

impl CspResLayer {
    /// `path` is the component's config path (for errors naming `block_cfg` / `act_cfg`).
    pub fn new(
        ctx: &Ctx,
        spec: CspResSpec,
        (block, attention): (&PpyoloeBasicBlockCfg, Option<&EffectiveSeCfg>),
        (norm, act_cfg): (&NormCfg, &ActCfg),
        path: &str,
    ) -> Result<Self, ModelError> {
        let act = act_cfg.to_act(&join(path, "act_cfg"))?;
        let CspResSpec {
            cin,
            cout,
            num_blocks,
            stride,
            use_spp,
        } = spec;
        // Registration order (= state-dict order): conv_down, conv1, conv2, blocks, conv3, attn.
        let (conv1_in, conv3_in, blocks_c, conv_down) = if stride == 2 {
            let mid = (cin + cout) / 2;
            let down = ConvModule::new(
                &ctx.sub("conv_down"),
                ConvSpec::new(cin, mid, 3).stride(2).padding(1),
                Some(norm),
                Some(act),
            );
            (mid, mid, mid / 2, Some(down))
        } else {
            (cin, cout, cout / 2, None)
        };
        // conv3 takes cat(y1, y2) = 2 * blocks_c channels: upstream fails in its forward when
        // that differs from conv3_in (an odd `(in + out) // 2` in a stride-2 layer).
        if 2 * blocks_c != conv3_in {
            return Err(ModelError::Invalid {
                path: join(path, "widen_factor"),
                message: format!(
                    "CSPResLayer({cin}, {cout}, stride={stride}): its conv3 expects {conv3_in} \
                     channels but cat(conv1, blocks) has {} (RuntimeError in PyTorch's conv2d); \
                     choose widths that make the middle width even",
                    2 * blocks_c
                ),
            });
        }
        let one_by_one = |name: &str, cin: i64, cout: i64| {
            ConvModule::new(
                &ctx.sub(name),
                ConvSpec::new(cin, cout, 1),
                Some(norm),
                Some(act),
            )
        };
        let conv1 = one_by_one("conv1", conv1_in, blocks_c);
        let conv2 = one_by_one("conv2", conv1_in, blocks_c);
        let bctx = ctx.sub("blocks");
        let bpath = join(path, "block_cfg");
        let mut blocks = Vec::new();
        for i in 0..num_blocks.max(0) {
            let b = PpyoloeBasicBlock::new(&bctx.sub(i), blocks_c, block, (norm, act_cfg), &bpath)?;
            blocks.push(CspResBlock::Basic(b));
            if use_spp && i == (num_blocks - 1) / 2 {
                let spp = SppWithoutConv1::new(&bctx.sub("spp"), blocks_c, norm, act);
                blocks.push(CspResBlock::Spp(spp));
            }
        }
        let conv3 = one_by_one("conv3", conv3_in, cout);
        let attn = match attention {
            Some(a) => {
                let act = a.act_cfg.to_act(&join(path, "attention_cfg.act_cfg"))?;
                Some(EffectiveSeLayer::new(&ctx.sub("attn"), 2 * blocks_c, act))
            }
            None => None,
        };
        Ok(CspResLayer {
            conv_down,
            conv1,
            conv2,
            blocks,
            conv3,
            attn,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        if let Some(c) = &mut self.conv_down {
            c.fuse(mode);
        }
        self.conv1.fuse(mode);
        self.conv2.fuse(mode);
        for b in &mut self.blocks {
            match b {
                CspResBlock::Basic(b) => b.fuse(mode),
                CspResBlock::Spp(s) => s.fuse(mode),
            }
        }
        self.conv3.fuse(mode);
        if let Some(a) = &mut self.attn {
            a.fuse(mode);
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let x = match &self.conv_down {
            Some(c) => c.forward(x)?,
            None => x.shallow_clone(),
        };
        let y1 = self.conv1.forward(&x)?;
        let mut y2 = self.conv2.forward(&x)?;
        for b in &self.blocks {
            y2 = match b {
                CspResBlock::Basic(b) => b.forward(&y2)?,
                CspResBlock::Spp(s) => s.forward(&y2)?,
            };
        }
        let mut y = Tensor::f_cat(&[&y1, &y2], 1)?;
        if let Some(a) = &self.attn {
            y = a.forward(&y)?;
        }
        self.conv3.forward(&y)
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let x = match &self.conv_down {
            Some(c) => c.emit_onnx(g, x)?,
            None => x,
        };
        let y1 = self.conv1.emit_onnx(g, x)?;
        let mut y2 = self.conv2.emit_onnx(g, x)?;
        for b in &self.blocks {
            y2 = match b {
                CspResBlock::Basic(b) => b.emit_onnx(g, y2)?,
                CspResBlock::Spp(s) => s.emit_onnx(g, y2)?,
            };
        }
        let mut y = g.op("Concat", &[y1, y2], vec![attr_i("axis", 1)]);
        if let Some(a) = &self.attn {
            y = a.emit_onnx(g, y)?;
        }
        self.conv3.emit_onnx(g, y)
    }
}

impl Layer for CspResLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        CspResLayer::forward(self, x)
    }
    fn fuse(&mut self, mode: Fuse) {
        CspResLayer::fuse(self, mode)
    }
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        CspResLayer::emit_onnx(self, g, x)
    }
}
