//! YOLOv6 (mmyolo 0.6.0) against the real stack (tests/fixtures/generate/make_yolov6_refs.py),
//! through the shared harness of tests/family.rs:
//! * `models/yolov6_sizes.json`: the shipped yolov6_{n,s,m,l} and yolov6_v3_{s,m,l} configs'
//!   merged `model` dicts and the real models' `state_dict()` names and shapes — our expected
//!   keys must equal them, in order (every YOLOv6 module: `YOLOv6EfficientRep`/`YOLOv6CSPBep`,
//!   the four PAFPNs, `CSPSPPFBottleneck`, `RepVGGBlock`/`ConvWrapper` blocks, the DFL head);
//! * three fixtures from `init_detector` + `inference_detector`, each with the same network
//!   input, raw head outputs within 1e-4 of their level's scale (`RAW_TOL`), and the same
//!   detections (count, labels, boxes within 0.1 px, scores within 1e-4), through `Inferencer`
//!   and through `mmcompat detect --json`; with `--fold-bn` (RepVGG blocks re-parameterised as
//!   `switch_to_deploy` does) the detections still match:
//!   - `yolov6` (`mmcompat/yolov6_nano_mmyolo.py`): v2 n — `YOLOv6EfficientRep` +
//!     `YOLOv6RepPAFPN`, RepVGG blocks in deploy=False form, raw ltrb head;
//!   - `yolov6_m` (`mmcompat/yolov6_m_nano_mmyolo.py`): v2 m — `YOLOv6CSPBep` +
//!     `YOLOv6CSPRepPAFPN`, RepVGG blocks in `BottleRep`s with learned alphas;
//!   - `yolov6_v3` (`mmcompat/yolov6_v3_nano_mmyolo.py`): 3.0 l — `ConvWrapper` blocks,
//!     `CSPSPPFBottleneck`, `YOLOv6CSPRepBiPAFPN` (BiFusion), DFL head (`reg_max=16`).

use mmcompat::models::build_detector;
use serde_json::Value;
use tch::Device;

use crate::family::{assert_unknown_key, build_error_message, Family, MMYOLO};
use crate::inference::{assert_same_detections, source_image};

const YOLOV6: Family = Family {
    name: "yolov6",
    // Three of the four fixture photographs (fixture size; EXIF decoding is family-independent
    // and covered by the RTMDet and YOLOv8 tests).
    images: &["astronaut", "chelsea", "coffee"],
    sizes: &[
        "yolov6_n",
        "yolov6_s",
        "yolov6_m",
        "yolov6_l",
        "yolov6_v3_s",
        "yolov6_v3_m",
        "yolov6_v3_l",
    ],
    fixture_classes: 8,
    registry_types: &[
        "YOLOv6EfficientRep",
        "YOLOv6CSPBep",
        "YOLOv6RepPAFPN",
        "YOLOv6CSPRepPAFPN",
        "YOLOv6RepBiPAFPN",
        "YOLOv6CSPRepBiPAFPN",
        "YOLOv6Head",
        "YOLOv6HeadModule",
    ],
    ..MMYOLO
};

/// v2 m (the fixture's checkpoint and references only: its keys are checked through `YOLOV6`'s
/// sizes file).
const YOLOV6_M: Family = Family {
    name: "yolov6_m",
    images: &["astronaut", "coffee"],
    sizes: &[],
    fixture_classes: 8,
    registry_types: &[],
    ..MMYOLO
};

/// 3.0 l (likewise).
const YOLOV6_V3: Family = Family {
    name: "yolov6_v3",
    images: &["astronaut", "coffee"],
    sizes: &[],
    fixture_classes: 8,
    registry_types: &[],
    ..MMYOLO
};

#[test]
fn yolov6_expected_keys_equal_the_real_models() {
    YOLOV6.check_expected_keys();
}

#[test]
fn yolov6_network_input_and_raw_head_outputs_match_python() {
    YOLOV6.check_raw_outputs();
}

/// `--fold-bn` re-parameterises each RepVGG block into one 3×3 convolution (what
/// `switch_to_deploy` computes) and folds the other batch norms (the ConvWrappers' too): float32
/// rounding then differs from `inference_detector`'s unfused model, so the raw outputs get the
/// looser bound of the folded RTMDet test (tests/inference.rs), and the detections must still
/// match.
fn check_folded(family: &Family) {
    let inf = family.inferencer_with(true);
    assert!(inf.detector().fold_bn());
    let worst = family
        .images
        .iter()
        .map(|image| {
            let r = family.reference(image);
            let what = format!("{}/{image} folded", family.name);
            let dev = family.raw_deviation(&what, &inf, image, &r);
            let dets = inf.infer(&source_image(image)).expect("infer");
            assert_same_detections(&what, &dets, &r["detections"]);
            dev
        })
        .fold(0f64, f64::max);
    assert!(
        worst <= 1e-3,
        "{}: folded raw outputs differ by {worst:e}",
        family.name
    );
}

