//! FCOS (mmdet 3.3.0: `FCOS` + caffe-style `ResNet` + `FPN` + `FCOSHead`) and RepPoints
//! (`RepPointsDetector` + `ResNet` + GN `FPN` + `RepPointsHead` with two deformable convolutions)
//! against the real stack (tests/fixtures/generate/make_fcos_reppoints_refs.py), as [`Family`]
//! entries (tests/family.rs):
//! * `models/{fcos,reppoints}_sizes.json`: the shipped `fcos_r50-caffe_fpn_gn-head_1x_coco` and
//!   `reppoints-moment_r50_fpn-gn_head-gn_2x_coco` configs' merged `model` dicts and the real
//!   models' `state_dict()` names and shapes — ours must equal them, in order;
//! * `checkpoints/{fcos,reppoints}_tiny_mmdet.pth` (overlay configs
//!   `mmcompat/{fcos,reppoints}_tiny_mmdet.py`: ResNet-18 at base_channels 4, FPN/head 16 wide
//!   with GN(8), i.e. two channels per group, 8 classes) and
//!   `inference/<name>/<name>__<image>.json` from `init_detector` + `inference_detector`: the
//!   same network input (by sha256) and metainfo, raw head outputs of all five levels (FCOS's
//!   centerness too) within `RAW_TOL` of their level's scale at 1 thread, and the same
//!   detections (count, labels, boxes within 0.1 px, scores within 1e-4) through `Inferencer`
//!   and through `mmcompat detect --json`; plus head options referenced on one image each.
//!
//! The references' deformable convolution is torchvision's `deform_conv2d` standing in for
//! mmcv's compiled kernel (same sampling; see the generator and tests/ops.rs).

use mmcompat::inferencer::Inferencer;

use crate::family::{Family, NetworkInput, MMYOLO};
use crate::inference::{assert_same_detections, raw_deviation_on, roots, source_image, RAW_TOL};
use crate::models::read_json;

const SCOPE: &str = "mmdet";

pub(crate) const FCOS: Family = Family {
    name: "fcos",
    images: &["astronaut", "chelsea", "exif_rot6"],
    sizes: &["fcos_r50-caffe", "fcos_r50-caffe-giou"],
    fixture_classes: 8,
    registry_types: &["FCOSHead", "FCOS"],
    scope: SCOPE,
    fixture: "fcos_tiny_mmdet",
    input: NetworkInput::Sha256,
    registry_module: "spec::models::fcos_head",
    ..MMYOLO
};

pub(crate) const REPPOINTS: Family = Family {
    name: "reppoints",
    sizes: &["reppoints-moment_r50"],
    registry_types: &["RepPointsHead", "RepPointsDetector"],
    fixture: "reppoints_tiny_mmdet",
    registry_module: "spec::models::reppoints_head",
    ..FCOS
};

/// The shipped configs build (zero weights) with exactly the real model's `state_dict()` names
/// and shapes, in order: caffe-style R50 + FPN `on_output` + FCOSHead (GN towers without conv
/// bias, `scales.{l}.scale` 0-d; 316 keys), the same with `conv_bias=True` next to GN
/// (`…-center-normbbox-centeronreg-giou`: 324 keys), pytorch R50 + GN FPN
/// (`lateral_convs.{i}.gn.*`, no conv bias) + RepPointsHead (`moment_transfer` first,
/// DeformConv2d weights without bias; 318 keys); and our config loader makes the recorded `model`
/// dicts of the shipped files.
#[test]
fn fcos_reppoints_expected_keys_equal_the_real_models() {
    FCOS.check_expected_keys();
    FCOS.check_shipped_configs("mmdet.FCOS", &[316, 324]);
    REPPOINTS.check_expected_keys();
    REPPOINTS.check_shipped_configs("mmdet.RepPointsDetector", &[318]);
}

/// The network input (sha256 of the uint8 HWC BGR image: FCOS's caffe mean without BGR→RGB),
/// metainfo and raw head outputs of every image against the references, at 1 thread (the
/// generator's condition). FCOS's `bbox_preds` are `exp(Scale·x)` in pixels and its centerness
/// logits are the score factors; RepPoints' `bbox_preds` are the moment boxes of the refined
/// points (stride units), i.e. after both deformable convolutions.
#[test]
fn fcos_reppoints_network_input_and_raw_head_outputs_match_python() {
    // FCOS's centerness: `raw_deviation_on` checks the references' `centernesses` too.
    FCOS.check_raw_outputs();
    REPPOINTS.check_raw_outputs();
}

/// Detections through `Inferencer`: points (offset 0.5 / 0), FCOS distance decoding and
/// centerness factors after the threshold, RepPoints' `bbox_pred·stride + point`, clamps to
/// img_shape, rescale, per-class NMS (IoU 0.5) and `max_per_img=100`.
#[test]
fn fcos_reppoints_detections_match_inference_detector() {
    FCOS.check_detections();
    REPPOINTS.check_detections();
}

/// `mmcompat detect --config <overlay> --weights <ckpt> --scope mmdet --json` on every image.
#[test]
fn fcos_reppoints_detect_command_matches_inference_detector() {
    FCOS.check_detect_command();
    REPPOINTS.check_detect_command();
}

