//! mmcv's `ConvModule` (conv → norm → act, `mmcv/cnn/bricks/conv_module.py`), its
//! `DepthwiseSeparableConvModule` (`depthwise_separable_conv_module.py`) and a bare `nn.Conv2d`.
//!
//! State-dict names: `<m>.conv.weight` (+ `<m>.conv.bias` when there is no norm: `bias='auto'`),
//! `<m>.bn.{weight,bias,running_mean,running_var}` (`build_norm_layer` names batch norms `bn`), or
//! `<m>.gn.{weight,bias}` for `norm_cfg=dict(type='GN', ...)` ([`GroupNorm`]).
//! After the weights are loaded, [`ConvModule::fuse`] freezes them for inference. By default the
//! forward pass is conv → eval batch norm → act, the same kernels in the same order as PyTorch runs
//! mmcv's `ConvModule`, so the outputs match the Python model to float32 rounding of identical
//! operations. With [`Fuse::fold_bn`] the batch norm is folded into the convolution (one kernel
//! less per layer, but the folded weights round differently: up to ~7e-4 relative on the RTMDet
//! head outputs of the fixtures, measured with the real Python model folded the same way).

use tch::{Kind, Tensor};

use crate::export::onnx::graph::{attr_f, attr_i, attr_ints, OnnxGraph, ValueId};
use crate::export::onnx::ExportError;
use crate::models::cfg::{Act, NormCfg};
use crate::models::layers::group_norm::GroupNorm;
use crate::models::param::Ctx;

/// How [`ConvModule::fuse`] and friends freeze the loaded weights for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fuse {
    /// Compute precision of the forward pass (weights are cast to it).
    pub kind: Kind,
    /// Fold each batch norm into its convolution (faster, not bitwise Python's arithmetic).
    pub fold_bn: bool,
}

impl Fuse {
    /// Unfolded (Python's op order) in `kind`.
    pub fn exact(kind: Kind) -> Self {
        Fuse {
            kind,
            fold_bn: false,
        }
    }
}

/// `nn.Conv2d` with square kernels, as the RTMDet modules create them.
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: i64,
    pub padding: i64,
    pub dilation: i64,
    pub groups: i64,
    /// State-dict name of `weight` (the canonical name when shared).
    pub weight_name: String,
    fused: Option<(Tensor, Option<Tensor>)>,
}

/// Geometry of a convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub cin: i64,
    pub cout: i64,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub groups: i64,
}

impl ConvSpec {
    pub fn new(cin: i64, cout: i64, kernel: i64) -> Self {
        ConvSpec {
            cin,
            cout,
            kernel,
            stride: 1,
            padding: 0,
            groups: 1,
        }
    }
    pub fn stride(mut self, s: i64) -> Self {
        self.stride = s;
        self
    }
    pub fn padding(mut self, p: i64) -> Self {
        self.padding = p;
        self
    }
    pub fn groups(mut self, g: i64) -> Self {
        self.groups = g;
        self
    }
    fn weight_shape(&self) -> Vec<i64> {
        vec![
            self.cout,
            self.cin / self.groups.max(1),
            self.kernel,
            self.kernel,
        ]
    }
}

impl Conv2d {
    pub fn new(ctx: &Ctx, spec: ConvSpec, bias: bool) -> Self {
        let weight = ctx.param("weight", &spec.weight_shape());
        let bias = bias.then(|| ctx.param("bias", &[spec.cout]));
        Conv2d {
            weight,
            bias,
            stride: spec.stride,
            padding: spec.padding,
            dilation: 1,
            groups: spec.groups,
            weight_name: ctx.name("weight"),
            fused: None,
        }
    }

    /// The same tensors as `shared`, registered under this module's names as aliases (the
    /// `cls_convs[n][i].conv = cls_convs[0][i].conv` of `share_conv`).
    pub fn alias_of(ctx: &Ctx, shared: &Conv2d) -> Self {
        ctx.alias("weight", &shared.weight_name, &shared.weight.size());
        if let Some(b) = &shared.bias {
            let canonical = format!("{}.bias", shared.weight_name.trim_end_matches(".weight"));
            ctx.alias("bias", &canonical, &b.size());
        }
        Conv2d {
            weight: shared.weight.shallow_clone(),
            bias: shared.bias.as_ref().map(Tensor::shallow_clone),
            stride: shared.stride,
            padding: shared.padding,
            dilation: shared.dilation,
            groups: shared.groups,
            weight_name: shared.weight_name.clone(),
            fused: None,
        }
    }

