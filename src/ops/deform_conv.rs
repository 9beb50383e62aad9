//! mmcv deformable convolution on tch tensor ops: [`deform_conv2d`] (DCNv1 `DeformConv2d`,
//! `mmcv/ops/deform_conv.py`; with a mask, DCNv2 `ModulatedDeformConv2d`,
//! `mmcv/ops/modulated_deform_conv.py`) and the layers [`DeformConv2d`], [`DeformConv2dPack`]
//! (`DCN`) and [`ModulatedDeformConv2dPack`] (`DCNv2`) with mmcv's state-dict names.
//!
//! Sampling mirrors `deformable_im2col_bilinear_cpu` (`mmcv/ops/csrc/pytorch/cpu/deform_conv.cpp`):
//! kernel point `k = i·kw + j` of deform group `g` reads
//! `y = (h_out·stride − pad + i·dil) + offset[g, 2k]`, `x = … + offset[g, 2k+1]` (offsets are
//! `(dy, dx)` pairs); nothing is read unless `−1 < y < H` and `−1 < x < W`; each of the four
//! bilinear corners outside the map reads 0; `val = w1·v1 + w2·v2 + w3·v3 + w4·v4` (in that
//! order), times the mask for DCNv2. The columns are then multiplied by the weight (im2col + GEMM),
//! per convolution group. Output rows are processed in chunks to bound the column buffer.
//!
//! mmcv's `DeformConv2d.forward` zero-pads inputs smaller than the kernel and crops the output
//! (`deform_conv.py:334-347`, a workaround for a CUDA assert); zero padding reads the same zeros as
//! "outside the map", so computing directly gives the same values (checked in the generator).

use tch::{Kind, Tensor};

use super::OpError;
use crate::models::layers::conv_module::{Conv2d, ConvSpec};
use crate::models::param::Ctx;

const OP: &str = "deform_conv2d";
/// Column-buffer elements per chunk of output rows (f32: 64 MiB per gathered corner).
const CHUNK_ELEMENTS: i64 = 1 << 24;

/// Stride, padding, dilation (each `[h, w]`), convolution groups and deform groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeformGeometry {
    pub stride: [i64; 2],
    pub padding: [i64; 2],
    pub dilation: [i64; 2],
    pub groups: i64,
    pub deform_groups: i64,
}

impl Default for DeformGeometry {
    fn default() -> Self {
        DeformGeometry {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            deform_groups: 1,
        }
    }
}

/// `(size + 2·pad − dil·(k−1) − 1) / stride + 1`, or 0 where that is not positive (as `conv2d`).
fn out_size(size: i64, k: i64, s: i64, p: i64, d: i64) -> i64 {
    let span = size + 2 * p - d * (k - 1) - 1;
    if span < 0 {
        0
    } else {
        span / s + 1
    }
}

