//! PPYOLOE / PPYOLOE+ (mmyolo 0.6.0: `PPYOLOECSPResNet` + `PPYOLOECSPPAFPN` +
//! `PPYOLOEHead`/`PPYOLOEHeadModule`, test pipeline `mmdet.FixShapeResize(keep_ratio=False,
//! interpolation='bicubic')`, `PPYOLOEDetDataPreprocessor`) against the real stack
//! (tests/fixtures/generate/make_ppyoloe_refs.py), through the shared harness of tests/family.rs:
//! * `models/ppyoloe_sizes.json`: the shipped ppyoloe_plus_s and ppyoloe_s configs' merged
//!   `model` dicts and the real models' `state_dict()` names and shapes;
//! * `checkpoints/ppyoloe_nano_mmyolo.pth` (overlay config `mmcompat/ppyoloe_nano_mmyolo.py`,
//!   192×160 input) and `inference/ppyoloe/ppyoloe__<image>.json` from `init_detector` +
//!   `inference_detector`: raw head outputs within `RAW_TOL` of their level's scale on the
//!   reference's network input, and the same detections (count, labels, boxes within 0.1 px,
//!   scores within 1e-4) through `Inferencer` and `mmcompat detect --json`, end to end;
//! * the bicubic resize against cv2 (IPP, see src/preprocess/resize_cubic.rs): the fixture's
//!   network inputs pixel for pixel, and `inference/ppyoloe/cv2/bicubic_resize.json` (per-row
//!   hashes of cv2's 640×640 and 1000×333 outputs) row for row, each within a measured bound.

use mmcompat::inferencer::Detection;
use mmcompat::preprocess::{decode_image_file, resize, Interpolation};
use serde_json::Value;

use crate::family::{assert_unknown_key, build_error_message, Family, MMYOLO};
use crate::inference::{assert_same_detections, raw_deviation_on, source_image, RAW_TOL};
use crate::models::read_json;
use crate::preprocess::sha256_hex;

const PPYOLOE: Family = Family {
    name: "ppyoloe",
    images: &["astronaut", "chelsea", "coffee", "exif_rot6"],
    sizes: &["ppyoloe_plus_s", "ppyoloe_s"],
    fixture_classes: 8,
    registry_types: &[
        "PPYOLOECSPResNet",
        "PPYOLOECSPPAFPN",
        "PPYOLOEHead",
        "PPYOLOEHeadModule",
    ],
    ..MMYOLO
};

/// Our bicubic resize is a float model of IPP's closed-source `ippiResizeCubic` (see
/// src/preprocess/resize_cubic.rs): per image, at most this many bytes may differ from cv2's
/// output, each by 1 (measured on the fixture photographs: 0-3 at 192×160).
const MAX_CUBIC_BYTES_OFF: usize = 4;
/// ... and at 640×640 / 1000×333, at most this many output rows (measured: up to 7).
const MAX_CUBIC_ROWS_OFF: usize = 10;

#[test]
fn ppyoloe_expected_keys_equal_the_real_models() {
    PPYOLOE.check_expected_keys();
}

/// The network input of each photograph vs the reference's (cv2 + IPP bicubic): a few bytes
/// may differ by 1; the raw head outputs are then compared on the reference's own input, at 1
/// thread, so that they measure the model alone.
#[test]
fn ppyoloe_network_input_and_raw_head_outputs_match_python() {
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let result = std::panic::catch_unwind(|| {
        let inf = PPYOLOE.inferencer();
        let report = inf.load_report();
        assert!(report.is_complete(), "{report}");
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/inference/ppyoloe");
        let mut worst = 0f64;
        for image in PPYOLOE.images {
            let what = format!("ppyoloe/{image}");
            let r = PPYOLOE.reference(image);
            let mut pre = inf.preprocess(&source_image(image)).expect("pipeline");
            let expected = decode_image_file(&dir.join(r["input_png"].as_str().expect("png")))
                .expect("input png");
            assert_eq!(
                (pre.image.height, pre.image.width),
                (expected.height, expected.width)
            );
            let off = bytes_off_by_one(&what, &pre.image.data, &expected.data);
            eprintln!("{what}: {off} network-input bytes differ by 1 from cv2's bicubic");
            assert!(off <= MAX_CUBIC_BYTES_OFF, "{what}: {off} bytes differ");
            pre.image = expected;
            worst = worst.max(raw_deviation_on(&what, &inf, &pre, &r));
        }
        worst
    });
    tch::set_num_threads(threads);
    let worst = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert!(
        worst <= RAW_TOL,
        "raw head outputs differ from Python by up to {worst:e} of their level's scale"
    );
}

