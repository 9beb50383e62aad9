//! mmcv's `DeformConv2d` (DCNv1, one deform group, one convolution group) as standard ONNX ops,
//! for `RepPointsHead`'s `reppoints_cls_conv` / `reppoints_pts_refine_conv`: no opset-19
//! `DeformConv` (the default opset is 17 and runtimes differ in it) and no `GridSample` (its
//! border and rounding rules are not mmcv's), but mmcv's bilinear sampling spelled out, op by op
//! as `crate::ops::deform_conv` runs it on tch (`deformable_im2col_bilinear_cpu`,
//! `mmcv/ops/csrc/pytorch/cpu/deform_conv.cpp`):
//!
//! * kernel point `k = i·kw + j` of output `(ho, wo)` reads `y = (ho·stride − pad + i·dil) +
//!   offset[2k]`, `x = (wo·stride − pad + j·dil) + offset[2k+1]` (`(dy, dx)` pairs);
//! * nothing unless `−1 < y < H` and `−1 < x < W`; `y0 = floor(y)`, `ly = y − y0`, `hy = 1 − ly`
//!   (x alike); a corner outside the map reads 0 (its weight and index are zeroed with `Where`,
//!   so huge or NaN offsets never reach the `Gather`);
//! * `val = w1·v1 + w2·v2 + w3·v3 + w4·v4`, in that order;
//! * then the im2col GEMM: one `MatMul` with the weight reshaped to `[K·C, Cout]` in the
//!   gathered columns' (kernel point, channel) order.
//!
//! The level's `(H, W)` is static (the export size: `OnnxGraph::level_size`; tract 0.22 cannot
//! type a sampling grid built from `Shape`), the batch may be symbolic. The sampling of one offset map ([`DeformSampling`]) is shared by every convolution that uses it
//! (RepPoints: both of a level's DCNs). The sampling arithmetic runs in float32 even in a `--half`
//! graph (float16 coordinates would be off by up to 1/16 px at x ≈ 150); the corner weights and
//! values are then cast to the activations' type.
//!
//! Never: emit a custom-domain op, or read the offsets' values at export time.

use tch::Tensor;

use super::graph::{attr_i, attr_ints, OnnxGraph, ValueId};
use super::proto::{attribute_type, data_type, AttributeProto, TensorProto};
use super::ExportError;
use crate::ops::DeformGeometry;

/// `op` (`ReduceMean`, `ReduceSum`, `ReduceMin`, `ReduceMax`) over `axes`, kept: the axes moved
/// from attribute to input in opset 13 (`ReduceSum`) and 18 (the others).
pub(crate) fn reduce(g: &mut OnnxGraph, op: &'static str, x: ValueId, axes: &[i64]) -> ValueId {
    let as_input = if op == "ReduceSum" { 13 } else { 18 };
    if g.opset() >= as_input {
        let a = g.const_i64("axes", vec![axes.len() as i64], axes);
        g.op(op, &[x, a], vec![attr_i("keepdims", 1)])
    } else {
        g.op(
            op,
            &[x],
            vec![attr_ints("axes", axes), attr_i("keepdims", 1)],
        )
    }
}

/// `x` gathered at `indices` along `axis` (a `[n]` int64 constant).
pub(crate) fn take(g: &mut OnnxGraph, x: ValueId, axis: i64, indices: &[i64]) -> ValueId {
    let i = g.const_i64("take", vec![indices.len() as i64], indices);
    g.op("Gather", &[x, i], vec![attr_i("axis", axis)])
}

