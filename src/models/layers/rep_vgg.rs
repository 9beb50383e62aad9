//! mmyolo's rep-style bricks for YOLOv6 (`mmyolo/models/layers/yolo_bricks.py`):
//! `RepVGGBlock` in its training-time (deploy=False) form — three branches, exactly as
//! `inference_detector` runs it (`switch_to_deploy` is only called by `tools/test.py --deploy`,
//! `get_flops` and easydeploy) — or, when a config sets `deploy=True`, its single `rbr_reparam`
//! convolution; `RepStageBlock` (of RepVGG or other `block_cfg` blocks); and
//! `nn.ConvTranspose2d` with a bias (YOLOv6RepPAFPN's upsampling).
//!
//! With `Fuse::fold_bn` (`--fold-bn`) the three branches are re-parameterised into one 3×3
//! convolution as `RepVGGBlock.switch_to_deploy` does (`get_equivalent_kernel_bias`, computed in
//! float64): faster, but not Python's float32 rounding of `inference_detector`.
//!
//! Never: parse config dicts (the component files pass the spec's typed `block_cfg`), or fuse
//! the three branches by default (fusing changes float32 rounding).

use tch::{Kind, Tensor};

use crate::export::onnx::graph::attr_ints;
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::cfg::{join, Act};
use crate::models::layers::conv_module::{
    activate, emit_activation, BatchNorm2d, Conv2d, ConvModule, ConvSpec, Fuse,
};
use crate::models::layers::yolov6_bricks::{BlockPlace, YoloV6Block};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::rep_vgg_block::RepVggBlockCfg;
use mmcompat_registry::spec::models::yolov6_block::YoloV6BlockCfg;

/// deploy=False: `rbr_dense` (3×3 conv + BN), `rbr_1x1` (1×1 conv + BN), `rbr_identity` (BN,
/// only when `use_bn_first and in == out and stride == 1`).
#[derive(Debug)]
pub struct TrainBranches {
    pub identity: Option<BatchNorm2d>,
    pub dense: ConvModule,
    pub one_by_one: ConvModule,
}

/// The branches of a [`RepVggBlock`].
#[derive(Debug)]
pub enum RepBranches {
    Train(Box<TrainBranches>),
    /// deploy=True: `rbr_reparam`, one 3×3 conv with a bias.
    Deploy(Conv2d),
}

/// `RepVGGBlock(in_channels, out_channels, kernel_size=3, stride, padding=1, groups, ...)`.
#[derive(Debug)]
pub struct RepVggBlock {
    /// `alpha` (`use_alpha=True`, PPYOLOE+): scales the 1×1 branch.
    pub alpha: Option<Tensor>,
    pub branches: RepBranches,
    pub act: Act,
    fused_alpha: Option<Tensor>,
    /// `(kernel, bias)` of the re-parameterised block (`fold_bn`), in the compute kind.
    reparam: Option<(Tensor, Tensor)>,
}

impl RepVggBlock {
    /// `cfg` was validated by the spec stage (`RepVggBlockCfg::validate`): kernel 3, padding 1.
    pub fn new(
        ctx: &Ctx,
        (cin, cout, stride): (i64, i64, i64),
        cfg: &RepVggBlockCfg,
        path: &str,
    ) -> Result<Self, ModelError> {
        let act = cfg.act_cfg.to_act(&join(path, "act_cfg"))?;
        if cin % cfg.groups != 0 || cout % cfg.groups != 0 {
            return Err(ModelError::Invalid {
                path: join(path, "groups"),
                message: format!(
                    "groups {} does not divide {cin} input and {cout} output channels",
                    cfg.groups
                ),
            });
        }
        // Registration order = state-dict order: the `alpha` parameter, then rbr_identity,
        // rbr_dense, rbr_1x1 (or rbr_reparam).
        let alpha = cfg.use_alpha.then(|| ctx.param("alpha", &[1]));
        let spec = ConvSpec::new(cin, cout, 3)
            .stride(stride)
            .padding(1)
            .groups(cfg.groups);
        let branches = if cfg.deploy {
            RepBranches::Deploy(Conv2d::new(&ctx.sub("rbr_reparam"), spec, true))
        } else {
            let identity = (cfg.use_bn_first && cin == cout && stride == 1)
                .then(|| BatchNorm2d::new(&ctx.sub("rbr_identity"), cin, &cfg.norm_cfg));
            let norm = Some(&cfg.norm_cfg);
            let dense = ConvModule::new(&ctx.sub("rbr_dense"), spec, norm, None);
            // `padding_11 = padding - kernel_size // 2` = 0.
            let one_by_one = ConvModule::new(
                &ctx.sub("rbr_1x1"),
                ConvSpec::new(cin, cout, 1)
                    .stride(stride)
                    .groups(cfg.groups),
                norm,
                None,
            );
            RepBranches::Train(Box::new(TrainBranches {
                identity,
                dense,
                one_by_one,
            }))
        };
        Ok(RepVggBlock {
            alpha,
            branches,
            act,
            fused_alpha: None,
            reparam: None,
        })
    }

