//! The config's test pipeline (`cfg.test_dataloader.dataset.pipeline`) as typed steps: what each
//! transform of mmyolo 0.6.0 / mmdet 3.3.0 / mmcv 2.x will do at inference time, read with
//! [`parse_section`] (one `deny_unknown_fields` struct per transform type, holding every argument
//! its upstream `__init__` accepts, the ignored ones included).
//!
//! Only the image and its metainfo matter at inference: annotation loading and packing are
//! no-ops, and the loader is a no-op because the caller decodes the image (DetInferencer turns
//! `LoadImageFromFile` into `mmdet.InferencerLoader`, `det_inferencer.py:159-175`). A transform
//! we do not implement is an error naming it, never silently skipped: skipping a resize would
//! feed the network a different image. Values upstream accepts but mmcompat cannot reproduce
//! exactly (another interpolation, another backend) are [`SpecError::Unsupported`]; values
//! upstream itself rejects (its asserts and TypeErrors) are [`SpecError::Invalid`].
//!
//! Never: touch pixels (the backend's `preprocess` module applies these steps).

use serde::de::{DeserializeOwned, Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::parse::{closest_key, join, parse_section};
use super::SpecError;

/// Where DetInferencer reads the test pipeline (`cfg.test_dataloader.dataset.pipeline`).
pub const PIPELINE_PATH: &str = "test_dataloader.dataset.pipeline";

/// Transform type names accepted (with or without an `mmdet.`/`mmyolo.`/`mmcv.` scope prefix).
pub const SUPPORTED_TRANSFORMS: &[&str] = &[
    "LoadImageFromFile",
    "InferencerLoader",
    "LoadImageFromNDArray",
    "YOLOv5KeepRatioResize",
    "LetterResize",
    "Resize",
    "FixShapeResize",
    "Pad",
    "LoadAnnotations",
    "PackDetInputs",
];

/// The OpenCV interpolation flags mmcv maps `'bilinear'`, `'area'` and `'bicubic'` to
/// (`cv2_interp_codes` in `mmcv/image/geometric.py`); the three the backend reproduces
/// bit-exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Interpolation {
    /// `cv2.INTER_LINEAR` (mmcv `'bilinear'`).
    #[serde(rename = "bilinear")]
    Linear,
    /// `cv2.INTER_AREA` (mmcv `'area'`).
    #[serde(rename = "area")]
    Area,
    /// `cv2.INTER_CUBIC` (mmcv `'bicubic'`: PPYOLOE's `FixShapeResize`).
    #[serde(rename = "bicubic")]
    Cubic,
}

/// A target size as a config writes it: an int `s` (meaning `(s, s)`) or a `(w, h)` pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub w: u32,
    pub h: u32,
}

/// One step of the test pipeline. Serialised (the spec's JSON view) with the upstream type name
/// under `type`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Transform {
    /// `LoadImageFromFile` / `mmdet.InferencerLoader` / `LoadImageFromNDArray`: the image is
    /// already decoded (BGR, `IMREAD_COLOR`).
    #[serde(rename = "LoadImageFromFile")]
    LoadImage,
    /// `LoadAnnotations`: nothing to load at inference.
    LoadAnnotations,
    /// `PackDetInputs(meta_keys)`: HWC -> CHW happens on the tensor side; the keys are kept.
    PackDetInputs { meta_keys: Option<Vec<String>> },
    /// mmyolo `YOLOv5KeepRatioResize` (`mmyolo/datasets/transforms/transforms.py:30-125`).
    #[serde(rename = "YOLOv5KeepRatioResize")]
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
    /// mmdet `FixShapeResize(width, height, keep_ratio=False)`
    /// (`mmdet/datasets/transforms/transforms.py: FixShapeResize.transform`): a stretch to exactly
    /// `width × height`, `scale_factor = (width / w, height / h)`.
    FixShapeResize {
        width: u32,
        height: u32,
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

impl Transform {
    /// The upstream type name of the step (without scope).
    pub fn name(&self) -> &'static str {
        match self {
            Transform::LoadImage => "LoadImageFromFile",
            Transform::LoadAnnotations => "LoadAnnotations",
            Transform::PackDetInputs { .. } => "PackDetInputs",
            Transform::YoloV5KeepRatioResize { .. } => "YOLOv5KeepRatioResize",
            Transform::LetterResize { .. } => "LetterResize",
            Transform::Resize { .. } => "Resize",
            Transform::FixShapeResize { .. } => "FixShapeResize",
            Transform::Pad { .. } => "Pad",
        }
    }
}

