//! YOLOv5 (mmyolo 0.6.0: `YOLOv5CSPDarknet` + `YOLOv5PAFPN` + `YOLOv5Head`/`YOLOv5HeadModule`)
//! against the real stack (tests/fixtures/generate/make_yolov5_refs.py), through the shared
//! harness of tests/family.rs:
//! * `models/yolov5_sizes.json`: the shipped yolov5_n-v61, yolov5_s-v61 and yolov5_n-p6-v62
//!   configs' merged `model` dicts and the real models' `state_dict()` names and shapes — our
//!   expected keys must equal them, in order (the P6 variant runs on the same code, 4 levels);
//! * `checkpoints/yolov5_nano_mmyolo.pth` (overlay config `mmcompat/yolov5_nano_mmyolo.py`) and
//!   `inference/yolov5/yolov5__<image>.json` from `init_detector` + `inference_detector`: the same
//!   network input, raw head outputs (class, box and objectness logits) within 1e-4 of their
//!   level's scale (`RAW_TOL`), and the same detections (count, labels, boxes within 0.1 px,
//!   scores within 1e-4), through `Inferencer` and through `mmcompat detect --json`.

use mmcompat::inferencer::Inferencer;
use mmcompat::models::build_detector;
use serde_json::Value;
use tch::Device;

use crate::family::{assert_unknown_key, build_error_message, Family, MMYOLO};
use crate::inference::source_image;

const YOLOV5: Family = Family {
    name: "yolov5",
    images: &["astronaut", "chelsea", "coffee", "exif_rot6"],
    sizes: &["yolov5_n", "yolov5_s", "yolov5_n-p6"],
    fixture_classes: 8,
    registry_types: &[
        "YOLOv5CSPDarknet",
        "YOLOv5PAFPN",
        "YOLOv5Head",
        "YOLOv5HeadModule",
    ],
    ..MMYOLO
};

#[test]
fn yolov5_expected_keys_equal_the_real_models() {
    YOLOV5.check_expected_keys();
}

/// The P6 variant (4 levels, strides 8..64, backbone stage 768) runs end to end on the same code:
/// one objectness map per level, 3 anchors each.
#[test]
fn yolov5_p6_forward_has_four_levels_with_objectness() {
    let det = build_detector(&YOLOV5.model("yolov5_n-p6"), "mmyolo", Device::Cpu).expect("p6");
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
fn yolov5_network_input_and_raw_head_outputs_match_python() {
    YOLOV5.check_raw_outputs_with(objectness_deviation);
}

/// `raw_deviation` covers the class and box logits; the objectness logits the same way: shape,
/// level sum, and the sampled values in units of max(1, max |v| over the level's samples).
pub(crate) fn objectness_deviation(what: &str, inf: &Inferencer, image: &str, r: &Value) -> f64 {
    let pre = inf.preprocess(&source_image(image)).expect("pipeline");
    let outs = inf.head_outputs(&[&pre]).expect("forward");
    let levels = r["head_outputs"]["objectnesses"]
        .as_array()
        .expect("levels");
    assert_eq!(
        outs.objectnesses.len(),
        levels.len(),
        "{what}: objectness levels"
    );
    let mut worst = 0f64;
    for (l, (t, refl)) in outs.objectnesses.iter().zip(levels).enumerate() {
        let shape: Vec<i64> = (refl["shape"].as_array().expect("shape").iter())
            .map(|v| v.as_i64().expect("dim"))
            .collect();
        assert_eq!(
            &t.size()[1..],
            &shape[..],
            "{what}: objectnesses[{l}] shape"
        );
        let values = Vec::<f32>::try_from(&t.get(0).flatten(0, -1)).expect("to vec");
        let samples = refl["sample_values"].as_array().expect("values");
        let scale = (samples.iter())
            .map(|v| v.as_f64().expect("v").abs())
            .fold(1.0, f64::max);
        for (i, v) in refl["sample_indices"]
            .as_array()
            .expect("idx")
            .iter()
            .zip(samples)
        {
            let diff =
                (f64::from(values[i.as_u64().expect("i") as usize]) - v.as_f64().expect("v")).abs();
            worst = worst.max(diff / scale);
        }
        let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
        let (rsum, rabs) = (
            refl["sum"].as_f64().expect("sum"),
            refl["abs_sum"].as_f64().expect("abs"),
        );
        assert!(
            (sum - rsum).abs() <= 1e-5 * rabs + 1e-3,
            "{what}: objectnesses[{l}] sum {sum} vs {rsum}"
        );
    }
    eprintln!("{what}: objectness logits on samples: max |Δ|/max(1,max|level|) {worst:e}");
    worst
}

#[test]
fn yolov5_detections_match_inference_detector() {
    YOLOV5.check_detections();
}

#[test]
fn yolov5_detect_command_matches_inference_detector() {
    YOLOV5.check_detect_command();
}

#[test]
fn yolov5_types_are_listed_by_the_registry_command() {
    YOLOV5.check_registry_listing();
}

/// What Python's constructors reject is rejected by the spec stage, naming key, type and path.
#[test]
fn yolov5_config_mistakes_name_key_and_type() {
    let model = YOLOV5.model("yolov5_n");

    // A YOLOv8Head keyword that YOLOv5Head.__init__ does not take.
    let mut cfg = model.clone();
    cfg["bbox_head"]["loss_dfl"] = serde_json::json!({"type": "mmdet.DistributionFocalLoss"});
    assert_unknown_key(&cfg, ("loss_dfl", "mmyolo.YOLOv5Head", "model.bbox_head"));

    // Another box coder than YOLOv5BBoxCoder, another prior generator than YOLOAnchorGenerator.
    let mut cfg = model.clone();
    cfg["bbox_head"]["bbox_coder"] = serde_json::json!({"type": "DistancePointBBoxCoder"});
    let msg = build_error_message(&cfg, "coder");
    assert!(
        msg.contains("model.bbox_head.bbox_coder") && msg.contains("DistancePointBBoxCoder"),
        "{msg}"
    );
    let mut cfg = model.clone();
    cfg["bbox_head"]["prior_generator"] = serde_json::json!({"type": "mmdet.MlvlPointGenerator", "offset": 0.5, "strides": [8, 16, 32]});
    let msg = build_error_message(&cfg, "prior generator");
    assert!(msg.contains("model.bbox_head.prior_generator"), "{msg}");

    // P6 strides with the P5 obj_level_weights (AssertionError in YOLOv5Head.special_init).
    let mut cfg = YOLOV5.model("yolov5_n-p6");
    cfg["bbox_head"]["obj_level_weights"] = serde_json::json!([4.0, 1.0, 0.4]);
    let msg = build_error_message(&cfg, "weights");
    assert!(msg.contains("model.bbox_head.obj_level_weights"), "{msg}");

    // Two anchors per location for a head module predicting three.
    let mut cfg = model.clone();
    cfg["bbox_head"]["prior_generator"]["base_sizes"] = serde_json::json!([
        [[10, 13], [16, 30]],
        [[30, 61], [62, 45]],
        [[116, 90], [156, 198]]
    ]);
    let msg = build_error_message(&cfg, "anchors");
    assert!(
        msg.contains("model.bbox_head.prior_generator.base_sizes")
            && msg.contains("num_base_priors"),
        "{msg}"
    );

    // An unknown backbone arch.
    let mut cfg = model;
    cfg["backbone"]["arch"] = "P7".into();
    let msg = build_error_message(&cfg, "arch");
    assert!(
        msg.contains("model.backbone.arch") && msg.contains("P7"),
        "{msg}"
    );
}