    pub fn out_channels(&self) -> i64 {
        self.weight.size()[0]
    }

    /// Freezes the weights for inference in `mode.kind` (a no-op copy for f32).
    pub fn fuse(&mut self, mode: Fuse) {
        self.fused = Some((
            self.weight.to_kind(mode.kind),
            self.bias.as_ref().map(|b| b.to_kind(mode.kind)),
        ));
    }

    /// `Conv` with `w` and `b` as this convolution's weights (the loaded ones, or the batch norm
    /// folded into them), named after the state-dict keys.
    pub(crate) fn emit_weights(
        &self,
        g: &mut OnnxGraph,
        x: ValueId,
        w: &Tensor,
        b: Option<&Tensor>,
    ) -> Result<ValueId, ExportError> {
        let wid = g.weight_tensor(&self.weight_name, w)?;
        let mut inputs = vec![x, wid];
        if let Some(b) = b {
            let name = format!("{}.bias", self.weight_name.trim_end_matches(".weight"));
            inputs.push(g.weight_tensor(&name, b)?);
        }
        let size = w.size();
        let (p, s, d) = (self.padding, self.stride, self.dilation);
        Ok(g.op(
            "Conv",
            &inputs,
            vec![
                attr_ints("dilations", &[d, d]),
                attr_i("group", self.groups),
                attr_ints("kernel_shape", &size[2..]),
                attr_ints("pads", &[p, p, p, p]),
                attr_ints("strides", &[s, s]),
            ],
        ))
    }

    /// ONNX `Conv` of the loaded float32 weights.
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        self.emit_weights(g, x, &self.weight, self.bias.as_ref())
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let (w, b) = match &self.fused {
            Some((w, b)) => (w, b.as_ref()),
            None => (&self.weight, self.bias.as_ref()),
        };
        x.f_conv2d(
            w,
            b,
            [self.stride, self.stride],
            [self.padding, self.padding],
            [self.dilation, self.dilation],
            self.groups,
        )
    }
}

/// `nn.BatchNorm2d` in eval mode.
#[derive(Debug)]
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub eps: f64,
    /// weight, bias, running_mean, running_var cast to the compute kind (boxed: keeps
    /// `ConvModule` small).
    fused: Option<Box<[Tensor; 4]>>,
}

impl BatchNorm2d {
    pub fn new(ctx: &Ctx, channels: i64, cfg: &NormCfg) -> Self {
        BatchNorm2d {
            weight: ctx.param("weight", &[channels]),
            bias: ctx.param("bias", &[channels]),
            running_mean: ctx.param("running_mean", &[channels]),
            running_var: ctx.param("running_var", &[channels]),
            eps: cfg.eps,
            fused: None,
        }
    }

    /// Freezes the statistics for inference in `kind` (a no-op copy for f32).
    pub fn fuse(&mut self, kind: Kind) {
        self.fused = Some(Box::new(
            [
                &self.weight,
                &self.bias,
                &self.running_mean,
                &self.running_var,
            ]
            .map(|t| t.to_kind(kind)),
        ));
    }

    /// An ONNX `BatchNormalization` (inference mode), as `_BatchNorm.forward` runs it; `name`:
    /// the module's state-dict prefix (initializer names).
    pub fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        x: ValueId,
        name: &str,
    ) -> Result<ValueId, ExportError> {
        let mut inputs = vec![x];
        for (leaf, t) in [
            ("weight", &self.weight),
            ("bias", &self.bias),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ] {
            inputs.push(g.weight_tensor(&format!("{name}.{leaf}"), t)?);
        }
        Ok(g.op(
            "BatchNormalization",
            &inputs,
            vec![attr_f("epsilon", self.eps as f32)],
        ))
    }

    /// `F.batch_norm(x, running_mean, running_var, weight, bias, training=False, eps=eps)`, as
    /// `_BatchNorm.forward` calls it in eval mode.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let [w, b, m, v] = match self.fused.as_deref() {
            Some([w, b, m, v]) => [w, b, m, v],
            None => [
                &self.weight,
                &self.bias,
                &self.running_mean,
                &self.running_var,
            ],
        };
        x.f_batch_norm(
            Some(w),
            Some(b),
            Some(m),
            Some(v),
            false,
            0.0,
            self.eps,
            false,
        )
    }
}

