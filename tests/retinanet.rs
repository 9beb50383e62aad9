//! RetinaNet (mmdet 3.3.0: `RetinaNet` + `ResNet` + `FPN` + `RetinaHead`) against the real stack
//! (tests/fixtures/generate/make_retinanet_refs.py):
//! * `models/retinanet_sizes.json`: the shipped `retinanet_r50_fpn_1x_coco` and
//!   `retinanet_r101-caffe_fpn_1x_coco` configs' merged `model` dicts and the real models'
//!   `state_dict()` names and shapes — ours must equal them, in order;
//! * `checkpoints/retinanet_tiny_mmdet.pth` (overlay config `mmcompat/retinanet_tiny_mmdet.py`:
//!   ResNet-18 at base_channels 8, FPN/head 16 wide, 8 classes) and
//!   `inference/retinanet/retinanet__<image>.json` from `init_detector` + `inference_detector`:
//!   the same network input (by sha256: a 1333×800 PNG per image would be too big to commit) and
//!   metainfo, raw head outputs of all five levels within `RAW_TOL` of their level's scale at 1
//!   thread, and the same detections (count, labels, boxes within 0.1 px, scores within 1e-4)
//!   through `Inferencer` and through `mmcompat detect --json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mmcompat::inferencer::{ClassNamesSource, Detection, Inferencer};
use mmcompat::models::{build_detector, ModelError};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tch::Device;

use crate::cli::ok_stdout;
use crate::inference::{assert_same_detections, raw_deviation_on, roots, source_image, RAW_TOL};
use crate::models::{decode_keys, read_json};

const SCOPE: &str = "mmdet";
const IMAGES: &[&str] = &["astronaut", "chelsea", "coffee", "exif_rot6"];
const SHIPPED: &[&str] = &["retinanet_r50", "retinanet_r101-caffe"];

fn sizes_json() -> Value {
    read_json("models/retinanet_sizes.json")
}

fn model(size: &str) -> Value {
    let m = sizes_json()[format!("{SCOPE}/{size}")]["model"].clone();
    assert!(m.is_object(), "no size {size}");
    m
}

fn reference(image: &str) -> Value {
    read_json(&format!("inference/retinanet/retinanet__{image}.json"))
}

fn files() -> (PathBuf, PathBuf) {
    let config = roots().dirs(SCOPE)[0].join("mmcompat/retinanet_tiny_mmdet.py");
    let checkpoint = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/checkpoints/retinanet_tiny_mmdet.pth");
    (config, checkpoint)
}

fn inferencer() -> Inferencer {
    let (config, weights) = files();
    Inferencer::builder()
        .config(&config)
        .weights(&weights)
        .scope(SCOPE)
        .device("cpu")
        .config_roots(roots())
        .build()
        .unwrap_or_else(|e| panic!("retinanet: {e}"))
}

/// Both shipped configs build (zero weights) with exactly the real model's `state_dict()` names
/// and shapes, in order: pytorch-style R50 and caffe-style R101 (the stride on the first 1×1 of
/// each Bottleneck does not change shapes, the key set does not either), FPN `on_input` extra
/// convs reading C5 (2048 channels), 9 anchors × 80 classes.
#[test]
fn retinanet_expected_keys_equal_the_real_models() {
    let sizes = sizes_json();
    let sizes = sizes.as_object().expect("object");
    assert_eq!(sizes.len(), SHIPPED.len());
    for (name, entry) in sizes {
        let det = build_detector(&entry["model"], SCOPE, Device::Cpu)
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
        assert_eq!(ours, theirs, "{name}: key order and shapes");
        assert_eq!(det.num_classes(), 80, "{name}");
        assert_eq!(det.type_name(), "mmdet.RetinaNet");
    }
    // The recorded model dicts are what our config loader makes of the shipped files (`_base_`
    // chain through retinanet_r50_fpn_1x_coco.py and _base_/models/retinanet_r50_fpn.py).
    for (name, entry) in sizes {
        let rel = entry["config"].as_str().expect("config");
        let file = rel.rsplit('/').next().expect("file name");
        let path = roots().dirs(SCOPE)[0].join("retinanet").join(file);
        let cfg = mmcompat::Config::from_file(&path, &roots())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(cfg.to_json()["model"], entry["model"], "{name}: {rel}");
    }
    // The real key counts (caffe style or not, the module tree is the same per depth).
    let count = |s: &str| decode_keys(&sizes_json()[format!("{SCOPE}/{s}")]["keys"]).len();
    assert_eq!((count(SHIPPED[0]), count(SHIPPED[1])), (301, 556));
}

