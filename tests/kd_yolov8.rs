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

use std::path::PathBuf;
use std::process::Command;

use mmcompat::inferencer::{ClassNamesSource, Detection, Inferencer};
use mmcompat::registry::checkpoint::Checkpoint;
use serde_json::Value;

use crate::inference::{assert_same_detections, raw_deviation, roots, source_image, RAW_TOL};
use crate::models::read_json;

const IMAGES: &[&str] = &["astronaut", "chelsea", "exif_rot6"];
const CONFIG: &str = "kd_nano_yolov8_neck.py";
const TEACHER_CONFIG: &str = "kd_nano_yolov8_teacher.py";
const CHECKPOINT: &str = "kd_nano_yolov8_neck.pth";
/// The adapter that unwraps an MMRazor distillation checkpoint (plugins/mmrazor).
const KD_ADAPTER: &str = "mmrazor.kd_student";
/// Classes of the fixture (the first 8 COCO names, written by the training run's dataset).
const FIXTURE_CLASSES: usize = 8;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (KD config inside the test config roots, KD checkpoint).
fn files() -> (PathBuf, PathBuf) {
    let config = roots().dirs("mmyolo")[0].join("mmcompat").join(CONFIG);
    (
        config,
        repo().join("tests/fixtures/checkpoints").join(CHECKPOINT),
    )
}

fn inferencer() -> Inferencer {
    let (config, weights) = files();
    Inferencer::builder()
        .config(&config)
        .weights(&weights)
        .scope("mmyolo")
        .device("cpu")
        .config_roots(roots())
        .build()
        .unwrap_or_else(|e| panic!("kd_yolov8: {e}"))
}

fn reference(image: &str) -> Value {
    read_json(&format!("inference/kd_yolov8/kd_yolov8__{image}.json"))
}

#[test]
fn kd_yolov8_resolves_to_the_student_through_the_mmrazor_adapter() {
    let inf = inferencer();
    assert_eq!(inf.distillation(), Some("FpnTeacherDistill"));
    assert_eq!(inf.scope(), "mmyolo");
    assert_eq!(inf.adapters(), [KD_ADAPTER]);
    let report = inf.load_report();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.coverage(), 100.0);
    assert_eq!(inf.class_names_source(), ClassNamesSource::Checkpoint);
    assert_eq!(inf.class_names().len(), FIXTURE_CLASSES);
}

/// The teacher is never built, proven as for the RTMDet distillation (tests/inference.rs): the
/// test config roots hold no teacher config, so nothing could have resolved `teacher.cfg_path`;
/// and the model built has exactly the student's names and shapes (`architecture.*` of the
/// checkpoint), which the twice-as-wide teacher's do not match.
#[test]
fn kd_yolov8_never_builds_the_teacher() {
    let (config, weights) = files();
    let overlay = repo().join("tests/fixtures/configs/overlay/mmyolo/mmcompat");
    let kd_text = std::fs::read_to_string(overlay.join(CONFIG)).expect("read the KD config");
    assert!(
        kd_text.contains(&format!("mmyolo::mmcompat/{TEACHER_CONFIG}"))
            && overlay.join(TEACHER_CONFIG).exists(),
        "the KD config names a teacher config that exists in the fixtures"
    );
    assert!(
        !config.with_file_name(TEACHER_CONFIG).exists(),
        "the test tree must not contain the teacher config"
    );

    let inf = inferencer();
    let ours = inf.detector().expected_keys();
    let ck = Checkpoint::open(&weights).expect("open the KD checkpoint");
    let state = ck.section("state_dict").expect("state_dict");
    let part = |prefix: &str| -> Vec<(String, Vec<i64>)> {
        state
            .tensors
            .iter()
            .filter_map(|(k, t)| {
                let name = k.strip_prefix(prefix)?;
                // BN's step counter: a training-only buffer our modules do not hold.
                if name.ends_with(".num_batches_tracked") {
                    return None;
                }
                Some((
                    name.to_string(),
                    t.shape.iter().map(|&d| d as i64).collect(),
                ))
            })
            .collect()
    };
    let (student, teacher) = (part("architecture."), part("teacher."));
    assert_eq!(ours, student, "the model built is the student");
    assert_eq!(
        teacher.len(),
        student.len(),
        "same module tree, other widths"
    );
    assert_ne!(
        ours, teacher,
        "the teacher's shapes differ from the student's"
    );
}

