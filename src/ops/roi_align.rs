//! mmcv `RoIAlign` (`mmcv/ops/roi_align.py`, CPU kernel `mmcv/ops/csrc/pytorch/cpu/roi_align.cpp:
//! ROIAlignForward` + `pre_calc_for_bilinear_interpolate`) on tch tensor ops.
//!
//! The sample positions, the boundary rules and the bin grid are computed on the host in f32 with
//! the kernel's exact expressions (they are per RoI × bin × grid step, a few thousand numbers):
//! * `start = roi · spatial_scale − 0.5` when `aligned` (else `− 0`, and sizes clamped to ≥ 1);
//!   an aligned RoI with negative size is the kernel's `AT_ASSERTM` → [`OpError::Invalid`];
//! * grid per axis = `sampling_ratio` if > 0, else `ceil(size / pooled)`; `count = max(gh·gw, 1)`;
//! * sample `y = start + p·bin + (i + 0.5)·bin / grid`; `y < −1 ∥ y > H ∥ x < −1 ∥ x > W` reads 0;
//!   `y ≤ 0 → 0`; `y_low = (int)y`, and `y_low ≥ H−1` collapses both rows to `H−1`.
//!
//! `avg` uses that bilinear sampling is separable: the bin average is `Ay · crop · Axᵀ / count`
//! with `Ay[p, row]` the summed row weights of bin row `p` (likewise `Ax`), and `crop` the RoI's
//! window of the feature map. RoIs are processed in chunks of similar window size with two
//! batched matmuls each. `max` is not separable: every sample is gathered (4 corners) and the
//! maximum taken, starting from the kernel's `-10000`.
//! Sums are ordered differently than the kernel's per-sample loop (float32 rounding, ~1e-7 rel).

use tch::{Device, Kind, Tensor};

use super::OpError;

const OP: &str = "roi_align";
/// Elements of the gathered crops per chunk (f32: 128 MiB), which bounds peak memory.
const CHUNK_ELEMENTS: i64 = 1 << 25;
/// The kernel's initial value of the running maximum (`T maxval = -10000`).
const MAX_POOL_INIT: f32 = -10000.0;

/// mmcv's `pool_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Avg,
    Max,
}

impl PoolMode {
    /// `'avg'` or `'max'`, as mmcv's `RoIAlign(pool_mode=...)` accepts (it asserts on others).
    pub fn parse(s: &str) -> Result<Self, OpError> {
        match s {
            "avg" => Ok(PoolMode::Avg),
            "max" => Ok(PoolMode::Max),
            other => Err(OpError::invalid(
                OP,
                format!("pool_mode '{other}' is not one of 'avg', 'max'"),
            )),
        }
    }
}

/// The arguments of mmcv's `RoIAlign(output_size, spatial_scale, sampling_ratio, pool_mode,
/// aligned)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiAlignCfg {
    /// `(pooled_height, pooled_width)`.
    pub output_size: (i64, i64),
    pub spatial_scale: f32,
    /// Samples per bin and axis; 0 (or negative) = adaptive `ceil(roi_size / output_size)`.
    pub sampling_ratio: i64,
    pub aligned: bool,
    pub pool_mode: PoolMode,
}

impl Default for RoiAlignCfg {
    /// mmdet's `roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0)` at scale 1.
    fn default() -> Self {
        RoiAlignCfg {
            output_size: (7, 7),
            spatial_scale: 1.0,
            sampling_ratio: 0,
            aligned: true,
            pool_mode: PoolMode::Avg,
        }
    }
}

/// One sample along one axis: bilinear rows/columns and their weights (0 when out of range).
#[derive(Debug, Clone, Copy, PartialEq)]
struct AxisSample {
    low: i64,
    high: i64,
    w_low: f32,
    w_high: f32,
}

/// The kernel's per-axis rule for coordinate `v` on an axis of `size` pixels.
fn axis_sample(v: f32, size: i64) -> AxisSample {
    if v < -1.0 || v > size as f32 {
        return AxisSample {
            low: 0,
            high: 0,
            w_low: 0.0,
            w_high: 0.0,
        };
    }
    let mut v = if v <= 0.0 { 0.0 } else { v };
    let mut low = v as i64;
    let high;
    if low >= size - 1 {
        low = size - 1;
        high = low;
        v = low as f32;
    } else {
        high = low + 1;
    }
    let l = v - low as f32;
    AxisSample {
        low,
        high,
        w_low: 1.0 - l,
        w_high: l,
    }
}

