//! Runs the config's test pipeline (`cfg.test_dataloader.dataset.pipeline`) on a decoded image
//! exactly as mmyolo 0.6.0 / mmdet 3.3.0 / mmcv 2.x do at inference time. What the steps are is
//! the core's [`TestPipeline`] (parsed and checked in `mmcompat_registry::spec::pipeline`, before
//! any checkpoint is read); this module only applies them to pixels.

use mmcompat_registry::spec::pipeline::{ResizeTarget, TestPipeline, Transform, PIPELINE_PATH};
use serde_json::Value;

use super::resize::{resize, Interpolation};
use super::{BgrImage, PreprocessError};

/// The test pipeline ready to run: the core's description, applied by [`PipelineSpec::run`].
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSpec {
    spec: TestPipeline,
}

/// The network input and the metainfo the heads need, as upstream's `data_samples.metainfo`.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocessed {
    /// The network input after resize and padding: uint8 BGR HWC (normalisation is done later).
    pub image: BgrImage,
    /// `(h, w)` of the decoded image.
    pub ori_shape: (usize, usize),
    /// `(h, w)` of `img_shape` after the pipeline (mmyolo LetterResize: the padded shape; mmdet
    /// Pad overwrites it with the padded shape too; mmdet Resize alone: the resized shape).
    pub img_shape: (usize, usize),
    /// `(w, h)` as upstream: new size / old size of the resizes, multiplied together by
    /// LetterResize; `(1.0, 1.0)` when nothing resized (upstream would have no key at all).
    pub scale_factor: (f64, f64),
    /// mmyolo LetterResize `pad_param` = `[top, bottom, left, right]` (float32).
    pub pad_param: Option<[f32; 4]>,
}

/// Mutable state threaded through the steps, like upstream's `results` dict.
struct Results {
    img: BgrImage,
    img_shape: (usize, usize),
    scale_factor: Option<(f64, f64)>,
    pad_param: Option<[f32; 4]>,
}

impl PipelineSpec {
    /// Parses the step dicts of `cfg.test_dataloader.dataset.pipeline` (JSON as the config
    /// loader dumps it) with the core's parser; errors name the step's key path.
    pub fn from_config(steps: &Value) -> Result<Self, PreprocessError> {
        Ok(Self::new(TestPipeline::parse(steps, PIPELINE_PATH)?))
    }

    /// Wraps a pipeline the spec stage has already parsed.
    pub fn new(spec: TestPipeline) -> Self {
        Self { spec }
    }

    /// The parsed steps, in order.
    pub fn steps(&self) -> &[Transform] {
        &self.spec.steps
    }

    /// Runs the pipeline on a decoded BGR image.
    pub fn run(&self, img: &BgrImage) -> Result<Preprocessed, PreprocessError> {
        let ori_shape = img.shape();
        let mut results = Results {
            img: img.clone(),
            img_shape: ori_shape,
            scale_factor: None,
            pad_param: None,
        };
        for (index, step) in self.spec.steps.iter().enumerate() {
            apply(index, step, &mut results)?;
        }
        Ok(Preprocessed {
            image: results.img,
            ori_shape,
            img_shape: results.img_shape,
            scale_factor: results.scale_factor.unwrap_or((1.0, 1.0)),
            pad_param: results.pad_param,
        })
    }
}

/// Python's `round()` on a float: half to even.
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

