//! Faster R-CNN (mmdet 3.3.0: `FasterRCNN` + `ResNet` + `FPN` + `RPNHead` + `StandardRoIHead` with
//! `SingleRoIExtractor`/`RoIAlign` and `Shared2FCBBoxHead`) against the real stack
//! (tests/fixtures/generate/make_faster_rcnn_refs.py):
//! * `models/faster_rcnn_sizes.json`: the shipped `faster-rcnn_r50_fpn_1x_coco` config's merged
//!   `model` dict and the real model's `state_dict()` names and shapes — ours equal them, in order;
//! * `checkpoints/faster_rcnn_tiny_mmdet.pth` (overlay config `mmcompat/faster_rcnn_tiny_mmdet.py`:
//!   ResNet-18 at base_channels 8, FPN/RPN/RoI features 16 wide, fc 32, 8 classes) and
//!   `inference/faster_rcnn/faster_rcnn__<image>.json` from `init_detector` +
//!   `inference_detector`: the network input (by sha256), the RPN's raw outputs within `RAW_TOL`
//!   at 1 thread, the RPN proposals (count, the first 40 within 1e-3 px and 1e-5 in score, sums
//!   of all) and the detections (count, labels, boxes within 0.1 px, scores within 1e-4) through
//!   `Inferencer` and `mmcompat detect --json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mmcompat::inferencer::image_meta;
use mmcompat::models::build_detector;
use serde_json::Value;
use tch::Device;

use crate::cli::ok_stdout;
use crate::family::{Family, NetworkInput, MMYOLO};
use crate::inference::source_image;
use crate::models::read_json;

const SCOPE: &str = "mmdet";
const SHIPPED: &str = "mmdet/faster_rcnn_r50";

pub(crate) const FASTER_RCNN: Family = Family {
    name: "faster_rcnn",
    images: &["astronaut", "chelsea", "coffee", "exif_rot6"],
    sizes: &["faster_rcnn_r50"],
    fixture_classes: 8,
    registry_types: &[
        "FasterRCNN",
        "RPNHead",
        "StandardRoIHead",
        "SingleRoIExtractor",
        "Shared2FCBBoxHead",
        "ConvFCBBoxHead",
    ],
    scope: SCOPE,
    fixture: "faster_rcnn_tiny_mmdet",
    input: NetworkInput::Sha256,
    // spec::models::{two_stage, roi_head}
    registry_module: "spec::models::",
    ..MMYOLO
};

