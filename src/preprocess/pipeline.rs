//! The config's `test_pipeline` (`cfg.test_dataloader.dataset.pipeline`) as typed steps, run on a
//! decoded image exactly as mmyolo 0.6.0 / mmdet 3.3.0 / mmcv 2.x do at inference time.
//!
//! Only the image and its metainfo matter here: annotation loading and packing are no-ops, and
//! the loader is a no-op because the caller has already decoded the image (DetInferencer turns
//! `LoadImageFromFile` into `mmdet.InferencerLoader`, `det_inferencer.py:159-175`). A transform we
//! do not implement is an error naming it, never silently skipped: skipping a resize would feed
//! the network a different image.

use serde_json::{Map, Value};

use super::resize::{resize, Interpolation};
use super::{closest, BgrImage, PreprocessError};

/// Transform type names accepted (with or without an `mmdet.`/`mmyolo.`/`mmcv.` scope prefix).
pub const SUPPORTED_TRANSFORMS: &[&str] = &[
    "LoadImageFromFile",
    "InferencerLoader",
    "LoadImageFromNDArray",
    "YOLOv5KeepRatioResize",
    "LetterResize",
    "Resize",
    "Pad",
    "LoadAnnotations",
    "PackDetInputs",
];

/// Arguments of `LoadImageFromFile` (`mmcv/transforms/loading.py`), which InferencerLoader forwards.
const LOADER_ARGS: &[&str] = &[
    "to_float32",
    "color_type",
    "imdecode_backend",
    "file_client_args",
    "ignore_empty",
    "backend_args",
];
/// mmcv `Resize.__init__` (`mmcv/transforms/processing.py`), inherited by mmdet and mmyolo resizes.
const RESIZE_ARGS: &[&str] = &[
    "scale",
    "scale_factor",
    "keep_ratio",
    "clip_object_border",
    "backend",
    "interpolation",
];
/// mmyolo `LetterResize.__init__` own arguments (`keep_ratio` is forced, passing it is a TypeError
/// upstream).
const LETTER_ARGS: &[&str] = &[
    "scale",
    "pad_val",
    "use_mini_pad",
    "stretch_only",
    "allow_scale_up",
    "half_pad_param",
    "scale_factor",
    "clip_object_border",
    "backend",
    "interpolation",
];
/// mmcv `Pad.__init__`.
const PAD_ARGS: &[&str] = &[
    "size",
    "size_divisor",
    "pad_to_square",
    "pad_val",
    "padding_mode",
];
/// mmdet/mmyolo/mmcv `LoadAnnotations.__init__` (union; all ignored at inference).
const ANNOTATION_ARGS: &[&str] = &[
    "with_bbox",
    "with_label",
    "with_mask",
    "with_seg",
    "with_keypoints",
    "poly2mask",
    "box_type",
    "reduce_zero_label",
    "ignore_index",
    "imdecode_backend",
    "file_client_args",
    "backend_args",
    "mask2bbox",
];
const PACK_ARGS: &[&str] = &["meta_keys"];

/// A target size as a config writes it: an int `s` (meaning `(s, s)`) or a `(w, h)` pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub w: u32,
    pub h: u32,
}

/// One step of the test pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Transform {
    /// `LoadImageFromFile` / `mmdet.InferencerLoader` / `LoadImageFromNDArray`: the image is
    /// already decoded (BGR, `IMREAD_COLOR`).
    LoadImage,
    /// `LoadAnnotations`: nothing to load at inference.
    LoadAnnotations,
    /// `PackDetInputs(meta_keys)`: HWC -> CHW happens on the tensor side; the keys are kept.
    PackDetInputs { meta_keys: Option<Vec<String>> },
    /// mmyolo `YOLOv5KeepRatioResize` (`mmyolo/datasets/transforms/transforms.py:30-125`).
    YoloV5KeepRatioResize { scale: Scale },
    /// mmyolo `LetterResize` (`mmyolo/datasets/transforms/transforms.py:128-330`).
    LetterResize {
        scale: Scale,
        pad_val: [u8; 3],
        use_mini_pad: bool,
        stretch_only: bool,
        allow_scale_up: bool,
        half_pad_param: bool,
        interpolation: Interpolation,
    },
    /// mmdet `Resize` (`mmdet/datasets/transforms/transforms.py:135-280` over
    /// `mmcv/transforms/processing.py` `Resize`).
    Resize {
        target: ResizeTarget,
        keep_ratio: bool,
        interpolation: Interpolation,
    },
    /// mmdet `Pad` (`mmdet/datasets/transforms/transforms.py:705-784`): bottom/right only.
    Pad {
        size: Option<Scale>,
        size_divisor: Option<u32>,
        pad_to_square: bool,
        pad_val: [u8; 3],
    },
}