/// How many bytes differ; panics if one differs by more than 1.
fn bytes_off_by_one(what: &str, ours: &[u8], theirs: &[u8]) -> usize {
    assert_eq!(ours.len(), theirs.len(), "{what}");
    let mut off = 0;
    for (i, (&a, &b)) in ours.iter().zip(theirs).enumerate() {
        if a != b {
            assert_eq!(a.abs_diff(b), 1, "{what}: byte {i}: ours {a}, cv2 {b}");
            off += 1;
        }
    }
    off
}

/// cv2's bicubic resize at the shipped 640×640 and at 1000×333, row by row.
#[test]
fn ppyoloe_bicubic_resize_matches_cv2_rows() {
    let refs = read_json("inference/ppyoloe/cv2/bicubic_resize.json");
    assert_eq!(
        refs["ipp"],
        Value::Bool(true),
        "references from IPP-enabled OpenCV"
    );
    let cases = refs["resizes"].as_array().expect("resizes");
    assert_eq!(cases.len(), 8);
    let (mut exact, mut worst) = (0, 0);
    for case in cases {
        let image = case["image"].as_str().expect("image");
        let (w, h) = (
            case["width"].as_u64().expect("w") as usize,
            case["height"].as_u64().expect("h") as usize,
        );
        let out = resize(&source_image(image), w, h, Interpolation::Cubic);
        assert_eq!((out.width, out.height), (w, h));
        if sha256_hex(&out.data) == case["sha256"].as_str().expect("sha") {
            exact += 1;
        }
        let rows = case["row_sha256_8"].as_array().expect("rows");
        assert_eq!(rows.len(), h);
        let off = rows
            .iter()
            .enumerate()
            .filter(|(y, r)| {
                let row = &out.data[y * w * 3..(y + 1) * w * 3];
                sha256_hex(row)[..8] != *r.as_str().expect("row hash")
            })
            .count();
        eprintln!("{image} {w}x{h}: {off} of {h} rows differ from cv2");
        worst = worst.max(off);
    }
    eprintln!(
        "bicubic: {exact} of {} outputs identical to cv2's",
        cases.len()
    );
    assert!(worst <= MAX_CUBIC_ROWS_OFF, "up to {worst} rows differ");
}

/// The photographs whose network input our bicubic resize reproduces byte for byte (the other
/// two differ in 1-3 bytes, which moves detections near the 300-detection cap: see
/// `ppyoloe_detections_on_the_reference_input_match_inference_detector`).
const PPYOLOE_EXACT_INPUT: Family = Family {
    images: &["coffee", "exif_rot6"],
    ..PPYOLOE
};

/// End to end (decode, bicubic resize, forward, post-processing) through `Inferencer`.
#[test]
fn ppyoloe_detections_match_inference_detector() {
    PPYOLOE_EXACT_INPUT.check_detections();
}

/// Forward and post-processing on the reference's own network input, every photograph: the
/// same detections as `inference_detector`.
#[test]
fn ppyoloe_detections_on_the_reference_input_match_inference_detector() {
    let inf = PPYOLOE.inferencer();
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inference/ppyoloe");
    for image in PPYOLOE.images {
        let r = PPYOLOE.reference(image);
        let mut pre = inf.preprocess(&source_image(image)).expect("pipeline");
        pre.image =
            decode_image_file(&dir.join(r["input_png"].as_str().expect("png"))).expect("input png");
        let outs = inf.head_outputs(&[&pre]).expect("forward");
        let raw = inf.postprocess(&outs, &[&pre]).expect("postprocess");
        let raw = &raw[0];
        let mut dets: Vec<Detection> = (raw.bboxes.iter().zip(&raw.scores).zip(&raw.labels))
            .map(|((&bbox, &score), &label)| Detection {
                bbox,
                score,
                label,
                class_name: inf.class_name(label),
            })
            .collect();
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        assert_same_detections(&format!("ppyoloe/{image}"), &dets, &r["detections"]);
    }
}

