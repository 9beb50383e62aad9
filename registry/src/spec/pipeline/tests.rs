//! Parse of the test pipeline: every transform's arguments, the upstream checks kept, and
//! errors that name the step's key path, the key and the closest valid name.

use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<TestPipeline, SpecError> {
    TestPipeline::parse(&v, PIPELINE_PATH)
}

/// The key path an error points at.
fn error_path(err: &SpecError) -> &str {
    match err {
        SpecError::UnknownKey { path, .. }
        | SpecError::Invalid { path, .. }
        | SpecError::Unsupported { path, .. }
        | SpecError::Missing { path, .. } => path,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unknown_transform_names_index_type_and_the_supported_ones() {
    let err = parse(json!([{"type": "mmdet.RandomFlip", "prob": 0.5}])).unwrap_err();
    let msg = err.to_string();
    assert_eq!(error_path(&err), "test_dataloader.dataset.pipeline[0].type");
    assert!(msg.contains("`mmdet.RandomFlip`"), "{msg}");
    assert!(!msg.contains("did you mean"), "{msg}");
    assert!(
        msg.contains("LetterResize") && msg.contains("PackDetInputs"),
        "{msg}"
    );
    let err = parse(json!([{"type": "LeterResize", "scale": 640}])).unwrap_err();
    assert!(
        err.to_string().contains("did you mean `LetterResize`"),
        "{err}"
    );
}

#[test]
fn unknown_argument_names_path_key_transform_and_closest_key() {
    let err = parse(json!([
        {"type": "LoadImageFromFile"},
        {"type": "mmyolo.LetterResize", "scale": [640, 640], "allow_scaleup": false}
    ]))
    .unwrap_err();
    match &err {
        SpecError::UnknownKey {
            path,
            type_name,
            key,
            closest,
            accepted,
        } => {
            assert_eq!(
                (path.as_str(), type_name.as_str(), key.as_str()),
                (
                    "test_dataloader.dataset.pipeline[1]",
                    "mmyolo.LetterResize",
                    "allow_scaleup"
                )
            );
            assert_eq!(closest.as_deref(), Some("allow_scale_up"));
            // The registry's own keys are not transform arguments.
            assert!(!accepted.iter().any(|k| k == "type" || k == "_scope_"));
        }
        other => panic!("unexpected error {other:?}"),
    }
    // keep_ratio is not a LetterResize argument (TypeError upstream).
    let err =
        parse(json!([{"type": "LetterResize", "scale": 640, "keep_ratio": true}])).unwrap_err();
    assert!(matches!(err, SpecError::UnknownKey { .. }), "{err:?}");
}

#[test]
fn scopes_and_scope_keys_are_accepted() {
    let spec = parse(json!([
        {"type": "mmdet.InferencerLoader"},
        {"type": "mmyolo.YOLOv5KeepRatioResize", "scale": [640, 640], "_scope_": "mmyolo"},
        {"type": "LoadAnnotations", "with_bbox": true, "_scope_": "mmdet"},
        {"type": "mmdet.PackDetInputs", "meta_keys": ["img_id", "scale_factor"]}
    ]))
    .unwrap();
    assert_eq!(spec.steps.len(), 4);
    assert_eq!(spec.steps[0], Transform::LoadImage);
    assert_eq!(
        spec.steps[1],
        Transform::YoloV5KeepRatioResize {
            scale: Scale { w: 640, h: 640 }
        }
    );
    assert_eq!(
        spec.steps[3],
        Transform::PackDetInputs {
            meta_keys: Some(vec!["img_id".into(), "scale_factor".into()])
        }
    );
}

#[test]
fn arguments_are_read_as_upstream_does() {
    let spec = parse(json!([
        {"type": "LetterResize", "scale": 640, "pad_val": {"img": 114},
         "allow_scale_up": false, "interpolation": "area", "half_pad_param": null},
        {"type": "Resize", "scale_factor": 0.5, "keep_ratio": true},
        {"type": "Resize", "scale": [320, 240], "scale_factor": [2, 3]},
        {"type": "Pad", "pad_to_square": true, "size_divisor": 32, "pad_val": [1, 2, 3]},
        {"type": "Pad", "size": [64, 32], "pad_val": {"seg": 255}},
        {"type": "mmdet.Pad", "pad_to_square": true, "pad_val": {"img": [114.0, 114.0, 114.0]}}
    ]))
    .unwrap();
    assert_eq!(
        spec.steps,
        vec![
            Transform::LetterResize {
                scale: Scale { w: 640, h: 640 },
                pad_val: [114; 3],
                use_mini_pad: false,
                stretch_only: false,
                allow_scale_up: false,
                half_pad_param: false,
                interpolation: Interpolation::Area,
            },
            Transform::Resize {
                target: ResizeTarget::Factor(0.5, 0.5),
                keep_ratio: true,
                interpolation: Interpolation::Linear,
            },
            Transform::Resize {
                target: ResizeTarget::Scale(Scale { w: 320, h: 240 }),
                keep_ratio: false,
                interpolation: Interpolation::Linear,
            },
            Transform::Pad {
                size: None,
                size_divisor: Some(32),
                pad_to_square: true,
                pad_val: [1, 2, 3],
            },
            Transform::Pad {
                size: Some(Scale { w: 64, h: 32 }),
                size_divisor: None,
                pad_to_square: false,
                pad_val: [0; 3],
            },
            // YOLOX's test pipeline: whole floats are the bytes they name.
            Transform::Pad {
                size: None,
                size_divisor: None,
                pad_to_square: true,
                pad_val: [114; 3],
            },
        ]
    );
}

#[test]
fn bad_values_are_errors_naming_the_key_path() {
    for (step, key) in [
        (
            json!({"type": "Resize", "scale": [640, 640], "interpolation": "lanczos"}),
            "interpolation",
        ),
        (
            json!({"type": "Resize", "scale": [640, 640], "backend": "pillow"}),
            "backend",
        ),
        (
            json!({"type": "Pad", "size": [640, 640], "padding_mode": "edge"}),
            "padding_mode",
        ),
        (
            json!({"type": "Pad", "size": [640, 640], "size_divisor": 32}),
            "size",
        ),
        (json!({"type": "Pad"}), "size"),
        (
            json!({"type": "Pad", "pad_to_square": true, "size": 64}),
            "size",
        ),
        (json!({"type": "Pad", "size_divisor": 0}), "size_divisor"),
        (
            json!({"type": "LetterResize", "scale": [640, 640], "pad_val": {"img": 300}}),
            "pad_val",
        ),
        (
            json!({"type": "LetterResize", "scale": 640, "pad_val": [1, 2]}),
            "pad_val",
        ),
        (
            json!({"type": "Pad", "pad_to_square": true, "pad_val": 114.5}),
            "pad_val",
        ),
        (json!({"type": "LetterResize"}), "scale"),
        (json!({"type": "Resize", "keep_ratio": true}), "scale"),
        (
            json!({"type": "Resize", "scale_factor": -1.0}),
            "scale_factor",
        ),
        (
            json!({"type": "Resize", "scale_factor": "half"}),
            "scale_factor",
        ),
        (
            json!({"type": "YOLOv5KeepRatioResize", "scale": "big"}),
            "scale",
        ),
        (
            json!({"type": "YOLOv5KeepRatioResize", "scale": [640, 640, 3]}),
            "scale",
        ),
        (
            json!({"type": "YOLOv5KeepRatioResize", "scale": 640, "keep_ratio": false}),
            "keep_ratio",
        ),
        (
            json!({"type": "LoadImageFromFile", "to_float32": true}),
            "to_float32",
        ),
        (
            json!({"type": "LoadImageFromFile", "color_type": "grayscale"}),
            "color_type",
        ),
        (
            json!({"type": "LoadImageFromFile", "imdecode_backend": "pillow"}),
            "imdecode_backend",
        ),
        (
            json!({"type": "PackDetInputs", "meta_keys": [1]}),
            "meta_keys[0]",
        ),
        (
            json!({"type": "LetterResize", "scale": 640, "use_mini_pad": "yes"}),
            "use_mini_pad",
        ),
    ] {
        let err = parse(json!([{"type": "LoadImageFromFile"}, step.clone()]))
            .expect_err(&step.to_string());
        assert_eq!(
            error_path(&err),
            format!("test_dataloader.dataset.pipeline[1].{key}"),
            "{step}: {err}"
        );
    }
    for bad in [json!({"type": "Resize"}), json!([3]), json!([{"scale": 1}])] {
        let err = parse(bad.clone()).expect_err(&bad.to_string());
        assert!(matches!(err, SpecError::Invalid { .. }), "{bad}: {err:?}");
    }
}

#[test]
fn json_view_uses_upstream_names() {
    let spec = parse(json!([
        {"type": "mmyolo.YOLOv5KeepRatioResize", "scale": 640},
        {"type": "Resize", "scale": [640, 480], "interpolation": "area"}
    ]))
    .unwrap();
    assert_eq!(
        serde_json::to_value(&spec).unwrap(),
        json!({"steps": [
            {"type": "YOLOv5KeepRatioResize", "scale": [640, 640]},
            {"type": "Resize", "target": {"scale": [640, 480]}, "keep_ratio": false,
             "interpolation": "area"}
        ]})
    );
}

#[test]
fn closest_transform_is_a_likely_typo_only() {
    let names = SUPPORTED_TRANSFORMS.iter().copied();
    assert_eq!(
        closest_key("LeterResize", names.clone()).as_deref(),
        Some("LetterResize")
    );
    assert_eq!(closest_key("pad", names.clone()).as_deref(), Some("Pad"));
    assert_eq!(closest_key("RandomFlip", names), None);
}