#[test]
fn yolov6_folded_repvgg_blocks_keep_the_detections() {
    check_folded(&YOLOV6);
}

#[test]
fn yolov6_m_network_input_and_raw_head_outputs_match_python() {
    YOLOV6_M.check_raw_outputs();
}

#[test]
fn yolov6_m_detections_match_inference_detector() {
    YOLOV6_M.check_detections();
}

#[test]
fn yolov6_m_detect_command_matches_inference_detector() {
    YOLOV6_M.check_detect_command();
}

#[test]
fn yolov6_m_folded_blocks_keep_the_detections() {
    check_folded(&YOLOV6_M);
}

#[test]
fn yolov6_v3_network_input_and_raw_head_outputs_match_python() {
    YOLOV6_V3.check_raw_outputs();
}

#[test]
fn yolov6_v3_detections_match_inference_detector() {
    YOLOV6_V3.check_detections();
}

#[test]
fn yolov6_v3_detect_command_matches_inference_detector() {
    YOLOV6_V3.check_detect_command();
}

#[test]
fn yolov6_v3_folded_blocks_keep_the_detections() {
    check_folded(&YOLOV6_V3);
}

#[test]
fn yolov6_detections_match_inference_detector() {
    YOLOV6.check_detections();
}

#[test]
fn yolov6_detect_command_matches_inference_detector() {
    YOLOV6.check_detect_command();
}

#[test]
fn yolov6_types_are_listed_by_the_registry_command() {
    YOLOV6.check_registry_listing();
}

/// What Python's constructors reject is rejected by the spec stage, naming key, type and path.
#[test]
fn yolov6_config_mistakes_name_key_and_type() {
    let model = YOLOV6.model("yolov6_n");

    // A YOLOv5Head keyword that YOLOv6Head.__init__ does not take.
    let mut cfg = model.clone();
    cfg["bbox_head"]["prior_match_thr"] = 4.0.into();
    assert_unknown_key(
        &cfg,
        ("prior_match_thr", "mmyolo.YOLOv6Head", "model.bbox_head"),
    );

    // `out_channels` as an int: YOLOv6RepPAFPN indexes it per level.
    let mut cfg = model.clone();
    cfg["neck"]["out_channels"] = 256.into();
    let msg = build_error_message(&cfg, "int out_channels");
    assert!(
        msg.contains("model.neck.out_channels") && msg.contains("list"),
        "{msg}"
    );

    // Another box coder than DistancePointBBoxCoder.
    let mut cfg = model.clone();
    cfg["bbox_head"]["bbox_coder"] = serde_json::json!({"type": "YOLOv5BBoxCoder"});
    let msg = build_error_message(&cfg, "coder");
    assert!(
        msg.contains("model.bbox_head.bbox_coder") && msg.contains("YOLOv5BBoxCoder"),
        "{msg}"
    );

    // A misspelt RepVGGBlock keyword in `block_cfg` (TypeError in RepVGGBlock.__init__).
    let mut cfg = model.clone();
    cfg["backbone"]["block_cfg"] = serde_json::json!({"type": "RepVGGBlock", "use_alhpa": true});
    let msg = build_error_message(&cfg, "block_cfg key");
    assert!(
        msg.contains("model.backbone.block_cfg") && msg.contains("use_alhpa"),
        "{msg}"
    );

    // A block type no YOLOv6 module builds, and `use_se`, are refused in the spec stage.
    let mut cfg = model.clone();
    cfg["neck"]["block_cfg"] = serde_json::json!({"type": "BottleRep"});
    let msg = build_error_message(&cfg, "block type");
    assert!(
        msg.contains("model.neck.block_cfg.type") && msg.contains("BottleRep"),
        "{msg}"
    );
    let mut cfg = model;
    cfg["neck"]["block_cfg"] = serde_json::json!({"type": "RepVGGBlock", "use_se": true});
    let msg = build_error_message(&cfg, "use_se");
    assert!(msg.contains("model.neck.block_cfg.use_se"), "{msg}");
}