    /// `if self.alpha:` of `RepVGGBlock.forward` / `get_equivalent_kernel_bias`: a non-zero
    /// alpha scales the 1×1 branch; without alpha, or alpha == 0, it is added as it is.
    fn alpha_applies(alpha: Option<&Tensor>) -> Option<&Tensor> {
        alpha.filter(|a| a.double_value(&[0]) != 0.0)
    }

    /// Freezes the weights for inference. Without `mode.fold_bn`: each branch as PyTorch runs it.
    /// With it: `switch_to_deploy`'s single convolution.
    pub fn fuse(&mut self, mode: Fuse) {
        self.fused_alpha = self.alpha.as_ref().map(|a| a.to_kind(mode.kind));
        self.reparam = None;
        if mode.fold_bn {
            if let RepBranches::Train(t) = &self.branches {
                let (k, b) = equivalent_kernel_bias(
                    &t.dense,
                    &t.one_by_one,
                    t.identity.as_ref(),
                    Self::alpha_applies(self.alpha.as_ref()),
                );
                self.reparam = Some((k.to_kind(mode.kind), b.to_kind(mode.kind)));
            }
        }
        match &mut self.branches {
            RepBranches::Train(t) => {
                if let Some(bn) = &mut t.identity {
                    bn.fuse(mode.kind);
                }
                t.dense.fuse(mode);
                t.one_by_one.fuse(mode);
            }
            RepBranches::Deploy(conv) => conv.fuse(mode),
        }
    }

    /// `RepVGGBlock.forward`: `act(rbr_dense(x) + rbr_1x1(x) + id_out)`, left to right, with
    /// `alpha * rbr_1x1(x)` when `if self.alpha:` holds (a non-zero alpha).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let t = match &self.branches {
            RepBranches::Deploy(conv) => return activate(self.act, &conv.forward(x)?),
            RepBranches::Train(t) => t,
        };
        if let Some((k, b)) = &self.reparam {
            let c = &t.dense.conv;
            let y = x.f_conv2d(k, Some(b), [c.stride, c.stride], [1, 1], [1, 1], c.groups)?;
            return activate(self.act, &y);
        }
        let y1 = t.one_by_one.forward(x)?;
        let y1 = match Self::alpha_applies(self.alpha.as_ref()) {
            Some(alpha) => self.fused_alpha.as_ref().unwrap_or(alpha).f_mul(&y1)?,
            None => y1,
        };
        let mut y = t.dense.forward(x)?.f_add(&y1)?;
        if let Some(bn) = &t.identity {
            y = y.f_add(&bn.forward(x)?)?;
        }
        activate(self.act, &y)
    }
}