/// `mmcompat registry --scope mmdet` lists the new types, declared in their spec modules.
#[test]
fn fcos_reppoints_types_are_listed_by_the_registry_command() {
    FCOS.check_registry_listing();
    REPPOINTS.check_registry_listing();
}

/// Head options that change the graph but not the weights, each on one image with its family's
/// checkpoint and the generator's overlay text (`config_text`, `_base_` = the fixture config):
/// FCOS `norm_on_bbox` (`relu(Scale·x)·stride`) with `centerness_on_reg`, RepPoints `minmax` and
/// `partial_minmax` (the checkpoint's `moment_transfer` is then unused, as init_detector reports
/// it unexpected). Raw outputs within `RAW_TOL` and the same detections.
#[test]
fn fcos_reppoints_head_variants_match_python() {
    use mmcompat::registry::config::Limits;
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let result = std::panic::catch_unwind(|| {
        let mut worst = 0f64;
        for (family, variant) in [
            (&FCOS, "fcos_normbbox_centeronreg"),
            (&REPPOINTS, "reppoints_minmax"),
            (&REPPOINTS, "reppoints_partial_minmax"),
        ] {
            let name = family.name;
            let r = read_json(&format!("inference/{name}/{variant}__chelsea.json"));
            let (config, weights) = family.files();
            let path = config.with_file_name(format!("{variant}.py"));
            let text = r["config_text"].as_str().expect("config_text");
            let cfg = mmcompat::Config::from_text(&path, text, &roots(), &Limits::default())
                .unwrap_or_else(|e| panic!("{variant}: {e}"));
            let inf = Inferencer::builder()
                .loaded_config(cfg)
                .weights(&weights)
                // the min-max models have no `moment_transfer`: load like init_detector
                // (non-strict: unexpected keys reported, not fatal)
                .strict(name != "reppoints")
                .scope(SCOPE)
                .device("cpu")
                .config_roots(roots())
                .build()
                .unwrap_or_else(|e| panic!("{variant}: {e}"));
            let pre = inf.preprocess(&source_image("chelsea")).expect("pipeline");
            // Centerness included, when the reference records it.
            worst = worst.max(raw_deviation_on(variant, &inf, &pre, &r));
            let dets = inf.infer(&source_image("chelsea")).expect("infer");
            assert_same_detections(variant, &dets, &r["detections"]);
        }
        worst
    });
    tch::set_num_threads(threads);
    let worst = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert!(
        worst <= RAW_TOL,
        "variants differ from Python by up to {worst:e}"
    );
}

/// What Python's constructors reject, or what is not implemented, is refused by the spec stage
/// naming the key path and what to do.
#[test]
fn fcos_reppoints_config_mistakes_name_key_and_fix() {
    let fcos = FCOS.model(FCOS.sizes[0]);
    let mut cfg = fcos.clone();
    cfg["bbox_head"]["dcn_on_last_conv"] = true.into();
    let msg = FCOS.build_error(&cfg, "dcn_on_last_conv").to_string();
    assert!(
        msg.contains("model.bbox_head.dcn_on_last_conv") && msg.contains("dcn_on_last_conv=False"),
        "{msg}"
    );
    let mut cfg = fcos.clone();
    cfg["bbox_head"]["conv_bias"] = "yes".into();
    let msg = FCOS.build_error(&cfg, "conv_bias").to_string();
    assert!(
        msg.contains("model.bbox_head.conv_bias") && msg.contains("'auto', True or False"),
        "{msg}"
    );
    // GN(32) on 48 channels: nn.GroupNorm would raise.
    let mut cfg = fcos.clone();
    cfg["bbox_head"]["feat_channels"] = 48.into();
    let msg = FCOS.build_error(&cfg, "GN groups").to_string();
    assert!(
        msg.contains("model.bbox_head.norm_cfg.num_groups") && msg.contains("not divisible"),
        "{msg}"
    );
    // A misspelt FCOSHead keyword, as Python's TypeError, with the closest one.
    let mut cfg = fcos;
    cfg["bbox_head"]["norm_on_box"] = true.into();
    FCOS.assert_unknown_key(&cfg, ("norm_on_box", "mmdet.FCOSHead", "model.bbox_head"));

    let rep = REPPOINTS.model(REPPOINTS.sizes[0]);
    let mut cfg = rep.clone();
    cfg["bbox_head"]["use_grid_points"] = true.into();
    let msg = REPPOINTS.build_error(&cfg, "use_grid_points").to_string();
    assert!(
        msg.contains("model.bbox_head.use_grid_points") && msg.contains("use_grid_points=False"),
        "{msg}"
    );
    let mut cfg = rep.clone();
    cfg["bbox_head"]["num_points"] = 8.into();
    let msg = REPPOINTS.build_error(&cfg, "num_points").to_string();
    assert!(
        msg.contains("model.bbox_head.num_points") && msg.contains("odd square"),
        "{msg}"
    );
    let mut cfg = rep;
    cfg["bbox_head"]["transform_method"] = "min_max".into();
    let msg = REPPOINTS.build_error(&cfg, "min_max").to_string();
    assert!(
        msg.contains("model.bbox_head.transform_method") && msg.contains("did you mean 'minmax'"),
        "{msg}"
    );
}