/// What mmcv `Resize` was given: `scale` wins over `scale_factor` (`Resize.transform`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeTarget {
    Scale(Scale),
    /// `(w, h)` factors.
    Factor(f64, f64),
}

/// The parsed test pipeline, steps in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestPipeline {
    pub steps: Vec<Transform>,
}

impl TestPipeline {
    /// Parses the step dicts of the pipeline list at `path` (normally [`PIPELINE_PATH`]; JSON as
    /// the config loader dumps it: tuples are arrays, `None` is null).
    pub fn parse(value: &Value, path: &str) -> Result<Self, SpecError> {
        let list = value.as_array().ok_or_else(|| SpecError::Invalid {
            path: path.to_string(),
            type_name: "Compose".into(),
            message: format!(
                "the test pipeline must be a list of step dicts; found {}",
                json_kind(value)
            ),
        })?;
        let steps = list
            .iter()
            .enumerate()
            .map(|(index, step)| parse_step(step, &format!("{path}[{index}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { steps })
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

/// `value` as a positive integer that fits `u32`, or the message saying why not.
fn positive_int(v: &Value) -> Result<u32, String> {
    v.as_u64()
        .filter(|&n| n > 0 && n <= u64::from(u32::MAX))
        .map(|n| n as u32)
        .ok_or_else(|| format!("expected a positive integer, found {v}"))
}

/// `scale`/`size`: an int `s` -> `(s, s)` (mmcv `Resize.__init__`), or a `(w, h)` pair.
impl<'de> Deserialize<'de> for Scale {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let scale = match &v {
            Value::Array(items) => match items.as_slice() {
                [w, h] => Scale {
                    w: positive_int(w).map_err(D::Error::custom)?,
                    h: positive_int(h).map_err(D::Error::custom)?,
                },
                _ => {
                    return Err(D::Error::custom(format!(
                        "expected an int or a (w, h) pair, found {v}"
                    )))
                }
            },
            other => {
                let s = positive_int(other).map_err(D::Error::custom)?;
                Scale { w: s, h: s }
            }
        };
        Ok(scale)
    }
}

/// Written back as the config writes it: a `(w, h)` pair.
impl Serialize for Scale {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        [self.w, self.h].serialize(s)
    }
}

/// A strictly positive integer (`Pad.size_divisor`).
#[derive(Clone, Copy, Debug)]
struct PositiveInt(u32);

impl<'de> Deserialize<'de> for PositiveInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        positive_int(&v).map(PositiveInt).map_err(D::Error::custom)
    }
}

/// mmcv `Resize.scale_factor`: one number for both axes, or a `(w, h)` pair of numbers.
#[derive(Clone, Copy, Debug)]
struct ScaleFactor(f64, f64);

impl<'de> Deserialize<'de> for ScaleFactor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let positive = |x: &Value| {
            x.as_f64()
                .filter(|x| *x > 0.0)
                .ok_or_else(|| D::Error::custom(format!("{x} is not a positive number")))
        };
        match &v {
            Value::Array(items) if items.len() == 2 => {
                Ok(ScaleFactor(positive(&items[0])?, positive(&items[1])?))
            }
            Value::Number(_) => {
                let x = positive(&v)?;
                Ok(ScaleFactor(x, x))
            }
            _ => Err(D::Error::custom(format!(
                "expected a number or a pair, found {v}"
            ))),
        }
    }
}

/// `pad_val`: a number, or a dict whose `img` entry is a number or a per-channel triple (mmcv
/// `impad` accepts a number or a tuple of `channels` values); a dict without `img` pads with 0.
/// Each value must be a whole number in 0..=255 (`114` or `114.0`).
#[derive(Clone, Copy, Debug)]
struct PadVal([u8; 3]);

impl<'de> Deserialize<'de> for PadVal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let img = match &v {
            Value::Object(m) => match m.get("img") {
                None | Some(Value::Null) => return Ok(PadVal([0; 3])),
                Some(img) => img,
            },
            other => other,
        };
        // An integral float (`114.0`, YOLOX's configs) pads uint8 images with that byte, as
        // `cv2.copyMakeBorder` saturates it.
        let byte = |x: &Value| {
            x.as_f64()
                .filter(|&n| n.fract() == 0.0 && (0.0..=255.0).contains(&n))
                .map(|n| n as u8)
                .ok_or_else(|| {
                    D::Error::custom(format!("pad value {x} is not an integer in 0..=255"))
                })
        };
        match img {
            Value::Array(items) if items.len() == 3 => Ok(PadVal([
                byte(&items[0])?,
                byte(&items[1])?,
                byte(&items[2])?,
            ])),
            Value::Array(items) => Err(D::Error::custom(format!(
                "expected 3 per-channel values, found {}",
                items.len()
            ))),
            x => Ok(PadVal([byte(x)?; 3])),
        }
    }
}