/// `0, 1, …, n − 1` as float32 for dimension `axis` of `shape`: the cumulative sum of ones
/// (`ConstantOfShape` + `CumSum`; tract 0.22 cannot type a `Range` whose limit comes from
/// `Shape`). Exact: small integers.
fn arange(g: &mut OnnxGraph, shape: ValueId, axis: i64) -> ValueId {
    let i = g.const_i64("axis", vec![1], &[axis]);
    let n = g.op("Gather", &[shape, i], vec![attr_i("axis", 0)]);
    // `value` spelt out: float32 is ONNX's default, but tract's is float64.
    let value = AttributeProto {
        name: "value".into(),
        t: Some(TensorProto {
            dims: vec![1],
            data_type: data_type::FLOAT,
            name: String::new(),
            raw_data: 0f32.to_le_bytes().to_vec(),
        }),
        r#type: attribute_type::TENSOR,
        ..Default::default()
    };
    let zeros = g.op("ConstantOfShape", &[n], vec![value]);
    let one = g.const_f32("one", vec![], &[1.0]);
    let ones = g.op("Add", &[zeros, one], vec![]);
    let ax = g.const_i64("axis", vec![], &[0]);
    let counts = g.op("CumSum", &[ones, ax], vec![]);
    g.op("Sub", &[counts, one], vec![])
}

/// A `DeformConv2d` weight `[Cout, C, kh, kw]` as the `[kh·kw·C, Cout]` matrix of the gathered
/// columns' order (kernel point-major, channel-minor), one initializer for all levels.
#[derive(Debug, Clone)]
pub struct DeformWeight {
    matrix: ValueId,
    in_channels: i64,
    kernel_points: i64,
    name: String,
}

impl DeformWeight {
    /// The initializer of `weight`, named `name` (its state-dict key).
    pub fn emit(g: &mut OnnxGraph, weight: &Tensor, name: &str) -> Result<Self, ExportError> {
        let size = weight.size();
        let [cout, c, kh, kw] = size[..] else {
            return Err(ExportError::InvalidOption {
                option: "--format onnx",
                message: format!("{name}: weight shape {size:?} is not [Cout, C, kh, kw]"),
            });
        };
        let matrix = weight
            .f_permute([2, 3, 1, 0])
            .and_then(|t| t.f_reshape([kh * kw * c, cout]))
            .map_err(|source| ExportError::Tensor {
                what: name.to_string(),
                source,
            })?;
        Ok(DeformWeight {
            matrix: g.weight_tensor(name, &matrix)?,
            in_channels: c,
            kernel_points: kh * kw,
            name: name.to_string(),
        })
    }
}

/// The bilinear sampling of one offset map: per corner the flat index into `[B·H·W, C]` and its
/// weight, both `[B, Ho, Wo, K]` (output location-major, kernel point-minor: the im2col column
/// order read by [`DeformSampling::conv`]).
#[derive(Debug, Clone)]
pub struct DeformSampling {
    /// Corners (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1): mmcv's v1..v4.
    corners: [(ValueId, ValueId); 4],
    kernel_points: i64,
    /// `(Ho, Wo)`.
    out_size: (i64, i64),
}