/// Applies an activation (`mmcv.cnn.build_activation_layer` semantics).
pub fn activate(act: Act, x: &Tensor) -> Result<Tensor, tch::TchError> {
    match act {
        Act::ReLU => x.f_relu(),
        Act::LeakyReLU(slope) => x.f_maximum(&x.f_mul_scalar(slope)?),
        Act::ReLU6 => x.f_clamp(0.0, 6.0),
        Act::SiLU => x.f_silu(),
        Act::Sigmoid => x.f_sigmoid(),
        Act::Tanh => x.f_tanh(),
        Act::HSigmoid {
            bias,
            divisor,
            min,
            max,
        } => x
            .f_add_scalar(bias)?
            .f_div_scalar(divisor)?
            .f_clamp(min, max),
        Act::HSwish => x.f_hardswish(),
        Act::Gelu => x.f_gelu("none"),
        Act::Elu(alpha) => {
            let neg = x.f_expm1()?.f_mul_scalar(alpha)?;
            x.f_where_self(&x.f_gt(0.0)?, &neg)
        }
        Act::Clamp { min, max } => x.f_clamp(min, max),
    }
}

/// [`activate`] as ONNX nodes (opset 14+: `HardSwish`; SiLU and GELU spelled out, as opset 17
/// has neither).
pub fn emit_activation(g: &mut OnnxGraph, act: Act, x: ValueId) -> Result<ValueId, ExportError> {
    let clip = |g: &mut OnnxGraph, x: ValueId, lo: f64, hi: f64| {
        let (lo, hi) = (g.scalar(lo as f32), g.scalar(hi as f32));
        g.op("Clip", &[x, lo, hi], vec![])
    };
    Ok(match act {
        Act::ReLU => g.op("Relu", &[x], vec![]),
        Act::LeakyReLU(slope) => g.op("LeakyRelu", &[x], vec![attr_f("alpha", slope as f32)]),
        Act::ReLU6 => clip(g, x, 0.0, 6.0),
        Act::SiLU => {
            let s = g.op("Sigmoid", &[x], vec![]);
            g.op("Mul", &[x, s], vec![])
        }
        Act::Sigmoid => g.op("Sigmoid", &[x], vec![]),
        Act::Tanh => g.op("Tanh", &[x], vec![]),
        Act::HSigmoid {
            bias,
            divisor,
            min,
            max,
        } => {
            let (b, d) = (g.scalar(bias as f32), g.scalar(divisor as f32));
            let y = g.op("Add", &[x, b], vec![]);
            let y = g.op("Div", &[y, d], vec![]);
            clip(g, y, min, max)
        }
        Act::HSwish => g.op("HardSwish", &[x], vec![]),
        Act::Gelu => {
            // F.gelu(approximate='none'): x * 0.5 * (1 + erf(x / sqrt(2))).
            let (r2, half, one) = (
                g.scalar(std::f32::consts::SQRT_2),
                g.scalar(0.5),
                g.scalar(1.0),
            );
            let e = g.op("Div", &[x, r2], vec![]);
            let e = g.op("Erf", &[e], vec![]);
            let e = g.op("Add", &[e, one], vec![]);
            let y = g.op("Mul", &[x, half], vec![]);
            g.op("Mul", &[y, e], vec![])
        }
        Act::Elu(alpha) => g.op("Elu", &[x], vec![attr_f("alpha", alpha as f32)]),
        Act::Clamp { min, max } => clip(g, x, min, max),
    })
}

/// mmcv `ConvModule` with order (conv, norm, act).
#[derive(Debug)]
pub struct ConvModule {
    pub conv: Conv2d,
    pub bn: Option<BatchNorm2d>,
    /// The norm when `norm_cfg` is `GN` (then `bn` is `None`); nothing to fold. Boxed: rare,
    /// and it would make every `ConvModule` (and `AnyConv::Plain`) larger.
    pub gn: Option<Box<GroupNorm>>,
    pub act: Option<Act>,
    /// The batch norm is folded into `conv` (then `bn` is skipped in the forward pass).
    folded: bool,
}

