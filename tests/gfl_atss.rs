//! GFL and ATSS (mmdet 3.3.0: `GFL` / `ATSS` + `ResNet` + `FPN` + `GFLHead` / `ATSSHead`, GN
//! towers) against the real stack (tests/fixtures/generate/make_gfl_atss_refs.py), as
//! [`Family`] entries (tests/family.rs):
//! * `models/{gfl,atss}_sizes.json`: the shipped `gfl_r50_fpn_1x_coco` and `atss_r50_fpn_1x_coco`
//!   configs' merged `model` dicts and the real models' `state_dict()` names and shapes (GN
//!   `gn.{weight,bias}`, `scales.<l>.scale`, GFL's persistent `integral.project`) — ours must
//!   equal them, in order;
//! * `checkpoints/{gfl,atss}_tiny_mmdet.pth` (overlay configs `mmcompat/{gfl,atss}_tiny_mmdet.py`:
//!   ResNet-18 at base_channels 4, FPN/head 32 wide so GN's 32 groups divide, 1 stacked conv, 8
//!   classes; GN affine parameters and Scale factors perturbed) and
//!   `inference/<name>/<name>__<image>.json` from `init_detector` + `inference_detector`: the
//!   same network input (by sha256) and metainfo, raw head outputs of all five levels (ATSS's
//!   centerness too) within `RAW_TOL` of their level's scale at 1 thread, and the same
//!   detections (count, labels, boxes within 0.1 px, scores within 1e-4) through `Inferencer`
//!   and through `mmcompat detect --json`.

use serde_json::Value;

use crate::family::{Family, NetworkInput, MMYOLO};

const SCOPE: &str = "mmdet";

pub(crate) const GFL: Family = Family {
    name: "gfl",
    images: &["astronaut", "chelsea", "exif_rot6"],
    sizes: &["gfl_r50"],
    fixture_classes: 8,
    registry_types: &["GFLHead", "GFL"],
    scope: SCOPE,
    fixture: "gfl_tiny_mmdet",
    input: NetworkInput::Sha256,
    registry_module: "spec::models::gfl_head",
    ..MMYOLO
};

pub(crate) const ATSS: Family = Family {
    name: "atss",
    sizes: &["atss_r50"],
    registry_types: &["ATSSHead", "ATSS"],
    fixture: "atss_tiny_mmdet",
    registry_module: "spec::models::atss_head",
    ..GFL
};

/// Both shipped configs build (zero weights) with exactly the real model's `state_dict()` names
/// and shapes, in order (315 and 316 keys), and our config loader makes the recorded `model`
/// dicts of the shipped files.
#[test]
fn gfl_atss_expected_keys_equal_the_real_models() {
    GFL.check_expected_keys();
    GFL.check_shipped_configs("mmdet.GFL", &[315]);
    ATSS.check_expected_keys();
    ATSS.check_shipped_configs("mmdet.ATSS", &[316]);
}

/// The network input (sha256, shape, img_shape), metainfo and raw head outputs of all five
/// levels against the references, at 1 thread (the generator's condition): GFL's class-quality
/// logits and box distributions after `Scale`, ATSS's class logits, scaled deltas and
/// centerness.
#[test]
fn gfl_atss_network_input_and_raw_head_outputs_match_python() {
    // ATSS's centerness: `raw_deviation_on` checks the references' `centernesses` too.
    GFL.check_raw_outputs();
    ATSS.check_raw_outputs();
}

/// Detections through `Inferencer`: GFL's integral and distance decoding from the anchor
/// centres, ATSS's delta decoding (stds .1/.2) with the centerness factor after the threshold;
/// rescale, per-class NMS (IoU 0.6) and `max_per_img=100` (every fixture image hits the cap).
#[test]
fn gfl_atss_detections_match_inference_detector() {
    GFL.check_detections();
    ATSS.check_detections();
}

/// `mmcompat detect --config <overlay> --weights <ckpt> --scope mmdet --json` on every image.
#[test]
fn gfl_atss_detect_command_matches_inference_detector() {
    GFL.check_detect_command();
    ATSS.check_detect_command();
}

fn build_error(cfg: &Value, what: &str) -> String {
    GFL.build_error(cfg, what).to_string()
}

