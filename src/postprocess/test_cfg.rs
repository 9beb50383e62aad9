//! The head's `test_cfg` section as a typed value. Unknown keys are rejected with the key's name and
//! a suggestion, as Python would raise on an unexpected keyword; absent keys keep upstream's
//! `cfg.get(key, default)` semantics (the default depends on the head, so it is applied there).

use serde_json::Value;

use super::{NmsCfg, PostprocessError};

/// `model.test_cfg` (mmyolo) / `model.bbox_head.test_cfg` (mmdet) of an RTMDet config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestCfg {
    /// mmyolo only: `multi_label` (required there).
    pub multi_label: Option<bool>,
    /// Candidates kept before NMS (mmyolo: over all levels; mmdet: per level).
    pub nms_pre: Option<i64>,
    /// Strict `score > score_thr` filter (float32 comparison).
    pub score_thr: Option<f64>,
    /// `nms=None` skips suppression (upstream then only sorts).
    pub nms: Option<NmsCfg>,
    /// Detections kept per image after NMS (Python slice semantics).
    pub max_per_img: Option<i64>,
    /// Boxes must be strictly wider and taller than this (only applied when present and >= 0).
    pub min_bbox_size: Option<f64>,
}

const TEST_CFG_KEYS: &[&str] = &[
    "multi_label",
    "nms_pre",
    "score_thr",
    "nms",
    "max_per_img",
    "min_bbox_size",
    "yolox_style",
];
const NMS_KEYS: &[&str] = &[
    "type",
    "iou_threshold",
    "split_thr",
    "class_agnostic",
    "max_num",
    "offset",
    "score_threshold",
];

impl TestCfg {
    /// The RTMDet defaults of mmyolo's `rtmdet_*_syncbn_fast_8xb32-300e_coco.py`
    /// (shared/openmmlab/behaviour.md 4.2).
    pub fn rtmdet_mmyolo() -> Self {
        TestCfg {
            multi_label: Some(true),
            nms_pre: Some(30000),
            score_thr: Some(0.001),
            nms: Some(NmsCfg::default()),
            max_per_img: Some(300),
            min_bbox_size: None,
        }
    }

    /// The RTMDet defaults of mmdet's `rtmdet_*_8xb32-300e_coco.py`.
    pub fn rtmdet_mmdet() -> Self {
        TestCfg {
            multi_label: None,
            nms_pre: Some(30000),
            score_thr: Some(0.001),
            nms: Some(NmsCfg::default()),
            max_per_img: Some(300),
            min_bbox_size: Some(0.0),
        }
    }

    /// Reads a `test_cfg` dict (the config value converted to JSON).
    pub fn from_json(v: &Value) -> Result<Self, PostprocessError> {
        const SECTION: &str = "test_cfg";
        let map = v.as_object().ok_or_else(|| PostprocessError::BadValue {
            section: SECTION,
            key: String::new(),
            expected: "a dict",
            found: type_name(v).to_string(),
        })?;
        let mut cfg = TestCfg::default();
        for (key, value) in map {
            match key.as_str() {
                "multi_label" => cfg.multi_label = Some(as_bool(SECTION, key, value)?),
                "nms_pre" => cfg.nms_pre = Some(as_int(SECTION, key, value)?),
                "score_thr" => cfg.score_thr = Some(as_float(SECTION, key, value)?),
                "max_per_img" => cfg.max_per_img = Some(as_int(SECTION, key, value)?),
                "min_bbox_size" => cfg.min_bbox_size = Some(as_float(SECTION, key, value)?),
                "nms" => {
                    cfg.nms = if value.is_null() {
                        None
                    } else {
                        Some(nms_from_json(value)?)
                    }
                }
                "yolox_style" => {
                    if as_bool(SECTION, key, value)? {
                        return Err(PostprocessError::Unsupported {
                            section: SECTION,
                            what: "yolox_style=True".into(),
                            hint: "only RTMDet heads are implemented",
                        });
                    }
                }
                _ => return Err(unknown(SECTION, key, TEST_CFG_KEYS)),
            }
        }
        Ok(cfg)
    }
}

fn nms_from_json(v: &Value) -> Result<NmsCfg, PostprocessError> {
    const SECTION: &str = "test_cfg.nms";
    let map = v.as_object().ok_or_else(|| PostprocessError::BadValue {
        section: "test_cfg",
        key: "nms".into(),
        expected: "a dict or None",
        found: type_name(v).to_string(),
    })?;
    let mut cfg = NmsCfg::default();
    let mut has_thr = false;
    for (key, value) in map {
        match key.as_str() {
            "type" => {
                let t = value.as_str().unwrap_or_default();
                // `nms_op = eval(nms_op)` in mmcv: 'nms' is the only RTMDet choice.
                if t != "nms" {
                    return Err(PostprocessError::Unsupported {
                        section: SECTION,
                        what: format!("type={value}"),
                        hint: "only type='nms' (mmcv.ops.nms) is implemented; soft_nms is not",
                    });
                }
            }
            "iou_threshold" => {
                cfg.iou_threshold = as_float(SECTION, key, value)? as f32;
                has_thr = true;
            }
            "split_thr" => cfg.split_thr = as_int(SECTION, key, value)?.max(0) as usize,
            "class_agnostic" => cfg.class_agnostic = as_bool(SECTION, key, value)?,
            "max_num" => {
                let m = as_int(SECTION, key, value)?;
                cfg.max_num = (m > 0).then_some(m as usize);
            }
            "offset" => {
                if as_int(SECTION, key, value)? != 0 {
                    return Err(PostprocessError::Unsupported {
                        section: SECTION,
                        what: format!("offset={value}"),
                        hint: "only offset=0 (the mmcv default) is implemented",
                    });
                }
            }
            "score_threshold" => {
                if as_float(SECTION, key, value)? > 0.0 {
                    return Err(PostprocessError::Unsupported {
                        section: SECTION,
                        what: format!("score_threshold={value}"),
                        hint: "filter with test_cfg.score_thr instead",
                    });
                }
            }
            _ => return Err(unknown(SECTION, key, NMS_KEYS)),
        }
    }
    if !has_thr {
        return Err(PostprocessError::MissingKey {
            section: SECTION,
            key: "iou_threshold",
        });
    }
    Ok(cfg)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn bad(section: &'static str, key: &str, expected: &'static str, v: &Value) -> PostprocessError {
    PostprocessError::BadValue {
        section,
        key: key.to_string(),
        expected,
        found: format!("{} {v}", type_name(v)),
    }
}

pub(crate) fn as_bool(
    section: &'static str,
    key: &str,
    v: &Value,
) -> Result<bool, PostprocessError> {
    v.as_bool().ok_or_else(|| bad(section, key, "a bool", v))
}

pub(crate) fn as_int(section: &'static str, key: &str, v: &Value) -> Result<i64, PostprocessError> {
    v.as_i64().ok_or_else(|| bad(section, key, "an int", v))
}

pub(crate) fn as_float(
    section: &'static str,
    key: &str,
    v: &Value,
) -> Result<f64, PostprocessError> {
    v.as_f64().ok_or_else(|| bad(section, key, "a number", v))
}

pub(crate) fn unknown(section: &'static str, key: &str, known: &[&str]) -> PostprocessError {
    let did_you_mean = known
        .iter()
        .map(|k| (edit_distance(k, key), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    PostprocessError::UnknownKey {
        section,
        key: key.to_string(),
        did_you_mean,
        known: known.join(", "),
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
