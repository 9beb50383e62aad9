//! Byte-level application of the closed set of tensor ops ([`TensorOp`]) on a contiguous
//! little-endian tensor `(dtype, shape, bytes)`, for the checkpoint writer. No libtorch: the ops
//! are simple enough to do exactly on bytes (transpose = index permutation, cast = IEEE
//! conversions with round-to-nearest-even like torch's `.to()`, split = contiguous slices).

use std::borrow::Cow;

use super::plan::{split_shape, transposed_shape, TensorOp};
use super::AdapterError;
use crate::DType;

/// A tensor as the writer takes it: element type, shape, contiguous little-endian bytes.
pub type TensorBytes<'a> = (DType, Vec<usize>, Cow<'a, [u8]>);

/// Applies `ops` in order. Returns the new dtype, shape and bytes (borrowed when no op applies).
pub fn apply_tensor_ops<'a>(
    dtype: DType,
    shape: &[usize],
    bytes: Cow<'a, [u8]>,
    ops: &[TensorOp],
) -> Result<TensorBytes<'a>, AdapterError> {
    let mut dtype = dtype;
    let mut shape = shape.to_vec();
    let mut bytes = bytes;
    for op in ops {
        if let TensorOp::Fill { value } = op {
            // A new tensor: no source bytes to check (plan.rs: Op::Constant).
            bytes = Cow::Owned(filled_bytes(*value, dtype, shape.iter().product()));
            continue;
        }
        let err = |detail: String| AdapterError::Bytes {
            op: op.to_string(),
            dtype,
            shape: shape.clone(),
            len: bytes.len(),
            detail,
        };
        let numel: usize = shape.iter().product();
        if numel.checked_mul(dtype.size()) != Some(bytes.len()) {
            return Err(err(format!(
                "expected {} elements of {} bytes",
                numel,
                dtype.size()
            )));
        }
        match op {
            TensorOp::Transpose { perm } => {
                let new_shape = transposed_shape(&shape, perm).map_err(err)?;
                let out = transpose_bytes(&bytes, &shape, perm, dtype.size());
                shape = new_shape;
                bytes = Cow::Owned(out);
            }
            TensorOp::Cast { dtype: to } => {
                if *to != dtype {
                    let out = cast_bytes(&bytes, dtype, *to);
                    dtype = *to;
                    bytes = Cow::Owned(out);
                }
            }
            TensorOp::Split { dim, chunks, index } => {
                let new_shape = split_shape(&shape, *dim, *chunks).map_err(err)?;
                if *index >= *chunks {
                    return Err(err(format!("chunk {index} of {chunks}")));
                }
                // Contiguous layout: `outer` blocks of `shape[dim] * inner` elements.
                let outer: usize = shape.iter().take(*dim).product();
                let inner: usize = shape.iter().skip(dim + 1).product::<usize>() * dtype.size();
                let chunk = new_shape[*dim] * inner;
                let block = shape[*dim] * inner;
                let mut out = Vec::with_capacity(outer * chunk);
                for o in 0..outer {
                    let start = o * block + index * chunk;
                    out.extend_from_slice(&bytes[start..start + chunk]);
                }
                shape = new_shape;
                bytes = Cow::Owned(out);
            }
            TensorOp::Fill { .. } => unreachable!("handled before the size check"),
        }
    }
    Ok((dtype, shape, bytes))
}

/// `numel` elements of `dtype`, each the integer `value` (exact in every dtype for the small
/// identity values plans add; through the same conversions as a cast from i64).
fn filled_bytes(value: i32, dtype: DType, numel: usize) -> Vec<u8> {
    let one = cast_bytes(&i64::from(value).to_le_bytes(), DType::I64, dtype);
    one.repeat(numel)
}

fn transpose_bytes(bytes: &[u8], shape: &[usize], perm: &[usize], elem: usize) -> Vec<u8> {
    let n = shape.len();
    let mut in_strides = vec![1usize; n];
    for i in (0..n.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    // Output dim d walks input dim perm[d].
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let numel: usize = shape.iter().product();
    let mut out = Vec::with_capacity(bytes.len());
    let mut idx = vec![0usize; n];
    for _ in 0..numel {
        let src: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&bytes[src * elem..(src + 1) * elem]);
        for d in (0..n).rev() {
            idx[d] += 1;
            if idx[d] < out_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

/// Every element read as f64 (exact for all our types except i64 beyond 2^53) or as i64.
enum Num {
    F(f64),
    I(i64),
}

fn read(bytes: &[u8], dtype: DType) -> Num {
    let b = |n: usize| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(&bytes[..n]);
        a
    };
    match dtype {
        DType::F32 => Num::F(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f64),
        DType::F64 => Num::F(f64::from_le_bytes(b(8))),
        DType::F16 => Num::F(f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]])) as f64),
        DType::BF16 => {
            Num::F(f32::from_bits((u16::from_le_bytes([bytes[0], bytes[1]]) as u32) << 16) as f64)
        }
        DType::I64 => Num::I(i64::from_le_bytes(b(8))),
        DType::I32 => Num::I(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as i64),
        DType::I16 => Num::I(i16::from_le_bytes([bytes[0], bytes[1]]) as i64),
        DType::I8 => Num::I(bytes[0] as i8 as i64),
        DType::U8 => Num::I(bytes[0] as i64),
        DType::Bool => Num::I((bytes[0] != 0) as i64),
    }
}