impl ConvModule {
    /// `ConvModule(cin, cout, k, stride, padding, groups, norm_cfg=norm, act_cfg=act)`;
    /// `bias='auto'`: a bias only without norm.
    pub fn new(ctx: &Ctx, spec: ConvSpec, norm: Option<&NormCfg>, act: Option<Act>) -> Self {
        Self::with_bias(ctx, spec, norm.is_none(), norm, act)
    }

    /// [`ConvModule::new`] with an explicit `bias` (mmcv keeps a conv bias next to a norm when
    /// `bias=True`: YOLOv6's `ConvWrapper`).
    pub fn with_bias(
        ctx: &Ctx,
        spec: ConvSpec,
        bias: bool,
        norm: Option<&NormCfg>,
        act: Option<Act>,
    ) -> Self {
        let conv = Conv2d::new(&ctx.sub("conv"), spec, bias);
        let (bn, gn) = build_norm(ctx, spec.cout, norm);
        ConvModule {
            conv,
            bn,
            gn,
            act,
            folded: false,
        }
    }

    /// Like [`ConvModule::new`] but the convolution is `shared`'s (own norm, own activation).
    pub fn with_shared_conv(
        ctx: &Ctx,
        shared: &Conv2d,
        norm: Option<&NormCfg>,
        act: Option<Act>,
    ) -> Self {
        let conv = Conv2d::alias_of(&ctx.sub("conv"), shared);
        let (bn, gn) = build_norm(ctx, conv.out_channels(), norm);
        ConvModule {
            conv,
            bn,
            gn,
            act,
            folded: false,
        }
    }

    /// Freezes the weights for inference. With `mode.fold_bn`, folds the batch norm into the
    /// convolution (computed in f64, then stored in `mode.kind`): per layer within ~1e-7 relative
    /// of conv → BN, but the differences grow through the network (see the module docs).
    pub fn fuse(&mut self, mode: Fuse) {
        let kind = mode.kind;
        self.folded = false;
        if let Some(gn) = &mut self.gn {
            gn.fuse(kind);
        }
        let Some(bn) = &mut self.bn else {
            self.conv.fuse(mode);
            return;
        };
        if !mode.fold_bn {
            self.conv.fuse(mode);
            bn.fuse(kind);
            return;
        }
        let (fw, fb) = fold_batch_norm(&self.conv, bn);
        self.conv.fused = Some((fw.to_kind(kind), Some(fb.to_kind(kind))));
        self.folded = true;
    }

    /// The ONNX nodes: `Conv` with the batch norm folded in (the float64 fold of
    /// [`ConvModule::fuse`], stored as float32), then the activation.
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let y = match &self.bn {
            Some(bn) if g.fold_bn() => {
                let (w, b) = fold_batch_norm(&self.conv, bn);
                self.conv.emit_weights(g, x, &w, Some(&b))?
            }
            Some(bn) => {
                // Conv → BatchNormalization (inference mode), as `_BatchNorm.forward` runs it.
                let y = self.conv.emit_onnx(g, x)?;
                let base = self.conv.weight_name.trim_end_matches(".conv.weight");
                let mut inputs = vec![y];
                for (name, t) in [
                    ("weight", &bn.weight),
                    ("bias", &bn.bias),
                    ("running_mean", &bn.running_mean),
                    ("running_var", &bn.running_var),
                ] {
                    inputs.push(g.weight_tensor(&format!("{base}.bn.{name}"), t)?);
                }
                g.op(
                    "BatchNormalization",
                    &inputs,
                    vec![attr_f("epsilon", bn.eps as f32)],
                )
            }
            None => {
                let y = self.conv.emit_onnx(g, x)?;
                match &self.gn {
                    // Conv → GroupNorm (`gn`, no statistics to fold).
                    Some(gn) => {
                        let base = self.conv.weight_name.trim_end_matches(".conv.weight");
                        gn.emit_onnx(g, y, &format!("{base}.gn"))?
                    }
                    None => y,
                }
            }
        };
        match self.act {
            Some(act) => emit_activation(g, act, y),
            None => Ok(y),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let mut y = self.conv.forward(x)?;
        if !self.folded {
            if let Some(bn) = &self.bn {
                y = bn.forward(&y)?;
            }
        }
        if let Some(gn) = &self.gn {
            y = gn.forward(&y)?;
        }
        match self.act {
            Some(act) => activate(act, &y),
            None => Ok(y),
        }
    }
}