/// Arguments of `LoadImageFromFile` (`mmcv/transforms/loading.py`), which InferencerLoader
/// forwards.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the `IgnoredAny` fields accept upstream keywords that change nothing here
struct LoaderArgs {
    #[serde(default)]
    to_float32: Option<bool>,
    #[serde(default)]
    color_type: Option<String>,
    #[serde(default)]
    imdecode_backend: Option<String>,
    #[serde(default)]
    file_client_args: IgnoredAny,
    #[serde(default)]
    ignore_empty: IgnoredAny,
    #[serde(default)]
    backend_args: IgnoredAny,
}

/// mmcv `Resize.__init__` (`mmcv/transforms/processing.py`), inherited by mmdet `Resize` and
/// mmyolo `YOLOv5KeepRatioResize`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the `IgnoredAny` fields accept upstream keywords that change nothing here
struct ResizeArgs {
    #[serde(default)]
    scale: Option<Scale>,
    #[serde(default)]
    scale_factor: Option<ScaleFactor>,
    #[serde(default)]
    keep_ratio: Option<bool>,
    #[serde(default)]
    clip_object_border: IgnoredAny,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    interpolation: Option<String>,
}

/// mmyolo `LetterResize.__init__` own arguments plus those it forwards to mmcv `Resize`
/// (`keep_ratio` is forced; passing it is a TypeError upstream, so it is not a field).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the `IgnoredAny` fields accept upstream keywords that change nothing here
struct LetterResizeArgs {
    #[serde(default)]
    scale: Option<Scale>,
    #[serde(default)]
    pad_val: Option<PadVal>,
    #[serde(default)]
    use_mini_pad: Option<bool>,
    #[serde(default)]
    stretch_only: Option<bool>,
    #[serde(default)]
    allow_scale_up: Option<bool>,
    #[serde(default)]
    half_pad_param: Option<bool>,
    /// Forwarded to mmcv `Resize`; the letterbox computes its own ratio.
    #[serde(default)]
    scale_factor: IgnoredAny,
    #[serde(default)]
    clip_object_border: IgnoredAny,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    interpolation: Option<String>,
}

/// mmdet `FixShapeResize.__init__` (`mmdet/datasets/transforms/transforms.py`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the `IgnoredAny` fields accept upstream keywords that change nothing here
struct FixShapeResizeArgs {
    width: Option<Value>,
    height: Option<Value>,
    /// Used by the `keep_ratio=True` padding only.
    #[serde(default)]
    pad_val: IgnoredAny,
    #[serde(default)]
    keep_ratio: Option<bool>,
    #[serde(default)]
    clip_object_border: IgnoredAny,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    interpolation: Option<String>,
}

/// mmcv `Pad.__init__`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PadArgs {
    #[serde(default)]
    size: Option<Scale>,
    #[serde(default)]
    size_divisor: Option<PositiveInt>,
    #[serde(default)]
    pad_to_square: Option<bool>,
    #[serde(default)]
    pad_val: Option<PadVal>,
    #[serde(default)]
    padding_mode: Option<String>,
}

/// mmdet/mmyolo/mmcv `LoadAnnotations.__init__` (the union); all ignored at inference.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // every field accepts an upstream keyword that changes nothing here
struct LoadAnnotationsArgs {
    #[serde(default)]
    with_bbox: IgnoredAny,
    #[serde(default)]
    with_label: IgnoredAny,
    #[serde(default)]
    with_mask: IgnoredAny,
    #[serde(default)]
    with_seg: IgnoredAny,
    #[serde(default)]
    with_keypoints: IgnoredAny,
    #[serde(default)]
    poly2mask: IgnoredAny,
    #[serde(default)]
    box_type: IgnoredAny,
    #[serde(default)]
    reduce_zero_label: IgnoredAny,
    #[serde(default)]
    ignore_index: IgnoredAny,
    #[serde(default)]
    imdecode_backend: IgnoredAny,
    #[serde(default)]
    file_client_args: IgnoredAny,
    #[serde(default)]
    backend_args: IgnoredAny,
    #[serde(default)]
    mask2bbox: IgnoredAny,
}

/// mmdet `PackDetInputs.__init__`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackDetInputsArgs {
    #[serde(default)]
    meta_keys: Option<Vec<String>>,
}

/// Strips a registry scope prefix (`mmdet.Resize` -> `Resize`).
fn bare_type_name(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(_, n)| n)
}