/// The samples of one RoI along one axis: `samples[p][i]` for bin `p`, grid step `i`.
struct AxisPlan {
    samples: Vec<Vec<AxisSample>>,
    grid: i64,
    /// First pixel touched by a non-zero weight and the window length (0 when none).
    start: i64,
    len: i64,
}

fn axis_plan(start: f32, bin: f32, grid: i64, pooled: i64, size: i64) -> AxisPlan {
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    let samples: Vec<Vec<AxisSample>> = (0..pooled)
        .map(|p| {
            (0..grid)
                .map(|i| {
                    // `roi_start + p * bin + (T)(i + .5f) * bin / (T)grid`, left to right.
                    let v = start + p as f32 * bin + (i as f32 + 0.5) * bin / grid as f32;
                    let s = axis_sample(v, size);
                    if s.w_low != 0.0 || s.w_high != 0.0 {
                        lo = lo.min(s.low);
                        hi = hi.max(s.high);
                    }
                    s
                })
                .collect()
        })
        .collect();
    let (start, len) = if lo <= hi { (lo, hi - lo + 1) } else { (0, 0) };
    AxisPlan {
        samples,
        grid,
        start,
        len,
    }
}

/// One RoI's plan: batch index, per-axis samples and the sample count of a bin.
struct RoiPlan {
    batch: i64,
    y: AxisPlan,
    x: AxisPlan,
    count: f32,
}

/// mmcv `roi_align(input, rois, output_size, spatial_scale, sampling_ratio, pool_mode, aligned)`:
/// `input` `[N, C, H, W]` (float), `rois` `[K, 5]` rows `(batch_index, x1, y1, x2, y2)` in input
/// coordinates before `spatial_scale`; returns `[K, C, pooled_h, pooled_w]` in `input`'s kind.
pub fn roi_align(input: &Tensor, rois: &Tensor, cfg: &RoiAlignCfg) -> Result<Tensor, OpError> {
    let isz = input.size();
    let [n, c, h, w] = isz[..] else {
        return Err(OpError::shape(OP, "input", isz, "[N, C, H, W]"));
    };
    let rsz = rois.size();
    if rsz.len() != 2 || rsz[1] != 5 {
        return Err(OpError::shape(
            OP,
            "rois",
            rsz,
            "[K, 5] rows (batch_index, x1, y1, x2, y2)",
        ));
    }
    let (ph, pw) = cfg.output_size;
    if ph <= 0 || pw <= 0 {
        return Err(OpError::invalid(
            OP,
            format!("output_size ({ph}, {pw}) must be positive"),
        ));
    }
    if !cfg.spatial_scale.is_finite() {
        return Err(OpError::invalid(
            OP,
            format!("spatial_scale {} is not finite", cfg.spatial_scale),
        ));
    }
    if !input.is_floating_point() {
        return Err(OpError::invalid(
            OP,
            format!("input must be a float tensor, got {:?}", input.kind()),
        ));
    }
    let k = rsz[0];
    let torch = OpError::torch(OP);
    let out = Tensor::f_zeros([k, c, ph, pw], (input.kind(), input.device())).map_err(&torch)?;
    if k == 0 || c == 0 {
        return Ok(out);
    }
    let plans = plan_rois(rois, cfg, n, h, w)?;
    // `[N·H·W, C]`: one row per pixel, so a RoI window is one `index_select`.
    let flat = input
        .f_permute([0, 2, 3, 1])
        .and_then(|t| t.f_contiguous())
        .and_then(|t| t.f_view([n * h * w, c]))
        .map_err(&torch)?;
    match cfg.pool_mode {
        PoolMode::Avg => avg_pool(&flat, &plans, &out, (h, w, c), cfg.output_size)?,
        PoolMode::Max => max_pool(&flat, &plans, &out, (h, w, c), cfg.output_size)?,
    }
    Ok(out)
}