fn apply(index: usize, step: &Transform, r: &mut Results) -> Result<(), PreprocessError> {
    let fail = |r: &Results, message: String| PreprocessError::Transform {
        index,
        transform: step.name(),
        width: r.img.width,
        height: r.img.height,
        message,
    };
    let (h, w) = r.img.shape();
    if h == 0 || w == 0 {
        return Err(fail(r, "empty image".to_string()));
    }
    match step {
        Transform::LoadImage | Transform::LoadAnnotations | Transform::PackDetInputs { .. } => {}
        Transform::YoloV5KeepRatioResize { scale } => {
            // _get_rescale_ratio (transforms.py:64-94), float64.
            let (long, short) = (scale.w.max(scale.h) as f64, scale.w.min(scale.h) as f64);
            let ratio = (long / h.max(w) as f64).min(short / h.min(w) as f64);
            if ratio != 1.0 {
                // `int()` truncation; area when shrinking, bilinear when enlarging (:106-116).
                let (nw, nh) = ((w as f64 * ratio) as usize, (h as f64 * ratio) as usize);
                if nw == 0 || nh == 0 {
                    return Err(fail(
                        r,
                        format!("the resized size {nw}x{nh} is empty (cv2.resize would fail)"),
                    ));
                }
                let interp = if ratio < 1.0 {
                    Interpolation::Area
                } else {
                    Interpolation::Linear
                };
                r.img = resize(&r.img, nw, nh, interp);
            }
            let (nh, nw) = r.img.shape();
            r.img_shape = (nh, nw);
            r.scale_factor = Some((nw as f64 / w as f64, nh as f64 / h as f64));
        }
        Transform::LetterResize {
            scale,
            pad_val,
            use_mini_pad,
            stretch_only,
            allow_scale_up,
            half_pad_param,
            interpolation,
        } => {
            // LetterResize._resize_img (transforms.py:182-274); no batch_shape at inference.
            let (sh, sw) = (scale.h as i64, scale.w as i64);
            let mut ratio = (sh as f64 / h as f64).min(sw as f64 / w as f64);
            if !allow_scale_up {
                ratio = ratio.min(1.0);
            }
            let mut ratios = [ratio, ratio];
            let mut no_pad = (py_round(h as f64 * ratio), py_round(w as f64 * ratio));
            let (mut pad_h, mut pad_w) = (sh - no_pad.0, sw - no_pad.1);
            if *use_mini_pad {
                // np.mod: the sign of the divisor.
                pad_w = pad_w.rem_euclid(32);
                pad_h = pad_h.rem_euclid(32);
            } else if *stretch_only {
                pad_h = 0;
                pad_w = 0;
                no_pad = (sh, sw);
                ratios = [sh as f64 / h as f64, sw as f64 / w as f64];
            }
            if no_pad.0 <= 0 || no_pad.1 <= 0 {
                return Err(fail(
                    r,
                    format!("the resized size {}x{} is empty", no_pad.1, no_pad.0),
                ));
            }
            if pad_h < 0 || pad_w < 0 {
                return Err(fail(
                    r,
                    format!("negative padding {pad_h}x{pad_w} (cv2.copyMakeBorder would fail)"),
                ));
            }
            if (h as i64, w as i64) != no_pad {
                r.img = resize(&r.img, no_pad.1 as usize, no_pad.0 as usize, *interpolation);
            }
            let letter_sf = (no_pad.1 as f64 / w as f64, no_pad.0 as f64 / h as f64);
            // `int(round(padding_h // 2 - 0.1))`: floor division, then banker's rounding.
            let top = py_round(pad_h.div_euclid(2) as f64 - 0.1);
            let left = py_round(pad_w.div_euclid(2) as f64 - 0.1);
            let (bottom, right) = (pad_h - top, pad_w - left);
            if top != 0 || bottom != 0 || left != 0 || right != 0 {
                r.img = pad_constant(
                    &r.img,
                    top as usize,
                    bottom as usize,
                    left as usize,
                    right as usize,
                    *pad_val,
                );
            }
            r.img_shape = r.img.shape();
            let new_pad = if *half_pad_param {
                let (hh, hw) = (pad_h as f64 / 2.0, pad_w as f64 / 2.0);
                [hh as f32, hh as f32, hw as f32, hw as f32]
            } else {
                [top as f32, bottom as f32, left as f32, right as f32]
            };
            // LetterResize.transform (transforms.py:319-330): a previous pad_param, scaled by this
            // step's ratio, is added; a previous scale_factor multiplies this one.
            r.pad_param = Some(match r.pad_param {
                Some(old) => {
                    let rep = [ratios[0], ratios[0], ratios[1], ratios[1]];
                    let mut out = [0f32; 4];
                    for i in 0..4 {
                        out[i] = (f64::from(new_pad[i]) + f64::from(old[i]) * rep[i]) as f32;
                    }
                    out
                }
                None => new_pad,
            });
            r.scale_factor = Some(match r.scale_factor {
                Some((ow, oh)) => (letter_sf.0 * ow, letter_sf.1 * oh),
                None => letter_sf,
            });
        }
        Transform::Resize {
            target,
            keep_ratio,
            interpolation,
        } => {
            // mmcv Resize.transform: results['scale'] = self.scale, or _scale_size((w, h), factor).
            let scale = match *target {
                ResizeTarget::Scale(s) => (s.w as f64, s.h as f64),
                ResizeTarget::Factor(fw, fh) => {
                    ((w as f64 * fw + 0.5).trunc(), (h as f64 * fh + 0.5).trunc())
                }
            };
            let (nw, nh) = if *keep_ratio {
                // mmcv imrescale -> rescale_size: long/short edge limits, `int(x * s + 0.5)`.
                let (long, short) = (scale.0.max(scale.1), scale.0.min(scale.1));
                let s = (long / h.max(w) as f64).min(short / h.min(w) as f64);
                ((w as f64 * s + 0.5) as usize, (h as f64 * s + 0.5) as usize)
            } else {
                (scale.0 as usize, scale.1 as usize)
            };
            if nw == 0 || nh == 0 {
                return Err(fail(
                    r,
                    format!("the resized size {nw}x{nh} is empty (cv2.resize would fail)"),
                ));
            }
            r.img = resize(&r.img, nw, nh, *interpolation);
            r.img_shape = (nh, nw);
            r.scale_factor = Some((nw as f64 / w as f64, nh as f64 / h as f64));
        }
        Transform::FixShapeResize {
            width,
            height,
            interpolation,
        } => {
            // mmdet FixShapeResize.transform (keep_ratio=False): `mmcv.imresize` to exactly
            // (width, height); Resize._resize_img stores its `(new_w / w, new_h / h)`.
            let (nw, nh) = (*width as usize, *height as usize);
            r.img = resize(&r.img, nw, nh, *interpolation);
            r.img_shape = (nh, nw);
            r.scale_factor = Some((nw as f64 / w as f64, nh as f64 / h as f64));
        }
        Transform::Pad {
            size,
            size_divisor,
            pad_to_square,
            pad_val,
        } => {
            // mmdet Pad._pad_img: square first, then the divisor, else the fixed size (w, h).
            let mut target: Option<(usize, usize)> = None;
            if *pad_to_square {
                let m = h.max(w);
                target = Some((m, m));
            }
            if let Some(d) = size_divisor {
                let (th, tw) = target.unwrap_or((h, w));
                let d = *d as usize;
                target = Some((th.div_ceil(d) * d, tw.div_ceil(d) * d));
            } else if let Some(s) = size {
                target = Some((s.h as usize, s.w as usize));
            }
            if let Some((th, tw)) = target {
                // mmcv impad(shape=...): pads bottom/right by max(target - size, 0).
                let (dh, dw) = (th.saturating_sub(h), tw.saturating_sub(w));
                if dh != 0 || dw != 0 {
                    r.img = pad_constant(&r.img, 0, dh, 0, dw, *pad_val);
                }
            }
            r.img_shape = r.img.shape();
        }
    }
    Ok(())
}