/// The norm layer of `norm_cfg` under `build_norm_layer`'s name: `bn` for batch norms, `gn` for
/// `GN` (`mmcv/cnn/bricks/norm.py:infer_abbr`).
fn build_norm(
    ctx: &Ctx,
    channels: i64,
    norm: Option<&NormCfg>,
) -> (Option<BatchNorm2d>, Option<Box<GroupNorm>>) {
    match norm {
        Some(n) if n.is_group_norm() => (
            None,
            Some(Box::new(GroupNorm::new(&ctx.sub("gn"), channels, n))),
        ),
        Some(n) => (Some(BatchNorm2d::new(&ctx.sub("bn"), channels, n)), None),
        None => (None, None),
    }
}

/// `bn` folded into `conv`, in float64: `w * γ/√(σ²+ε)`, `(b - μ) * γ/√(σ²+ε) + β`.
pub(crate) fn fold_batch_norm(conv: &Conv2d, bn: &BatchNorm2d) -> (Tensor, Tensor) {
    let w = conv.weight.to_kind(Kind::Double);
    let scale =
        bn.weight.to_kind(Kind::Double) * (bn.running_var.to_kind(Kind::Double) + bn.eps).rsqrt();
    let cout = scale.size()[0];
    let fw = &w * scale.reshape([cout, 1, 1, 1]);
    let conv_bias = match &conv.bias {
        Some(b) => b.to_kind(Kind::Double),
        None => Tensor::zeros([cout], (Kind::Double, w.device())),
    };
    let fb = (conv_bias - bn.running_mean.to_kind(Kind::Double)) * &scale
        + bn.bias.to_kind(Kind::Double);
    (fw, fb)
}

/// mmcv `DepthwiseSeparableConvModule`: `depthwise_conv` (groups = cin) then `pointwise_conv` (1×1),
/// both with the same norm and activation (the `dw_*`/`pw_*` overrides are never set on RTMDet).
#[derive(Debug)]
pub struct DepthwiseSeparableConvModule {
    pub depthwise_conv: ConvModule,
    pub pointwise_conv: ConvModule,
}