impl DeformSampling {
    /// The sampling of inputs shaped like `like [B, C, H, W]` at `offset [B, 2·kh·kw, Ho, Wo]`
    /// (mmcv's `(dy, dx)` pairs), for a kernel `(kh, kw)` with `geometry` (one deform group).
    /// `(H, W)` is static (the export size's level); the batch may be symbolic.
    pub fn emit(
        g: &mut OnnxGraph,
        (like, (h, w)): (ValueId, (i64, i64)),
        offset: ValueId,
        (kh, kw): (i64, i64),
        geometry: &DeformGeometry,
    ) -> Result<Self, ExportError> {
        if geometry.deform_groups != 1 || geometry.groups != 1 {
            return Err(ExportError::unsupported(
                format!(
                    "DeformConv2d with groups={} and deform_groups={} (only 1 and 1 are exported)",
                    geometry.groups, geometry.deform_groups
                ),
                "deformable convolution",
            ));
        }
        let half = g.half();
        let f32_of = |g: &mut OnnxGraph, v: ValueId| {
            if half {
                g.cast(v, data_type::FLOAT)
            } else {
                v
            }
        };
        let kk = kh * kw;
        // The output size, as `conv2d` and `crate::ops::deform_conv2d` compute it.
        let out = |n: i64, k: i64, a: usize| {
            (n + 2 * geometry.padding[a] - geometry.dilation[a] * (k - 1) - 1) / geometry.stride[a]
                + 1
        };
        let (ho, wo) = (out(h, kh, 0), out(w, kw, 1));
        let offset = f32_of(g, offset);
        // (dy, dx) `[B, K, Ho, Wo]` → `[B, Ho, Wo, K]`.
        let perm = attr_ints("perm", &[0, 2, 3, 1]);
        let dy: Vec<i64> = (0..kk).map(|k| 2 * k).collect();
        let dx: Vec<i64> = (0..kk).map(|k| 2 * k + 1).collect();
        let dy = take(g, offset, 1, &dy);
        let dy = g.op("Transpose", &[dy], vec![perm.clone()]);
        let dx = take(g, offset, 1, &dx);
        let dx = g.op("Transpose", &[dx], vec![perm]);
        // Integer base positions `ho·stride − pad + i·dil` as float32 (`[1, Ho, 1, K]`,
        // `[1, 1, Wo, K]`), computed as integers first as the kernel does.
        let (pad, dil, st) = (geometry.padding, geometry.dilation, geometry.stride);
        let base_y: Vec<f32> = (0..ho)
            .flat_map(|r| (0..kk).map(move |k| (r * st[0] - pad[0] + (k / kw) * dil[0]) as f32))
            .collect();
        let base_x: Vec<f32> = (0..wo)
            .flat_map(|c| (0..kk).map(move |k| (c * st[1] - pad[1] + (k % kw) * dil[1]) as f32))
            .collect();
        let base_y = g.const_f32("dcn_base_y", vec![1, ho, 1, kk], &base_y);
        let base_x = g.const_f32("dcn_base_x", vec![1, 1, wo, kk], &base_x);
        let y = g.op("Add", &[base_y, dy], vec![]);
        let x = g.op("Add", &[base_x, dx], vec![]);
        let (hf, wf) = (
            g.const_f32("dcn_height", vec![], &[h as f32]),
            g.const_f32("dcn_width", vec![], &[w as f32]),
        );
        // `if (h <= -1 || height <= h || w <= -1 || width <= w) return 0;`
        let minus_one = g.const_f32("minus_one", vec![], &[-1.0]);
        let inside = [
            g.op("Greater", &[y, minus_one], vec![]),
            g.op("Less", &[y, hf], vec![]),
            g.op("Greater", &[x, minus_one], vec![]),
            g.op("Less", &[x, wf], vec![]),
        ];
        let inside = inside[1..]
            .iter()
            .fold(inside[0], |a, &b| g.op("And", &[a, b], vec![]));
        let y0 = g.op("Floor", &[y], vec![]);
        let x0 = g.op("Floor", &[x], vec![]);
        let ly = g.op("Sub", &[y, y0], vec![]);
        let lx = g.op("Sub", &[x, x0], vec![]);
        let one = g.const_f32("one", vec![], &[1.0]);
        let hy = g.op("Sub", &[one, ly], vec![]);
        let hx = g.op("Sub", &[one, lx], vec![]);
        // Per axis: the low corner exists when `y0 ≥ 0`, the high one when `y0 + 1 ≤ H − 1`.
        let zero = g.const_f32("zero", vec![], &[0.0]);
        let two = g.const_f32("two", vec![], &[2.0]);
        let (h2, w2) = (
            g.op("Sub", &[hf, two], vec![]),
            g.op("Sub", &[wf, two], vec![]),
        );
        let mut axis_ok = |v0: ValueId, hi: ValueId| {
            let lo = g.op("GreaterOrEqual", &[v0, zero], vec![]);
            let lo = g.op("And", &[inside, lo], vec![]);
            let up = g.op("LessOrEqual", &[v0, hi], vec![]);
            let up = g.op("And", &[inside, up], vec![]);
            (lo, up)
        };
        let (y_lo, y_hi) = axis_ok(y0, h2);
        let (x_lo, x_hi) = axis_ok(x0, w2);
        // Flat index of the (y0, x0) corner; the others are +1, +W, +W+1.
        let row = g.op("Mul", &[y0, wf], vec![]);
        let i00 = g.op("Add", &[row, x0], vec![]);
        let i01 = g.op("Add", &[i00, one], vec![]);
        let i10 = g.op("Add", &[i00, wf], vec![]);
        let i11 = g.op("Add", &[i10, one], vec![]);
        // Each image's rows of the `[B·H·W, C]` map start at `b·H·W`.
        let in_shape = g.op("Shape", &[like], vec![]);
        let images = arange(g, in_shape, 0);
        let hw = g.op("Mul", &[hf, wf], vec![]);
        let start = g.op("Mul", &[images, hw], vec![]);
        let start = g.cast(start, data_type::INT64);
        let shape = g.const_i64("shape", vec![4], &[-1, 1, 1, 1]);
        let start = g.op("Reshape", &[start, shape], vec![]);
        let zero_f = zero;
        let act = if half {
            data_type::FLOAT16
        } else {
            data_type::FLOAT
        };
        let corners = [
            (i00, y_lo, x_lo, hy, hx),
            (i01, y_lo, x_hi, hy, lx),
            (i10, y_hi, x_lo, ly, hx),
            (i11, y_hi, x_hi, ly, lx),
        ]
        .map(|(idx, oy, ox, wy, wx)| {
            let ok = g.op("And", &[oy, ox], vec![]);
            let idx = g.op("Where", &[ok, idx, zero_f], vec![]);
            let idx = g.cast(idx, data_type::INT64);
            let idx = g.op("Add", &[idx, start], vec![]);
            let wgt = g.op("Mul", &[wy, wx], vec![]);
            let wgt = g.op("Where", &[ok, wgt, zero_f], vec![]);
            let wgt = if half { g.cast(wgt, act) } else { wgt };
            // `[B, Ho, Wo, K, 1]`: broadcast over the gathered channels.
            let ax = g.const_i64("axes", vec![1], &[4]);
            let wgt = g.op("Unsqueeze", &[wgt, ax], vec![]);
            (idx, wgt)
        });
        Ok(DeformSampling {
            corners,
            kernel_points: kk,
            out_size: (ho, wo),
        })
    }