/// mmcv `deform_conv2d(input, offset, weight, ...)` (no bias, `mask = None`) and
/// `modulated_deform_conv2d(input, offset, mask, weight, bias, ...)`.
///
/// `input` `[N, C, H, W]`, `offset` `[N, 2·dg·kh·kw, Ho, Wo]`, `weight` `[Cout, C/groups, kh, kw]`,
/// `mask` `[N, dg·kh·kw, Ho, Wo]`, `bias` `[Cout]`; returns `[N, Cout, Ho, Wo]`.
pub fn deform_conv2d(
    input: &Tensor,
    offset: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geometry: &DeformGeometry,
    mask: Option<&Tensor>,
) -> Result<Tensor, OpError> {
    let isz = input.size();
    let [n, c, h, w] = isz[..] else {
        return Err(OpError::shape(OP, "input", isz, "[N, C, H, W]"));
    };
    let wsz = weight.size();
    let [cout, cin_g, kh, kw] = wsz[..] else {
        return Err(OpError::shape(
            OP,
            "weight",
            wsz,
            "[Cout, C/groups, kh, kw]",
        ));
    };
    let DeformGeometry {
        stride,
        padding,
        dilation,
        groups,
        deform_groups: dg,
    } = *geometry;
    if stride.iter().any(|&s| s <= 0) || dilation.iter().any(|&d| d <= 0) {
        return Err(OpError::invalid(
            OP,
            format!("stride {stride:?} and dilation {dilation:?} must be positive"),
        ));
    }
    if padding.iter().any(|&p| p < 0) {
        return Err(OpError::invalid(
            OP,
            format!("padding {padding:?} must not be negative"),
        ));
    }
    if groups <= 0 || dg <= 0 || c % groups != 0 || c % dg != 0 || cout % groups != 0 {
        return Err(OpError::invalid(
            OP,
            format!(
                "groups={groups} and deform_groups={dg} must divide the {c} input channels \
                 (and groups the {cout} output channels)"
            ),
        ));
    }
    if cin_g * groups != c || kh <= 0 || kw <= 0 {
        return Err(OpError::shape(
            OP,
            "weight",
            wsz,
            format!(
                "[{cout}, {} (= {c} input channels / groups {groups}), kh, kw]",
                c / groups
            ),
        ));
    }
    let ho = out_size(h, kh, stride[0], padding[0], dilation[0]);
    let wo = out_size(w, kw, stride[1], padding[1], dilation[1]);
    let kk = kh * kw;
    let osz = offset.size();
    if osz != [n, 2 * dg * kk, ho, wo] {
        return Err(OpError::shape(
            OP,
            "offset",
            osz,
            format!(
                "[{n}, {} (= 2 · deform_groups {dg} · {kh}·{kw} kernel points), {ho}, {wo}]",
                2 * dg * kk
            ),
        ));
    }
    if let Some(m) = mask {
        let msz = m.size();
        if msz != [n, dg * kk, ho, wo] {
            return Err(OpError::shape(
                OP,
                "mask",
                msz,
                format!("[{n}, {} (= deform_groups · kh·kw), {ho}, {wo}]", dg * kk),
            ));
        }
    }
    if let Some(b) = bias {
        if b.size() != [cout] {
            return Err(OpError::shape(OP, "bias", b.size(), format!("[{cout}]")));
        }
    }
    let torch = OpError::torch(OP);
    let kind = input.kind();
    let device = input.device();
    if n == 0 || ho == 0 || wo == 0 {
        return Tensor::f_zeros([n, cout, ho, wo], (kind, device)).map_err(&torch);
    }
    let sampler = Sampler {
        input: input
            .f_contiguous()
            .and_then(|t| t.f_view([n, dg, c / dg, h * w]))
            .map_err(&torch)?,
        h,
        w,
        kh,
        kw,
        stride,
        padding,
        dilation,
    };
    let wmat = weight
        .f_reshape([groups, cout / groups, cin_g * kk])
        .map_err(&torch)?;
    // Rows per chunk so that one gathered corner `[N, C, K, rows·Wo]` stays within the budget.
    let rows = (CHUNK_ELEMENTS / (n * c * kk * wo).max(1)).clamp(1, ho);
    let mut parts = Vec::new();
    let mut r0 = 0;
    while r0 < ho {
        let r1 = (r0 + rows).min(ho);
        let narrow = |t: &Tensor| t.f_narrow(2, r0, r1 - r0);
        let off = narrow(offset).map_err(&torch)?;
        let m = mask.map(narrow).transpose().map_err(&torch)?;
        let cols = sampler
            .columns(&off, m.as_ref(), r0, r1, wo, dg)
            .map_err(&torch)?;
        // cols `[N, dg, C/dg, K, L]` → `[N, groups, C/groups · K, L]` (channel-major, as the weight).
        let l = (r1 - r0) * wo;
        let out = cols
            .f_reshape([n, groups, cin_g * kk, l])
            .and_then(|cols| wmat.f_unsqueeze(0)?.f_matmul(&cols))
            .and_then(|o| o.f_reshape([n, cout, r1 - r0, wo]))
            .map_err(&torch)?;
        parts.push(out);
        r0 = r1;
    }
    let mut out = Tensor::f_cat(&parts, 2).map_err(&torch)?;
    if let Some(b) = bias {
        out = out
            .f_add(&b.f_view([1, cout, 1, 1]).map_err(&torch)?)
            .map_err(&torch)?;
    }
    Ok(out)
}

/// The im2col sampler of one call.
struct Sampler {
    /// `[N, dg, C/dg, H·W]`.
    input: Tensor,
    h: i64,
    w: i64,
    kh: i64,
    kw: i64,
    stride: [i64; 2],
    padding: [i64; 2],
    dilation: [i64; 2],
}

