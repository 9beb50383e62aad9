//! `cv2.resize` for 3-channel uint8 images, bit-exact with OpenCV 4.11 on x86-64
//! (`modules/imgproc/src/resize.cpp`: `cv::resize`, `cv::hal::resize`, `resizeGeneric_`,
//! `HResizeLinear`, `VResizeLinear<uchar, int, short, FixedPtCast<..>, VResizeLinearVec_32s8u>`,
//! `resizeAreaFast_`, `ResizeAreaFastVec`, `computeResizeAreaTab`, `ResizeArea_Invoker`).
//!
//! Our own code written from OpenCV's algorithm; every rounding step mirrors theirs because the
//! network input must be byte-identical to what mmyolo/mmdet feed the model. IPP is not involved:
//! OpenCV refuses IPP for 8-bit linear and for area ("super") resizing unless inexact IPP is
//! enabled (`ipp_resize`: `!cv::ipp::useIPP_NE()` returns false for those).

use super::BgrImage;

/// The OpenCV interpolation flags mmcv maps `'bilinear'`, `'area'` and `'bicubic'` to; the
/// pipeline description (and so this enum) lives in the core.
pub use mmcompat_registry::spec::pipeline::Interpolation;

/// Channels of a [`BgrImage`].
const CN: usize = 3;
/// `INTER_RESIZE_COEF_BITS`: linear weights are 11-bit fixed point.
const COEF_BITS: u32 = 11;
const COEF_SCALE: i32 = 1 << COEF_BITS;

/// `cv2.resize(src, (new_w, new_h), interpolation=...)` for a BGR uint8 image.
///
/// A zero target size (which OpenCV rejects with an assertion) gives an empty image of that size;
/// the pipeline checks sizes before calling.
pub fn resize(src: &BgrImage, new_w: usize, new_h: usize, interp: Interpolation) -> BgrImage {
    if new_w == 0 || new_h == 0 || src.width == 0 || src.height == 0 {
        return BgrImage::filled(new_h, new_w, [0, 0, 0]);
    }
    // cv::resize: same size -> plain copy.
    if new_w == src.width && new_h == src.height {
        return src.clone();
    }
    // hal::resize hands 8-bit cubic resizing to IPP (see resize_cubic.rs).
    if interp == Interpolation::Cubic {
        return super::resize_cubic::resize_cubic(src, new_w, new_h);
    }
    // cv::resize: inv_scale = dsize / ssize (double), hal::resize: scale = 1 / inv_scale.
    let inv_scale_x = new_w as f64 / src.width as f64;
    let inv_scale_y = new_h as f64 / src.height as f64;
    let scale_x = 1.0 / inv_scale_x;
    let scale_y = 1.0 / inv_scale_y;
    // saturate_cast<int>(double) is cvRound (round half to even).
    let iscale_x = scale_x.round_ties_even() as i64;
    let iscale_y = scale_y.round_ties_even() as i64;
    let is_area_fast = (scale_x - iscale_x as f64).abs() < f64::EPSILON
        && (scale_y - iscale_y as f64).abs() < f64::EPSILON;

    let mut interp = interp;
    // hal::resize: "in case of scale_x && scale_y is equal to 2, INTER_AREA (fast) also is equal to
    // INTER_LINEAR".
    if interp == Interpolation::Linear && is_area_fast && iscale_x == 2 && iscale_y == 2 {
        interp = Interpolation::Area;
    }
    // True area interpolation only when shrinking along both axes; otherwise OpenCV emulates it
    // with the bilinear machinery and area-style coefficients.
    if interp == Interpolation::Area && scale_x >= 1.0 && scale_y >= 1.0 {
        let data = if is_area_fast {
            resize_area_fast(src, new_w, new_h, iscale_x as usize, iscale_y as usize)
        } else {
            resize_area(src, new_w, new_h, scale_x, scale_y)
        };
        return BgrImage {
            height: new_h,
            width: new_w,
            data,
        };
    }
    let area_mode = interp == Interpolation::Area;
    let data = resize_linear(
        src,
        new_w,
        new_h,
        [scale_x, scale_y],
        [inv_scale_x, inv_scale_y],
        area_mode,
    );
    BgrImage {
        height: new_h,
        width: new_w,
        data,
    }
}