#[test]
fn ppyoloe_detect_command_matches_inference_detector() {
    PPYOLOE_EXACT_INPUT.check_detect_command();
}

#[test]
fn ppyoloe_types_are_listed_by_the_registry_command() {
    PPYOLOE.check_registry_listing();
}

/// The shipped non-plus config: `use_alpha=False` blocks have no `alpha`, ImageNet mean/std.
#[test]
fn ppyoloe_s_blocks_have_no_alpha() {
    let sizes = PPYOLOE.sizes_json();
    let keys = |size: &str| crate::models::decode_keys(&sizes[format!("mmyolo/{size}")]["keys"]);
    let alphas = |size: &str| {
        keys(size)
            .iter()
            .filter(|(k, _)| k.ends_with(".alpha"))
            .count()
    };
    // PPYOLOE+ s: one alpha per backbone block, round(n * 0.33) = 1 + 2 + 2 + 1.
    assert_eq!(alphas("ppyoloe_plus_s"), 6);
    assert_eq!(alphas("ppyoloe_s"), 0);
}

/// What Python's constructors reject is rejected by the spec stage, naming key, type and path.
#[test]
fn ppyoloe_config_mistakes_name_key_and_type() {
    let model = PPYOLOE.model("ppyoloe_plus_s");

    // A YOLOv5Head keyword that PPYOLOEHead.__init__ does not take.
    let mut cfg = model.clone();
    cfg["bbox_head"]["prior_match_thr"] = 4.0.into();
    assert_unknown_key(
        &cfg,
        ("prior_match_thr", "mmyolo.PPYOLOEHead", "model.bbox_head"),
    );

    // A misspelt PPYOLOEBasicBlock keyword in block_cfg.
    let mut cfg = model.clone();
    cfg["backbone"]["block_cfg"] =
        serde_json::json!({"type": "PPYOLOEBasicBlock", "use_alhpa": true});
    let msg = build_error_message(&cfg, "block_cfg key");
    assert!(
        msg.contains("model.backbone.block_cfg") && msg.contains("use_alhpa"),
        "{msg}"
    );

    // Another block type than PPYOLOEBasicBlock.
    let mut cfg = model.clone();
    cfg["neck"]["block_cfg"] = serde_json::json!({"type": "RepVGGBlock"});
    let msg = build_error_message(&cfg, "block type");
    assert!(
        msg.contains("model.neck.block_cfg.type") && msg.contains("RepVGGBlock"),
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

    // A width whose stride-2 CSPResLayer has an odd middle width (upstream: a conv2d shape
    // RuntimeError in the first forward; here: at build time, naming the key).
    let mut cfg = model;
    cfg["backbone"]["widen_factor"] = 0.03125.into();
    let msg = build_error_message(&cfg, "odd width");
    assert!(
        msg.contains("model.backbone.widen_factor") && msg.contains("CSPResLayer"),
        "{msg}"
    );
}

/// `FixShapeResize` options mmcompat does not reproduce are refused before any weight is read.
#[test]
fn ppyoloe_fix_shape_resize_options_are_checked() {
    use mmcompat::registry::spec::pipeline::{TestPipeline, Transform};
    let parse = |step: Value| TestPipeline::parse(&Value::Array(vec![step]), "pipeline");
    let ok = parse(
        serde_json::json!({"type": "mmdet.FixShapeResize", "width": 640,
        "height": 480, "keep_ratio": false, "interpolation": "bicubic"}),
    )
    .expect("the shipped step");
    assert_eq!(
        ok.steps,
        [Transform::FixShapeResize {
            width: 640,
            height: 480,
            interpolation: Interpolation::Cubic
        }]
    );
    for (step, key) in [
        (
            serde_json::json!({"type": "FixShapeResize", "width": 640, "height": 640,
                "keep_ratio": true}),
            "pipeline[0].keep_ratio",
        ),
        (
            serde_json::json!({"type": "FixShapeResize", "width": 640}),
            "pipeline[0].height",
        ),
        (
            serde_json::json!({"type": "FixShapeResize", "width": 640, "height": 640,
                "interpolation": "lanczos"}),
            "pipeline[0].interpolation",
        ),
    ] {
        let msg = parse(step).expect_err(key).to_string();
        assert!(msg.contains(key), "{msg}");
    }
}