impl Sampler {
    /// Columns `[N, dg, C/dg, K, (r1−r0)·Wo]` of output rows `r0..r1`; `offset` and `mask` are
    /// already narrowed to those rows.
    fn columns(
        &self,
        offset: &Tensor,
        mask: Option<&Tensor>,
        r0: i64,
        r1: i64,
        wo: i64,
        dg: i64,
    ) -> Result<Tensor, tch::TchError> {
        let (kh, kw, h, w) = (self.kh, self.kw, self.h, self.w);
        let kk = kh * kw;
        let rows = r1 - r0;
        let device = self.input.device();
        let kind = self.input.kind();
        let sz = self.input.size();
        let (n, cg) = (sz[0], sz[2]);
        // Integer base positions `h_out·stride − pad + i·dil`, as floats (the kernel adds the
        // float offset to the int sum).
        let base_y: Vec<f32> = (0..kh)
            .flat_map(|i| {
                (r0..r1).map(move |ho| {
                    (ho * self.stride[0] - self.padding[0] + i * self.dilation[0]) as f32
                })
            })
            .collect();
        let base_x: Vec<f32> = (0..kw)
            .flat_map(|j| {
                (0..wo).map(move |wo_| {
                    (wo_ * self.stride[1] - self.padding[1] + j * self.dilation[1]) as f32
                })
            })
            .collect();
        let base_y = Tensor::f_from_slice(&base_y)?
            .f_view([1, 1, kh, 1, rows, 1])?
            .f_to_device(device)?
            .f_to_kind(kind)?;
        let base_x = Tensor::f_from_slice(&base_x)?
            .f_view([1, 1, 1, kw, 1, wo])?
            .f_to_device(device)?
            .f_to_kind(kind)?;
        let off = offset.f_reshape([n, dg, kh, kw, 2, rows, wo])?;
        let y = base_y.f_add(&off.f_select(4, 0)?)?; // [N, dg, kh, kw, rows, Wo]
        let x = base_x.f_add(&off.f_select(4, 1)?)?;
        // `if (h <= -1 || height <= h || w <= -1 || width <= w) return 0;`
        let inside = y
            .f_gt(-1.0)?
            .f_logical_and(&y.f_lt(h as f64)?)?
            .f_logical_and(&x.f_gt(-1.0)?)?
            .f_logical_and(&x.f_lt(w as f64)?)?;
        let y0 = y.f_floor()?;
        let x0 = x.f_floor()?;
        let ly = y.f_sub(&y0)?;
        let lx = x.f_sub(&x0)?;
        let hy = ly.f_neg()?.f_add_scalar(1.0)?;
        let hx = lx.f_neg()?.f_add_scalar(1.0)?;
        // Out-of-range samples may hold huge offsets: clamp before the integer cast.
        let y0 = y0.f_clamp(-2.0, h as f64)?.f_to_kind(Kind::Int64)?;
        let x0 = x0.f_clamp(-2.0, w as f64)?.f_to_kind(Kind::Int64)?;
        let shape = [n, dg, 1, kk * rows * wo];
        let corner =
            |dy: i64, dx: i64, wy: &Tensor, wx: &Tensor| -> Result<Tensor, tch::TchError> {
                let yi = y0.f_add_scalar(dy)?;
                let xi = x0.f_add_scalar(dx)?;
                let ok = inside
                    .f_logical_and(&yi.f_ge(0)?)?
                    .f_logical_and(&yi.f_le(h - 1)?)?
                    .f_logical_and(&xi.f_ge(0)?)?
                    .f_logical_and(&xi.f_le(w - 1)?)?;
                let idx = yi
                    .f_mul_scalar(w)?
                    .f_add(&xi)?
                    .f_where_self(&ok, &Tensor::f_zeros([], (Kind::Int64, device))?)?
                    .f_reshape(shape)?
                    .f_expand([n, dg, cg, kk * rows * wo], false)?;
                let v = self.input.f_gather(3, &idx, false)?;
                // The corner weight, zero where the corner reads nothing (its value is 0 upstream).
                let wgt = wy
                    .f_mul(wx)?
                    .f_where_self(&ok, &Tensor::f_zeros([], (kind, device))?)?
                    .f_reshape(shape)?;
                v.f_mul(&wgt)
            };
        // `w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4`, left to right.
        let acc = corner(0, 0, &hy, &hx)?
            .f_add(&corner(0, 1, &hy, &lx)?)?
            .f_add(&corner(1, 0, &ly, &hx)?)?
            .f_add(&corner(1, 1, &ly, &lx)?)?;
        let mut cols = acc.f_reshape([n, dg, cg, kk, rows * wo])?;
        if let Some(m) = mask {
            // mask `[N, dg·K, rows, Wo]` → `[N, dg, 1, K, rows·Wo]`
            cols = cols.f_mul(&m.f_reshape([n, dg, 1, kk, rows * wo])?)?;
        }
        Ok(cols)
    }
}

