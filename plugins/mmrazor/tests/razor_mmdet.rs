//! The mmrazor adapters on a REAL MMRazor mmdet distillation checkpoint and on real pruning /
//! distillation state-dict listings (tests/fixtures/razor_mmdet/, written by
//! tests/fixtures/generate/make_razor_mmdet_refs.py with MMRazor 1.0.0 + mmdet 3.3.0):
//! * `cwd_fpn_retina_tiny.pth`: what the Runner's CheckpointHook wrote after 2 iterations of
//!   FpnTeacherDistill (ChannelWiseDivergence on the FPN; student RetinaNet-R18 tiny);
//! * `cwd_fpn_retina_tiny.student.json`: the real student's state dict (names, shapes, sha256 of
//!   the values) after mmengine loaded that checkpoint into the algorithm;
//! * `refused_keys.json`: key listings of a built GroupFisherAlgorithm (shipped config) and of a
//!   SingleTeacherDistill around the same pair.

use std::path::PathBuf;

use mmcompat_plugin_mmrazor::{KdStudent, KdTeacher};
use mmcompat_registry::adapter::{
    fit_checkpoint, AdapterError, AdapterOptions, AdapterSet, ChainChoice, CheckpointAdapter,
    CheckpointView, ExpectedKeys, FitError, FitRequest, Level, Report, TensorEntry,
};
use mmcompat_registry::checkpoint::Checkpoint;
use sha2::{Digest, Sha256};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/razor_mmdet")
}

fn json(name: &str) -> serde_json::Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

