//! A distilled mmdet RetinaNet (issue 14): the MMRazor `FpnTeacherDistill` config
//! `mmrazor::mmcompat/cwd_fpn_retina_tiny.py` (written like the shipped
//! `distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py`: ChannelWiseDivergence on the
//! five FPN outputs; student the RetinaNet fixture `mmdet::mmcompat/retinanet_tiny_mmdet.py`,
//! teacher a narrower RetinaNet) and the checkpoint mmengine's Runner wrote after two iterations
//! with the real MMRazor (`razor_mmdet/cwd_fpn_retina_tiny.pth`), both from
//! tests/fixtures/generate/make_razor_mmdet_refs.py. Run as users run it — distillation config +
//! Runner checkpoint — ours must resolve the student, unwrap the checkpoint through the mmrazor
//! adapter, never build the teacher, and give what the real stack gives
//! (`razor_mmdet/inference/cwd_retina__<image>.json`, init_detector + inference_detector on the
//! extracted student; the generator checked that the distillation config gives bitwise the same):
//! the same network input (sha256), raw head outputs within `RAW_TOL` of their level's scale, and
//! the same detections (count, labels, boxes within 0.1 px, scores within 1e-4).

use crate::family::Family;
use crate::kd;
use crate::retinanet::RETINANET;

const KD_RETINANET: Family = Family {
    name: "kd_retinanet",
    images: &["astronaut", "exif_rot6"],
    config: "mmrazor::mmcompat/cwd_fpn_retina_tiny.py",
    checkpoint: "razor_mmdet/cwd_fpn_retina_tiny.pth",
    references: "razor_mmdet/inference/cwd_retina__",
    // No explicit scope: the distillation config's own `default_scope` (mmdet, from mmdet's
    // default_runtime.py) and the student's `cfg_path` package decide, as for users.
    explicit_scope: false,
    ..RETINANET
};

#[test]
fn kd_retinanet_resolves_to_the_student_through_the_mmrazor_adapter() {
    kd::check_resolves_to_the_student(&KD_RETINANET, "FpnTeacherDistill");
}

#[test]
fn kd_retinanet_never_builds_the_teacher() {
    kd::check_never_builds_the_teacher(&KD_RETINANET, "retinanet_tiny_teacher.py");
}

#[test]
fn kd_retinanet_network_input_and_raw_head_outputs_match_python() {
    KD_RETINANET.check_raw_outputs();
}

#[test]
fn kd_retinanet_detections_match_inference_detector() {
    KD_RETINANET.check_detections();
}

#[test]
fn kd_retinanet_detect_command_matches_inference_detector() {
    kd::check_detect_command(&KD_RETINANET, "FpnTeacherDistill");
}

/// The distillation config with a plain student checkpoint (what `mmcompat convert` or
/// MMRazor's own export writes): the student alone, no adapter needed, the same detections.
#[test]
fn kd_retinanet_config_runs_a_plain_student_checkpoint() {
    const PLAIN: Family = Family {
        checkpoint: "checkpoints/retinanet_tiny_mmdet.pth",
        references: "",
        ..KD_RETINANET
    };
    let inf = PLAIN.inferencer();
    assert_eq!(inf.distillation(), Some("FpnTeacherDistill"));
    assert!(inf.adapters().is_empty(), "{:?}", inf.adapters());
    // `name` names the references: the plain RetinaNet's.
    const AS_RETINANET: Family = Family {
        name: "retinanet",
        ..PLAIN
    };
    AS_RETINANET.check_detections();
    AS_RETINANET.check_detect_command();
}
