//! YOLOv8 (mmyolo 0.6.0: `YOLOv8CSPDarknet` + `YOLOv8PAFPN` + `YOLOv8Head`/`YOLOv8HeadModule`)
//! against the real stack (tests/fixtures/generate/make_yolov8_refs.py):
//! * `models/yolov8_sizes.json`: the shipped yolov8_n and yolov8_s configs' merged `model` dicts
//!   and the real models' `state_dict()` names and shapes — our expected keys must equal them, in
//!   order;
//! * `checkpoints/yolov8_nano_mmyolo.pth` (overlay config `mmcompat/yolov8_nano_mmyolo.py`) and
//!   `inference/yolov8/yolov8__<image>.json` from `init_detector` + `inference_detector`: the same
//!   network input, raw head outputs within 1e-4 of their level's scale (`RAW_TOL`), and the same
//!   detections (count, labels, boxes within 0.1 px, scores within 1e-4), through `Inferencer`
//!   and through `mmcompat detect --json`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use mmcompat::inferencer::{ClassNamesSource, Detection, Inferencer};
use mmcompat::models::{build_detector, ModelError};
use serde_json::Value;
use tch::Device;

use crate::inference::{assert_same_detections, raw_deviation, roots, source_image, RAW_TOL};
use crate::models::decode_keys;

const IMAGES: &[&str] = &["astronaut", "chelsea", "coffee", "exif_rot6"];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The reference of `init_detector` + `inference_detector` on `image`.
fn reference(image: &str) -> Value {
    read_json(&fixtures().join(format!("inference/yolov8/yolov8__{image}.json")))
}

/// (config, checkpoint) of the fixture, the config inside the test config roots of
/// tests/inference.rs (shipped trees + the overlay's `mmcompat/` files).
fn files() -> (PathBuf, PathBuf) {
    let config = roots().dirs("mmyolo")[0].join("mmcompat/yolov8_nano_mmyolo.py");
    (
        config,
        fixtures().join("checkpoints/yolov8_nano_mmyolo.pth"),
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
        .unwrap_or_else(|e| panic!("yolov8: {e}"))
}

#[test]
fn yolov8_expected_keys_equal_the_real_models() {
    let sizes = read_json(&fixtures().join("models/yolov8_sizes.json"));
    let sizes = sizes.as_object().expect("object");
    assert_eq!(sizes.len(), 2, "yolov8_n and yolov8_s");
    for (name, entry) in sizes {
        let det = build_detector(&entry["model"], "mmyolo", Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let theirs = decode_keys(&entry["keys"]);
        let ours = det.expected_keys();
        let (o, t): (BTreeMap<_, _>, BTreeMap<_, _>) = (
            ours.iter().cloned().collect(),
            theirs.iter().cloned().collect(),
        );
        let missing: Vec<_> = t.keys().filter(|k| !o.contains_key(*k)).collect();
        let extra: Vec<_> = o.keys().filter(|k| !t.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: missing {missing:?}, extra {extra:?}"
        );
        for (k, shape) in &t {
            assert_eq!(&o[k], shape, "{name}: shape of {k}");
        }
        assert_eq!(
            ours, theirs,
            "{name}: key order (module registration order)"
        );
        assert_eq!(det.num_classes(), 80, "{name}");
    }
}

/// Raw head outputs of every image vs the references, in units of each level's scale
/// (`RAW_TOL`, see tests/inference.rs), under the generator's conditions (1 thread).
#[test]
fn yolov8_network_input_and_raw_head_outputs_match_python() {
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let result = std::panic::catch_unwind(raw_outputs_worst);
    tch::set_num_threads(threads);
    let overall = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert!(
        overall <= RAW_TOL,
        "raw head outputs differ from Python by up to {overall:e} of their level's scale"
    );
}

fn raw_outputs_worst() -> f64 {
    let inf = inferencer();
    let report = inf.load_report();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.coverage(), 100.0);
    let input_dir = fixtures().join("inference/yolov8");
    IMAGES
        .iter()
        .map(|image| {
            raw_deviation(
                &format!("yolov8/{image}"),
                &inf,
                image,
                &reference(image),
                &input_dir,
            )
        })
        .fold(0f64, f64::max)
}

#[test]
fn yolov8_detections_match_inference_detector() {
    let inf = inferencer();
    assert_eq!(inf.class_names_source(), ClassNamesSource::Checkpoint);
    assert_eq!(inf.class_names().len(), 8, "the fixture's 8 classes");
    for image in IMAGES {
        let r = reference(image);
        let dets = inf.infer(&source_image(image)).expect("infer");
        assert_same_detections(&format!("yolov8/{image}"), &dets, &r["detections"]);
        for d in &dets {
            assert_eq!(d.class_name, inf.class_names()[d.label]);
        }
    }
}

/// `mmcompat detect --config <config> --weights <ckpt> --scope mmyolo --json`, as a user runs it.
#[test]
fn yolov8_detect_command_matches_inference_detector() {
    let (config, weights) = files();
    let roots = roots();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mmcompat"));
    cmd.arg("detect")
        .arg("--config")
        .arg(&config)
        .arg("--weights")
        .arg(&weights)
        .args(["--scope", "mmyolo", "--device", "cpu", "--json"]);
    for pkg in ["mmyolo", "mmdet", "mmrazor"] {
        let root = format!("{pkg}={}", roots.dirs(pkg)[0].display());
        cmd.arg("--config-root").arg(root);
    }
    let images = fixtures().join("inference/images");
    for image in IMAGES {
        let file = if *image == "exif_rot6" {
            "exif_rot6.decoded.png".to_string()
        } else {
            format!("{image}.png")
        };
        cmd.arg(images.join(file));
    }
    let out = cmd
        .env_remove("MMCOMPAT_CONFIG_ROOTS")
        .env("XDG_CONFIG_HOME", fixtures().join("no-xdg-config"))
        .output()
        .expect("run mmcompat");
    assert!(
        out.status.success(),
        "mmcompat detect failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
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
        assert_same_detections(&format!("detect yolov8/{image}"), &dets, &r["detections"]);
    }
}

#[test]
fn yolov8_types_are_listed_by_the_registry_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_mmcompat"))
        .args(["registry", "--scope", "mmyolo"])
        .env("XDG_CONFIG_HOME", fixtures().join("no-xdg-config"))
        .output()
        .expect("run mmcompat");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for name in [
        "YOLOv8CSPDarknet",
        "YOLOv8PAFPN",
        "YOLOv8Head",
        "YOLOv8HeadModule",
    ] {
        // `    <Type>    <declaring module>`: only implemented types are listed.
        let listed = text.lines().any(|l| {
            l.split_whitespace().next() == Some(name) && l.contains("spec::models::yolov8_")
        });
        assert!(listed, "registry --scope mmyolo lacks {name}:\n{text}");
    }
}