fn plan_rois(
    rois: &Tensor,
    cfg: &RoiAlignCfg,
    n: i64,
    h: i64,
    w: i64,
) -> Result<Vec<RoiPlan>, OpError> {
    let host: Vec<f32> = rois
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Float))
        .and_then(|t| t.f_contiguous())
        .and_then(|t| t.f_view([-1]))
        .and_then(|t| Vec::<f32>::try_from(&t))
        .map_err(OpError::torch(OP))?;
    let (ph, pw) = cfg.output_size;
    let scale = cfg.spatial_scale;
    let offset = if cfg.aligned { 0.5f32 } else { 0.0 };
    host.chunks_exact(5)
        .enumerate()
        .map(|(i, r)| {
            // `int roi_batch_ind = offset_rois[0]` (truncation).
            let batch = r[0] as i64;
            if !(0..n).contains(&batch) || !r[0].is_finite() {
                return Err(OpError::invalid(
                    OP,
                    format!(
                        "rois[{i}] has batch index {} but the input batch has {n} image(s)",
                        r[0]
                    ),
                ));
            }
            let (sw, sh) = (r[1] * scale - offset, r[2] * scale - offset);
            let (ew, eh) = (r[3] * scale - offset, r[4] * scale - offset);
            let (mut rw, mut rh) = (ew - sw, eh - sh);
            if cfg.aligned {
                if !(rw >= 0.0 && rh >= 0.0) {
                    return Err(OpError::invalid(
                        OP,
                        format!(
                            "rois[{i}] = {r:?} has negative size (x2 < x1 or y2 < y1); mmcv's \
                             aligned RoIAlign asserts on it: clip or drop such boxes first"
                        ),
                    ));
                }
            } else {
                // "for backward-compatibility only"
                rw = rw.max(1.0);
                rh = rh.max(1.0);
            }
            let (bh, bw) = (rh / ph as f32, rw / pw as f32);
            let grid = |size: f32, pooled: i64| {
                if cfg.sampling_ratio > 0 {
                    cfg.sampling_ratio
                } else {
                    (size / pooled as f32).ceil() as i64
                }
            };
            let (gh, gw) = (grid(rh, ph), grid(rw, pw));
            Ok(RoiPlan {
                batch,
                y: axis_plan(sh, bh, gh, ph, h),
                x: axis_plan(sw, bw, gw, pw, w),
                count: (gh * gw).max(1) as f32,
            })
        })
        .collect()
}

/// Sorts RoIs by their 2-D extent `dims` (window or grid size) and splits them into runs that are
/// padded to the run's largest extent: a run stays within [`CHUNK_ELEMENTS`] (`len · max_a · max_b
/// · unit`) and wastes at most a quarter on padding (at least one RoI per run).
fn chunks(mut order: Vec<usize>, dims: impl Fn(usize) -> (i64, i64), unit: i64) -> Vec<Vec<usize>> {
    order.sort_by_key(|&i| (dims(i), i));
    let mut out = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let (mut ma, mut mb) = dims(order[start]);
        let mut real = ma * mb;
        let mut end = start + 1;
        while end < order.len() {
            let (a, b) = dims(order[end]);
            let (na, nb) = (ma.max(a), mb.max(b));
            let padded = na * nb * (end - start + 1) as i64;
            if padded * unit > CHUNK_ELEMENTS || 4 * padded > 5 * (real + a * b) {
                break;
            }
            (ma, mb, real) = (na, nb, real + a * b);
            end += 1;
        }
        out.push(order[start..end].to_vec());
        start = end;
    }
    out
}

