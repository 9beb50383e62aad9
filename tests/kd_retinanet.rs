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

use std::path::PathBuf;

use mmcompat::inferencer::{ClassNamesSource, Inferencer};
use mmcompat::registry::checkpoint::Checkpoint;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::inference::{assert_same_detections, raw_deviation_on, roots, source_image, RAW_TOL};
use crate::models::read_json;

const IMAGES: &[&str] = &["astronaut", "exif_rot6"];
const CONFIG: &str = "cwd_fpn_retina_tiny.py";
const TEACHER_CONFIG: &str = "retinanet_tiny_teacher.py";
const KD_ADAPTER: &str = "mmrazor.kd_student";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (distillation config inside the test config roots, Runner checkpoint).
fn files() -> (PathBuf, PathBuf) {
    (
        roots().dirs("mmrazor")[0].join("mmcompat").join(CONFIG),
        repo().join("tests/fixtures/razor_mmdet/cwd_fpn_retina_tiny.pth"),
    )
}

fn inferencer() -> Inferencer {
    let (config, weights) = files();
    // No explicit scope: the distillation config's own `default_scope` (mmdet, from
    // mmdet's default_runtime.py) and the student's `cfg_path` package decide, as for users.
    Inferencer::builder()
        .config(&config)
        .weights(&weights)
        .device("cpu")
        .config_roots(roots())
        .build()
        .unwrap_or_else(|e| panic!("kd_retinanet: {e}"))
}

fn reference(image: &str) -> Value {
    read_json(&format!("razor_mmdet/inference/cwd_retina__{image}.json"))
}

#[test]
fn kd_retinanet_resolves_to_the_student_through_the_mmrazor_adapter() {
    let inf = inferencer();
    assert_eq!(inf.distillation(), Some("FpnTeacherDistill"));
    assert_eq!(inf.scope(), "mmdet");
    assert_eq!(inf.adapters(), [KD_ADAPTER]);
    let report = inf.load_report();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.coverage(), 100.0);
    // The Runner's dataset_meta: the synthetic set's 8 classes.
    assert_eq!(inf.class_names_source(), ClassNamesSource::Checkpoint);
    assert_eq!(inf.class_names().len(), 8);
}

/// The teacher is never built: the test config roots leave its config out (tests/inference.rs
/// `roots` skips every `*teacher*` overlay file), and the model built has exactly the
/// checkpoint's `architecture.*` names and shapes, not the narrower `teacher.*` ones.
#[test]
fn kd_retinanet_never_builds_the_teacher() {
    let (config, weights) = files();
    let overlay = repo().join("tests/fixtures/configs/overlay/mmrazor/mmcompat");
    let kd_text = std::fs::read_to_string(overlay.join(CONFIG)).expect("read the KD config");
    assert!(
        kd_text.contains(&format!("mmrazor::mmcompat/{TEACHER_CONFIG}"))
            && overlay.join(TEACHER_CONFIG).exists()
    );
    assert!(!config.with_file_name(TEACHER_CONFIG).exists());
    let inf = inferencer();
    let ours = inf.detector().expected_keys();
    let ck = Checkpoint::open(&weights).expect("open");
    let state = ck.section("state_dict").expect("state_dict");
    let part = |prefix: &str| -> Vec<(String, Vec<i64>)> {
        state
            .tensors
            .iter()
            .filter_map(|(k, t)| {
                let name = k.strip_prefix(prefix)?;
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
    assert_eq!(
        ours,
        part("architecture."),
        "the model built is the student"
    );
    assert_ne!(ours, part("teacher."));
}

#[test]
fn kd_retinanet_network_input_and_raw_head_outputs_match_python() {
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let result = std::panic::catch_unwind(|| {
        let inf = inferencer();
        let mut worst = 0f64;
        for image in IMAGES {
            let what = format!("kd_retinanet/{image}");
            let r = reference(image);
            let pre = inf.preprocess(&source_image(image)).expect("pipeline");
            assert_eq!(
                format!("{:x}", Sha256::digest(&pre.image.data)),
                r["input_sha256"].as_str().expect("sha"),
                "{what}: network input"
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

#[test]
fn kd_retinanet_detections_match_inference_detector() {
    let inf = inferencer();
    for image in IMAGES {
        let r = reference(image);
        let dets = inf.infer(&source_image(image)).expect("infer");
        assert_same_detections(&format!("kd_retinanet/{image}"), &dets, &r["detections"]);
    }
}

/// The shipped MMRazor mmdet distillations whose student is a RetinaNet (five `cfg_path` ones and
/// the `mgd_…` inline one, whose neck and head carry `Pretrained` init_cfgs pointing at the
/// teacher's URL): the student resolved from the distillation config builds, with the real
/// student's state-dict size (tests/fixtures/razor_mmdet/students.json `num_params`, counted on
/// the module the real stack built). `init_cfg` is ignored, as init_detector never calls
/// init_weights: nothing is fetched.
#[test]
fn shipped_retinanet_distillations_build_their_student() {
    let refs = read_json("razor_mmdet/students.json");
    let roots = roots();
    let mut built = 0;
    for (rel, want) in refs["students"].as_object().expect("students") {
        if want["built"]["type"] != "RetinaNet" {
            continue;
        }
        let path = roots.dirs("mmrazor")[0].join(rel);
        let cfg =
            mmcompat::Config::from_file(&path, &roots).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let resolved = mmcompat::registry::spec::student::resolve_model(&cfg, None, &roots)
            .unwrap_or_else(|e| panic!("{rel}: {e}"));
        let det = mmcompat::models::build_detector(
            &resolved.model,
            resolved.scope.name(),
            tch::Device::Cpu,
        )
        .unwrap_or_else(|e| panic!("{rel}: {e}"));
        let params: i64 = det
            .expected_keys()
            .iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, s)| s.iter().product::<i64>())
            .sum();
        assert_eq!(
            params,
            want["built"]["num_params"].as_i64().expect("num_params"),
            "{rel}"
        );
        built += 1;
    }
    assert_eq!(built, 6);
}