/// One step: its `type` picks the argument struct; `type` and `_scope_` are the registry's keys,
/// not the transform's, so they are removed before the arguments are read.
fn parse_step(step: &Value, path: &str) -> Result<Transform, SpecError> {
    let bad_step = |message: String| SpecError::Invalid {
        path: path.to_string(),
        type_name: "a pipeline step".into(),
        message,
    };
    let map = step.as_object().ok_or_else(|| {
        bad_step(format!(
            "expected a dict with a `type` key, found {}",
            json_kind(step)
        ))
    })?;
    let type_name = match map.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(bad_step(format!(
                "`type` must be a string naming the transform, found {other}"
            )))
        }
        None => return Err(bad_step("missing `type`".to_string())),
    };
    let args: Value = Value::Object(
        map.iter()
            .filter(|(k, _)| *k != "type" && *k != "_scope_")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Map<_, _>>(),
    );
    let step = Step {
        path,
        type_name,
        args: &args,
    };
    match bare_type_name(type_name) {
        "LoadImageFromFile" | "InferencerLoader" | "LoadImageFromNDArray" => step.loader(),
        "LoadAnnotations" => {
            step.parse::<LoadAnnotationsArgs>()?;
            Ok(Transform::LoadAnnotations)
        }
        "PackDetInputs" => Ok(Transform::PackDetInputs {
            meta_keys: step.parse::<PackDetInputsArgs>()?.meta_keys,
        }),
        "YOLOv5KeepRatioResize" => step.yolov5_keep_ratio_resize(),
        "LetterResize" => step.letter_resize(),
        "Resize" => step.resize(),
        "FixShapeResize" => step.fix_shape_resize(),
        "Pad" => step.pad(),
        _ => {
            let hint = match closest_key(
                bare_type_name(type_name),
                SUPPORTED_TRANSFORMS.iter().copied(),
            ) {
                Some(c) => format!("did you mean `{c}`? "),
                None => String::new(),
            };
            Err(SpecError::Unsupported {
                path: join(path, "type"),
                what: format!("transform type `{type_name}`"),
                hint: format!("{hint}supported: {}", SUPPORTED_TRANSFORMS.join(", ")),
            })
        }
    }
}

/// One step dict being read: where it is, its `type` as written, its arguments.
struct Step<'a> {
    path: &'a str,
    type_name: &'a str,
    args: &'a Value,
}

