//! The head's `test_cfg` section (`model.test_cfg` in mmyolo, `model.bbox_head.test_cfg` /
//! `model.test_cfg` in mmdet) and its `nms` entry, as typed values read with [`parse_section`].
//!
//! Unknown keys are rejected with the key's name and the closest valid key, as Python would raise
//! on an unexpected keyword. An absent key stays `None`: upstream reads these with
//! `cfg.get(key, default)` and the default depends on the head, so the head applies it. A key
//! present with the value `None` is an error (except `nms=None`, which upstream accepts and which
//! skips suppression): the heads would fail on it (`scores > None`, `topk(None)`).
//!
//! Never: apply NMS or any head default here (`batched_nms` lives with the backend).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::parse::{join, parse_section};
use super::SpecError;

/// `model.test_cfg` (mmyolo) / `model.bbox_head.test_cfg` (mmdet) of an RTMDet config.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct TestCfg {
    /// mmyolo only: `multi_label` (required there).
    pub multi_label: Option<bool>,
    /// Candidates kept before NMS (mmyolo: over all levels; mmdet: per level).
    pub nms_pre: Option<i64>,
    /// Strict `score > score_thr` filter (float32 comparison).
    pub score_thr: Option<f64>,
    /// `nms=None` (or no `nms` key) skips suppression (upstream then only sorts).
    pub nms: Option<NmsCfg>,
    /// Detections kept per image after NMS (Python slice semantics).
    pub max_per_img: Option<i64>,
    /// Boxes must be strictly wider and taller than this (only applied when present and >= 0).
    pub min_bbox_size: Option<f64>,
    /// mmyolo `YOLOv5Head.predict_by_feat`'s `cfg.get('yolox_style', False)` (YOLOX configs): no
    /// `objectness > score_thr` prefilter and no `max_per_img` cap after NMS. Not printed when
    /// false (absent and `False` are the same upstream).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub yolox_style: bool,
    /// Two-stage detectors (`mmdet/models/detectors/two_stage.py: TwoStageDetector.__init__`):
    /// `test_cfg.rpn`, given to the RPN head (proposal NMS). Not printed when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpn: Option<Box<TestCfg>>,
    /// Two-stage detectors: `test_cfg.rcnn`, given to the RoI head (final NMS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcnn: Option<Box<TestCfg>>,
}

/// The `nms` entry of a head's `test_cfg` (`mmcv/ops/nms.py: batched_nms` keys), as the backend's
/// `batched_nms` consumes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NmsCfg {
    /// `iou_threshold`: a box is suppressed when its IoU with a kept box is strictly greater.
    pub iou_threshold: f32,
    /// `split_thr` (default 10000): from this many boxes on, NMS runs class by class.
    pub split_thr: usize,
    /// `class_agnostic` (default false): no class offsets.
    pub class_agnostic: bool,
    /// `max_num` (default -1 = all): keep at most this many after NMS.
    pub max_num: Option<usize>,
}

impl Default for NmsCfg {
    fn default() -> Self {
        NmsCfg {
            iou_threshold: 0.65,
            split_thr: 10_000,
            class_agnostic: false,
            max_num: None,
        }
    }
}

/// The keys `test_cfg` accepts, exactly as written in the config (`ConfigDict` of the head).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCfgArgs {
    #[serde(default, deserialize_with = "present")]
    multi_label: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    nms_pre: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    score_thr: Option<f64>,
    /// `None` and absent are the same: no NMS.
    #[serde(default)]
    nms: Option<NmsArgs>,
    #[serde(default, deserialize_with = "present")]
    max_per_img: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    min_bbox_size: Option<f64>,
    /// mmyolo `YOLOv5Head.predict_by_feat` switch (set by the YOLOX configs).
    #[serde(default, deserialize_with = "present")]
    yolox_style: Option<bool>,
    /// Two-stage detectors' per-stage sections, each a `test_cfg` of its own.
    #[serde(default, deserialize_with = "present")]
    rpn: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    rcnn: Option<Value>,
}

/// `nms=dict(type='nms', iou_threshold=..., ...)`: the keyword arguments of
/// `mmcv/ops/nms.py: batched_nms` (`split_thr`, `class_agnostic`) and of `nms` itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NmsArgs {
    /// `nms_type = nms_cfg_.pop('type', 'nms')`; any string is read, only 'nms' is supported.
    #[serde(default, rename = "type")]
    type_name: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    iou_threshold: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    split_thr: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    class_agnostic: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    max_num: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    offset: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    score_threshold: Option<f64>,
}