/// The m/l and 3.0 modules' own mistakes: a misspelt `ConvWrapper` keyword (TypeError in
/// `ConvWrapper.__init__`), a misspelt `YOLOv6CSPBep` keyword, a 3.0 neck given the v2 neck's
/// three `in_channels` (it needs the extra, finer level first).
#[test]
fn yolov6_csp_config_mistakes_name_key_and_type() {
    let l = YOLOV6.model("yolov6_l");
    let mut cfg = l.clone();
    cfg["backbone"]["block_cfg"]["norm_cgf"] = serde_json::json!({"type": "BN"});
    assert_unknown_key(
        &cfg,
        ("norm_cgf", "mmyolo.ConvWrapper", "model.backbone.block_cfg"),
    );
    let mut cfg = l;
    cfg["backbone"]["hiden_ratio"] = 0.5.into();
    assert_unknown_key(
        &cfg,
        ("hiden_ratio", "mmyolo.YOLOv6CSPBep", "model.backbone"),
    );
    let mut cfg = YOLOV6.model("yolov6_v3_m");
    cfg["neck"]["in_channels"] = serde_json::json!([256, 512, 1024]);
    let msg = build_error_message(&cfg, "3.0 neck with 3 inputs");
    assert!(msg.contains("model.neck"), "{msg}");
}

/// `block_cfg=dict(type='RepVGGBlock', deploy=True)` builds the fused form upstream
/// (`rbr_reparam`, a 3×3 conv with bias, instead of the three branches); the default
/// (`deploy=False`, what every shipped config and `inference_detector` use) keeps the branches.
#[test]
fn yolov6_repvgg_blocks_keep_three_branches_unless_deploy() {
    let model = YOLOV6.model("yolov6_n");
    let names = |cfg: &Value| -> Vec<String> {
        build_detector(cfg, "mmyolo", Device::Cpu)
            .expect("build")
            .expected_keys()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("backbone.stage1.0.1.conv1."))
            .collect()
    };
    let plain = names(&model);
    assert_eq!(
        plain,
        [
            "rbr_identity.weight",
            "rbr_identity.bias",
            "rbr_identity.running_mean",
            "rbr_identity.running_var",
            "rbr_dense.conv.weight",
            "rbr_dense.bn.weight",
            "rbr_dense.bn.bias",
            "rbr_dense.bn.running_mean",
            "rbr_dense.bn.running_var",
            "rbr_1x1.conv.weight",
            "rbr_1x1.bn.weight",
            "rbr_1x1.bn.bias",
            "rbr_1x1.bn.running_mean",
            "rbr_1x1.bn.running_var",
        ]
        .map(|k| format!("backbone.stage1.0.1.conv1.{k}"))
    );
    let mut cfg = model;
    cfg["backbone"]["block_cfg"] = serde_json::json!({"type": "RepVGGBlock", "deploy": true});
    assert_eq!(
        names(&cfg),
        ["rbr_reparam.weight", "rbr_reparam.bias"]
            .map(|k| format!("backbone.stage1.0.1.conv1.{k}"))
    );
}

/// In `YOLOv6CSPBep` the blocks sit inside `BottleRep`s (`block.conv1.conv1`, ...) behind the
/// learned `alpha`; `deploy=True` fuses them there too, and `ConvWrapper` (l) is a
/// ConvModule with a conv bias next to its BN.
#[test]
fn yolov6_csp_blocks_follow_block_cfg() {
    let names = |cfg: &Value, prefix: &str| -> Vec<String> {
        build_detector(cfg, "mmyolo", Device::Cpu)
            .expect("build")
            .expected_keys()
            .into_iter()
            .map(|(k, _)| k)
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect()
    };
    let prefix = "backbone.stage1.0.1.block.conv1.";
    let mut m = YOLOV6.model("yolov6_m");
    m["backbone"]["block_cfg"] = serde_json::json!({"type": "RepVGGBlock", "deploy": true});
    assert_eq!(
        names(&m, prefix),
        [
            "alpha",
            "conv1.rbr_reparam.weight",
            "conv1.rbr_reparam.bias",
            "conv2.rbr_reparam.weight",
            "conv2.rbr_reparam.bias"
        ]
    );
    let l = YOLOV6.model("yolov6_l");
    let conv1: Vec<String> = names(&l, prefix)
        .into_iter()
        .filter(|k| k.starts_with("conv1."))
        .collect();
    assert_eq!(
        conv1,
        [
            "conv1.block.conv.weight",
            "conv1.block.conv.bias",
            "conv1.block.bn.weight",
            "conv1.block.bn.bias",
            "conv1.block.bn.running_mean",
            "conv1.block.bn.running_var",
        ]
    );
}