impl RepVggBlock {
    /// [`RepVggBlock::forward`] as ONNX nodes. With the graph's `fold_bn` (the export default),
    /// the three branches are one `Conv`: `switch_to_deploy`'s kernel and bias, as `fuse` computes
    /// them in float64; without it, each branch as PyTorch runs it (conv → BatchNormalization).
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let t = match &self.branches {
            RepBranches::Deploy(conv) => {
                let y = conv.emit_onnx(g, x)?;
                return emit_activation(g, self.act, y);
            }
            RepBranches::Train(t) => t,
        };
        let alpha = Self::alpha_applies(self.alpha.as_ref());
        if g.fold_bn() {
            let (k, b) =
                equivalent_kernel_bias(&t.dense, &t.one_by_one, t.identity.as_ref(), alpha);
            let y = t.dense.conv.emit_weights(g, x, &k, Some(&b))?;
            return emit_activation(g, self.act, y);
        }
        // The block's state-dict prefix, from `<prefix>.rbr_dense.conv.weight`.
        let prefix = (t.dense.conv.weight_name)
            .trim_end_matches(".rbr_dense.conv.weight")
            .to_string();
        let y1 = t.one_by_one.emit_onnx(g, x)?;
        let y1 = match alpha {
            Some(a) => {
                let a = g.weight_tensor(&format!("{prefix}.alpha"), a)?;
                g.op("Mul", &[a, y1], vec![])
            }
            None => y1,
        };
        let y = t.dense.emit_onnx(g, x)?;
        let mut y = g.op("Add", &[y, y1], vec![]);
        if let Some(bn) = &t.identity {
            let id = bn.emit_onnx(g, x, &format!("{prefix}.rbr_identity"))?;
            y = g.op("Add", &[y, id], vec![]);
        }
        emit_activation(g, self.act, y)
    }
}

/// `RepVGGBlock._fuse_bn_tensor` of a conv + BN branch, in float64: `(kernel·γ/σ, β − μ·γ/σ)`
/// with `σ = sqrt(running_var + eps)`.
fn fuse_branch(kernel: &Tensor, bn: &BatchNorm2d) -> (Tensor, Tensor) {
    let d = |t: &Tensor| t.to_kind(Kind::Double);
    let std = (d(&bn.running_var) + bn.eps).sqrt();
    let t = d(&bn.weight) / &std;
    let k = d(kernel) * t.reshape([-1, 1, 1, 1]);
    let b = d(&bn.bias) - d(&bn.running_mean) * d(&bn.weight) / std;
    (k, b)
}

/// `RepVGGBlock.get_equivalent_kernel_bias`: the 3×3 branch, plus the 1×1 kernel padded to 3×3
/// (times alpha when it applies), plus the identity BN as a centred one-hot kernel
/// (`id_tensor[i, i % (in / groups), 1, 1] = 1`).
fn equivalent_kernel_bias(
    dense: &ConvModule,
    one_by_one: &ConvModule,
    identity: Option<&BatchNorm2d>,
    alpha: Option<&Tensor>,
) -> (Tensor, Tensor) {
    fn bn(m: &ConvModule) -> &BatchNorm2d {
        m.bn.as_ref().expect("RepVGG branches have a norm")
    }
    let (k3, b3) = fuse_branch(&dense.conv.weight, bn(dense));
    let (k1, b1) = fuse_branch(&one_by_one.conv.weight, bn(one_by_one));
    let mut k1 = k1.constant_pad_nd([1, 1, 1, 1]);
    let mut b1 = b1;
    if let Some(a) = alpha {
        let a = a.to_kind(Kind::Double);
        k1 *= &a;
        b1 *= &a;
    }
    let mut kernel = k3 + k1;
    let mut bias = b3 + b1;
    if let Some(id) = identity {
        let (cout, per_group) = (dense.conv.weight.size()[0], dense.conv.weight.size()[1]);
        let one_hot = Tensor::zeros(
            [cout, per_group, 3, 3],
            (Kind::Double, dense.conv.weight.device()),
        );
        for i in 0..cout {
            let _ = one_hot.get(i).get(i % per_group).get(1).get(1).fill_(1.0);
        }
        let (kid, bid) = fuse_branch(&one_hot, id);
        kernel += kid;
        bias += bid;
    }
    (kernel, bias)
}