fn avg_pool(
    flat: &Tensor,
    plans: &[RoiPlan],
    out: &Tensor,
    (h, w, c): (i64, i64, i64),
    (ph, pw): (i64, i64),
) -> Result<(), OpError> {
    let torch = OpError::torch(OP);
    let device = flat.device();
    let kind = flat.kind();
    // RoIs whose samples all fall outside keep their zero output (`sum 0 / count`).
    let order: Vec<usize> = (0..plans.len())
        .filter(|&i| plans[i].y.len > 0 && plans[i].x.len > 0)
        .collect();
    for chunk in chunks(order, |i| (plans[i].y.len, plans[i].x.len), c) {
        let chunk = &chunk[..];
        let kc = chunk.len() as i64;
        let lh = chunk.iter().map(|&i| plans[i].y.len).max().unwrap_or(1);
        let lw = chunk.iter().map(|&i| plans[i].x.len).max().unwrap_or(1);
        let mut ay = vec![0f32; (kc * ph * lh) as usize];
        let mut ax = vec![0f32; (kc * pw * lw) as usize];
        let mut count = Vec::with_capacity(chunk.len());
        let (mut base, mut row0, mut col0) = (Vec::new(), Vec::new(), Vec::new());
        for (j, &i) in chunk.iter().enumerate() {
            let p = &plans[i];
            fill_axis(&mut ay[j * (ph * lh) as usize..], &p.y, lh);
            fill_axis(&mut ax[j * (pw * lw) as usize..], &p.x, lw);
            count.push(p.count);
            base.push(p.batch * h * w);
            row0.push(p.y.start);
            col0.push(p.x.start);
        }
        let to = |v: &[f32], shape: &[i64]| -> Result<Tensor, tch::TchError> {
            Tensor::f_from_slice(v)?
                .f_view(shape)?
                .f_to_device(device)?
                .f_to_kind(kind)
        };
        let result = (|| -> Result<Tensor, tch::TchError> {
            // Window pixel (a, b) of RoI j: `base_j + min(row0_j + a, H−1)·W + min(col0_j + b, W−1)`
            // (pixels past the edge repeat the last one; their weights are 0).
            let index = window_index(&base, &row0, &col0, (lh, lw), (h, w), device)?;
            let crop = flat.f_index_select(0, &index)?.f_view([kc, lh, lw * c])?;
            let ay = to(&ay, &[kc, ph, lh])?;
            let ax = to(&ax, &[kc, pw, lw])?;
            // Σ_rows Ay[p,row] · crop[row, col, ch]  → [Kc, PH, Lw, C]
            let t = ay.f_bmm(&crop)?.f_view([kc, ph, lw, c])?;
            let t = t
                .f_permute([0, 2, 1, 3])?
                .f_contiguous()?
                .f_view([kc, lw, ph * c])?;
            // Σ_cols Ax[q,col] · t[col, p, ch] → [Kc, PW, PH, C] → [Kc, C, PH, PW]
            let u = ax
                .f_bmm(&t)?
                .f_view([kc, pw, ph, c])?
                .f_permute([0, 3, 2, 1])?;
            let count = to(&count, &[kc, 1, 1, 1])?;
            u.f_div(&count)
        })()
        .map_err(&torch)?;
        write_rows(out, chunk, &result)?;
    }
    Ok(())
}

/// `out[chunk[j]] = result[j]` (the RoIs of a chunk back in their input order).
fn write_rows(out: &Tensor, chunk: &[usize], result: &Tensor) -> Result<(), OpError> {
    let dest: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
    let mut out = out.shallow_clone();
    let device = out.device();
    Tensor::f_from_slice(&dest)
        .and_then(|dest| dest.f_to_device(device))
        .and_then(|dest| out.f_index_copy_(0, &dest, result))
        .map(drop)
        .map_err(OpError::torch(OP))
}

/// `dst[p, pixel − start]` = Σ over the bin's grid steps of that pixel's bilinear weight.
fn fill_axis(dst: &mut [f32], axis: &AxisPlan, len: i64) {
    for (p, samples) in axis.samples.iter().enumerate() {
        let row = &mut dst[p * len as usize..(p + 1) * len as usize];
        for s in samples {
            if s.w_low != 0.0 || s.w_high != 0.0 {
                row[(s.low - axis.start) as usize] += s.w_low;
                row[(s.high - axis.start) as usize] += s.w_high;
            }
        }
    }
}

/// Flat pixel indices `[Kc·lh·lw]` of the RoI windows (see `avg_pool`).
fn window_index(
    base: &[i64],
    row0: &[i64],
    col0: &[i64],
    (lh, lw): (i64, i64),
    (h, w): (i64, i64),
    device: Device,
) -> Result<Tensor, tch::TchError> {
    let kc = base.len() as i64;
    let long = (Kind::Int64, device);
    let col = |v: &[i64]| -> Result<Tensor, tch::TchError> {
        Tensor::f_from_slice(v)?
            .f_to_device(device)?
            .f_view([kc, 1])
    };
    let rows = col(row0)?
        .f_add(&Tensor::f_arange(lh, long)?.f_view([1, lh])?)?
        .f_clamp_max(h - 1)?;
    let cols = col(col0)?
        .f_add(&Tensor::f_arange(lw, long)?.f_view([1, lw])?)?
        .f_clamp_max(w - 1)?;
    col(base)?
        .f_view([kc, 1, 1])?
        .f_add(&rows.f_mul_scalar(w)?.f_view([kc, lh, 1])?)?
        .f_add(&cols.f_view([kc, 1, lw])?)?
        .f_view([-1])
}

