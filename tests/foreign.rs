//! Foreign checkpoints through the CLI (issue 15): `detect --weights` on a Megvii YOLOX `.pth`,
//! a Meituan YOLOv6 v2 `.pt`, an Ultralytics YOLOv5 `.pt`, a WongKinYiu YOLOv7 `.pt` and a
//! PaddleDetection PP-YOLOE+ `.pdparams` gives the detections that the real `init_detector` +
//! `inference_detector` gave on the files mmyolo's `*_to_mmyolo.py` converters wrote from them (tests/fixtures/foreign/*_detections.json, written by
//! tests/fixtures/generate/make_foreign_refs.py with the same config, `--cfg-options` and
//! images); `inspect` names the adapter that applies.

use std::path::PathBuf;

use mmcompat::inferencer::Detection;
use serde_json::Value;

use crate::cli::ok_stdout;
use crate::inference::{assert_same_detections, roots};

const IMAGES: [&str; 3] = ["astronaut.png", "chelsea.png", "coffee.png"];
/// PP-YOLOE's bicubic stretch matches cv2 byte for byte on these two only (tests/ppyoloe.rs:
/// PPYOLOE_EXACT_INPUT; the others differ by ±1 in a few bytes).
const PPYOLOE_IMAGES: [&str; 2] = ["coffee.png", "exif_rot6.jpg"];

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/foreign")
        .join(name)
        .display()
        .to_string()
}

fn read_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// `mmcompat detect` on the three photographs with the reference's config and `--cfg-options`;
/// every image's detections equal the reference's.
fn check_detect(weights: &str, refs: &str) {
    check_detect_on(weights, refs, &IMAGES);
}

fn check_detect_on(weights: &str, refs: &str, images_used: &[&str]) {
    check_detect_with(weights, refs, images_used, &[]);
}

/// [`check_detect_on`] with `extra` arguments after the model flags.
fn check_detect_with(weights: &str, refs: &str, images_used: &[&str], extra: &[&str]) {
    let refs = read_json(refs);
    let roots = roots();
    let config = refs["config"]
        .as_str()
        .unwrap()
        .strip_prefix("mmyolo::")
        .unwrap();
    let mut args: Vec<String> = vec![
        "detect".into(),
        "--config".into(),
        roots.dirs("mmyolo")[0].join(config).display().to_string(),
        "--weights".into(),
        fixture(weights),
        "--scope".into(),
        "mmyolo".into(),
        "--device".into(),
        "cpu".into(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    for pkg in ["mmyolo", "mmdet", "mmrazor"] {
        args.push("--config-root".into());
        args.push(format!("{pkg}={}", roots.dirs(pkg)[0].display()));
    }
    let images = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inference/images");
    args.extend(
        images_used
            .iter()
            .map(|i| images.join(i).display().to_string()),
    );
    // Images first: `--cfg-options` takes every value after it.
    args.push("--cfg-options".into());
    for (k, v) in refs["cfg_options"].as_object().unwrap() {
        let v = match v {
            Value::Bool(b) => b.to_string(),
            other => other.to_string(),
        };
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let lines: Vec<Value> = ok_stdout(&args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), images_used.len());
    let mut total = 0;
    for (line, file) in lines.iter().zip(images_used) {
        let image = file.split('.').next().unwrap();
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
        total += dets.len();
        assert_same_detections(&format!("{weights} {image}"), &dets, &refs[image]);
    }
    assert!(total > 0, "{weights}: the references have detections");
}

#[test]
fn detect_on_a_yolox_pth_matches_the_converted_files_references() {
    check_detect("yolox_tiny.pth", "yolox_tiny_detections.json");
}

#[test]
fn detect_on_a_yolov6_pt_matches_the_converted_files_references() {
    check_detect("yolov6v2_tiny.pt", "yolov6v2_tiny_detections.json");
}

#[test]
fn detect_on_a_yolov5_pt_matches_the_converted_files_references() {
    check_detect("yolov5_tiny.pt", "yolov5_tiny_detections.json");
}

/// WongKinYiu YOLOv7-tiny (a stand-in module tree; see make_foreign_refs.py): the converter adds
/// identity ImplicitA/ImplicitM, which our plan adds as constants.
#[test]
fn detect_on_a_yolov7_pt_matches_the_converted_files_references() {
    check_detect("yolov7-tiny.pt", "yolov7-tiny_detections.json");
}

/// PaddleDetection PP-YOLOE+ `.pdparams` (numpy arrays read as data; written as paddle.save
/// lays it out, see make_foreign_refs.py).
#[test]
fn detect_on_a_pdparams_matches_the_converted_files_references() {
    check_detect_on(
        "ppyoloe_tiny.pdparams",
        "ppyoloe_tiny_detections.json",
        &PPYOLOE_IMAGES,
    );
}

/// `--adapter-option yolov7.variant=yolov7-tiny` names the variant the adapter would otherwise
/// read from the key set (the same table, the same detections); a key no adapter reads, or a
/// variant the converter has no table for, is an error naming what would work.
#[test]
fn adapter_options_reach_the_adapter_and_typos_are_refused() {
    check_detect_with(
        "yolov7-tiny.pt",
        "yolov7-tiny_detections.json",
        &IMAGES[..1],
        &["--adapter-option", "yolov7.variant=yolov7-tiny"],
    );
    let base = |opt: &str| -> Vec<String> {
        vec![
            "convert".into(),
            fixture("yolov7-tiny.pt"),
            "--out".into(),
            std::env::temp_dir()
                .join("mmcompat-adapter-option-test.pth")
                .display()
                .to_string(),
            "--adapter-option".into(),
            opt.into(),
        ]
    };
    let run = |opt: &str| {
        let args = base(opt);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::cli::err_stderr(&args)
    };
    let err = run("yolov7.varient=yolov7-tiny");
    assert!(
        err.contains("no adapter reads the option `yolov7.varient`")
            && err.contains("did you mean `yolov7.variant`?"),
        "{err}"
    );
    let err = run("yolov7.variant=yolov7-huge");
    assert!(
        err.contains("yolov7.variant=yolov7-huge is none of") && err.contains("yolov7-tiny.pt"),
        "{err}"
    );
    let err = {
        let args = [
            "detect",
            "--weights",
            "w.pth",
            "--adapter-option",
            "novalue",
            "x.png",
        ];
        let out = crate::cli::mmcompat(&args);
        assert_eq!(out.status.code(), Some(2), "a usage error");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(err.contains("`novalue` is not KEY=VALUE"), "{err}");
    // `mmcompat registry` lists each adapter's options.
    let text = ok_stdout(&["registry", "--scope", "mmyolo"]);
    assert!(text.contains("options: yolov7.variant"), "{text}");
}

#[test]
fn inspect_names_the_adapter_that_applies() {
    for (file, adapter) in [
        ("yolox_tiny.pth", "megvii.yolox"),
        ("yolov6v2_tiny.pt", "meituan.yolov6"),
        ("yolov6v3_tiny.pt", "meituan.yolov6_v3"),
        ("yolov5_tiny.pt", "ultralytics.yolov5"),
        ("yolov7-tiny.pt", "wongkinyiu.yolov7"),
        ("ppyoloe_tiny.pdparams", "paddle.ppyoloe"),
    ] {
        let text = ok_stdout(&["inspect", &fixture(file)]);
        assert!(
            text.contains(&format!("adapter {adapter} applies (high)")),
            "{file}: {text}"
        );
    }
    let text = ok_stdout(&["inspect", &fixture("yolov6v2_tiny.pt")]);
    assert!(
        text.contains("module tree model: yolov6.models.yolo.Model ("),
        "{text}"
    );
}