fn shipped() -> Value {
    FASTER_RCNN.sizes_json()[SHIPPED].clone()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// The shipped config builds (zero weights) with exactly the real model's `state_dict()` names
/// and shapes, in order: RPN `rpn_conv`/`rpn_cls`/`rpn_reg` (3 anchors), then the box head's
/// `fc_cls` (81) and `fc_reg` (320) before `shared_fcs` (12544 → 1024 → 1024), as
/// `BBoxHead.__init__` registers them first.
#[test]
fn faster_rcnn_expected_keys_equal_the_real_model() {
    FASTER_RCNN.check_expected_keys();
    FASTER_RCNN.check_shipped_configs("mmdet.FasterRCNN", &[295]);
}

/// Network input, metainfo and the RPN's raw outputs against the references, then the RPN
/// proposals (`rpn_head.predict(rescale=False)`), at 1 thread (the generator's condition).
#[test]
fn faster_rcnn_rpn_outputs_and_proposals_match_python() {
    // The network input (sha256, shape, img_shape) and the RPN's raw outputs (the two-stage
    // head's `forward`), as for every family.
    FASTER_RCNN.check_raw_outputs();
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let result = std::panic::catch_unwind(|| {
        let inf = FASTER_RCNN.inferencer();
        for image in FASTER_RCNN.images {
            let what = format!("faster_rcnn/{image}");
            let r = FASTER_RCNN.reference(image);
            let pre = inf.preprocess(&source_image(image)).expect("pipeline");
            let outs = inf.head_outputs(&[&pre]).expect("forward");
            let props = inf
                .detector()
                .proposals(&outs, &[image_meta(&pre)], inf.test_cfg())
                .expect("a two-stage detector has proposals")
                .expect("proposals");
            let (p, rp) = (&props[0], &r["proposals"]);
            assert_eq!(
                p.scores.len() as u64,
                rp["count"].as_u64().expect("count"),
                "{what}: proposal count"
            );
            let scores = f32s(&rp["scores"]);
            let (mut worst_box, mut worst_score) = (0f32, 0f32);
            for (k, s) in scores.iter().enumerate() {
                let b = f32s(&rp["bboxes"][k]);
                let ours = p.bboxes[k];
                let box_dev = (0..4).map(|i| (ours[i] - b[i]).abs()).fold(0f32, f32::max);
                worst_box = worst_box.max(box_dev);
                worst_score = worst_score.max((p.scores[k] - s).abs());
                assert!(
                    (p.scores[k] - s).abs() <= 1e-5 && box_dev <= 1e-3,
                    "{what}: proposal #{k}: ours {:?} {}, theirs {b:?} {s}",
                    ours,
                    p.scores[k]
                );
            }
            eprintln!(
                "{what}: first {} proposals within {worst_box:e} px, scores within {worst_score:e}",
                scores.len()
            );
            let n = p.scores.len() as f64;
            let bbox_sum: f64 = p.bboxes.iter().flatten().map(|&v| v as f64).sum();
            let score_sum: f64 = p.scores.iter().map(|&v| v as f64).sum();
            let (rb, rs) = (
                rp["bbox_sum"].as_f64().expect("sum"),
                rp["score_sum"].as_f64().expect("sum"),
            );
            assert!(
                (bbox_sum - rb).abs() <= 4.0 * n * 1e-3 && (score_sum - rs).abs() <= n * 1e-5,
                "{what}: proposal sums: boxes {bbox_sum} vs {rb}, scores {score_sum} vs {rs}"
            );
        }
    });
    tch::set_num_threads(threads);
    result.unwrap_or_else(|p| std::panic::resume_unwind(p));
}

/// Detections through `Inferencer`: proposals → RoIAlign by level → Shared2FC box head →
/// softmax, class-specific decode, rescale, multiclass NMS, `max_per_img=100`.
#[test]
fn faster_rcnn_detections_match_inference_detector() {
    FASTER_RCNN.check_detections();
}

/// `mmcompat detect --config <overlay> --weights <ckpt> --scope mmdet --json` on every image.
#[test]
fn faster_rcnn_detect_command_matches_inference_detector() {
    FASTER_RCNN.check_detect_command();
}

fn build_error(cfg: &Value, what: &str) -> String {
    build_detector(cfg, SCOPE, Device::Cpu)
        .expect_err(what)
        .to_string()
}

/// What the RoI head does not run (a mask branch, a conv box head, another RoI layer) and what
/// `TwoStageDetector.__init__` needs (`test_cfg.rcnn`) are refused by the spec stage, naming the
/// key path and what to do.
#[test]
fn faster_rcnn_config_mistakes_name_key_and_fix() {
    let base = shipped()["model"].clone();

    let mut cfg = base.clone();
    cfg["roi_head"]["mask_head"] = serde_json::json!({"type": "FCNMaskHead", "num_convs": 4});
    let msg = build_error(&cfg, "mask head");
    assert!(
        msg.contains("model.roi_head.mask_head")
            && msg.contains("FCNMaskHead")
            && msg.contains("Mask R-CNN"),
        "{msg}"
    );

    let mut cfg = base.clone();
    cfg["roi_head"]["bbox_head"]["type"] = "Shared4Conv1FCBBoxHead".into();
    let msg = build_error(&cfg, "conv box head");
    assert!(
        msg.contains("model.roi_head.bbox_head") && msg.contains("Shared4Conv1FCBBoxHead"),
        "{msg}"
    );

    let mut cfg = base.clone();
    cfg["roi_head"]["bbox_roi_extractor"]["roi_layer"]["type"] = "RoIPool".into();
    let msg = build_error(&cfg, "RoIPool");
    assert!(
        msg.contains("model.roi_head.bbox_roi_extractor.roi_layer") && msg.contains("RoIAlign"),
        "{msg}"
    );

    let mut cfg = base.clone();
    cfg["test_cfg"]
        .as_object_mut()
        .expect("test_cfg")
        .remove("rcnn");
    let msg = build_error(&cfg, "no rcnn test_cfg");
    assert!(msg.contains("model.test_cfg.rcnn"), "{msg}");

    // The per-stage test_cfg sections are read like any test_cfg, errors naming the nested key.
    let mut test_cfg = base["test_cfg"].clone();
    let parsed = mmcompat_registry::spec::TestCfg::parse(&test_cfg, "model.test_cfg").expect("ok");
    let (rpn, rcnn) = (parsed.rpn.expect("rpn"), parsed.rcnn.expect("rcnn"));
    assert_eq!((rpn.nms_pre, rpn.max_per_img), (Some(1000), Some(1000)));
    assert_eq!(rpn.nms.map(|n| n.iou_threshold), Some(0.7));
    assert_eq!((rcnn.score_thr, rcnn.max_per_img), (Some(0.05), Some(100)));
    test_cfg["rcnn"]["score_th"] = 0.3.into();
    let msg = mmcompat_registry::spec::TestCfg::parse(&test_cfg, "model.test_cfg")
        .expect_err("misspelt rcnn key")
        .to_string();
    assert!(
        msg.contains("model.test_cfg.rcnn") && msg.contains("score_thr"),
        "{msg}"
    );

    // A misspelt box-head keyword, as Python's TypeError.
    let mut cfg = base;
    cfg["roi_head"]["bbox_head"]["fc_out_channel"] = 1024.into();
    let msg = build_error(&cfg, "misspelt key");
    assert!(
        msg.contains("fc_out_channel") && msg.contains("fc_out_channels"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// MMRazor FBKD (`distill/mmdet/fbkd/fbkd_fpn_faster-rcnn_r101_faster-rcnn_r50_1x_coco.py`) over the
// tiny student: overlay `mmrazor::mmcompat/fbkd_fpn_frcnn_tiny.py` (SingleTeacherDistill,
// FBKDStudent/TeacherConnector pairs). `models/faster_rcnn_fbkd_keys.json` is the real algorithm's
// state_dict layout (names, shapes, dtypes, in order); the generator checked that the distillation
// config with such a checkpoint detects bitwise as the student. Committing a real one would hold
// the student twice (+1 MB), so the test writes it: the layout's tensors, `architecture.*` and
// `teacher.*` from the student checkpoint (the teacher config is the student's), the connectors
// zero (they are dropped unread).

fn fbkd_layout() -> Value {
    read_json("models/faster_rcnn_fbkd_keys.json")
}

/// Writes a checkpoint with the real FBKD layout into `dir` (see above).
fn fbkd_checkpoint(dir: &std::path::Path) -> PathBuf {
    use mmcompat_registry::checkpoint::writer::{write_pth, TensorData};
    use mmcompat_registry::checkpoint::Checkpoint;
    use mmcompat_registry::dtype::DType;
    let plain = Checkpoint::open(FASTER_RCNN.files().1).expect("student checkpoint");
    let by_name: BTreeMap<String, _> = plain.all_tensors().into_iter().collect();
    let layout = fbkd_layout();
    let mut tensors = Vec::new();
    for e in layout["state_dict"].as_array().expect("state_dict") {
        let name = e[0].as_str().expect("name").to_string();
        let shape: Vec<usize> = e[1]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .collect();
        let student_key = name
            .strip_prefix("architecture.")
            .or_else(|| name.strip_prefix("teacher."));
        let data = match student_key {
            Some(k) => {
                let t = by_name[&format!("state_dict.{k}")];
                assert_eq!(t.shape, shape, "{name}");
                let bytes = plain.tensor_bytes(t).expect("bytes").into_owned();
                TensorData::new(t.dtype, shape, bytes)
            }
            None => {
                let dtype = DType::parse(e[2].as_str().expect("dtype")).expect("known dtype");
                let n: usize = shape.iter().product();
                TensorData::new(dtype, shape, vec![0u8; dtype.size() * n])
            }
        };
        tensors.push((name, data));
    }
    let path = dir.join("fbkd_fpn_frcnn_tiny.pth");
    write_pth(&path, &tensors, Some(&plain.meta_json())).expect("write");
    path
}

/// The real layout: `architecture.*` is exactly our student's state dict (plus BN counters),
/// beside `teacher.*` and `distiller.connectors.*` (4 student + 4 teacher connectors).
#[test]
fn faster_rcnn_fbkd_layout_holds_our_student() {
    let layout = fbkd_layout();
    assert_eq!(layout["algorithm"], "SingleTeacherDistill");
    let groups = &layout["groups"];
    assert!(
        groups["teacher"].as_u64() > Some(0) && groups["distiller.connectors"].as_u64() > Some(0),
        "{groups}"
    );
    let student: Vec<(String, Vec<i64>)> = layout["state_dict"]
        .as_array()
        .expect("state_dict")
        .iter()
        .filter_map(|e| {
            let name = e[0].as_str()?.strip_prefix("architecture.")?;
            let shape = e[1].as_array()?.iter().filter_map(|d| d.as_i64()).collect();
            (!name.ends_with("num_batches_tracked")).then(|| (name.to_string(), shape))
        })
        .collect();
    assert_eq!(FASTER_RCNN.inferencer().detector().expected_keys(), student);
}

/// `mmcompat detect --config <FBKD config> --weights <FBKD checkpoint>` runs the student alone:
/// the plain student's detections.
#[test]
fn faster_rcnn_fbkd_detect_equals_the_plain_student() {
    const FBKD: Family = Family {
        images: &["astronaut", "exif_rot6"],
        config: "mmrazor::mmcompat/fbkd_fpn_frcnn_tiny.py",
        // The distillation config's default_scope decides, as for users.
        explicit_scope: false,
        ..FASTER_RCNN
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let kd = fbkd_checkpoint(dir.path());
    let (config, _) = FBKD.files();
    let log = FBKD.check_detect_command_on(&config, &kd);
    assert!(log.contains("SingleTeacherDistill"), "{log}");
}

/// `mmcompat convert` of the FBKD checkpoint writes exactly the student checkpoint's state dict
/// (names, order, bytes), which the real `init_detector` loads strictly (the generator loads it
/// with `strict=True`); teacher and connectors are gone.
#[test]
fn faster_rcnn_fbkd_convert_writes_the_student() {
    use mmcompat_registry::checkpoint::Checkpoint;
    let dir = tempfile::tempdir().expect("tempdir");
    let kd = fbkd_checkpoint(dir.path());
    let out = dir.path().join("student.pth");
    let report = ok_stdout(&[
        "convert",
        kd.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert!(report.contains("mmrazor.kd_student"), "{report}");
    let (ours, plain) = (
        Checkpoint::open(&out).expect("converted"),
        Checkpoint::open(FASTER_RCNN.files().1).expect("student"),
    );
    let names = |c: &Checkpoint| -> Vec<String> {
        c.all_tensors()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with("state_dict."))
            .collect()
    };
    assert_eq!(names(&ours), names(&plain));
    let theirs: BTreeMap<String, _> = plain.all_tensors().into_iter().collect();
    for (name, t) in ours.all_tensors() {
        if let Some(p) = theirs.get(&name) {
            assert_eq!(
                ours.tensor_bytes(t).expect("bytes"),
                plain.tensor_bytes(p).expect("bytes"),
                "{name}"
            );
        }
    }
}

/// `mmcompat registry --scope mmdet` lists the two-stage types, declared in their spec modules.
#[test]
fn faster_rcnn_types_are_listed_by_the_registry_command() {
    FASTER_RCNN.check_registry_listing();
}
