//! `cv2.resize(src, (w, h), interpolation=cv2.INTER_CUBIC)` for 3-channel uint8 images, as
//! mmcv's `imresize(..., interpolation='bicubic')` gets it from the opencv-python wheels (PPYOLOE's
//! `FixShapeResize`).
//!
//! Those wheels enable IPP, and OpenCV 4.11's `hal::resize` hands 8-bit cubic resizing to IPP
//! (`ipp_resize` in `modules/imgproc/src/resize.cpp` refuses IPP only for nearest, area and
//! 8-bit linear, the modes it calls inexact): `ippiResizeCubic` with OpenCV's kernel
//! (`A = -0.75`, i.e. B = 0, C = 0.75), computed in float — not OpenCV's own fixed-point
//! `resizeGeneric_<HResizeCubic, VResizeCubic>`, which differs by ±1 on about 5% of the pixels.
//! IPP is closed source; this is the float model that reproduces it best, found against cv2 on
//! the fixture photographs (tests/fixtures/generate/make_ppyoloe_refs.py writes the hashes):
//! source coordinates `(d + 0.5) * (src / dst) - 0.5` in double, the four weights of the
//! fractional part computed in double and stored as float, a horizontal pass per source row
//! accumulated with fused multiply-adds (`w0·s0`, then `fma(w_j, s_j, acc)`), a vertical pass as
//! float multiply-then-add in tap order, rounded half to even and saturated. Replicated borders.
//! It matches IPP on all but a handful of pixels per 640×640 image (each ±1, on values within
//! 1e-4 of a .5 tie); tests/ppyoloe.rs measures and bounds that.
//!
//! Never: used for other interpolations (`resize.rs` dispatches).

use super::BgrImage;

/// Channels of a [`BgrImage`].
const CN: usize = 3;

/// OpenCV's `interpolateCubic` kernel (`A = -0.75`) at the fractional offset `t`, in double.
fn cubic_weights(t: f64) -> [f32; 4] {
    const A: f64 = -0.75;
    let c0 = ((A * (t + 1.0) - 5.0 * A) * (t + 1.0) + 8.0 * A) * (t + 1.0) - 4.0 * A;
    let c1 = ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
    let c2 = ((A + 2.0) * (1.0 - t) - (A + 3.0)) * (1.0 - t) * (1.0 - t) + 1.0;
    let c3 = 1.0 - c0 - c1 - c2;
    [c0 as f32, c1 as f32, c2 as f32, c3 as f32]
}

/// Per destination coordinate: the four source indices (clamped: replicated border) and
/// weights.
fn taps(src_len: usize, dst_len: usize) -> Vec<([usize; 4], [f32; 4])> {
    let scale = src_len as f64 / dst_len as f64;
    let last = src_len as i64 - 1;
    (0..dst_len)
        .map(|d| {
            let x = (d as f64 + 0.5) * scale - 0.5;
            let s = x.floor();
            let idx = [-1i64, 0, 1, 2].map(|k| (s as i64 + k).clamp(0, last) as usize);
            (idx, cubic_weights(x - s))
        })
        .collect()
}

/// Bicubic resize of `src` to `new_w × new_h` (both non-zero, not both equal to the source's:
/// `resize.rs` handles those cases as `cv::resize` does).
pub(super) fn resize_cubic(src: &BgrImage, new_w: usize, new_h: usize) -> BgrImage {
    let xt = taps(src.width, new_w);
    let yt = taps(src.height, new_h);
    let row_len = src.width * CN;
    let width = new_w * CN;
    // Horizontal pass of every source row a destination row needs.
    let mut needed = vec![false; src.height];
    for (idx, _) in &yt {
        idx.iter().for_each(|&r| needed[r] = true);
    }
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; src.height];
    for (r, slot) in rows.iter_mut().enumerate().filter(|(r, _)| needed[*r]) {
        let row = &src.data[r * row_len..(r + 1) * row_len];
        let mut out = vec![0f32; width];
        for (dx, (idx, w)) in xt.iter().enumerate() {
            for c in 0..CN {
                let s = |j: usize| f32::from(row[idx[j] * CN + c]);
                let mut v = s(0) * w[0];
                for (j, &wj) in w.iter().enumerate().skip(1) {
                    v = s(j).mul_add(wj, v);
                }
                out[dx * CN + c] = v;
            }
        }
        *slot = Some(out);
    }
    let mut data = vec![0u8; width * new_h];
    for (dy, (idx, w)) in yt.iter().enumerate() {
        let h = idx.map(|r| rows[r].as_deref().expect("horizontal pass of a needed row"));
        let dst = &mut data[dy * width..(dy + 1) * width];
        for (x, d) in dst.iter_mut().enumerate() {
            let mut v = h[0][x] * w[0];
            for (hk, &wk) in h.iter().zip(w).skip(1) {
                v += hk[x] * wk;
            }
            *d = v.round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
    BgrImage {
        height: new_h,
        width: new_w,
        data,
    }
}