fn write(out: &mut Vec<u8>, v: &Num, dtype: DType) {
    let f = match v {
        Num::F(f) => *f,
        Num::I(i) => *i as f64,
    };
    // Float → int truncates toward zero and wraps like torch's C cast for in-range values.
    let i = match v {
        Num::F(f) => *f as i64,
        Num::I(i) => *i,
    };
    match dtype {
        DType::F32 => out.extend_from_slice(&(f as f32).to_le_bytes()),
        DType::F64 => out.extend_from_slice(&f.to_le_bytes()),
        DType::F16 => out.extend_from_slice(&f32_to_f16(f as f32).to_le_bytes()),
        DType::BF16 => out.extend_from_slice(&f32_to_bf16(f as f32).to_le_bytes()),
        DType::I64 => out.extend_from_slice(&i.to_le_bytes()),
        DType::I32 => out.extend_from_slice(&(i as i32).to_le_bytes()),
        DType::I16 => out.extend_from_slice(&(i as i16).to_le_bytes()),
        DType::I8 => out.push(i as i8 as u8),
        DType::U8 => out.push(i as u8),
        DType::Bool => out.push(u8::from(f != 0.0)),
    }
}

fn cast_bytes(bytes: &[u8], from: DType, to: DType) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / from.size() * to.size());
    for chunk in bytes.chunks_exact(from.size()) {
        write(&mut out, &read(chunk, from), to);
    }
    out
}

/// IEEE half → single (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// IEEE single → half, round to nearest even (what torch's `.half()` does).
pub fn f32_to_f16(f: f32) -> u16 {
    let x = f.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1u32 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && r & 1 == 1) {
        r += 1; // may carry into the exponent, which is the correct rounding to inf
    }
    sign | r as u16
}

/// IEEE single → bfloat16, round to nearest even (torch's `.bfloat16()`).
pub fn f32_to_bf16(f: f32) -> u16 {
    let x = f.to_bits();
    if f.is_nan() {
        return ((x >> 16) as u16) | 0x40;
    }
    let lsb = (x >> 16) & 1;
    ((x.wrapping_add(0x7fff + lsb)) >> 16) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn transpose_2x3() {
        let b = f32s(&[1., 2., 3., 4., 5., 6.]);
        let (_, shape, out) = apply_tensor_ops(
            DType::F32,
            &[2, 3],
            Cow::Borrowed(&b),
            &[TensorOp::Transpose { perm: vec![1, 0] }],
        )
        .unwrap();
        assert_eq!(shape, [3, 2]);
        assert_eq!(out.as_ref(), f32s(&[1., 4., 2., 5., 3., 6.]).as_slice());
    }

    #[test]
    fn split_dim0_and_dim1() {
        let b = f32s(&[1., 2., 3., 4., 5., 6., 7., 8.]);
        let (_, shape, out) = apply_tensor_ops(
            DType::F32,
            &[4, 2],
            Cow::Borrowed(&b),
            &[TensorOp::Split {
                dim: 0,
                chunks: 2,
                index: 1,
            }],
        )
        .unwrap();
        assert_eq!(shape, [2, 2]);
        assert_eq!(out.as_ref(), f32s(&[5., 6., 7., 8.]).as_slice());
        let (_, shape, out) = apply_tensor_ops(
            DType::F32,
            &[2, 4],
            Cow::Borrowed(&b),
            &[TensorOp::Split {
                dim: 1,
                chunks: 2,
                index: 0,
            }],
        )
        .unwrap();
        assert_eq!(shape, [2, 2]);
        assert_eq!(out.as_ref(), f32s(&[1., 2., 5., 6.]).as_slice());
        assert!(apply_tensor_ops(
            DType::F32,
            &[3, 2],
            Cow::Borrowed(&b[..24]),
            &[TensorOp::Split {
                dim: 0,
                chunks: 2,
                index: 0
            }]
        )
        .is_err());
    }

    #[test]
    fn half_conversions_round_trip_and_round_to_nearest_even() {
        for h in [
            0u16, 0x3c00, 0xc000, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0x8000, 0x3555,
        ] {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#x}");
        }
        // 1 + 2^-11 is halfway between 1 and the next half (1 + 2^-10): ties to even → 1.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
    }

    #[test]
    fn cast_f32_to_f16_and_back() {
        let b = f32s(&[1.5, -2.0]);
        let (d, _, out) = apply_tensor_ops(
            DType::F32,
            &[2],
            Cow::Borrowed(&b),
            &[TensorOp::Cast { dtype: DType::F16 }],
        )
        .unwrap();
        assert_eq!(d, DType::F16);
        assert_eq!(out.as_ref(), &[0x00, 0x3e, 0x00, 0xc0]);
    }

    #[test]
    fn wrong_byte_length_is_an_error_not_a_panic() {
        assert!(apply_tensor_ops(
            DType::F32,
            &[2, 3],
            Cow::Borrowed(&[0u8; 5][..]),
            &[TensorOp::Transpose { perm: vec![1, 0] }]
        )
        .is_err());
    }
}