/// One axis of a max-pool chunk, padded to `grid` steps: `[Kc, pooled, grid, 2]` pixel
/// (low, high) and weights, and `[Kc, grid]` true where the step does not exist for that RoI.
struct AxisTensors {
    pixel: Tensor,
    weight: Tensor,
    pad: Tensor,
}

fn axis_tensors(
    axes: &[&AxisPlan],
    pooled: i64,
    grid: i64,
    device: Device,
    kind: Kind,
) -> Result<AxisTensors, tch::TchError> {
    let kc = axes.len() as i64;
    let n = (kc * pooled * grid * 2) as usize;
    let (mut pixel, mut weight) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut pad = Vec::with_capacity((kc * grid) as usize);
    for axis in axes {
        for samples in &axis.samples {
            for i in 0..grid as usize {
                let s = samples.get(i).copied().unwrap_or(AxisSample {
                    low: 0,
                    high: 0,
                    w_low: 0.0,
                    w_high: 0.0,
                });
                pixel.extend([s.low, s.high]);
                weight.extend([s.w_low, s.w_high]);
            }
        }
        pad.extend((0..grid).map(|i| i >= axis.grid));
    }
    let shape = [kc, pooled, grid, 2];
    Ok(AxisTensors {
        pixel: Tensor::f_from_slice(&pixel)?
            .f_view(shape)?
            .f_to_device(device)?,
        weight: Tensor::f_from_slice(&weight)?
            .f_view(shape)?
            .f_to_device(device)?
            .f_to_kind(kind)?,
        pad: Tensor::f_from_slice(&pad)?
            .f_view([kc, grid])?
            .f_to_device(device)?,
    })
}

