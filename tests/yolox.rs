//! YOLOX (mmyolo 0.6.0: `YOLOXCSPDarknet` + `YOLOXPAFPN` + `YOLOXHead`/`YOLOXHeadModule`) against
//! the real stack (tests/fixtures/generate/make_yolox_refs.py), through the shared harness of
//! tests/family.rs:
//! * `models/yolox_sizes.json`: the shipped yolox_nano (depthwise), yolox_tiny and yolox_s
//!   configs' merged `model` dicts and the real models' `state_dict()` names and shapes — our
//!   expected keys must equal them, in order;
//! * `checkpoints/yolox_nano_mmyolo.pth` (overlay config `mmcompat/yolox_nano_mmyolo.py`: nano,
//!   depthwise, reduced) and `inference/yolox/yolox__<image>.json` from `init_detector` +
//!   `inference_detector`: the same network input (mmdet `Resize` + `Pad(pad_to_square)`, raw
//!   BGR), raw head outputs (class, box and objectness logits) within 1e-4 of their level's scale
//!   (`RAW_TOL`), and the same detections (count, labels, boxes within 0.1 px, scores within
//!   1e-4) under `yolox_style=True` (no objectness prefilter, no `max_per_img` cap), through
//!   `Inferencer` and through `mmcompat detect --json`.

use mmcompat::models::build_detector;
use tch::Device;

use crate::family::{assert_unknown_key, build_error_message, Family, MMYOLO};
use crate::yolov5::objectness_deviation;

const YOLOX: Family = Family {
    name: "yolox",
    images: &["astronaut", "chelsea", "coffee", "exif_rot6"],
    sizes: &["yolox_nano", "yolox_tiny", "yolox_s"],
    fixture_classes: 8,
    registry_types: &[
        "YOLOXCSPDarknet",
        "YOLOXPAFPN",
        "YOLOXHead",
        "YOLOXHeadModule",
    ],
    ..MMYOLO
};

#[test]
fn yolox_expected_keys_equal_the_real_models() {
    YOLOX.check_expected_keys();
}

/// The class and box logits as every family, and the objectness logits, all within `RAW_TOL`.
#[test]
fn yolox_network_input_and_raw_head_outputs_match_python() {
    YOLOX.check_raw_outputs_with(objectness_deviation);
}

/// With `yolox_style=True` every box NMS keeps is returned (`cfg.max_per_img = len(results)`):
/// the astronaut reference holds more than the config's `max_per_img=300`, and we match them all.
#[test]
fn yolox_detections_match_inference_detector() {
    let r = YOLOX.reference("astronaut");
    assert!(
        r["num_detections"].as_u64().expect("count") > 300,
        "fixture"
    );
    YOLOX.check_detections();
}

#[test]
fn yolox_detect_command_matches_inference_detector() {
    YOLOX.check_detect_command();
}

#[test]
fn yolox_types_are_listed_by_the_registry_command() {
    YOLOX.check_registry_listing();
}

/// The shipped nano config builds its stride-2 convs and head towers depthwise-separable, and
/// the shipped s config plain; both run a forward pass with one objectness map per level.
#[test]
fn yolox_forward_has_three_levels_with_objectness() {
    for size in ["yolox_nano", "yolox_s"] {
        let det = build_detector(&YOLOX.model(size), "mmyolo", Device::Cpu).expect(size);
        assert_eq!(det.size_divisor(), 32, "{size}");
        let x = tch::Tensor::zeros([1, 3, 64, 96], (tch::Kind::Float, Device::Cpu));
        let out = det.forward(&x).expect("forward");
        let shapes = |v: &[tch::Tensor]| v.iter().map(|t| t.size()).collect::<Vec<_>>();
        assert_eq!(
            shapes(&out.objectnesses),
            [[1, 1, 8, 12], [1, 1, 4, 6], [1, 1, 2, 3]],
            "{size}"
        );
        assert_eq!(shapes(&out.cls_scores)[0], [1, 80, 8, 12], "{size}");
        assert_eq!(shapes(&out.bbox_preds)[2], [1, 4, 2, 3], "{size}");
    }
}