    /// `deform_conv2d(x, offset, weight)` (no bias) of `x [B, C, H, W]`: `[B, Cout, Ho, Wo]`.
    pub fn conv(
        &self,
        g: &mut OnnxGraph,
        x: ValueId,
        weight: &DeformWeight,
    ) -> Result<ValueId, ExportError> {
        let (c, kk) = (weight.in_channels, self.kernel_points);
        if weight.kernel_points != kk {
            return Err(ExportError::InvalidOption {
                option: "--format onnx",
                message: format!(
                    "{}: a {}-point kernel for a {kk}-point offset map",
                    weight.name, weight.kernel_points
                ),
            });
        }
        // `[B, C, H, W]` → `[B·H·W, C]`: one row per pixel, so a corner reads all channels.
        let shape = g.const_i64("shape", vec![3], &[0, c, -1]);
        let flat = g.op("Reshape", &[x, shape], vec![]);
        let flat = g.op("Transpose", &[flat], vec![attr_ints("perm", &[0, 2, 1])]);
        let shape = g.const_i64("shape", vec![2], &[-1, c]);
        let flat = g.op("Reshape", &[flat, shape], vec![]);
        // `w1·v1 + w2·v2 + w3·v3 + w4·v4`, left to right: `[B, Ho, Wo, K, C]`.
        let corner = |g: &mut OnnxGraph, (idx, wgt): (ValueId, ValueId)| {
            let v = g.op("Gather", &[flat, idx], vec![attr_i("axis", 0)]);
            g.op("Mul", &[v, wgt], vec![])
        };
        let [c1, c2, c3, c4] = self.corners;
        let mut cols = corner(g, c1);
        for k in [c2, c3, c4] {
            let v = corner(g, k);
            cols = g.op("Add", &[cols, v], vec![]);
        }
        // Static `(Ho, Wo)`: tract 0.22 reads `[0, 0, 0, K·C]` as `[1, 1, 1, K·C]` here.
        let shape = g.const_i64(
            "shape",
            vec![4],
            &[-1, self.out_size.0, self.out_size.1, kk * c],
        );
        let cols = g.op("Reshape", &[cols, shape], vec![]);
        let out = g.op("MatMul", &[cols, weight.matrix], vec![]);
        Ok(g.op("Transpose", &[out], vec![attr_ints("perm", &[0, 3, 1, 2])]))
    }
}
