//! Ultralytics `.pt` files through the CLI (issue 15): `inspect` names the module tree's classes
//! (never importing them) and the adapter that applies; `detect --weights yolov8_tiny.pt` gives the
//! detections that the real `init_detector` + `inference_detector` gave on the file mmyolo's
//! `yolov8_to_mmyolo.py` converted from it (tests/fixtures/ultralytics, written by
//! tests/fixtures/generate/make_ultralytics_refs.py with the same config and
//! `test_cfg.score_thr=0.5`).

use std::path::PathBuf;

use mmcompat::inferencer::Detection;
use serde_json::Value;

use crate::cli::{err_stderr, ok_stdout};
use crate::inference::{assert_same_detections, roots};

const IMAGES: [&str; 3] = ["astronaut", "chelsea", "coffee"];

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ultralytics")
        .join(name)
        .display()
        .to_string()
}

fn detect_args(extra: &[&str]) -> Vec<String> {
    let roots = roots();
    let config = roots.dirs("mmyolo")[0].join("mmcompat/yolov8_nano_mmyolo.py");
    let mut args: Vec<String> = vec![
        "detect".into(),
        "--config".into(),
        config.display().to_string(),
        "--weights".into(),
        fixture("yolov8_tiny.pt"),
        "--scope".into(),
        "mmyolo".into(),
        "--device".into(),
        "cpu".into(),
        "--json".into(),
    ];
    for pkg in ["mmyolo", "mmdet", "mmrazor"] {
        args.push("--config-root".into());
        args.push(format!("{pkg}={}", roots.dirs(pkg)[0].display()));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn inspect_shows_the_module_tree_and_the_adapter() {
    let text = ok_stdout(&["inspect", &fixture("yolov8_tiny.pt")]);
    assert!(
        text.contains("module tree model: ultralytics.nn.tasks.DetectionModel ("),
        "{text}"
    );
    assert!(
        text.contains("ultralytics.nn.modules.block.C2f 8"),
        "{text}"
    );
    assert!(
        text.contains("adapter ultralytics.yolov8 applies (high)"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&ok_stdout(&[
        "inspect",
        &fixture("yolo11_tiny.pt"),
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        v["module_trees"][0]["class"],
        "ultralytics.nn.tasks.DetectionModel"
    );
    // YOLO11's Detect sits at model.23: neither known layout's; both only "low" (their plans
    // then name the unmatched module paths).
    let adapters: Vec<(&str, &str)> = v["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["level"].as_str().unwrap()))
        .collect();
    assert_eq!(
        adapters,
        [
            ("ultralytics.yolov5u", "low"),
            ("ultralytics.yolov8", "low")
        ]
    );
}

#[test]
fn detect_on_the_ultralytics_file_matches_the_converted_files_references() {
    let images = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inference/images");
    let files: Vec<String> = IMAGES
        .iter()
        .map(|i| images.join(format!("{i}.png")).display().to_string())
        .collect();
    // Images first: `--cfg-options` takes every value after it.
    let mut extra: Vec<&str> = files.iter().map(String::as_str).collect();
    extra.extend(["--cfg-options", "model.test_cfg.score_thr=0.5"]);
    let args = detect_args(&extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refs: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("yolov8_tiny_detections.json")).unwrap(),
    )
    .unwrap();
    let lines: Vec<Value> = ok_stdout(&args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), IMAGES.len());
    for (line, image) in lines.iter().zip(IMAGES) {
        assert!(line["image"].as_str().unwrap().contains(image));
        let dets: Vec<Detection> = line["detections"]
            .as_array()
            .expect("detections")
            .iter()
            .map(|d| {
                let b: Vec<f32> = d["bbox"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                Detection {
                    bbox: [b[0], b[1], b[2], b[3]],
                    score: d["score"].as_f64().unwrap() as f32,
                    label: d["label"].as_u64().unwrap() as usize,
                    class_name: d["class"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect();
        assert_same_detections(&format!("ultralytics {image}"), &dets, &refs[image]);
    }
}

/// A config for 80 classes on the 8-class file: an error naming both numbers and the fix, not a
/// silent load.
#[test]
fn class_count_mismatch_names_both_numbers() {
    let args = detect_args(&[
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/inference/images/astronaut.png")
            .display()
            .to_string(),
        "--cfg-options",
        "model.bbox_head.head_module.num_classes=80",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = err_stderr(&args);
    // The adapter is still chosen; the strict check names the class dimension on both sides.
    assert!(err.contains("closest chain: ultralytics.yolov8"), "{err}");
    // ... and says why in words, with both counts and the option that fixes it.
    assert!(
        err.contains("the checkpoint has 8 classes") && err.contains("but the config has 80"),
        "{err}"
    );
    assert!(
        err.contains("--cfg-options model.bbox_head.head_module.num_classes=8"),
        "{err}"
    );
    assert!(
        err.contains("cls_preds.0.0.conv.weight: model [80, 8, 3, 3], checkpoint [8, 8, 3, 3]"),
        "{err}"
    );
}