/// What mmcv `Resize` was given: `scale` wins over `scale_factor` (`Resize.transform`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResizeTarget {
    Scale(Scale),
    /// `(w, h)` factors.
    Factor(f64, f64),
}

/// The parsed test pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSpec {
    steps: Vec<Transform>,
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
    /// loader dumps it: tuples are arrays, `None` is null).
    pub fn from_config(steps: &Value) -> Result<Self, PreprocessError> {
        let list = steps
            .as_array()
            .ok_or_else(|| PreprocessError::NotAPipeline {
                found: json_kind(steps).to_string(),
            })?;
        let steps = list
            .iter()
            .enumerate()
            .map(|(index, step)| parse_step(index, step))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { steps })
    }

    /// The parsed steps, in order.
    pub fn steps(&self) -> &[Transform] {
        &self.steps
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
        for (index, step) in self.steps.iter().enumerate() {
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

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

/// Reads the arguments of one step dict, rejecting any the transform does not accept.
struct Args<'a> {
    index: usize,
    transform: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Args<'a> {
    fn check_keys(&self, accepted: &'static [&'static str]) -> Result<(), PreprocessError> {
        for key in self.map.keys() {
            if key == "type" || key == "_scope_" || accepted.contains(&key.as_str()) {
                continue;
            }
            return Err(PreprocessError::UnknownArgument {
                index: self.index,
                transform: self.transform.to_string(),
                key: key.clone(),
                suggestion: closest(key, accepted.iter().copied()),
                accepted,
            });
        }
        Ok(())
    }

    fn invalid(&self, key: &'static str, message: impl Into<String>) -> PreprocessError {
        PreprocessError::InvalidArgument {
            index: self.index,
            transform: self.transform.to_string(),
            key,
            message: message.into(),
        }
    }

    /// The value of `key`, `None` when absent or null (Python `None` = the default).
    fn get(&self, key: &'static str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn bool_or(&self, key: &'static str, default: bool) -> Result<bool, PreprocessError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.invalid(key, format!("expected true/false, found {v}"))),
        }
    }

    fn positive_int(&self, key: &'static str, v: &Value) -> Result<u32, PreprocessError> {
        v.as_u64()
            .filter(|&n| n > 0 && n <= u64::from(u32::MAX))
            .map(|n| n as u32)
            .ok_or_else(|| self.invalid(key, format!("expected a positive integer, found {v}")))
    }

    /// `scale`/`size`: an int `s` -> `(s, s)` (mmcv `Resize.__init__`), or a `(w, h)` pair.
    fn scale(&self, key: &'static str) -> Result<Option<Scale>, PreprocessError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        if let Value::Array(items) = v {
            if let [w, h] = items.as_slice() {
                return Ok(Some(Scale {
                    w: self.positive_int(key, w)?,
                    h: self.positive_int(key, h)?,
                }));
            }
            return Err(self.invalid(key, format!("expected an int or a (w, h) pair, found {v}")));
        }
        let s = self.positive_int(key, v)?;
        Ok(Some(Scale { w: s, h: s }))
    }

    fn require_scale(&self, key: &'static str) -> Result<Scale, PreprocessError> {
        self.scale(key)?
            .ok_or_else(|| self.invalid(key, "required (an int or a (w, h) pair)"))
    }

    /// mmcv `interpolation`: the cv2 backend names we can reproduce exactly.
    fn interpolation(&self) -> Result<Interpolation, PreprocessError> {
        match self.get("interpolation") {
            None => Ok(Interpolation::Linear),
            Some(Value::String(s)) if s == "bilinear" => Ok(Interpolation::Linear),
            Some(Value::String(s)) if s == "area" => Ok(Interpolation::Area),
            Some(v) => Err(self.invalid(
                "interpolation",
                format!("{v} is not supported (supported: \"bilinear\", \"area\")"),
            )),
        }
    }

    /// mmcv resize `backend`: only 'cv2' (the default) is what we reproduce.
    fn check_cv2_backend(&self) -> Result<(), PreprocessError> {
        match self.get("backend") {
            None => Ok(()),
            Some(Value::String(s)) if s == "cv2" => Ok(()),
            Some(v) => Err(self.invalid("backend", format!("{v} is not supported (only \"cv2\")"))),
        }
    }

    /// `pad_val`: a number, or a dict whose `img` entry is a number or a per-channel triple
    /// (mmcv `impad` accepts a number or a tuple of `channels` values).
    fn pad_val(&self, key: &'static str) -> Result<[u8; 3], PreprocessError> {
        let Some(v) = self.get(key) else {
            return Ok([0; 3]);
        };
        let img = match v {
            Value::Object(m) => match m.get("img") {
                None | Some(Value::Null) => return Ok([0; 3]),
                Some(img) => img,
            },
            other => other,
        };
        let byte = |x: &Value| -> Result<u8, PreprocessError> {
            x.as_u64()
                .filter(|&n| n <= 255)
                .map(|n| n as u8)
                .ok_or_else(|| {
                    self.invalid(key, format!("pad value {x} is not an integer in 0..=255"))
                })
        };
        match img {
            Value::Array(items) if items.len() == 3 => {
                Ok([byte(&items[0])?, byte(&items[1])?, byte(&items[2])?])
            }
            Value::Array(items) => Err(self.invalid(
                key,
                format!("expected 3 per-channel values, found {}", items.len()),
            )),
            x => {
                let b = byte(x)?;
                Ok([b; 3])
            }
        }
    }
}