fn max_pool(
    flat: &Tensor,
    plans: &[RoiPlan],
    out: &Tensor,
    (h, w, c): (i64, i64, i64),
    (ph, pw): (i64, i64),
) -> Result<(), OpError> {
    let torch = OpError::torch(OP);
    let device = flat.device();
    let kind = flat.kind();
    let order: Vec<usize> = (0..plans.len()).collect();
    let dims = |i: usize| (plans[i].y.grid.max(1), plans[i].x.grid.max(1));
    for chunk in chunks(order, dims, ph * pw * 4 * c) {
        let kc = chunk.len() as i64;
        // At least one step per axis, so that an empty grid still yields the kernel's -10000.
        let gh = chunk.iter().map(|&i| dims(i).0).max().unwrap_or(1);
        let gw = chunk.iter().map(|&i| dims(i).1).max().unwrap_or(1);
        let base: Vec<i64> = chunk.iter().map(|&i| plans[i].batch * h * w).collect();
        let ys: Vec<&AxisPlan> = chunk.iter().map(|&i| &plans[i].y).collect();
        let xs: Vec<&AxisPlan> = chunk.iter().map(|&i| &plans[i].x).collect();
        let result = (|| -> Result<Tensor, tch::TchError> {
            let y = axis_tensors(&ys, ph, gh, device, kind)?;
            let x = axis_tensors(&xs, pw, gw, device, kind)?;
            // [Kc, PH, gh, 2(y corner), PW, gw, 2(x corner)]
            let ycorner = [kc, ph, gh, 2, 1, 1, 1];
            let xcorner = [kc, 1, 1, 1, pw, gw, 2];
            let index = Tensor::f_from_slice(&base)?
                .f_to_device(device)?
                .f_view([kc, 1, 1, 1, 1, 1, 1].as_slice())?
                .f_add(&y.pixel.f_mul_scalar(w)?.f_view(ycorner.as_slice())?)?
                .f_add(&x.pixel.f_view(xcorner.as_slice())?)?;
            let weight = y
                .weight
                .f_view(ycorner.as_slice())?
                .f_mul(&x.weight.f_view(xcorner.as_slice())?)?;
            let corners = flat
                .f_index_select(0, &index.f_view([-1])?)?
                .f_view([kc, ph, gh, 2, pw, gw, 2, c].as_slice())?;
            // Σ of the four corners: invalid samples have zero weights and read 0, as upstream.
            let vals = corners.f_mul(&weight.f_unsqueeze(-1)?)?.f_sum_dim_intlist(
                [3i64, 6].as_slice(),
                false,
                kind,
            )?; // [Kc, PH, gh, PW, gw, C]
            let pad = y
                .pad
                .f_view([kc, 1, gh, 1, 1, 1])?
                .f_logical_or(&x.pad.f_view([kc, 1, 1, 1, gw, 1])?)?;
            vals.f_masked_fill(&pad, f64::from(MAX_POOL_INIT))?
                .f_amax([2i64, 4].as_slice(), false)?
                // The running maximum starts at -10000 (also the value of an empty grid).
                .f_clamp_min(f64::from(MAX_POOL_INIT))?
                .f_permute([0, 3, 1, 2])
        })()
        .map_err(&torch)?;
        write_rows(out, &chunk, &result)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn constant_map_averages_to_the_constant_inside_and_less_at_the_border() {
        // A 4×4 map of ones; a RoI inside reads exactly 1 in every bin.
        let input = Tensor::ones([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        let rois = Tensor::from_slice(&[0f32, 1.0, 1.0, 3.0, 3.0]).view([1, 5]);
        let cfg = RoiAlignCfg {
            output_size: (2, 2),
            ..RoiAlignCfg::default()
        };
        assert_eq!(values(&roi_align(&input, &rois, &cfg).unwrap()), [1.0; 4]);
        // aligned=False, one sample per bin: a RoI [0,0,8,8] on a 4×4 map samples at 2 and 6;
        // y = 6 > H = 4 reads 0, so the bins are 1, 0 / 0, 0.
        let rois = Tensor::from_slice(&[0f32, 0.0, 0.0, 8.0, 8.0]).view([1, 5]);
        let cfg = RoiAlignCfg {
            output_size: (2, 2),
            sampling_ratio: 1,
            aligned: false,
            ..RoiAlignCfg::default()
        };
        assert_eq!(
            values(&roi_align(&input, &rois, &cfg).unwrap()),
            [1.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn bilinear_weights_by_hand() {
        // Row-major ramp 0..16 on 4×4: value = 4y + x is linear, so bilinear reads it exactly.
        let input = Tensor::arange(16, (Kind::Float, Device::Cpu)).view([1, 1, 4, 4]);
        // aligned=False, 1×1 output, one sample at the centre (1.5, 1.25) → 4·1.25 + 1.5 = 6.5.
        let rois = Tensor::from_slice(&[0f32, 1.0, 0.5, 2.0, 2.0]).view([1, 5]);
        let cfg = RoiAlignCfg {
            output_size: (1, 1),
            sampling_ratio: 1,
            aligned: false,
            ..RoiAlignCfg::default()
        };
        assert_eq!(values(&roi_align(&input, &rois, &cfg).unwrap()), [6.5]);
        // Max mode: 2×2 samples at x∈{1.25, 1.75}, y∈{0.875, 1.625}; max at (1.625, 1.75) = 8.25.
        let cfg = RoiAlignCfg {
            sampling_ratio: 2,
            pool_mode: PoolMode::Max,
            ..cfg
        };
        assert_eq!(values(&roi_align(&input, &rois, &cfg).unwrap()), [8.25]);
    }

    #[test]
    fn rejects_bad_arguments() {
        let input = Tensor::zeros([1, 2, 4, 4], (Kind::Float, Device::Cpu));
        let bad_rois = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
        let err = roi_align(&input, &bad_rois, &RoiAlignCfg::default()).unwrap_err();
        assert!(err.to_string().contains("`rois` has shape [3, 4]"), "{err}");
        let rois = Tensor::from_slice(&[1f32, 0.0, 0.0, 2.0, 2.0]).view([1, 5]);
        let err = roi_align(&input, &rois, &RoiAlignCfg::default()).unwrap_err();
        assert!(err.to_string().contains("batch index 1"), "{err}");
        let rois = Tensor::from_slice(&[0f32, 3.0, 0.0, 2.0, 2.0]).view([1, 5]);
        let err = roi_align(&input, &rois, &RoiAlignCfg::default()).unwrap_err();
        assert!(err.to_string().contains("negative size"), "{err}");
        assert!(PoolMode::parse("mean").is_err());
    }
}
