//! YOLOv8 (mmyolo 0.6.0: `YOLOv8CSPDarknet` + `YOLOv8PAFPN` + `YOLOv8Head`/`YOLOv8HeadModule`)
//! against the real stack (tests/fixtures/generate/make_yolov8_refs.py), through the shared
//! harness of tests/family.rs:
//! * `models/yolov8_sizes.json`: the shipped yolov8_n and yolov8_s configs' merged `model` dicts
//!   and the real models' `state_dict()` names and shapes — our expected keys must equal them, in
//!   order;
//! * `checkpoints/yolov8_nano_mmyolo.pth` (overlay config `mmcompat/yolov8_nano_mmyolo.py`) and
//!   `inference/yolov8/yolov8__<image>.json` from `init_detector` + `inference_detector`: the same
//!   network input, raw head outputs within 1e-4 of their level's scale (`RAW_TOL`), and the same
//!   detections (count, labels, boxes within 0.1 px, scores within 1e-4), through `Inferencer`
//!   and through `mmcompat detect --json`.

use crate::family::{assert_unknown_key, build_error_message, Family, MMYOLO};

const YOLOV8: Family = Family {
    name: "yolov8",
    images: &["astronaut", "chelsea", "coffee", "exif_rot6"],
    sizes: &["yolov8_n", "yolov8_s"],
    fixture_classes: 8,
    registry_types: &[
        "YOLOv8CSPDarknet",
        "YOLOv8PAFPN",
        "YOLOv8Head",
        "YOLOv8HeadModule",
    ],
    ..MMYOLO
};

#[test]
fn yolov8_expected_keys_equal_the_real_models() {
    YOLOV8.check_expected_keys();
}

#[test]
fn yolov8_network_input_and_raw_head_outputs_match_python() {
    YOLOV8.check_raw_outputs();
}

#[test]
fn yolov8_detections_match_inference_detector() {
    YOLOV8.check_detections();
}

#[test]
fn yolov8_detect_command_matches_inference_detector() {
    YOLOV8.check_detect_command();
}

#[test]
fn yolov8_types_are_listed_by_the_registry_command() {
    YOLOV8.check_registry_listing();
}

/// What Python's constructors reject is rejected by the spec stage, naming key, type and path.
#[test]
fn yolov8_config_mistakes_name_key_and_type() {
    let model = YOLOV8.model("yolov8_n");

    // A YOLOv5Head keyword that YOLOv8Head.__init__ does not take.
    let mut cfg = model.clone();
    cfg["bbox_head"]["prior_match_thr"] = 4.0.into();
    assert_unknown_key(
        &cfg,
        ("prior_match_thr", "mmyolo.YOLOv8Head", "model.bbox_head"),
    );

    // BaseBackbone `plugins` (not implemented): refused, naming the key.
    let mut cfg = model.clone();
    cfg["backbone"]["plugins"] =
        serde_json::json!([{"cfg": {"type": "CBAM"}, "stages": [false, true, true, true]}]);
    let msg = build_error_message(&cfg, "plugins");
    assert!(
        msg.contains("model.backbone.plugins") && msg.contains("YOLOv8CSPDarknet plugins"),
        "{msg}"
    );

    // `out_channels` as an int: YOLOv8PAFPN indexes it per level.
    let mut cfg = model.clone();
    cfg["neck"]["out_channels"] = 256.into();
    let msg = build_error_message(&cfg, "int out_channels");
    assert!(
        msg.contains("model.neck.out_channels") && msg.contains("list"),
        "{msg}"
    );

    // Another box coder than DistancePointBBoxCoder.
    let mut cfg = model;
    cfg["bbox_head"]["bbox_coder"] = serde_json::json!({"type": "YOLOv5BBoxCoder"});
    let msg = build_error_message(&cfg, "coder");
    assert!(
        msg.contains("model.bbox_head.bbox_coder") && msg.contains("YOLOv5BBoxCoder"),
        "{msg}"
    );
}
