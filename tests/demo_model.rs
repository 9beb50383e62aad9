//! The bundled demo model (issue 17 item 1; tests/fixtures/demo/, trained by
//! tests/fixtures/generate/demo/train.py with the real mmyolo + MMRazor Runner): on the committed
//! sample scenes, which the training never saw, every ground-truth object is found (IoU >= 0.5,
//! same class, score >= 0.5, the demo's drawing threshold) with no false detection, and our
//! detections above that threshold are the real stack's (`init_detector(kd config, kd
//! checkpoint)` + `inference_detector`, recorded in tests/fixtures/demo/python_detections.json by
//! evaluate.py): same count and classes, boxes within 0.1 px, scores within 1e-4, compared as
//! matched sets.

use std::path::PathBuf;

use mmcompat::inferencer::ground_truth::{match_detections, GroundTruth};
use mmcompat::inferencer::Inferencer;
use mmcompat::registry::config::ConfigRoots;
use serde_json::Value;

const DRAW_THR: f32 = 0.5;
const BOX_TOL: f32 = 0.1;
const SCORE_TOL: f32 = 1e-4;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The trees scripts/install-fixture-configs.sh lays out (shipped configs + overlay), as `make
/// demo` uses them.
fn roots() -> ConfigRoots {
    let mut roots = ConfigRoots::new();
    for pkg in ["mmyolo", "mmdet", "mmrazor"] {
        let d = repo().join(".cache/fixture-configs").join(pkg);
        assert!(
            d.is_dir(),
            "{} missing: run scripts/install-fixture-configs.sh (make test does)",
            d.display()
        );
        roots.add(pkg, d);
    }
    roots
}

#[test]
fn demo_model_finds_every_object_like_the_real_stack() {
    let demo = repo().join("tests/fixtures/demo");
    let inferencer = Inferencer::builder()
        .config(repo().join(".cache/fixture-configs/mmyolo/mmcompat/demo_shapes_kd_rtmdet.py"))
        .weights(demo.join("demo_shapes_kd_rtmdet.pth"))
        .scope("mmyolo")
        .device("cpu")
        .config_roots(roots())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let gt = GroundTruth::load(&demo.join("scenes/gt.json")).unwrap();
    let python: Value = serde_json::from_str(
        &std::fs::read_to_string(demo.join("python_detections.json")).unwrap(),
    )
    .unwrap();
    let python = python.as_object().unwrap();
    assert_eq!(python.len(), 8);
    assert_eq!(gt.image_count(), 8);
    let (mut objects, mut found) = (0, 0);
    for (name, theirs) in python {
        let image = demo.join("scenes").join(name);
        let ours: Vec<_> = inferencer
            .infer(&image)
            .unwrap()
            .into_iter()
            .filter(|d| d.score >= DRAW_THR)
            .collect();
        let summary = match_detections(&ours, gt.objects_of(&image).unwrap(), DRAW_THR);
        assert!(summary.is_perfect(), "{name}: {summary}: {summary:?}");
        objects += summary.objects;
        found += summary.found;

        let theirs = theirs.as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name}: ours {ours:?}");
        let mut used = vec![false; theirs.len()];
        for d in &ours {
            let hit = theirs.iter().enumerate().position(|(i, t)| {
                let tb: Vec<f32> = t["bbox"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                !used[i]
                    && t["class"].as_str() == Some(d.class_name.as_str())
                    && (t["score"].as_f64().unwrap() as f32 - d.score).abs() <= SCORE_TOL
                    && tb.iter().zip(d.bbox).all(|(a, b)| (a - b).abs() <= BOX_TOL)
            });
            match hit {
                Some(i) => used[i] = true,
                None => panic!("{name}: ours {d:?} is not among the real stack's {theirs:?}"),
            }
        }
    }
    // the committed scenes hold 40 objects (evaluate.py samples: 8 scenes of 4-6, seed 3)
    assert_eq!((found, objects), (40, 40));
}

/// `make demo`'s command: `detect --ground-truth` prints each scene's verdict and the total on
/// stderr, and `--output` inside `--out-dir` (created first) gets one JSON record per scene.
#[test]
fn detect_ground_truth_flag_reports_every_scene() {
    let out = tempfile::tempdir().unwrap();
    let fixture = |pkg: &str| {
        format!(
            "{pkg}={}",
            repo().join(".cache/fixture-configs").join(pkg).display()
        )
    };
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_mmcompat"))
        .current_dir(repo())
        .args(["detect", "--config"])
        .arg(".cache/fixture-configs/mmyolo/mmcompat/demo_shapes_kd_rtmdet.py")
        .args(["--weights", "tests/fixtures/demo/demo_shapes_kd_rtmdet.pth"])
        .args(["--config-root", &fixture("mmyolo")])
        .args(["--config-root", &fixture("mmdet")])
        .args(["--config-root", &fixture("mmrazor")])
        .args(["--scope", "mmyolo", "--score-thr", "0.5"])
        .args(["--ground-truth", "tests/fixtures/demo/scenes/gt.json"])
        .arg("--out-dir")
        .arg(out.path().join("demo"))
        .arg("--output")
        .arg(out.path().join("demo/detections.jsonl"))
        .arg("tests/fixtures/demo/scenes")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let gt = GroundTruth::load(&repo().join("tests/fixtures/demo/scenes/gt.json")).unwrap();
    for i in 0..8 {
        let scene = format!("scene_000{i}.png");
        let n = gt.objects_of(std::path::Path::new(&scene)).unwrap().len();
        assert!(
            stderr.contains(&format!("{scene}: {n}/{n} objects found, 0 false")),
            "{scene}: {stderr}"
        );
    }
    assert!(
        stderr.contains("ground truth: 40/40 objects found, 0 false, in 8 images"),
        "{stderr}"
    );
    let records = std::fs::read_to_string(out.path().join("demo/detections.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 8);
    assert_eq!(
        std::fs::read_dir(out.path().join("demo")).unwrap().count(),
        9
    );
}