/// The network input (sha256 of the uint8 HWC BGR image), metainfo and raw head outputs of
/// every image against the references, at 1 thread (the generator's condition).
#[test]
fn retinanet_network_input_and_raw_head_outputs_match_python() {
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let result = std::panic::catch_unwind(|| {
        let inf = inferencer();
        let report = inf.load_report();
        assert!(report.is_complete(), "{report}");
        assert_eq!(report.coverage(), 100.0);
        let mut worst = 0f64;
        for image in IMAGES {
            let what = format!("retinanet/{image}");
            let r = reference(image);
            let pre = inf.preprocess(&source_image(image)).expect("pipeline");
            let digest = format!("{:x}", Sha256::digest(&pre.image.data));
            assert_eq!(
                digest,
                r["input_sha256"].as_str().expect("sha"),
                "{what}: network input differs from the test pipeline's"
            );
            let hwc = [pre.image.height, pre.image.width, 3];
            let shape: Vec<usize> = r["input_shape_hwc"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|v| v.as_u64().expect("dim") as usize)
                .collect();
            assert_eq!(hwc.to_vec(), shape, "{what}: input shape");
            // Keep-ratio Resize without Pad: img_shape is the resized size (the decode clamp).
            let img_shape = &r["pipeline"]["img_shape"];
            assert_eq!(
                [pre.img_shape.0 as u64, pre.img_shape.1 as u64],
                [
                    img_shape[0].as_u64().expect("h"),
                    img_shape[1].as_u64().expect("w")
                ],
                "{what}: img_shape"
            );
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

/// Detections through `Inferencer`: anchors, delta decoding clamped to img_shape, rescale,
/// per-class NMS and `max_per_img=100` (every fixture image hits the cap).
#[test]
fn retinanet_detections_match_inference_detector() {
    let inf = inferencer();
    assert_eq!(inf.class_names_source(), ClassNamesSource::Checkpoint);
    assert_eq!(inf.class_names().len(), 8);
    for image in IMAGES {
        let r = reference(image);
        let dets = inf.infer(&source_image(image)).expect("infer");
        assert_same_detections(&format!("retinanet/{image}"), &dets, &r["detections"]);
    }
}

/// `mmcompat detect --config <overlay> --weights <ckpt> --scope mmdet --json` on every image.
#[test]
fn retinanet_detect_command_matches_inference_detector() {
    let (config, weights) = files();
    let roots = roots();
    let mut args: Vec<String> = vec![
        "detect".into(),
        "--config".into(),
        config.display().to_string(),
        "--weights".into(),
        weights.display().to_string(),
    ];
    args.extend(
        ["--scope", SCOPE, "--device", "cpu", "--json"]
            .iter()
            .map(|s| s.to_string()),
    );
    for pkg in ["mmyolo", "mmdet", "mmrazor"] {
        args.push("--config-root".into());
        args.push(format!("{pkg}={}", roots.dirs(pkg)[0].display()));
    }
    let images = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inference/images");
    for image in IMAGES {
        let file = if *image == "exif_rot6" {
            "exif_rot6.decoded.png".to_string()
        } else {
            format!("{image}.png")
        };
        args.push(images.join(file).display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let lines: Vec<Value> = ok_stdout(&args)
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
            &format!("detect retinanet/{image}"),
            &dets,
            &r["detections"],
        );
    }
}

fn build_error(cfg: &Value, what: &str) -> String {
    build_detector(cfg, SCOPE, Device::Cpu)
        .expect_err(what)
        .to_string()
}

/// What Python's constructors reject (or what is not implemented) is refused by the spec stage,
/// naming the key path and what to do.
#[test]
fn retinanet_config_mistakes_name_key_and_fix() {
    let base = model("retinanet_r50");

    let mut cfg = base.clone();
    cfg["neck"]["add_extra_convs"] = "on_inputs".into();
    let msg = build_error(&cfg, "misspelt add_extra_convs");
    assert!(
        msg.contains("model.neck.add_extra_convs")
            && msg.contains("'on_inputs' is not one of")
            && msg.contains("did you mean 'on_input'"),
        "{msg}"
    );
    let mut cfg = base.clone();
    cfg["neck"]["add_extra_convs"] = "bogus".into();
    let msg = build_error(&cfg, "bogus add_extra_convs");
    assert!(
        msg.contains("model.neck.add_extra_convs") && msg.contains("'on_output'"),
        "{msg}"
    );

    let mut cfg = base.clone();
    cfg["backbone"]["depth"] = 42.into();
    let msg = build_error(&cfg, "depth 42");
    assert!(
        msg.contains("model.backbone.depth") && msg.contains("invalid depth 42 for resnet"),
        "{msg}"
    );

    for (key, value) in [
        ("deep_stem", Value::Bool(true)),
        ("avg_down", Value::Bool(true)),
        (
            "dcn",
            serde_json::json!({"type": "DCN", "deform_groups": 1, "fallback_on_stride": false}),
        ),
    ] {
        let mut cfg = base.clone();
        cfg["backbone"][key] = value;
        let msg = build_error(&cfg, key);
        assert!(
            msg.contains(&format!("model.backbone.{key}")) && msg.contains("not supported"),
            "{msg}"
        );
    }

    // FPN asserts num_outs >= len(in_channels) - start_level.
    let mut cfg = base.clone();
    cfg["neck"]["num_outs"] = 2.into();
    let msg = build_error(&cfg, "num_outs");
    assert!(msg.contains("model.neck.num_outs"), "{msg}");

    // An unknown RetinaHead keyword, as Python's TypeError.
    let mut cfg = base.clone();
    cfg["bbox_head"]["num_anchors"] = 9.into();
    match build_detector(&cfg, SCOPE, Device::Cpu).expect_err("unknown key") {
        ModelError::UnknownKey {
            key,
            type_name,
            path,
            ..
        } => assert_eq!(
            (key.as_str(), type_name.as_str(), path.as_str()),
            ("num_anchors", "mmdet.RetinaHead", "model.bbox_head")
        ),
        other => panic!("wrong error {other}"),
    }

    // Another coder than the one RetinaHead's decode implements.
    let mut cfg = base;
    cfg["bbox_head"]["bbox_coder"] = serde_json::json!({"type": "DistancePointBBoxCoder"});
    let msg = build_error(&cfg, "coder");
    assert!(
        msg.contains("model.bbox_head.bbox_coder") && msg.contains("DeltaXYWHBBoxCoder"),
        "{msg}"
    );
}

/// `mmcompat registry --scope mmdet` lists the new types, declared in their spec modules.
#[test]
fn retinanet_types_are_listed_by_the_registry_command() {
    let text = ok_stdout(&["registry", "--scope", SCOPE]);
    for (name, module) in [
        ("ResNet", "spec::models::resnet"),
        ("FPN", "spec::models::fpn"),
        ("RetinaHead", "spec::models::retina_head"),
        ("RetinaNet", "spec::models::retina_head"),
    ] {
        let listed = text
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name) && l.contains(module));
        assert!(listed, "registry --scope mmdet lacks {name}:\n{text}");
    }
}