/// What Python's constructors reject is rejected by the spec stage, naming key, type and path.
#[test]
fn yolov8_config_mistakes_name_key_and_type() {
    let sizes = read_json(&fixtures().join("models/yolov8_sizes.json"));
    let model = &sizes["mmyolo/yolov8_n"]["model"];

    // A YOLOv5Head keyword that YOLOv8Head.__init__ does not take.
    let mut cfg = model.clone();
    cfg["bbox_head"]["prior_match_thr"] = 4.0.into();
    match build_detector(&cfg, "mmyolo", Device::Cpu).expect_err("unknown key") {
        ModelError::UnknownKey {
            key,
            type_name,
            path,
            ..
        } => {
            assert_eq!(
                (key.as_str(), type_name.as_str(), path.as_str()),
                ("prior_match_thr", "mmyolo.YOLOv8Head", "model.bbox_head")
            );
        }
        other => panic!("wrong error {other}"),
    }

    // `out_channels` as an int: YOLOv8PAFPN indexes it per level.
    let mut cfg = model.clone();
    cfg["neck"]["out_channels"] = 256.into();
    let err = build_detector(&cfg, "mmyolo", Device::Cpu).expect_err("int out_channels");
    let msg = err.to_string();
    assert!(
        msg.contains("model.neck.out_channels") && msg.contains("list"),
        "{msg}"
    );

    // Another box coder than DistancePointBBoxCoder.
    let mut cfg = model.clone();
    cfg["bbox_head"]["bbox_coder"] = serde_json::json!({"type": "YOLOv5BBoxCoder"});
    let msg = build_detector(&cfg, "mmyolo", Device::Cpu)
        .expect_err("coder")
        .to_string();
    assert!(
        msg.contains("model.bbox_head.bbox_coder") && msg.contains("YOLOv5BBoxCoder"),
        "{msg}"
    );
}
