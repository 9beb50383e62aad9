//! A distilled YOLOv8 (issue 13): the MMRazor `FpnTeacherDistill` config
//! `mmcompat/kd_nano_yolov8_neck.py` (teacher a reduced YOLOv8-s, student a reduced YOLOv8-n,
//! ChannelWiseDivergence on the neck, written like mmyolo's `kd_tiny_rtmdet_s_neck_300e_coco.py`)
//! and the checkpoint mmengine's Runner wrote after two training iterations with the real MMRazor
//! (`checkpoints/kd_nano_yolov8_neck.pth`: student, teacher, connectors, EMA copy, optimizer
//! state), both from tests/fixtures/generate/make_kd_yolov8_refs.py. Run as users run it — KD
//! config + KD checkpoint + scope mmyolo — ours must resolve the student, unwrap the checkpoint
//! through the mmrazor adapter, never build the teacher, and give what the real stack gives for
//! the student (`inference/kd_yolov8/kd_yolov8__<image>.json`, from `init_detector` +
//! `inference_detector` on the extracted student; the generator also checked that the KD config
//! gives bitwise the same there): the same network input, raw head outputs within `RAW_TOL` of
//! their level's scale, and the same detections (count, labels, boxes within 0.1 px, scores
//! within 1e-4), through `Inferencer` and through `mmcompat detect`.

use crate::family::{Family, MMYOLO};
use crate::kd;

const KD_YOLOV8: Family = Family {
    name: "kd_yolov8",
    images: &["astronaut", "chelsea", "exif_rot6"],
    config: "mmyolo::mmcompat/kd_nano_yolov8_neck.py",
    checkpoint: "checkpoints/kd_nano_yolov8_neck.pth",
    // The first 8 COCO names, written by the training run's dataset.
    fixture_classes: 8,
    ..MMYOLO
};

#[test]
fn kd_yolov8_resolves_to_the_student_through_the_mmrazor_adapter() {
    kd::check_resolves_to_the_student(&KD_YOLOV8, "FpnTeacherDistill");
}

/// Teacher and student share the module tree, other widths (see [`kd::check_never_builds_the_teacher`]).
#[test]
fn kd_yolov8_never_builds_the_teacher() {
    kd::check_never_builds_the_teacher(&KD_YOLOV8, "kd_nano_yolov8_teacher.py");
}

#[test]
fn kd_yolov8_network_input_and_raw_head_outputs_match_python() {
    KD_YOLOV8.check_raw_outputs();
}

#[test]
fn kd_yolov8_detections_match_inference_detector() {
    KD_YOLOV8.check_detections();
}

/// `mmcompat -v detect --config <kd config> --weights <kd ckpt> --scope mmyolo --json`, as a user
/// runs it: the reference detections for every image, and the log names the distillation and the
/// mmrazor adapter chain.
#[test]
fn kd_yolov8_detect_command_matches_inference_detector() {
    kd::check_detect_command(&KD_YOLOV8, "FpnTeacherDistill");
}