/// What Python's constructors reject (or what mmcompat does not implement) is refused before
/// anything is built, naming key, type and path.
#[test]
fn yolox_config_mistakes_name_key_and_type() {
    let model = YOLOX.model("yolox_s");

    // A YOLOv8Head keyword that YOLOXHead.__init__ does not take.
    let mut cfg = model.clone();
    cfg["bbox_head"]["loss_dfl"] = serde_json::json!({"type": "mmdet.DistributionFocalLoss"});
    assert_unknown_key(&cfg, ("loss_dfl", "mmyolo.YOLOXHead", "model.bbox_head"));

    // Another box coder than YOLOXBBoxCoder.
    let mut cfg = model.clone();
    cfg["bbox_head"]["bbox_coder"] = serde_json::json!({"type": "YOLOv5BBoxCoder"});
    let msg = build_error_message(&cfg, "coder");
    assert!(
        msg.contains("model.bbox_head.bbox_coder") && msg.contains("YOLOXBBoxCoder"),
        "{msg}"
    );

    // A per-level in_channels list: the stacked convs take it as a channel count (TypeError).
    let mut cfg = model.clone();
    cfg["bbox_head"]["head_module"]["in_channels"] = serde_json::json!([256, 256, 256]);
    let msg = build_error_message(&cfg, "list in_channels");
    assert!(
        msg.contains("model.bbox_head.head_module.in_channels") && msg.contains("int"),
        "{msg}"
    );

    // DCNv2 on the last tower conv (not implemented).
    let mut cfg = model.clone();
    cfg["bbox_head"]["head_module"]["dcn_on_last_conv"] = true.into();
    let msg = build_error_message(&cfg, "dcn");
    assert!(
        msg.contains("model.bbox_head.head_module.dcn_on_last_conv"),
        "{msg}"
    );

    // The neck's layers exist for three levels only.
    let mut cfg = model.clone();
    cfg["neck"]["in_channels"] = serde_json::json!([128, 256, 512, 1024]);
    let msg = build_error_message(&cfg, "four levels");
    assert!(
        msg.contains("model.neck.in_channels") && msg.contains("three"),
        "{msg}"
    );

    // A misspelt backbone key: upstream spells it `spp_kernal_sizes`.
    let mut cfg = model.clone();
    cfg["backbone"]["spp_kernel_sizes"] = serde_json::json!([5, 9, 13]);
    match crate::family::build_error(&cfg, "spp_kernel_sizes") {
        mmcompat::models::ModelError::UnknownKey { key, path, .. } => {
            assert_eq!(
                (key.as_str(), path.as_str()),
                ("spp_kernel_sizes", "model.backbone")
            );
        }
        other => panic!("wrong error {other}"),
    }

    // An unknown backbone arch.
    let mut cfg = model;
    cfg["backbone"]["arch"] = "P6".into();
    let msg = build_error_message(&cfg, "arch");
    assert!(
        msg.contains("model.backbone.arch") && msg.contains("P6"),
        "{msg}"
    );
}

/// An mmyolo type that exists upstream but that mmcompat does not run (RTMDet-Ins's
/// `RTMDetInsSepBNHead`, from the shipped config) fails in the spec stage, before the checkpoint is
/// read (a path that does not exist is never opened), naming the type and the families that are
/// supported (derived from the registered dense heads, this one included).
#[test]
fn unsupported_mmyolo_type_names_the_supported_families() {
    let config = crate::inference::roots().dirs("mmyolo")[0]
        .join("rtmdet/rtmdet-ins_s_syncbn_fast_8xb32-300e_coco.py");
    let config = config.display().to_string();
    let image = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/inference/images/chelsea.png"
    );
    let image = image.to_string();
    let stderr = crate::cli::err_stderr(&[
        "detect",
        "--config",
        &config,
        "--weights",
        "/nonexistent/rtmdet-ins.pth",
        "--scope",
        "mmyolo",
        "--device",
        "cpu",
        &image,
    ]);
    for needle in [
        "model.bbox_head",
        "`RTMDetInsSepBNHead` is an mmdet/mmyolo model type that mmcompat does not implement",
        "supported families: ",
        "RTMDet (mmdet, mmyolo)",
        "YOLOv5 (mmyolo)",
        "YOLOv8 (mmyolo)",
        "YOLOX (mmyolo)",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(!stderr.contains("rtmdet-ins.pth"), "{stderr}");
}
