//! The model's `data_preprocessor` section (`DetDataPreprocessor` of mmdet,
//! `YOLOv5DetDataPreprocessor` of mmyolo) as a typed value, with the checks their constructors
//! make (`mmengine/model/base_model/data_preprocessor.py: ImgDataPreprocessor.__init__`).
//!
//! Only the inference path matters: normalisation, channel swap and batch padding. The
//! training-only arguments are accepted (upstream accepts them) and ignored.
//!
//! Never: touch tensors (the backend's data preprocessor runs what this describes).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::parse::{join, parse_section};
use super::SpecError;

/// The type name used in error messages when the config names none (mmdet's default).
const DEFAULT_TYPE: &str = "DetDataPreprocessor";

/// `model.data_preprocessor` (`DetDataPreprocessor` / `YOLOv5DetDataPreprocessor`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataPreprocessorSpec {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    /// Per-channel mean, in the channel order after the optional swap; `None`: no normalisation.
    #[serde(default)]
    pub mean: Option<Vec<f64>>,
    #[serde(default)]
    pub std: Option<Vec<f64>>,
    #[serde(default = "one")]
    pub pad_size_divisor: i64,
    #[serde(default)]
    pub pad_value: f64,
    #[serde(default)]
    pub bgr_to_rgb: bool,
    #[serde(default)]
    pub rgb_to_bgr: bool,
    #[serde(default)]
    pub pad_mask: bool,
    #[serde(default)]
    pub mask_pad_value: Option<f64>,
    #[serde(default)]
    pub pad_seg: bool,
    #[serde(default)]
    pub seg_pad_value: Option<f64>,
    #[serde(default)]
    pub boxtype2tensor: Option<bool>,
    #[serde(default)]
    pub non_blocking: Option<bool>,
    #[serde(default)]
    pub batch_augments: Option<Value>,
}

fn one() -> i64 {
    1
}

impl Default for DataPreprocessorSpec {
    fn default() -> Self {
        DataPreprocessorSpec {
            type_name: None,
            scope: None,
            mean: None,
            std: None,
            pad_size_divisor: 1,
            pad_value: 0.0,
            bgr_to_rgb: false,
            rgb_to_bgr: false,
            pad_mask: false,
            mask_pad_value: None,
            pad_seg: false,
            seg_pad_value: None,
            boxtype2tensor: None,
            non_blocking: None,
            batch_augments: None,
        }
    }
}

impl DataPreprocessorSpec {
    /// Reads the `data_preprocessor` dict at `path` (e.g. `model.data_preprocessor`); an absent
    /// or `None` section is the default (no normalisation, no swap, divisor 1).
    pub fn parse(value: Option<&Value>, path: &str) -> Result<Self, SpecError> {
        let Some(v) = value.filter(|v| !v.is_null()) else {
            return Ok(DataPreprocessorSpec::default());
        };
        let type_name = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_TYPE)
            .to_string();
        let dp: DataPreprocessorSpec = parse_section(v, &type_name, path)?;
        let name = dp
            .type_name
            .as_deref()
            .map(|t| t.rsplit('.').next().unwrap_or(t));
        if !matches!(
            name,
            None | Some("DetDataPreprocessor")
                | Some("YOLOv5DetDataPreprocessor")
                // At test time PPYOLOEDetDataPreprocessor.forward is DetDataPreprocessor.forward
                // (`mmyolo/models/data_preprocessors/data_preprocessor.py:
                // PPYOLOEDetDataPreprocessor.forward`: `if not training: return super().forward`).
                | Some("PPYOLOEDetDataPreprocessor")
        ) {
            return Err(SpecError::Unsupported {
                path: join(path, "type"),
                what: format!(
                    "data_preprocessor type `{}`",
                    dp.type_name.as_deref().unwrap_or("")
                ),
                hint: "DetDataPreprocessor, YOLOv5DetDataPreprocessor and \
                       PPYOLOEDetDataPreprocessor are implemented"
                    .into(),
            });
        }
        let invalid = |path: String, message: &str| SpecError::Invalid {
            path,
            type_name: type_name.clone(),
            message: message.to_string(),
        };
        for (key, v) in [("mean", &dp.mean), ("std", &dp.std)] {
            if let Some(v) = v {
                if v.len() != 3 && v.len() != 1 {
                    return Err(invalid(
                        join(path, key),
                        &format!("needs 1 or 3 values, got {}", v.len()),
                    ));
                }
            }
        }
        // ImgDataPreprocessor.__init__: `assert (mean is None) == (std is None)`.
        if dp.mean.is_some() != dp.std.is_some() {
            return Err(invalid(
                path.to_string(),
                "mean and std should be both None or tuple",
            ));
        }
        if dp.bgr_to_rgb && dp.rgb_to_bgr {
            return Err(invalid(
                path.to_string(),
                "`bgr2rgb` and `rgb2bgr` cannot be set to True at the same time",
            ));
        }
        if dp.batch_augments.as_ref().is_some_and(|b| !b.is_null()) {
            tracing::warn!(
                path,
                "data_preprocessor.batch_augments ignored: training only"
            );
        }
        Ok(dp)
    }

    /// Whether the channels are swapped (either direction: both are a BGR↔RGB flip).
    pub fn swap_channels(&self) -> bool {
        self.bgr_to_rgb || self.rgb_to_bgr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PATH: &str = "model.data_preprocessor";

    #[test]
    fn reads_the_mmyolo_section_and_defaults() {
        let dp = DataPreprocessorSpec::parse(
            Some(
                &json!({"type": "YOLOv5DetDataPreprocessor", "mean": [103.53, 116.28, 123.675],
                         "std": [57.375, 57.12, 58.395], "bgr_to_rgb": false}),
            ),
            PATH,
        )
        .unwrap();
        assert_eq!(dp.mean.as_ref().map(Vec::len), Some(3));
        assert!(!dp.swap_channels());
        assert_eq!(dp.pad_size_divisor, 1);
        assert_eq!(
            DataPreprocessorSpec::parse(None, PATH).unwrap(),
            DataPreprocessorSpec::default()
        );
        assert_eq!(
            DataPreprocessorSpec::parse(Some(&Value::Null), PATH).unwrap(),
            DataPreprocessorSpec::default()
        );
    }

    #[test]
    fn unknown_key_names_path_type_and_closest_key() {
        let err = DataPreprocessorSpec::parse(
            Some(&json!({"type": "mmdet.DetDataPreprocessor", "bgr2rgb": true})),
            PATH,
        )
        .unwrap_err();
        match &err {
            SpecError::UnknownKey {
                path,
                type_name,
                key,
                closest,
                ..
            } => {
                assert_eq!(path, PATH);
                assert_eq!(type_name, "mmdet.DetDataPreprocessor");
                assert_eq!(key, "bgr2rgb");
                assert_eq!(closest.as_deref(), Some("bgr_to_rgb"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn upstream_asserts_are_errors() {
        for v in [
            json!({"mean": [1.0, 2.0]}),
            json!({"mean": [1.0, 2.0], "std": [1.0, 2.0]}),
            json!({"bgr_to_rgb": true, "rgb_to_bgr": true}),
            json!({"type": "BatchSyncRandomResize"}),
        ] {
            assert!(DataPreprocessorSpec::parse(Some(&v), PATH).is_err(), "{v}");
        }
    }
}