/// `cv2.copyMakeBorder(img, top, bottom, left, right, BORDER_CONSTANT, value)`.
fn pad_constant(
    img: &BgrImage,
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
    value: [u8; 3],
) -> BgrImage {
    let (h, w) = (img.height + top + bottom, img.width + left + right);
    let mut out = BgrImage::filled(h, w, value);
    let src_row = img.width * 3;
    for y in 0..img.height {
        let dst_start = ((y + top) * w + left) * 3;
        out.data[dst_start..dst_start + src_row]
            .copy_from_slice(&img.data[y * src_row..(y + 1) * src_row]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The parse of every transform and its errors are tested in the core
    // (`mmcompat_registry::spec::pipeline`); here only the wrapping.
    #[test]
    fn from_config_reports_the_core_error_with_the_step_path() {
        let err = PipelineSpec::from_config(&json!([
            {"type": "LoadImageFromFile"},
            {"type": "mmyolo.LetterResize", "scale": [640, 640], "allow_scaleup": false}
        ]))
        .unwrap_err();
        assert!(matches!(err, PreprocessError::Spec(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("test_dataloader.dataset.pipeline[1]: unknown key `allow_scaleup`")
                && msg.contains("did you mean `allow_scale_up`"),
            "{msg}"
        );
        let spec = PipelineSpec::from_config(&json!([{"type": "mmdet.InferencerLoader"}])).unwrap();
        assert_eq!(spec.steps(), &[Transform::LoadImage]);
    }

    #[test]
    fn pad_constant_places_the_image() {
        let img = BgrImage::filled(1, 2, [1, 2, 3]);
        let out = pad_constant(&img, 1, 0, 0, 1, [9, 9, 9]);
        assert_eq!((out.height, out.width), (2, 3));
        assert_eq!(out.pixel(0, 0), Some([9, 9, 9]));
        assert_eq!(out.pixel(1, 0), Some([1, 2, 3]));
        assert_eq!(out.pixel(1, 1), Some([1, 2, 3]));
        assert_eq!(out.pixel(1, 2), Some([9, 9, 9]));
    }
}