impl Step<'_> {
    fn parse<T: DeserializeOwned>(&self) -> Result<T, SpecError> {
        parse_section(self.args, self.type_name, self.path)
    }

    /// A value upstream itself rejects (an assert or TypeError in its `__init__`).
    fn invalid(&self, key: &str, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            path: join(self.path, key),
            type_name: self.type_name.to_string(),
            message: message.into(),
        }
    }

    /// A value upstream accepts that mmcompat does not reproduce.
    fn unsupported(&self, key: &str, value: &str, supported: &str) -> SpecError {
        SpecError::Unsupported {
            path: join(self.path, key),
            what: format!("{} {key}={value:?}", self.type_name),
            hint: format!("supported: {supported}"),
        }
    }

    /// mmcv `interpolation`: the cv2 backend names we can reproduce exactly.
    fn interpolation(&self, value: Option<&str>) -> Result<Interpolation, SpecError> {
        match value {
            None | Some("bilinear") => Ok(Interpolation::Linear),
            Some("area") => Ok(Interpolation::Area),
            Some("bicubic") => Ok(Interpolation::Cubic),
            Some(other) => Err(self.unsupported(
                "interpolation",
                other,
                "\"bilinear\", \"area\", \"bicubic\"",
            )),
        }
    }

    /// mmcv resize `backend`: only 'cv2' (the default) is what we reproduce.
    fn check_cv2_backend(&self, backend: Option<&str>) -> Result<(), SpecError> {
        match backend {
            None | Some("cv2") => Ok(()),
            Some(other) => Err(self.unsupported("backend", other, "\"cv2\"")),
        }
    }

    fn require_scale(&self, scale: Option<Scale>) -> Result<Scale, SpecError> {
        scale.ok_or_else(|| self.invalid("scale", "required (an int or a (w, h) pair)"))
    }

    fn loader(&self) -> Result<Transform, SpecError> {
        let a: LoaderArgs = self.parse()?;
        if a.to_float32 == Some(true) {
            return Err(SpecError::Unsupported {
                path: join(self.path, "to_float32"),
                what: "float32 images".into(),
                hint: "uint8 only; remove to_float32".into(),
            });
        }
        if let Some(c) = a.color_type.as_deref().filter(|&c| c != "color") {
            return Err(self.unsupported("color_type", c, "\"color\""));
        }
        if let Some(b) = a.imdecode_backend.as_deref().filter(|&b| b != "cv2") {
            return Err(self.unsupported("imdecode_backend", b, "\"cv2\""));
        }
        Ok(Transform::LoadImage)
    }

    fn yolov5_keep_ratio_resize(&self) -> Result<Transform, SpecError> {
        let a: ResizeArgs = self.parse()?;
        self.check_cv2_backend(a.backend.as_deref())?;
        // `assert keep_ratio is True` (transforms.py:60).
        if a.keep_ratio == Some(false) {
            return Err(self.invalid(
                "keep_ratio",
                "must be true (YOLOv5KeepRatioResize asserts it)",
            ));
        }
        // The interpolation argument is checked but unused: area when shrinking, bilinear when
        // enlarging (transforms.py:106-116).
        self.interpolation(a.interpolation.as_deref())?;
        Ok(Transform::YoloV5KeepRatioResize {
            scale: self.require_scale(a.scale)?,
        })
    }

    fn letter_resize(&self) -> Result<Transform, SpecError> {
        let a: LetterResizeArgs = self.parse()?;
        self.check_cv2_backend(a.backend.as_deref())?;
        Ok(Transform::LetterResize {
            scale: self.require_scale(a.scale)?,
            pad_val: a.pad_val.map_or([0; 3], |p| p.0),
            use_mini_pad: a.use_mini_pad.unwrap_or(false),
            stretch_only: a.stretch_only.unwrap_or(false),
            allow_scale_up: a.allow_scale_up.unwrap_or(true),
            half_pad_param: a.half_pad_param.unwrap_or(false),
            interpolation: self.interpolation(a.interpolation.as_deref())?,
        })
    }

    fn resize(&self) -> Result<Transform, SpecError> {
        let a: ResizeArgs = self.parse()?;
        self.check_cv2_backend(a.backend.as_deref())?;
        let target = match (a.scale, a.scale_factor) {
            (Some(s), _) => ResizeTarget::Scale(s),
            (None, Some(ScaleFactor(w, h))) => ResizeTarget::Factor(w, h),
            // mmcv Resize.__init__: `assert scale is not None or scale_factor is not None`.
            (None, None) => {
                return Err(self.invalid("scale", "`scale` and `scale_factor` can not both be None"))
            }
        };
        Ok(Transform::Resize {
            target,
            keep_ratio: a.keep_ratio.unwrap_or(false),
            interpolation: self.interpolation(a.interpolation.as_deref())?,
        })
    }

    fn fix_shape_resize(&self) -> Result<Transform, SpecError> {
        let a: FixShapeResizeArgs = self.parse()?;
        self.check_cv2_backend(a.backend.as_deref())?;
        // `assert width is not None and height is not None` (FixShapeResize.__init__).
        let side = |key: &str, v: Option<&Value>| match v {
            None | Some(Value::Null) => {
                Err(self.invalid(key, "required: `width` and `height` can not be None"))
            }
            Some(v) => positive_int(v).map_err(|m| self.invalid(key, m)),
        };
        let width = side("width", a.width.as_ref())?;
        let height = side("height", a.height.as_ref())?;
        if a.keep_ratio == Some(true) {
            return Err(self.unsupported(
                "keep_ratio",
                "True",
                "keep_ratio=False (the stretch of the shipped PPYOLOE configs)",
            ));
        }
        Ok(Transform::FixShapeResize {
            width,
            height,
            interpolation: self.interpolation(a.interpolation.as_deref())?,
        })
    }

    fn pad(&self) -> Result<Transform, SpecError> {
        let a: PadArgs = self.parse()?;
        if let Some(m) = a.padding_mode.as_deref().filter(|&m| m != "constant") {
            return Err(self.unsupported("padding_mode", m, "\"constant\""));
        }
        let size_divisor = a.size_divisor.map(|d| d.0);
        let pad_to_square = a.pad_to_square.unwrap_or(false);
        // mmcv Pad.__init__: exactly one of size / size_divisor unless padding to square.
        if pad_to_square {
            if a.size.is_some() {
                return Err(self.invalid("size", "must be None when pad_to_square is true"));
            }
        } else if a.size.is_some() == size_divisor.is_some() {
            return Err(self.invalid(
                "size",
                "exactly one of `size` and `size_divisor` must be given",
            ));
        }
        Ok(Transform::Pad {
            size: a.size,
            size_divisor,
            pad_to_square,
            pad_val: a.pad_val.map_or([0; 3], |p| p.0),
        })
    }
}

#[cfg(test)]
mod tests;