/// Strips a registry scope prefix (`mmdet.Resize` -> `Resize`).
fn bare_type_name(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(_, n)| n)
}

fn parse_step(index: usize, step: &Value) -> Result<Transform, PreprocessError> {
    let map = step.as_object().ok_or_else(|| PreprocessError::BadStep {
        index,
        message: format!(
            "expected a dict with a `type` key, found {}",
            json_kind(step)
        ),
    })?;
    let type_name = match map.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(PreprocessError::BadStep {
                index,
                message: format!("`type` must be a string naming the transform, found {other}"),
            })
        }
        None => {
            return Err(PreprocessError::BadStep {
                index,
                message: "missing `type`".to_string(),
            })
        }
    };
    let args = Args {
        index,
        transform: type_name,
        map,
    };
    let transform = match bare_type_name(type_name) {
        "LoadImageFromFile" | "InferencerLoader" | "LoadImageFromNDArray" => {
            args.check_keys(LOADER_ARGS)?;
            if args.bool_or("to_float32", false)? {
                return Err(args.invalid(
                    "to_float32",
                    "float32 images are not supported (uint8 only)",
                ));
            }
            if let Some(v) = args.get("color_type") {
                if v.as_str() != Some("color") {
                    return Err(args.invalid(
                        "color_type",
                        format!("{v} is not supported (only \"color\")"),
                    ));
                }
            }
            if let Some(v) = args.get("imdecode_backend") {
                if v.as_str() != Some("cv2") {
                    return Err(args.invalid(
                        "imdecode_backend",
                        format!("{v} is not supported (only \"cv2\")"),
                    ));
                }
            }
            Transform::LoadImage
        }
        "LoadAnnotations" => {
            args.check_keys(ANNOTATION_ARGS)?;
            Transform::LoadAnnotations
        }
        "PackDetInputs" => {
            args.check_keys(PACK_ARGS)?;
            let meta_keys = match args.get("meta_keys") {
                None => None,
                Some(Value::Array(items)) => Some(
                    items
                        .iter()
                        .map(|k| {
                            k.as_str().map(str::to_string).ok_or_else(|| {
                                args.invalid("meta_keys", format!("{k} is not a string"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some(v) => {
                    return Err(
                        args.invalid("meta_keys", format!("expected a list of names, found {v}"))
                    )
                }
            };
            Transform::PackDetInputs { meta_keys }
        }
        "YOLOv5KeepRatioResize" => {
            args.check_keys(RESIZE_ARGS)?;
            args.check_cv2_backend()?;
            // `assert keep_ratio is True` (transforms.py:60); the interpolation argument is
            // accepted but unused: area when shrinking, bilinear when enlarging.
            if !args.bool_or("keep_ratio", true)? {
                return Err(args.invalid(
                    "keep_ratio",
                    "must be true (YOLOv5KeepRatioResize asserts it)",
                ));
            }
            args.interpolation()?;
            Transform::YoloV5KeepRatioResize {
                scale: args.require_scale("scale")?,
            }
        }
        "LetterResize" => {
            args.check_keys(LETTER_ARGS)?;
            args.check_cv2_backend()?;
            Transform::LetterResize {
                scale: args.require_scale("scale")?,
                pad_val: args.pad_val("pad_val")?,
                use_mini_pad: args.bool_or("use_mini_pad", false)?,
                stretch_only: args.bool_or("stretch_only", false)?,
                allow_scale_up: args.bool_or("allow_scale_up", true)?,
                half_pad_param: args.bool_or("half_pad_param", false)?,
                interpolation: args.interpolation()?,
            }
        }
        "Resize" => {
            args.check_keys(RESIZE_ARGS)?;
            args.check_cv2_backend()?;
            let target = match args.scale("scale")? {
                Some(s) => ResizeTarget::Scale(s),
                None => match args.get("scale_factor") {
                    Some(Value::Array(items)) if items.len() == 2 => {
                        let f = |v: &Value| {
                            v.as_f64().filter(|x| *x > 0.0).ok_or_else(|| {
                                args.invalid(
                                    "scale_factor",
                                    format!("{v} is not a positive number"),
                                )
                            })
                        };
                        ResizeTarget::Factor(f(&items[0])?, f(&items[1])?)
                    }
                    Some(v @ Value::Number(_)) => {
                        let x = v.as_f64().filter(|x| *x > 0.0).ok_or_else(|| {
                            args.invalid("scale_factor", format!("{v} is not a positive number"))
                        })?;
                        ResizeTarget::Factor(x, x)
                    }
                    Some(v) => {
                        return Err(args.invalid(
                            "scale_factor",
                            format!("expected a number or a pair, found {v}"),
                        ))
                    }
                    None => {
                        return Err(args
                            .invalid("scale", "`scale` and `scale_factor` can not both be None"))
                    }
                },
            };
            Transform::Resize {
                target,
                keep_ratio: args.bool_or("keep_ratio", false)?,
                interpolation: args.interpolation()?,
            }
        }
        "Pad" => {
            args.check_keys(PAD_ARGS)?;
            if let Some(v) = args.get("padding_mode") {
                if v.as_str() != Some("constant") {
                    return Err(args.invalid(
                        "padding_mode",
                        format!("{v} is not supported (only \"constant\")"),
                    ));
                }
            }
            let size = args.scale("size")?;
            let size_divisor = args
                .get("size_divisor")
                .map(|v| args.positive_int("size_divisor", v))
                .transpose()?;
            let pad_to_square = args.bool_or("pad_to_square", false)?;
            // mmcv Pad.__init__: exactly one of size / size_divisor unless padding to square.
            if pad_to_square {
                if size.is_some() {
                    return Err(args.invalid("size", "must be None when pad_to_square is true"));
                }
            } else if size.is_some() == size_divisor.is_some() {
                return Err(args.invalid(
                    "size",
                    "exactly one of `size` and `size_divisor` must be given",
                ));
            }
            Transform::Pad {
                size,
                size_divisor,
                pad_to_square,
                pad_val: args.pad_val("pad_val")?,
            }
        }
        _ => {
            return Err(PreprocessError::UnknownTransform {
                index,
                type_name: type_name.to_string(),
                suggestion: closest(
                    bare_type_name(type_name),
                    SUPPORTED_TRANSFORMS.iter().copied(),
                ),
                supported: SUPPORTED_TRANSFORMS,
            })
        }
    };
    Ok(transform)
}

/// Python's `round()` on a float: half to even.
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

fn transform_name(step: &Transform) -> &'static str {
    match step {
        Transform::LoadImage => "LoadImageFromFile",
        Transform::LoadAnnotations => "LoadAnnotations",
        Transform::PackDetInputs { .. } => "PackDetInputs",
        Transform::YoloV5KeepRatioResize { .. } => "YOLOv5KeepRatioResize",
        Transform::LetterResize { .. } => "LetterResize",
        Transform::Resize { .. } => "Resize",
        Transform::Pad { .. } => "Pad",
    }
}

fn apply(index: usize, step: &Transform, r: &mut Results) -> Result<(), PreprocessError> {
    let fail = |r: &Results, message: String| PreprocessError::Transform {
        index,
        transform: transform_name(step),
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

    #[test]
    fn unknown_transform_names_the_supported_ones() {
        let err = PipelineSpec::from_config(&json!([{"type": "mmdet.RandomFlip", "prob": 0.5}]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`mmdet.RandomFlip`"), "{msg}");
        assert!(
            msg.contains("LetterResize") && msg.contains("PackDetInputs"),
            "{msg}"
        );
        let err =
            PipelineSpec::from_config(&json!([{"type": "LeterResize", "scale": 640}])).unwrap_err();
        assert!(
            err.to_string().contains("did you mean `LetterResize`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_argument_names_key_and_transform() {
        let err = PipelineSpec::from_config(&json!([
            {"type": "LoadImageFromFile"},
            {"type": "mmyolo.LetterResize", "scale": [640, 640], "allow_scaleup": false}
        ]))
        .unwrap_err();
        match &err {
            PreprocessError::UnknownArgument {
                index,
                transform,
                key,
                suggestion,
                ..
            } => {
                assert_eq!(
                    (*index, transform.as_str(), key.as_str()),
                    (1, "mmyolo.LetterResize", "allow_scaleup")
                );
                assert_eq!(*suggestion, Some("allow_scale_up"));
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn scopes_and_scope_keys_are_accepted() {
        let spec = PipelineSpec::from_config(&json!([
            {"type": "mmdet.InferencerLoader"},
            {"type": "mmyolo.YOLOv5KeepRatioResize", "scale": [640, 640], "_scope_": "mmyolo"},
            {"type": "LoadAnnotations", "with_bbox": true, "_scope_": "mmdet"},
            {"type": "mmdet.PackDetInputs", "meta_keys": ["img_id", "scale_factor"]}
        ]))
        .unwrap();
        assert_eq!(spec.steps().len(), 4);
        assert_eq!(spec.steps()[0], Transform::LoadImage);
    }

    #[test]
    fn bad_values_are_errors() {
        for (step, key) in [
            (
                json!({"type": "Resize", "scale": [640, 640], "interpolation": "bicubic"}),
                "interpolation",
            ),
            (
                json!({"type": "Pad", "size": [640, 640], "padding_mode": "edge"}),
                "padding_mode",
            ),
            (
                json!({"type": "Pad", "size": [640, 640], "size_divisor": 32}),
                "size",
            ),
            (
                json!({"type": "LetterResize", "scale": [640, 640], "pad_val": {"img": 300}}),
                "pad_val",
            ),
            (json!({"type": "Resize", "keep_ratio": true}), "scale"),
            (
                json!({"type": "YOLOv5KeepRatioResize", "scale": "big"}),
                "scale",
            ),
        ] {
            match PipelineSpec::from_config(&json!([step])) {
                Err(PreprocessError::InvalidArgument { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{step}: unexpected {other:?}"),
            }
        }
        assert!(matches!(
            PipelineSpec::from_config(&json!({"type": "Resize"})),
            Err(PreprocessError::NotAPipeline { .. })
        ));
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