/// `(name, shape)` of the real student's state dict, and the sha256 of each value.
fn real_student() -> (Vec<(String, Vec<usize>)>, Vec<String>) {
    let rec = json("cwd_fpn_retina_tiny.student.json");
    let entries = rec["student"].as_array().expect("student");
    let keys = entries
        .iter()
        .map(|e| {
            let shape = e["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            (e["name"].as_str().expect("name").to_owned(), shape)
        })
        .collect();
    let hashes = entries
        .iter()
        .map(|e| e["sha256"].as_str().expect("sha").to_owned())
        .collect();
    (keys, hashes)
}

fn listing(kind: &str) -> CheckpointView {
    let all = json("refused_keys.json");
    CheckpointView::from_keys_json_str(&all[kind].to_string()).expect("listing")
}

fn set() -> AdapterSet {
    mmcompat_plugin_mmrazor::link();
    AdapterSet::from_inventory().expect("adapters")
}

fn expected(keys: &[(String, Vec<usize>)]) -> ExpectedKeys {
    keys.iter().cloned().collect()
}

fn out_keys(view: &CheckpointView, adapter: &dyn CheckpointAdapter) -> Vec<(String, Vec<usize>)> {
    adapter
        .plan(view, &AdapterOptions::default())
        .expect("plan")
        .resolve(view)
        .expect("resolve")
        .tensors
        .iter()
        .map(|t| (t.key.clone(), t.shape.clone()))
        .collect()
}

#[test]
fn runner_checkpoint_gives_exactly_the_real_students_state_dict() {
    let path = dir().join("cwd_fpn_retina_tiny.pth");
    let ck = Checkpoint::open(&path).expect("open");
    let view = CheckpointView::from_checkpoint(&ck);
    let c = KdStudent.detect(&view, None);
    assert_eq!(c.level, Level::High, "{}", c.reason);
    let (keys, hashes) = real_student();
    let want = expected(&keys);
    let fit = fit_checkpoint(
        &view,
        &set(),
        FitRequest {
            expected: Some(&want),
            chain: &ChainChoice::Automatic,
            options: &AdapterOptions::default(),
            strict: true,
            config: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fit.chain.adapters, ["mmrazor.kd_student"]);
    let mut got_keys = Vec::new();
    let mut got_hashes = Vec::new();
    for t in fit.tensors(&ck) {
        let t = t.expect("tensor");
        got_keys.push((t.key.clone(), t.shape.clone()));
        got_hashes.push(format!("{:x}", Sha256::digest(&t.bytes)));
    }
    assert_eq!(got_keys, keys, "names, shapes and order");
    assert_eq!(got_hashes, hashes, "values");
    insta::assert_snapshot!(
        "cwd_retina_student_report",
        Report::new(&view, &fit.chain.mapping).render()
    );
}

#[test]
fn runner_checkpoint_teacher_is_the_narrow_retinanet() {
    let ck = Checkpoint::open(dir().join("cwd_fpn_retina_tiny.pth")).expect("open");
    let view = CheckpointView::from_checkpoint(&ck);
    assert_eq!(KdTeacher.detect(&view, None).level, Level::Low);
    let teacher = out_keys(&view, &KdTeacher);
    let want: Vec<(String, Vec<usize>)> = view
        .section("state_dict")
        .expect("state_dict")
        .iter()
        .filter_map(|e| {
            e.key
                .strip_prefix("teacher.")
                .map(|k| (k.to_owned(), e.shape.clone()))
        })
        .collect();
    assert_eq!(teacher, want);
    // ResNet-18 with base_channels 2 (retinanet_tiny_teacher.py): the stem conv is 2 wide.
    assert!(teacher.contains(&("backbone.conv1.weight".to_owned(), vec![2, 3, 7, 7])));
}

#[test]
fn single_teacher_distill_layout_gives_the_same_student() {
    let view = listing("SingleTeacherDistill");
    assert_eq!(KdStudent.detect(&view, None).level, Level::High);
    assert_eq!(out_keys(&view, &KdStudent), real_student().0);
}

/// The MMRazor 0.x layout of the same checkpoint: mmrazor 0.x `BaseArchitecture.model` and
/// `SingleTeacherDistiller.teacher` (see the crate doc).
fn v0_layout(view: &CheckpointView) -> CheckpointView {
    let mut v = view.clone();
    for e in v.sections.get_mut("state_dict").expect("state_dict") {
        if let Some(rest) = e.key.strip_prefix("architecture.") {
            e.key = format!("architecture.model.{rest}");
        } else if let Some(rest) = e.key.strip_prefix("teacher.") {
            e.key = format!("distiller.teacher.{rest}");
        }
    }
    v
}

#[test]
fn mmrazor_0x_layout_student_and_teacher() {
    let ck = Checkpoint::open(dir().join("cwd_fpn_retina_tiny.pth")).expect("open");
    let view = CheckpointView::from_checkpoint(&ck);
    let old = v0_layout(&view);
    let c = KdStudent.detect(&old, None);
    assert_eq!(c.level, Level::High);
    assert!(c.reason.contains("0.x"), "{}", c.reason);
    assert_eq!(out_keys(&old, &KdStudent), real_student().0);
    let mapping = KdStudent
        .plan(&old, &AdapterOptions::default())
        .expect("plan")
        .resolve(&old)
        .expect("resolve");
    assert!(mapping.unused_ops.is_empty(), "{:?}", mapping.unused_ops);
    assert_eq!(out_keys(&old, &KdTeacher), out_keys(&view, &KdTeacher));
    insta::assert_snapshot!("v0_student_report", Report::new(&old, &mapping).render());
}

#[test]
fn group_fisher_pruning_checkpoint_is_refused_from_its_keys() {
    let view = listing("GroupFisherAlgorithm");
    // Without the refusal the unpruned `architecture.*` would fit a plain RetinaNet-R50 exactly.
    let keys = view.section("state_dict").expect("state_dict");
    assert!(keys
        .iter()
        .all(|e| e.key.starts_with("architecture.") || e.key.starts_with("mutator.units.")));
    let c = KdStudent.detect(&view, None);
    assert_eq!(c.level, Level::High);
    assert!(c.reason.starts_with("refused: "), "{}", c.reason);
    let err = KdStudent
        .plan(&view, &AdapterOptions::default())
        .expect_err("refused");
    assert!(matches!(err, AdapterError::Refused { .. }), "{err:?}");
    let student: ExpectedKeys = keys
        .iter()
        .filter_map(|e| {
            e.key
                .strip_prefix("architecture.")
                .map(|k| (k.to_owned(), e.shape.clone()))
        })
        .collect();
    let err = fit_checkpoint(
        &view,
        &set(),
        FitRequest {
            expected: Some(&student),
            chain: &ChainChoice::Automatic,
            options: &AdapterOptions::default(),
            strict: false,
            config: None,
        },
    )
    .expect_err("refused before any chain");
    assert!(
        matches!(err, FitError::Adapter(AdapterError::Refused { .. })),
        "{err:?}"
    );
    insta::assert_snapshot!("group_fisher_refused", err.to_string());
}

fn synthetic(keys: &[&str]) -> CheckpointView {
    CheckpointView {
        top_level_keys: vec!["meta".into(), "state_dict".into()],
        sections: [(
            "state_dict".to_owned(),
            keys.iter()
                .map(|k| TensorEntry {
                    key: (*k).to_owned(),
                    dtype: mmcompat_registry::DType::F32,
                    shape: vec![1],
                })
                .collect(),
        )]
        .into_iter()
        .collect(),
        meta: serde_json::Value::Null,
    }
}

#[test]
fn nas_and_quantisation_signatures_are_refused() {
    // The documented key names (families.md §3): a OneShotMutableOP keeps every candidate under
    // `_candidates.<op>.` (mmrazor/models/mutables/mutable_module/one_shot_mutable_module.py);
    // MMArchitectureQuant keeps fx graphs under `qmodels.{tensor,predict,loss}.`
    // (algorithms/quantization/mm_architecture.py); convert_quant_ckpt.py keeps
    // `weight_fake_quant` observers after stripping `qmodels.predict.`.
    let mut out = String::new();
    for keys in [
        &[
            "architecture.backbone.layers.0.0._candidates.shuffle_3x3.branch2.0.weight",
            "architecture.neck.lateral_convs.0.conv.weight",
        ][..],
        &[
            "architecture.backbone.conv1.weight",
            "qmodels.predict.backbone.conv1.weight",
            "qmodels.tensor.backbone.conv1.weight",
        ][..],
        &[
            "backbone.conv1.weight",
            "backbone.conv1.weight_fake_quant.scale",
        ][..],
    ] {
        let view = synthetic(keys);
        let why = KdStudent.refuse(&view).expect("refused");
        assert!(KdStudent.plan(&view, &AdapterOptions::default()).is_err());
        out.push_str(&why);
        out.push('\n');
    }
    insta::assert_snapshot!("nas_quant_refused", out);
    // A plain distillation checkpoint is not refused.
    let plain = synthetic(&[
        "architecture.backbone.conv1.weight",
        "teacher.backbone.conv1.weight",
    ]);
    assert_eq!(KdStudent.refuse(&plain), None);
}