/// A key that is present must carry a value: `None` is read as the inner type and so rejected
/// (absent keys are `None` through `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl TestCfg {
    /// Reads a `test_cfg` dict (the config value as JSON) found at `path`
    /// (e.g. `model.test_cfg`).
    pub fn parse(value: &Value, path: &str) -> Result<Self, SpecError> {
        // serde would also read a list positionally as a struct; upstream needs a dict.
        expect_dict(value, path, "a dict")?;
        if let Some(nms) = value.get("nms") {
            expect_dict(nms, &join(path, "nms"), "a dict or None")?;
        }
        let args: TestCfgArgs = parse_section(value, "test_cfg", path)?;
        let stage = |v: Option<&Value>, key: &str| -> Result<Option<Box<TestCfg>>, SpecError> {
            v.map(|v| TestCfg::parse(v, &join(path, key)).map(Box::new))
                .transpose()
        };
        let nms = args
            .nms
            .map(|nms| nms.into_cfg(&join(path, "nms")))
            .transpose()?;
        Ok(TestCfg {
            multi_label: args.multi_label,
            nms_pre: args.nms_pre,
            score_thr: args.score_thr,
            nms,
            max_per_img: args.max_per_img,
            min_bbox_size: args.min_bbox_size,
            yolox_style: args.yolox_style.unwrap_or(false),
            rpn: stage(args.rpn.as_ref(), "rpn")?,
            rcnn: stage(args.rcnn.as_ref(), "rcnn")?,
        })
    }

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
            yolox_style: false,
            rpn: None,
            rcnn: None,
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
            yolox_style: false,
            rpn: None,
            rcnn: None,
        }
    }
}

fn expect_dict(value: &Value, path: &str, expected: &str) -> Result<(), SpecError> {
    match value {
        Value::Object(_) => Ok(()),
        Value::Null if expected.ends_with("None") => Ok(()),
        other => Err(SpecError::Invalid {
            path: path.to_string(),
            type_name: "test_cfg".into(),
            message: format!("expected {expected}, found {other}"),
        }),
    }
}