/// Arguments of mmcv's `DeformConv2d` / `ModulatedDeformConv2d` constructors (square kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeformConvSpec {
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: i64,
    pub geometry: DeformGeometry,
    pub bias: bool,
}

fn check_spec(spec: &DeformConvSpec, type_name: &str) -> Result<(), OpError> {
    let g = &spec.geometry;
    if spec.kernel <= 0
        || g.groups <= 0
        || g.deform_groups <= 0
        || spec.in_channels % g.groups != 0
        || spec.out_channels % g.groups != 0
    {
        return Err(OpError::invalid(
            OP,
            format!(
                "{type_name}: in_channels {} and out_channels {} must be divisible by groups {} \
                 (kernel {}, deform_groups {})",
                spec.in_channels, spec.out_channels, g.groups, spec.kernel, g.deform_groups
            ),
        ));
    }
    Ok(())
}

/// mmcv `DeformConv2d`: the deformable convolution with externally computed offsets (RepPoints'
/// `reppoints_cls_conv` / `reppoints_pts_refine_conv`). Key: `<m>.weight`; never a bias
/// (`assert not bias` upstream).
#[derive(Debug)]
pub struct DeformConv2d {
    pub weight: Tensor,
    pub geometry: DeformGeometry,
}

impl DeformConv2d {
    pub fn new(ctx: &Ctx, spec: &DeformConvSpec) -> Result<Self, OpError> {
        check_spec(spec, "DeformConv2d")?;
        if spec.bias {
            return Err(OpError::invalid(
                OP,
                "DeformConv2d: bias=True is not supported (mmcv asserts `not bias`); use \
                 ModulatedDeformConv2d or a separate bias",
            ));
        }
        let k = spec.kernel;
        Ok(DeformConv2d {
            weight: ctx.param(
                "weight",
                &[
                    spec.out_channels,
                    spec.in_channels / spec.geometry.groups,
                    k,
                    k,
                ],
            ),
            geometry: spec.geometry,
        })
    }

    pub fn forward(&self, x: &Tensor, offset: &Tensor) -> Result<Tensor, OpError> {
        deform_conv2d(x, offset, &self.weight, None, &self.geometry, None)
    }
}

/// `conv_offset`: a plain conv with the deformable conv's geometry and bias, producing
/// `channels_per_point · dg · k²` channels.
fn conv_offset(ctx: &Ctx, spec: &DeformConvSpec, channels_per_point: i64) -> Conv2d {
    let g = &spec.geometry;
    let k = spec.kernel;
    let mut conv = Conv2d::new(
        &ctx.sub("conv_offset"),
        ConvSpec::new(
            spec.in_channels,
            channels_per_point * g.deform_groups * k * k,
            k,
        )
        .stride(g.stride[0])
        .padding(g.padding[0]),
        true,
    );
    conv.dilation = g.dilation[0];
    conv
}

fn check_square(spec: &DeformConvSpec, type_name: &str) -> Result<(), OpError> {
    let g = &spec.geometry;
    if g.stride[0] != g.stride[1] || g.padding[0] != g.padding[1] || g.dilation[0] != g.dilation[1]
    {
        return Err(OpError::invalid(
            OP,
            format!(
                "{type_name}: only equal h/w stride, padding and dilation are supported, got {g:?}"
            ),
        ));
    }
    Ok(())
}

/// mmcv `DeformConv2dPack` (registered as `DCN`): `offset = conv_offset(x)`, then
/// [`deform_conv2d`]. Keys `<m>.weight`, `<m>.conv_offset.{weight,bias}`.
#[derive(Debug)]
pub struct DeformConv2dPack {
    pub conv_offset: Conv2d,
    pub deform: DeformConv2d,
}