#[test]
fn kd_yolov8_network_input_and_raw_head_outputs_match_python() {
    // The generator's conditions: one thread (see `RAW_TOL` in tests/inference.rs).
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let result = std::panic::catch_unwind(|| {
        let inf = inferencer();
        let input_dir = repo().join("tests/fixtures/inference/kd_yolov8");
        IMAGES
            .iter()
            .map(|image| {
                let what = format!("kd_yolov8/{image}");
                raw_deviation(&what, &inf, image, &reference(image), &input_dir)
            })
            .fold(0f64, f64::max)
    });
    tch::set_num_threads(threads);
    let worst = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert!(
        worst <= RAW_TOL,
        "raw head outputs differ from Python by up to {worst:e} of their level's scale"
    );
}

#[test]
fn kd_yolov8_detections_match_inference_detector() {
    let inf = inferencer();
    for image in IMAGES {
        let r = reference(image);
        let dets = inf.infer(&source_image(image)).expect("infer");
        assert_same_detections(&format!("kd_yolov8/{image}"), &dets, &r["detections"]);
        for d in &dets {
            assert_eq!(d.class_name, inf.class_names()[d.label]);
        }
    }
}

/// `mmcompat -v detect --config <kd config> --weights <kd ckpt> --scope mmyolo --json`, as a user
/// runs it: the reference detections for every image, and the log names the distillation and the
/// mmrazor adapter chain.
#[test]
fn kd_yolov8_detect_command_matches_inference_detector() {
    let (config, weights) = files();
    let roots = roots();
    let mut args: Vec<String> = vec!["-v".into(), "detect".into(), "--config".into()];
    args.push(config.display().to_string());
    args.push("--weights".into());
    args.push(weights.display().to_string());
    args.extend(["--scope", "mmyolo", "--device", "cpu", "--json"].map(String::from));
    for pkg in ["mmyolo", "mmdet", "mmrazor"] {
        args.push("--config-root".into());
        args.push(format!("{pkg}={}", roots.dirs(pkg)[0].display()));
    }
    let images = repo().join("tests/fixtures/inference/images");
    for image in IMAGES {
        // As `source_image` reads it: OpenCV's decode of the EXIF JPEG.
        let file = if *image == "exif_rot6" {
            "exif_rot6.decoded.png".to_string()
        } else {
            format!("{image}.png")
        };
        args.push(images.join(file).display().to_string());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_mmcompat"))
        .args(&args)
        .current_dir(repo())
        .env_remove("MMCOMPAT_CONFIG_ROOTS")
        .env_remove("RUST_LOG")
        .env("XDG_CONFIG_HOME", repo().join("target/cli-test-no-xdg"))
        .output()
        .expect("run mmcompat");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mmcompat {args:?} failed:\n{stderr}");
    assert!(
        stderr.contains("building the student only") && stderr.contains("FpnTeacherDistill"),
        "{stderr}"
    );
    let chain = stderr
        .lines()
        .find(|l| l.contains("checkpoint adapters applied"))
        .unwrap_or_else(|| panic!("no adapter chain logged:\n{stderr}"));
    assert!(chain.contains(KD_ADAPTER), "{chain}");

    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), IMAGES.len());
    for (line, image) in lines.iter().zip(IMAGES) {
        let path = line["image"].as_str().expect("image");
        assert!(path.contains(image), "{path} vs {image} (sorted paths)");
        let dets: Vec<Detection> = line["detections"]
            .as_array()
            .expect("detections")
            .iter()
            .map(|d| {
                let b: Vec<f32> = d["bbox"]
                    .as_array()
                    .expect("bbox")
                    .iter()
                    .map(|v| v.as_f64().expect("coord") as f32)
                    .collect();
                Detection {
                    bbox: [b[0], b[1], b[2], b[3]],
                    score: d["score"].as_f64().expect("score") as f32,
                    label: d["label"].as_u64().expect("label") as usize,
                    class_name: d["class"].as_str().expect("class").to_string(),
                }
            })
            .collect();
        let r = reference(image);
        assert_same_detections(
            &format!("detect kd_yolov8/{image}"),
            &dets,
            &r["detections"],
        );
    }
}