impl NmsArgs {
    /// The checks `mmcv/ops/nms.py: batched_nms` and `nms` would make, plus the options mmcompat
    /// does not implement.
    fn into_cfg(self, path: &str) -> Result<NmsCfg, SpecError> {
        if let Some(t) = &self.type_name {
            // `nms_op = eval(nms_type)` in mmcv: 'nms' is the only RTMDet choice.
            if t.as_str() != Some("nms") {
                return Err(SpecError::Unsupported {
                    path: join(path, "type"),
                    what: format!("nms type {t}"),
                    hint: "only type='nms' (mmcv.ops.nms) is implemented; soft_nms is not".into(),
                });
            }
        }
        if self.offset.is_some_and(|o| o != 0) {
            return Err(SpecError::Unsupported {
                path: join(path, "offset"),
                what: format!("offset={}", self.offset.unwrap_or_default()),
                hint: "only offset=0 (the mmcv default) is implemented".into(),
            });
        }
        if let Some(thr) = self.score_threshold.filter(|&s| s > 0.0) {
            return Err(SpecError::Unsupported {
                path: join(path, "score_threshold"),
                what: format!("score_threshold={thr}"),
                hint: "filter with test_cfg.score_thr instead".into(),
            });
        }
        // `nms(boxes, scores, iou_threshold, ...)` has no default for it: Python raises TypeError.
        let Some(iou_threshold) = self.iou_threshold else {
            return Err(SpecError::Missing {
                path: join(path, "iou_threshold"),
                message: "required (mmcv.ops.nms has no default for it); add e.g. \
                          iou_threshold=0.65"
                    .into(),
            });
        };
        let defaults = NmsCfg::default();
        Ok(NmsCfg {
            iou_threshold: iou_threshold as f32,
            split_thr: self
                .split_thr
                .map_or(defaults.split_thr, |s| s.max(0) as usize),
            class_agnostic: self.class_agnostic.unwrap_or(defaults.class_agnostic),
            // `max_num=-1` (or any value <= 0) keeps everything.
            max_num: self.max_num.filter(|&m| m > 0).map(|m| m as usize),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_an_rtmdet_test_cfg() {
        let cfg = TestCfg::parse(
            &json!({"multi_label": true, "nms_pre": 30000, "score_thr": 0.001,
                    "nms": {"type": "nms", "iou_threshold": 0.65}, "max_per_img": 300}),
            "model.test_cfg",
        )
        .unwrap();
        assert_eq!(cfg, TestCfg::rtmdet_mmyolo());
        let cfg = TestCfg::parse(&json!({"nms": null, "score_thr": 1}), "model.test_cfg").unwrap();
        assert_eq!((cfg.nms, cfg.score_thr), (None, Some(1.0)));
        let nms = TestCfg::parse(
            &json!({"nms": {"iou_threshold": 0.5, "split_thr": -3, "max_num": -1,
                            "class_agnostic": true, "offset": 0, "score_threshold": 0}}),
            "model.test_cfg",
        )
        .unwrap()
        .nms
        .unwrap();
        assert_eq!(
            nms,
            NmsCfg {
                iou_threshold: 0.5,
                split_thr: 0,
                class_agnostic: true,
                max_num: None
            }
        );
    }

    #[test]
    fn test_cfg_rejects_unknown_keys_with_suggestion() {
        let err =
            TestCfg::parse(&json!({"nms_pre": 10, "scor_thr": 0.1}), "model.test_cfg").unwrap_err();
        match &err {
            SpecError::UnknownKey {
                path, key, closest, ..
            } => {
                assert_eq!(path, "model.test_cfg");
                assert_eq!(key, "scor_thr");
                assert_eq!(closest.as_deref(), Some("score_thr"));
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("`scor_thr`") && msg.contains("did you mean `score_thr`"),
            "{msg}"
        );
        let err = TestCfg::parse(
            &json!({"nms": {"type": "soft_nms", "iou_threshold": 0.5}}),
            "model.test_cfg",
        )
        .unwrap_err();
        assert!(err.to_string().contains("soft_nms"), "{err}");
    }

    #[test]
    fn unknown_nms_key_names_the_nms_path() {
        let err = TestCfg::parse(
            &json!({"score_thr": 0.1, "nms": {"type": "nms", "iou_thresh": 0.5}}),
            "model.test_cfg",
        )
        .unwrap_err();
        match &err {
            SpecError::UnknownKey {
                path, key, closest, ..
            } => {
                assert_eq!(path, "model.test_cfg.nms");
                assert_eq!(key, "iou_thresh");
                assert_eq!(closest.as_deref(), Some("iou_threshold"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unsupported_and_invalid_values_are_errors() {
        let path_of = |v: Value| match TestCfg::parse(&v, "model.test_cfg").unwrap_err() {
            SpecError::Unsupported { path, .. }
            | SpecError::Invalid { path, .. }
            | SpecError::Missing { path, .. } => path,
            other => panic!("{v}: {other:?}"),
        };
        for (v, path) in [
            (json!({"yolox_style": 1}), "model.test_cfg.yolox_style"),
            (
                json!({"nms": {"iou_threshold": 0.5, "offset": 1}}),
                "model.test_cfg.nms.offset",
            ),
            (
                json!({"nms": {"iou_threshold": 0.5, "score_threshold": 0.1}}),
                "model.test_cfg.nms.score_threshold",
            ),
            (
                json!({"nms": {"type": "nms"}}),
                "model.test_cfg.nms.iou_threshold",
            ),
            (json!({"nms_pre": 1.5}), "model.test_cfg.nms_pre"),
            (json!({"nms_pre": null}), "model.test_cfg.nms_pre"),
            (json!({"multi_label": 1}), "model.test_cfg.multi_label"),
            (json!({"nms": [0.5]}), "model.test_cfg.nms"),
        ] {
            assert_eq!(path_of(v.clone()), path, "{v}");
        }
        assert!(TestCfg::parse(&json!({"yolox_style": false}), "model.test_cfg").is_ok());
        // YOLOX's switch (mmyolo `YOLOv5Head.predict_by_feat`), printed only when set.
        let yolox = TestCfg::parse(&json!({"yolox_style": true}), "model.test_cfg").unwrap();
        assert!(yolox.yolox_style);
        let printed = serde_json::to_value(&yolox).unwrap();
        assert_eq!(printed["yolox_style"], json!(true));
        let printed = serde_json::to_value(TestCfg::rtmdet_mmyolo()).unwrap();
        assert!(printed.get("yolox_style").is_none(), "{printed}");
        assert!(TestCfg::parse(&json!([1]), "model.test_cfg").is_err());
    }
}