impl DepthwiseSeparableConvModule {
    pub fn new(ctx: &Ctx, spec: ConvSpec, norm: Option<&NormCfg>, act: Option<Act>) -> Self {
        let dw = ConvSpec {
            cout: spec.cin,
            groups: spec.cin,
            ..spec
        };
        let pw = ConvSpec::new(spec.cin, spec.cout, 1);
        DepthwiseSeparableConvModule {
            depthwise_conv: ConvModule::new(&ctx.sub("depthwise_conv"), dw, norm, act),
            pointwise_conv: ConvModule::new(&ctx.sub("pointwise_conv"), pw, norm, act),
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.depthwise_conv.fuse(mode);
        self.pointwise_conv.fuse(mode);
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        self.pointwise_conv
            .forward(&self.depthwise_conv.forward(x)?)
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let y = self.depthwise_conv.emit_onnx(g, x)?;
        self.pointwise_conv.emit_onnx(g, y)
    }
}

/// `ConvModule` or `DepthwiseSeparableConvModule`, chosen by `use_depthwise` as the Python code
/// does with `conv = DepthwiseSeparableConvModule if use_depthwise else ConvModule`.
#[derive(Debug)]
pub enum AnyConv {
    /// Boxed, as `Depthwise` is: a `ConvModule` is over 200 bytes.
    Plain(Box<ConvModule>),
    Depthwise(Box<DepthwiseSeparableConvModule>),
}

impl AnyConv {
    pub fn new(
        ctx: &Ctx,
        spec: ConvSpec,
        norm: Option<&NormCfg>,
        act: Option<Act>,
        depthwise: bool,
    ) -> Self {
        if depthwise {
            AnyConv::Depthwise(Box::new(DepthwiseSeparableConvModule::new(
                ctx, spec, norm, act,
            )))
        } else {
            AnyConv::Plain(Box::new(ConvModule::new(ctx, spec, norm, act)))
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        match self {
            AnyConv::Plain(c) => c.fuse(mode),
            AnyConv::Depthwise(c) => c.fuse(mode),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        match self {
            AnyConv::Plain(c) => c.forward(x),
            AnyConv::Depthwise(c) => c.forward(x),
        }
    }

    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        match self {
            AnyConv::Plain(c) => c.emit_onnx(g, x),
            AnyConv::Depthwise(c) => c.emit_onnx(g, x),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use tch::{nn, Device, Kind, Tensor};

    use super::*;
    use crate::models::param::{Ctx, KeyLog};

    /// Folding BN into the conv must match conv → BN (eval) to ~1e-6 on realistic statistics.
    #[test]
    fn folded_batch_norm_matches_conv_then_bn() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let log = Rc::new(RefCell::new(KeyLog::default()));
        let ctx = Ctx::new(vs.root(), log.clone());
        let norm = NormCfg::bn(1e-3, 0.03);
        let spec = ConvSpec::new(8, 16, 3).padding(1).stride(2);
        let mut m = ConvModule::new(&ctx, spec, Some(&norm), Some(Act::SiLU));
        tch::no_grad(|| {
            for (name, mut v) in vs.variables() {
                let r = Tensor::rand(v.size().as_slice(), (Kind::Float, Device::Cpu));
                let value = if name.ends_with("running_var") || name.ends_with("bn.weight") {
                    r + 0.5
                } else {
                    r - 0.5
                };
                v.copy_(&value);
            }
        });
        let names: Vec<String> = log.borrow().keys.iter().map(|k| k.name.clone()).collect();
        assert_eq!(
            names,
            [
                "conv.weight",
                "bn.weight",
                "bn.bias",
                "bn.running_mean",
                "bn.running_var"
            ]
        );
        let x = Tensor::randn([2, 8, 20, 14], (Kind::Float, Device::Cpu));
        let reference = m.forward(&x).expect("unfused");
        // The default freeze keeps conv → BN: the very same kernels, bitwise.
        m.fuse(Fuse::exact(Kind::Float));
        let exact = m.forward(&x).expect("exact");
        assert!(
            exact.equal(&reference),
            "unfolded freeze changed the result"
        );
        m.fuse(Fuse {
            kind: Kind::Float,
            fold_bn: true,
        });
        let fused = m.forward(&x).expect("fused");
        let diff = (&fused - &reference).abs().max().double_value(&[]);
        let scale = reference.abs().max().double_value(&[]);
        // float32 rounding of a 72-term dot product: relative ~1e-7.
        assert!(
            diff <= 1e-6 * scale.max(1.0),
            "max |diff| {diff} at scale {scale}"
        );
        assert_eq!(fused.size(), vec![2, 16, 10, 7]);
        assert!(
            !fused.equal(&reference),
            "folding is expected to round differently"
        );
        // And back: unfolding again restores conv → BN.
        m.fuse(Fuse::exact(Kind::Float));
        assert!(m.forward(&x).expect("exact again").equal(&reference));
    }

    #[test]
    fn activations_follow_mmcv() {
        let x = Tensor::from_slice(&[-4.0f32, -1.0, 0.0, 0.5, 4.0]);
        let v = |t: Tensor| Vec::<f32>::try_from(t).expect("f32");
        let hs = Act::HSigmoid {
            bias: 3.0,
            divisor: 6.0,
            min: 0.0,
            max: 1.0,
        };
        assert_eq!(
            v(activate(hs, &x).expect("hsigmoid")),
            [0.0, 1.0 / 3.0, 0.5, 3.5 / 6.0, 1.0]
        );
        assert_eq!(
            v(activate(Act::LeakyReLU(0.1), &x).expect("leaky")),
            [-0.4, -0.1, 0.0, 0.5, 4.0]
        );
        assert_eq!(
            v(activate(Act::ReLU6, &(&x * 2.0)).expect("relu6")),
            [0.0, 0.0, 0.0, 1.0, 6.0]
        );
        let elu = v(activate(Act::Elu(1.0), &x).expect("elu"));
        assert!((elu[1] - (-1f32).exp_m1()).abs() < 1e-7 && elu[4] == 4.0);
    }
}
