//! YOLOv7 (mmyolo 0.6.0: `YOLOv7Backbone` + `YOLOv7PAFPN` + `YOLOv7Head` with
//! `YOLOv7HeadModule` / `YOLOv7p6HeadModule`) against the real stack
//! (tests/fixtures/generate/make_yolov7_refs.py), through the shared harness of tests/family.rs:
//! * `models/yolov7_sizes.json`: the shipped yolov7_{tiny,l,x} and yolov7_{w,d,e2e}-p6 configs'
//!   merged `model` dicts and the real models' `state_dict()` names and shapes — our expected
//!   keys must equal them, in order (every `arch` but E, whose bricks are E2E's and ratios X's;
//!   the RepVGG out layers of L/X; the P6 head with its training-only auxiliary branch);
//! * `checkpoints/yolov7_nano_mmyolo.pth` (overlay config `mmcompat/yolov7_nano_mmyolo.py`, a
//!   width-reduced yolov7_tiny) and `inference/yolov7/yolov7__<image>.json` from `init_detector` +
//!   `inference_detector`: the same network input, raw head outputs (class, box and objectness
//!   logits) within 1e-4 of their level's scale (`RAW_TOL`), and the same detections (count,
//!   labels, boxes within 0.1 px, scores within 1e-4), through `Inferencer` and through
//!   `mmcompat detect --json`.

use mmcompat::models::build_detector;
use tch::Device;

use crate::family::{assert_unknown_key, build_error_message, Family, MMYOLO};
use crate::yolov5::objectness_deviation;

const YOLOV7: Family = Family {
    name: "yolov7",
    images: &["astronaut", "chelsea", "coffee", "exif_rot6"],
    sizes: &[
        "yolov7_tiny",
        "yolov7_l",
        "yolov7_x",
        "yolov7_w-p6",
        "yolov7_d-p6",
        "yolov7_e2e-p6",
    ],
    fixture_classes: 8,
    registry_types: &[
        "YOLOv7Backbone",
        "YOLOv7PAFPN",
        "YOLOv7Head",
        "YOLOv7HeadModule",
        "YOLOv7p6HeadModule",
    ],
    ..MMYOLO
};

#[test]
fn yolov7_expected_keys_equal_the_real_models() {
    YOLOV7.check_expected_keys();
}

/// The P6 variants (4 levels, strides 8..64) run end to end: one objectness map per level, and
/// the auxiliary branch is loaded but not part of the outputs.
#[test]
fn yolov7_p6_forward_has_four_levels_with_objectness() {
    let det = build_detector(&YOLOV7.model("yolov7_w-p6"), "mmyolo", Device::Cpu).expect("p6");
    assert_eq!(det.size_divisor(), 64);
    let x = tch::Tensor::zeros([1, 3, 128, 192], (tch::Kind::Float, Device::Cpu));
    let out = det.forward(&x).expect("forward");
    let shapes = |v: &[tch::Tensor]| v.iter().map(|t| t.size()).collect::<Vec<_>>();
    assert_eq!(
        shapes(&out.objectnesses),
        [[1, 3, 16, 24], [1, 3, 8, 12], [1, 3, 4, 6], [1, 3, 2, 3]]
    );
    assert_eq!(shapes(&out.cls_scores)[3], [1, 240, 2, 3]);
    assert_eq!(shapes(&out.bbox_preds)[3], [1, 12, 2, 3]);
}

/// The class and box logits as every family, and the objectness logits, all within `RAW_TOL`.
#[test]
fn yolov7_network_input_and_raw_head_outputs_match_python() {
    YOLOV7.check_raw_outputs_with(objectness_deviation);
}

#[test]
fn yolov7_detections_match_inference_detector() {
    YOLOV7.check_detections();
}

#[test]
fn yolov7_detect_command_matches_inference_detector() {
    YOLOV7.check_detect_command();
}

#[test]
fn yolov7_types_are_listed_by_the_registry_command() {
    YOLOV7.check_registry_listing();
}

/// What Python's constructors reject is rejected before the checkpoint is read, naming key,
/// type and path.
#[test]
fn yolov7_config_mistakes_name_key_and_type() {
    let model = YOLOV7.model("yolov7_tiny");

    // A YOLOv8Head keyword that YOLOv7Head.__init__ does not take.
    let mut cfg = model.clone();
    cfg["bbox_head"]["loss_dfl"] = serde_json::json!({"type": "mmdet.DistributionFocalLoss"});
    assert_unknown_key(&cfg, ("loss_dfl", "mmyolo.YOLOv7Head", "model.bbox_head"));

    // A misspelt key in the neck's block_cfg, named with the block's type and path.
    let mut cfg = model.clone();
    cfg["neck"]["block_cfg"]["middle_ration"] = 0.5.into();
    assert_unknown_key(
        &cfg,
        (
            "middle_ration",
            "mmyolo.TinyDownSampleBlock",
            "model.neck.block_cfg",
        ),
    );

    // A block type the neck does not build.
    let mut cfg = model.clone();
    cfg["neck"]["block_cfg"] = serde_json::json!({"type": "CSPLayerWithTwoConv"});
    let msg = build_error_message(&cfg, "block type");
    assert!(
        msg.contains("model.neck.block_cfg.type") && msg.contains("CSPLayerWithTwoConv"),
        "{msg}"
    );

    // Another box coder than YOLOv5BBoxCoder.
    let mut cfg = model.clone();
    cfg["bbox_head"]["bbox_coder"] = serde_json::json!({"type": "DistancePointBBoxCoder"});
    let msg = build_error_message(&cfg, "coder");
    assert!(
        msg.contains("model.bbox_head.bbox_coder") && msg.contains("DistancePointBBoxCoder"),
        "{msg}"
    );

    // A YOLOv5 head module under YOLOv7Head.
    let mut cfg = model.clone();
    cfg["bbox_head"]["head_module"]["type"] = "YOLOv5HeadModule".into();
    let msg = build_error_message(&cfg, "head module");
    assert!(
        msg.contains("model.bbox_head.head_module") && msg.contains("YOLOv5HeadModule"),
        "{msg}"
    );

    // An unknown backbone arch.
    let mut cfg = model;
    cfg["backbone"]["arch"] = "M".into();
    let msg = build_error_message(&cfg, "arch");
    assert!(
        msg.contains("model.backbone.arch") && msg.contains("`M`"),
        "{msg}"
    );
}