impl DeformConv2dPack {
    pub fn new(ctx: &Ctx, spec: &DeformConvSpec) -> Result<Self, OpError> {
        check_square(spec, "DeformConv2dPack")?;
        let deform = DeformConv2d::new(ctx, spec)?;
        Ok(DeformConv2dPack {
            conv_offset: conv_offset(ctx, spec, 2),
            deform,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, OpError> {
        let offset = self.conv_offset.forward(x).map_err(OpError::torch(OP))?;
        self.deform.forward(x, &offset)
    }
}

/// mmcv `ModulatedDeformConv2dPack` (`DCNv2`): `o1, o2, m = chunk(conv_offset(x), 3)`,
/// `offset = cat(o1, o2)`, `mask = sigmoid(m)` (`modulated_deform_conv.py:324-330`). Keys
/// `<m>.weight`, `<m>.bias` (if `bias`), `<m>.conv_offset.{weight,bias}`.
#[derive(Debug)]
pub struct ModulatedDeformConv2dPack {
    pub conv_offset: Conv2d,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub geometry: DeformGeometry,
}

impl ModulatedDeformConv2dPack {
    pub fn new(ctx: &Ctx, spec: &DeformConvSpec) -> Result<Self, OpError> {
        check_spec(spec, "ModulatedDeformConv2dPack")?;
        check_square(spec, "ModulatedDeformConv2dPack")?;
        let k = spec.kernel;
        let weight = ctx.param(
            "weight",
            &[
                spec.out_channels,
                spec.in_channels / spec.geometry.groups,
                k,
                k,
            ],
        );
        let bias = spec.bias.then(|| ctx.param("bias", &[spec.out_channels]));
        Ok(ModulatedDeformConv2dPack {
            conv_offset: conv_offset(ctx, spec, 3),
            weight,
            bias,
            geometry: spec.geometry,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, OpError> {
        let torch = OpError::torch(OP);
        let out = self.conv_offset.forward(x).map_err(&torch)?;
        let parts = out.f_chunk(3, 1).map_err(&torch)?;
        let [o1, o2, m] = &parts[..] else {
            return Err(OpError::invalid(
                OP,
                "conv_offset output did not split in 3",
            ));
        };
        let offset = Tensor::f_cat(&[o1, o2], 1).map_err(&torch)?;
        let mask = m.f_sigmoid().map_err(&torch)?;
        deform_conv2d(
            x,
            &offset,
            &self.weight,
            self.bias.as_ref(),
            &self.geometry,
            Some(&mask),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn ramp() -> Tensor {
        // value = 4y + x on a 3×4 map: linear, so bilinear sampling reads it exactly.
        Tensor::arange(12, (Kind::Float, Device::Cpu)).view([1, 1, 3, 4])
    }

    #[test]
    fn one_by_one_kernel_samples_at_the_offset() {
        let w = Tensor::ones([1, 1, 1, 1], (Kind::Float, Device::Cpu));
        // Shift every sample by (dy, dx) = (0.5, 0.25): (0,0) reads 4·0.5 + 0.25 = 2.25.
        let off = Tensor::zeros([1, 2, 3, 4], (Kind::Float, Device::Cpu));
        let _ = off.narrow(1, 0, 1).fill_(0.5);
        let _ = off.narrow(1, 1, 1).fill_(0.25);
        let out = deform_conv2d(&ramp(), &off, &w, None, &DeformGeometry::default(), None).unwrap();
        let v = Vec::<f32>::try_from(&out.flatten(0, -1)).unwrap();
        assert_eq!(v[0], 2.25);
        assert_eq!(v[5], 4.0 * 1.5 + 1.25);
        // Last row: y = 2.5 has its lower corner outside (reads 0): 0.5·(4·2 + x) for x = 0.25.
        assert_eq!(v[8], 0.5 * 0.75 * 8.0 + 0.5 * 0.25 * 9.0);
        // A sample at y ≤ −1 reads nothing.
        let _ = off.narrow(1, 0, 1).fill_(-5.0);
        let out = deform_conv2d(&ramp(), &off, &w, None, &DeformGeometry::default(), None).unwrap();
        assert_eq!(out.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn wrong_offset_channels_are_a_clear_error() {
        let w = Tensor::ones([2, 1, 3, 3], (Kind::Float, Device::Cpu));
        let off = Tensor::zeros([1, 9, 3, 4], (Kind::Float, Device::Cpu));
        let geometry = DeformGeometry {
            padding: [1, 1],
            ..DeformGeometry::default()
        };
        let err = deform_conv2d(&ramp(), &off, &w, None, &geometry, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("[1, 18 (= 2 · deform_groups 1 · 3·3 kernel points), 3, 4]"),
            "{err}"
        );
    }
}