/// `cvRound` of a float followed by `saturate_cast<short>`.
fn coef_to_fixed(v: f32) -> i32 {
    (v.round_ties_even() as i32).clamp(i16::MIN as i32, i16::MAX as i32)
}

/// `saturate_cast<uchar>(float)`: round half to even (cvRound), then clamp.
fn float_to_u8(v: f32) -> u8 {
    (v.round_ties_even() as i32).clamp(0, 255) as u8
}

/// Source index and fractional weight of one destination coordinate (hal::resize's loops over
/// `dx` / `dy`, shared by both axes).
fn source_coord(d: usize, scale: f64, inv_scale: f64, area_mode: bool) -> (i64, f32) {
    if !area_mode {
        let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let s = f.floor();
        (s as i64, f - s)
    } else {
        let s = (d as f64 * scale).floor() as i64;
        let f = ((d + 1) as f64 - (s + 1) as f64 * inv_scale) as f32;
        let f = if f <= 0.0 { 0.0 } else { f - f.floor() };
        (s, f)
    }
}

/// The generic separable linear path (`resizeGeneric_` with `HResizeLinear` +
/// `VResizeLinear<uchar, int, short, ...>`); `area_mode` picks INTER_AREA's coefficients when
/// enlarging.
fn resize_linear(
    src: &BgrImage,
    dw: usize,
    dh: usize,
    scale: [f64; 2],
    inv_scale: [f64; 2],
    area_mode: bool,
) -> Vec<u8> {
    let (sw, sh) = (src.width as i64, src.height as i64);
    // Horizontal tables: xofs (element offset of the left tap) and the two 11-bit weights.
    let mut xofs = vec![0usize; dw];
    let mut alpha = vec![[0i32; 2]; dw];
    let mut xmax = dw;
    for dx in 0..dw {
        let (mut sx, mut fx) = source_coord(dx, scale[0], inv_scale[0], area_mode);
        // `sx < ksize2 - 1` with ksize2 = 1: left border, clamp to the first pixel.
        if sx < 0 {
            fx = 0.0;
            sx = 0;
        }
        if sx + 1 >= sw {
            xmax = xmax.min(dx);
            if sx >= sw - 1 {
                fx = 0.0;
                sx = sw - 1;
            }
        }
        xofs[dx] = sx as usize * CN;
        alpha[dx] = [
            coef_to_fixed((1.0 - fx) * COEF_SCALE as f32),
            coef_to_fixed(fx * COEF_SCALE as f32),
        ];
    }
    // Vertical tables: yofs may be -1 at the top (no clamping of fy there, only of the row index).
    let mut yofs = vec![0i64; dh];
    let mut beta = vec![[0i32; 2]; dh];
    for dy in 0..dh {
        let (sy, fy) = source_coord(dy, scale[1], inv_scale[1], area_mode);
        yofs[dy] = sy;
        beta[dy] = [
            coef_to_fixed((1.0 - fy) * COEF_SCALE as f32),
            coef_to_fixed(fy * COEF_SCALE as f32),
        ];
    }

    let row_len = src.width * CN;
    let width = dw * CN;
    // HResizeLinear: exact integer sums, columns from `xmax` on take the right border pixel * ONE.
    let hresize = |sy: usize, out: &mut [i32]| {
        let row = &src.data[sy * row_len..(sy + 1) * row_len];
        for dx in 0..dw {
            let sx = xofs[dx];
            for c in 0..CN {
                out[dx * CN + c] = if dx < xmax {
                    i32::from(row[sx + c]) * alpha[dx][0]
                        + i32::from(row[sx + c + CN]) * alpha[dx][1]
                } else {
                    i32::from(row[sx + c]) * COEF_SCALE
                };
            }
        }
    };
    let clip_row = |y: i64| y.clamp(0, sh - 1) as usize;

    let mut out = vec![0u8; width * dh];
    let mut rows = [vec![0i32; width], vec![0i32; width]];
    let mut cached: [Option<usize>; 2] = [None, None];
    for dy in 0..dh {
        let want = [clip_row(yofs[dy]), clip_row(yofs[dy] + 1)];
        // Reuse horizontally resized rows computed for the previous dy (as resizeGeneric_ does;
        // the result does not depend on it, only the speed).
        for k in 0..2 {
            if cached[k] == Some(want[k]) {
                continue;
            }
            if let Some(j) = (0..2).find(|&j| j != k && cached[j] == Some(want[k])) {
                let (a, b) = rows.split_at_mut(1);
                if k == 0 {
                    a[0].copy_from_slice(&b[0]);
                } else {
                    b[0].copy_from_slice(&a[0]);
                }
                cached[k] = cached[j];
                continue;
            }
            hresize(want[k], &mut rows[k]);
            cached[k] = Some(want[k]);
        }
        let [b0, b1] = beta[dy];
        let dst = &mut out[dy * width..(dy + 1) * width];
        // VResizeLinear<uchar, ...>: OpenCV's SIMD kernel (VResizeLinearVec_32s8u) and its scalar
        // tail both compute ((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16), + 2, >> 2 — not
        // the exact (b0*S0 + b1*S1 + 2^21) >> 22 — so we do too.
        for ((d, &s0), &s1) in dst.iter_mut().zip(&rows[0]).zip(&rows[1]) {
            let v = (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2;
            *d = v.clamp(0, 255) as u8;
        }
    }
    out
}

/// `resizeAreaFast_` for integer shrink factors: block averages.
fn resize_area_fast(src: &BgrImage, dw: usize, dh: usize, sx: usize, sy: usize) -> Vec<u8> {
    let row_len = src.width * CN;
    let width = dw * CN;
    let mut out = vec![0u8; width * dh];
    let area = sx * sy;
    // `float scale = 1.f/(area)`; the result is `saturate_cast<uchar>(sum * scale)`.
    let scale = 1.0f32 / area as f32;
    for dy in 0..dh {
        let y0 = dy * sy;
        let dst = &mut out[dy * width..(dy + 1) * width];
        if y0 + sy > src.height {
            // Rows past the source: never reached when the factor divides the size exactly,
            // which `is_area_fast` implies.
            continue;
        }
        for (i, d) in dst.iter_mut().enumerate() {
            let (dx, c) = (i / CN, i % CN);
            let x0 = dx * sx * CN + c;
            let mut sum: i32 = 0;
            for yy in 0..sy {
                let row = &src.data[(y0 + yy) * row_len..(y0 + yy + 1) * row_len];
                for xx in 0..sx {
                    sum += i32::from(row[x0 + xx * CN]);
                }
            }
            *d = if sx == 2 && sy == 2 {
                // ResizeAreaFastVec "fast_mode" (2x2, cn 1/3/4): (a + b + c + d + 2) >> 2, i.e.
                // round half up, unlike the float path below.
                ((sum + 2) >> 2) as u8
            } else {
                float_to_u8(sum as f32 * scale)
            };
        }
    }
    out
}

/// One entry of `computeResizeAreaTab`: source element, destination element, weight.
struct DecimateAlpha {
    si: usize,
    di: usize,
    alpha: f32,
}

/// `computeResizeAreaTab`: the source cells (with fractional coverage weights, computed in double
/// and stored as float) that make up each destination cell.
fn compute_area_tab(ssize: usize, dsize: usize, cn: usize, scale: f64) -> Vec<DecimateAlpha> {
    let mut tab = Vec::with_capacity(ssize * 2);
    let ssize_i = ssize as i64;
    for dx in 0..dsize {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell_width = scale.min(ssize as f64 - fsx1);
        let mut sx1 = fsx1.ceil() as i64;
        let mut sx2 = fsx2.floor() as i64;
        sx2 = sx2.min(ssize_i - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push(DecimateAlpha {
                di: dx * cn,
                si: (sx1 - 1) as usize * cn,
                alpha: ((sx1 as f64 - fsx1) / cell_width) as f32,
            });
        }
        for sx in sx1..sx2 {
            tab.push(DecimateAlpha {
                di: dx * cn,
                si: sx as usize * cn,
                alpha: (1.0 / cell_width) as f32,
            });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            tab.push(DecimateAlpha {
                di: dx * cn,
                si: sx2 as usize * cn,
                alpha: ((fsx2 - sx2 as f64).min(1.0).min(cell_width) / cell_width) as f32,
            });
        }
    }
    tab
}

/// `ResizeArea_Invoker<uchar, float>`: weighted sums in float, row by row, in OpenCV's order of
/// operations (which fixes the float rounding).
fn resize_area(src: &BgrImage, dw: usize, dh: usize, scale_x: f64, scale_y: f64) -> Vec<u8> {
    let xtab = compute_area_tab(src.width, dw, CN, scale_x);
    let ytab = compute_area_tab(src.height, dh, 1, scale_y);
    let row_len = src.width * CN;
    let width = dw * CN;
    let mut out = vec![0u8; width * dh];
    let mut buf = vec![0f32; width];
    let mut sum = vec![0f32; width];
    let Some(first) = ytab.first() else {
        return out;
    };
    let mut prev_dy = first.di;
    for y in &ytab {
        let beta = y.alpha;
        let row = &src.data[y.si * row_len..(y.si + 1) * row_len];
        buf.fill(0.0);
        for x in &xtab {
            for c in 0..CN {
                buf[x.di + c] += f32::from(row[x.si + c]) * x.alpha;
            }
        }
        if y.di != prev_dy {
            let dst = &mut out[prev_dy * width..(prev_dy + 1) * width];
            for ((d, s), b) in dst.iter_mut().zip(sum.iter_mut()).zip(&buf) {
                *d = float_to_u8(*s);
                *s = beta * b;
            }
            prev_dy = y.di;
        } else {
            for (s, b) in sum.iter_mut().zip(&buf) {
                *s += beta * b;
            }
        }
    }
    let dst = &mut out[prev_dy * width..(prev_dy + 1) * width];
    for (d, s) in dst.iter_mut().zip(&sum) {
        *d = float_to_u8(*s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(h: usize, w: usize, f: impl Fn(usize, usize, usize) -> u8) -> BgrImage {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    data.push(f(y, x, c));
                }
            }
        }
        BgrImage {
            height: h,
            width: w,
            data,
        }
    }

    #[test]
    fn same_size_is_a_copy_and_shapes_are_right() {
        let src = img(5, 7, |y, x, c| (y * 7 + x * 3 + c) as u8);
        assert_eq!(resize(&src, 7, 5, Interpolation::Linear), src);
        for interp in [Interpolation::Linear, Interpolation::Area] {
            let out = resize(&src, 11, 2, interp);
            assert_eq!((out.height, out.width, out.data.len()), (2, 11, 66));
        }
    }

    #[test]
    fn constant_images_stay_constant() {
        // Weights sum to 2048 (or the area cells to 1), so a flat image must come back flat.
        let src = img(13, 17, |_, _, c| [10u8, 128, 255][c]);
        for interp in [Interpolation::Linear, Interpolation::Area] {
            for (w, h) in [(40, 3), (5, 29), (8, 6), (17, 13 * 2)] {
                let out = resize(&src, w, h, interp);
                for px in out.data.chunks(3) {
                    assert_eq!(px, [10, 128, 255], "{interp:?} {w}x{h}");
                }
            }
        }
    }

    #[test]
    fn two_by_two_area_rounds_half_up() {
        // 2x2 blocks of (0, 1, 0, 1) sum to 2: fast mode gives (2 + 2) >> 2 = 1, while the float
        // path would give cvRound(0.5) = 0.
        let src = img(2, 2, |_, x, _| x as u8);
        let out = resize(&src, 1, 1, Interpolation::Area);
        assert_eq!(out.data, vec![1, 1, 1]);
        // Linear 2x downscale goes through the same path.
        assert_eq!(
            resize(&src, 1, 1, Interpolation::Linear).data,
            vec![1, 1, 1]
        );
    }

    #[test]
    fn zero_target_gives_empty_image() {
        let src = img(3, 3, |_, _, _| 1);
        let out = resize(&src, 0, 4, Interpolation::Linear);
        assert_eq!((out.height, out.width, out.data.len()), (4, 0, 0));
    }
}