/// `RepStageBlock(in_channels, out_channels, num_blocks, block_cfg)` with the default
/// `bottle_block=RepVGGBlock` (`mmyolo/models/layers/yolo_bricks.py: RepStageBlock`): `conv1`
/// (in → out), then `block`, a Sequential of `num_blocks - 1` blocks (out → out), absent when
/// `num_blocks <= 1`. The blocks are whatever `block_cfg` builds (`RepVGGBlock` in every shipped
/// config that uses this form; the BottleRep form is `yolov6_bricks::BottleRepStage`).
#[derive(Debug)]
pub struct RepStageBlock {
    pub conv1: YoloV6Block,
    pub block: Vec<YoloV6Block>,
}

impl RepStageBlock {
    pub fn new(
        ctx: &Ctx,
        (cin, cout, num_blocks): (i64, i64, i64),
        cfg: &YoloV6BlockCfg,
        path: &str,
    ) -> Result<Self, ModelError> {
        let block =
            |c: &Ctx, i: i64| YoloV6Block::new(c, (i, cout), BlockPlace::InStage, cfg, path);
        let conv1 = block(&ctx.sub("conv1"), cin)?;
        let bctx = ctx.sub("block");
        let block = (0..(num_blocks - 1).max(0))
            .map(|i| block(&bctx.sub(i), cout))
            .collect::<Result<_, _>>()?;
        Ok(RepStageBlock { conv1, block })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.conv1.fuse(mode);
        self.block.iter_mut().for_each(|b| b.fuse(mode));
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let mut y = self.conv1.forward(x)?;
        for b in &self.block {
            y = b.forward(&y)?;
        }
        Ok(y)
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let y = self.conv1.emit_onnx(g, x)?;
        self.block.iter().try_fold(y, |y, b| b.emit_onnx(g, y))
    }
}

/// `nn.ConvTranspose2d(c, c, kernel_size=k, stride=k, bias=True)`: weight `[in, out, k, k]`.
#[derive(Debug)]
pub struct ConvTranspose2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub stride: i64,
    fused: Option<(Tensor, Tensor)>,
    /// `<prefix>.weight` (ONNX initializer names).
    weight_name: String,
}

impl ConvTranspose2d {
    pub fn new(ctx: &Ctx, (cin, cout, kernel, stride): (i64, i64, i64, i64)) -> Self {
        ConvTranspose2d {
            weight: ctx.param("weight", &[cin, cout, kernel, kernel]),
            bias: ctx.param("bias", &[cout]),
            stride,
            fused: None,
            weight_name: ctx.name("weight"),
        }
    }

    pub fn fuse(&mut self, kind: Kind) {
        self.fused = Some((self.weight.to_kind(kind), self.bias.to_kind(kind)));
    }

    /// `F.conv_transpose2d(x, weight, bias, stride, padding=0, output_padding=0, groups=1,
    /// dilation=1)`, as `nn.ConvTranspose2d.forward` calls it without `output_size`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let (w, b) = match &self.fused {
            Some((w, b)) => (w, b),
            None => (&self.weight, &self.bias),
        };
        x.f_conv_transpose2d(
            w,
            Some(b),
            [self.stride, self.stride],
            [0, 0],
            [0, 0],
            1,
            [1, 1],
        )
    }
}

impl ConvTranspose2d {
    /// ONNX `ConvTranspose` (no padding, kernel = stride as built): output `(H - 1)·s + k`, as
    /// `F.conv_transpose2d` computes it.
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let w = g.weight_tensor(&self.weight_name, &self.weight)?;
        let bias_name = format!("{}.bias", self.weight_name.trim_end_matches(".weight"));
        let b = g.weight_tensor(&bias_name, &self.bias)?;
        let size = self.weight.size();
        let s = self.stride;
        Ok(g.op(
            "ConvTranspose",
            &[x, w, b],
            vec![
                attr_ints("kernel_shape", &size[2..]),
                attr_ints("pads", &[0, 0, 0, 0]),
                attr_ints("strides", &[s, s]),
            ],
        ))
    }
}
