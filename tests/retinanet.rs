//! RetinaNet (mmdet 3.3.0: `RetinaNet` + `ResNet` + `FPN` + `RetinaHead`) against the real stack
//! (tests/fixtures/generate/make_retinanet_refs.py):
//! * `models/retinanet_sizes.json`: the shipped `retinanet_r50_fpn_1x_coco` and
//!   `retinanet_r101-caffe_fpn_1x_coco` configs' merged `model` dicts and the real models'
//!   `state_dict()` names and shapes — ours must equal them, in order;
//! * `checkpoints/retinanet_tiny_mmdet.pth` (overlay config `mmcompat/retinanet_tiny_mmdet.py`:
//!   ResNet-18 at base_channels 8, FPN/head 16 wide, 8 classes) and
//!   `inference/retinanet/retinanet__<image>.json` from `init_detector` + `inference_detector`:
//!   the same network input (by sha256: a 1333×800 PNG per image would be too big to commit) and
//!   metainfo, raw head outputs of all five levels within `RAW_TOL` of their level's scale at 1
//!   thread, and the same detections (count, labels, boxes within 0.1 px, scores within 1e-4)
//!   through `Inferencer` and through `mmcompat detect --json`.

use serde_json::Value;

use crate::family::{Family, NetworkInput, MMYOLO};

const SCOPE: &str = "mmdet";

pub(crate) const RETINANET: Family = Family {
    name: "retinanet",
    images: &["astronaut", "chelsea", "coffee", "exif_rot6"],
    sizes: &["retinanet_r50", "retinanet_r101-caffe"],
    fixture_classes: 8,
    registry_types: &["ResNet", "FPN", "RetinaHead", "RetinaNet"],
    scope: SCOPE,
    fixture: "retinanet_tiny_mmdet",
    input: NetworkInput::Sha256,
    // spec::models::{resnet, fpn, retina_head}
    registry_module: "spec::models::",
    ..MMYOLO
};

/// Both shipped configs build (zero weights) with exactly the real model's `state_dict()` names
/// and shapes, in order: pytorch-style R50 and caffe-style R101 (the stride on the first 1×1 of
/// each Bottleneck does not change shapes, the key set does not either), FPN `on_input` extra
/// convs reading C5 (2048 channels), 9 anchors × 80 classes.
#[test]
fn retinanet_expected_keys_equal_the_real_models() {
    RETINANET.check_expected_keys();
    // Caffe style or not, the module tree is the same per depth.
    RETINANET.check_shipped_configs("mmdet.RetinaNet", &[301, 556]);
}

/// The network input (sha256 of the uint8 HWC BGR image, shape, img_shape), metainfo and raw
/// head outputs of all five levels against the references, at 1 thread (the generator's
/// condition).
#[test]
fn retinanet_network_input_and_raw_head_outputs_match_python() {
    RETINANET.check_raw_outputs();
}

/// Detections through `Inferencer`: anchors, delta decoding clamped to img_shape, rescale,
/// per-class NMS and `max_per_img=100` (every fixture image hits the cap).
#[test]
fn retinanet_detections_match_inference_detector() {
    RETINANET.check_detections();
}

/// `mmcompat detect --config <overlay> --weights <ckpt> --scope mmdet --json` on every image.
#[test]
fn retinanet_detect_command_matches_inference_detector() {
    RETINANET.check_detect_command();
}

fn build_error(cfg: &Value, what: &str) -> String {
    RETINANET.build_error(cfg, what).to_string()
}

/// What Python's constructors reject (or what is not implemented) is refused by the spec stage,
/// naming the key path and what to do.
#[test]
fn retinanet_config_mistakes_name_key_and_fix() {
    let base = RETINANET.model("retinanet_r50");

    let mut cfg = base.clone();
    cfg["neck"]["add_extra_convs"] = "on_inputs".into();
    let msg = build_error(&cfg, "misspelt add_extra_convs");
    assert!(
        msg.contains("model.neck.add_extra_convs")
            && msg.contains("'on_inputs' is not one of")
            && msg.contains("did you mean 'on_input'"),
        "{msg}"
    );
    let mut cfg = base.clone();
    cfg["neck"]["add_extra_convs"] = "bogus".into();
    let msg = build_error(&cfg, "bogus add_extra_convs");
    assert!(
        msg.contains("model.neck.add_extra_convs") && msg.contains("'on_output'"),
        "{msg}"
    );

    let mut cfg = base.clone();
    cfg["backbone"]["depth"] = 42.into();
    let msg = build_error(&cfg, "depth 42");
    assert!(
        msg.contains("model.backbone.depth") && msg.contains("invalid depth 42 for resnet"),
        "{msg}"
    );

    for (key, value) in [
        ("deep_stem", Value::Bool(true)),
        ("avg_down", Value::Bool(true)),
        (
            "dcn",
            serde_json::json!({"type": "DCN", "deform_groups": 1, "fallback_on_stride": false}),
        ),
    ] {
        let mut cfg = base.clone();
        cfg["backbone"][key] = value;
        let msg = build_error(&cfg, key);
        assert!(
            msg.contains(&format!("model.backbone.{key}")) && msg.contains("not supported"),
            "{msg}"
        );
    }

    // FPN asserts num_outs >= len(in_channels) - start_level.
    let mut cfg = base.clone();
    cfg["neck"]["num_outs"] = 2.into();
    let msg = build_error(&cfg, "num_outs");
    assert!(msg.contains("model.neck.num_outs"), "{msg}");

    // An unknown RetinaHead keyword, as Python's TypeError.
    let mut cfg = base.clone();
    cfg["bbox_head"]["num_anchors"] = 9.into();
    RETINANET.assert_unknown_key(&cfg, ("num_anchors", "mmdet.RetinaHead", "model.bbox_head"));

    // Another coder than the one RetinaHead's decode implements.
    let mut cfg = base;
    cfg["bbox_head"]["bbox_coder"] = serde_json::json!({"type": "DistancePointBBoxCoder"});
    let msg = build_error(&cfg, "coder");
    assert!(
        msg.contains("model.bbox_head.bbox_coder") && msg.contains("DeltaXYWHBBoxCoder"),
        "{msg}"
    );
}

/// `mmcompat registry --scope mmdet` lists the new types, declared in their spec modules.
#[test]
fn retinanet_types_are_listed_by_the_registry_command() {
    RETINANET.check_registry_listing();
}