/// What Python's constructors reject (or what is not implemented) is refused by the spec stage,
/// naming the key path and what to do.
#[test]
fn gfl_atss_config_mistakes_name_key_and_fix() {
    let gfl = GFL.model("gfl_r50");
    let atss = ATSS.model("atss_r50");

    // GFLHead asserts one anchor per location.
    let mut cfg = gfl.clone();
    cfg["bbox_head"]["anchor_generator"]["ratios"] = serde_json::json!([0.5, 1.0, 2.0]);
    let msg = build_error(&cfg, "three anchors");
    assert!(
        msg.contains("model.bbox_head.anchor_generator")
            && msg.contains("one anchor per location")
            && msg.contains("give 3")
            && msg.contains("ratios=[1.0]"),
        "{msg}"
    );

    // A misspelt GFLHead keyword, as Python's TypeError, with the closest key.
    let mut cfg = gfl.clone();
    cfg["bbox_head"]["reg_maxx"] = 16.into();
    GFL.assert_unknown_key(&cfg, ("reg_maxx", "mmdet.GFLHead", "model.bbox_head"));
    let msg = build_error(&cfg, "unknown key");
    assert!(msg.contains("did you mean `reg_max`?"), "{msg}");

    // Another coder than the one GFLHead's decode implements.
    let mut cfg = gfl;
    cfg["bbox_head"]["bbox_coder"] = serde_json::json!({"type": "DeltaXYWHBBoxCoder"});
    let msg = build_error(&cfg, "coder");
    assert!(
        msg.contains("model.bbox_head.bbox_coder") && msg.contains("DistancePointBBoxCoder"),
        "{msg}"
    );

    // ATSS pads its predictors by pred_kernel_size // 2: an even kernel changes the map size.
    let mut cfg = atss.clone();
    cfg["bbox_head"]["pred_kernel_size"] = 2.into();
    let msg = build_error(&cfg, "even kernel");
    assert!(
        msg.contains("model.bbox_head.pred_kernel_size") && msg.contains("positive odd"),
        "{msg}"
    );

    // nn.GroupNorm(32, 48) raises: the GN towers need feat_channels divisible by num_groups.
    let mut cfg = atss.clone();
    cfg["bbox_head"]["feat_channels"] = 48.into();
    let msg = build_error(&cfg, "GN groups");
    assert!(
        msg.contains("model.bbox_head.norm_cfg.num_groups")
            && msg.contains("feat_channels (48) divisible by num_groups (32)"),
        "{msg}"
    );

    // A conv_cfg other than plain Conv2d.
    let mut cfg = atss;
    cfg["bbox_head"]["conv_cfg"] = serde_json::json!({"type": "DCNv2"});
    let msg = build_error(&cfg, "conv_cfg");
    assert!(
        msg.contains("model.bbox_head.conv_cfg") && msg.contains("not supported"),
        "{msg}"
    );
}

/// `mmcompat registry --scope mmdet` lists the new types, declared in their spec modules.
#[test]
fn gfl_atss_types_are_listed_by_the_registry_command() {
    GFL.check_registry_listing();
    ATSS.check_registry_listing();
}

/// The GFL fixture distilled with MMRazor: `mmrazor::mmcompat/cwd_cls_head_gfl_tiny.py` (the
/// shipped `cwd_cls_head_gfl_r101_fpn_gfl_r50_fpn_1x_coco.py`, FpnTeacherDistill, with the GFL
/// fixture as student and a narrower GFL as teacher) and the real distiller's `state_dict()`
/// (`architecture.*` = the GFL fixture's weights, `teacher.*`), run as users run it: the
/// student's detections must be the plain GFL references (the generator checked that the real
/// `init_detector` on the distillation config gives them bitwise).
const KD_GFL: Family = Family {
    name: "kd_gfl",
    config: "mmrazor::mmcompat/cwd_cls_head_gfl_tiny.py",
    checkpoint: "checkpoints/cwd_cls_head_gfl_tiny.pth",
    references: "inference/gfl/gfl__",
    // The distillation config's own default_scope (mmdet) decides, as for users.
    explicit_scope: false,
    ..GFL
};

#[test]
fn kd_gfl_resolves_to_the_student_and_never_builds_the_teacher() {
    crate::kd::check_resolves_to_the_student(&KD_GFL, "FpnTeacherDistill");
    crate::kd::check_never_builds_the_teacher(&KD_GFL, "gfl_tiny_teacher.py");
}

#[test]
fn kd_gfl_detections_equal_the_plain_student() {
    KD_GFL.check_detections();
    crate::kd::check_detect_command(&KD_GFL, "FpnTeacherDistill");
}
