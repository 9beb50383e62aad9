//! Automatic adapter choice over every built-in adapter, on the REAL fixture keys: the expected
//! key sets are the plain fixtures' listings (the model's own keys once the backend exists).

use mmcompat_registry::adapter::chain::{expected_from_view, explain_mismatch};
use mmcompat_registry::adapter::{
    choose_chain, AdapterOptions, AdapterSet, CheckpointView, ResolvedMapping,
};

fn fixture(name: &str) -> CheckpointView {
    let path = format!(
        "{}/../../tests/fixtures/checkpoints/{name}.keys.json",
        env!("CARGO_MANIFEST_DIR")
    );
    CheckpointView::from_keys_json(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn builtins() -> AdapterSet {
    mmcompat_plugin_mmrazor::link();
    mmcompat_plugin_mmengine::link();
    mmcompat_plugin_rtmdet_layout::link();
    AdapterSet::from_inventory().unwrap()
}

fn chosen(view: &CheckpointView, expected_fixture: &str) -> Vec<String> {
    let expected = expected_from_view(&fixture(expected_fixture), "state_dict");
    match choose_chain(
        view,
        None,
        &expected,
        &builtins(),
        &AdapterOptions::default(),
    ) {
        Ok(c) => c.adapters,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn builtins_are_all_linked() {
    assert_eq!(
        builtins().names(),
        [
            "mmdet_to_mmyolo.rtmdet",
            "mmengine.ddp",
            "mmengine.ema",
            "mmrazor.kd_student",
            "mmrazor.kd_teacher",
            "mmyolo_to_mmdet.rtmdet"
        ]
    );
}

#[test]
fn plain_checkpoint_needs_no_adapter() {
    assert!(chosen(&fixture("rtmdet_nano_mmyolo"), "rtmdet_nano_mmyolo").is_empty());
    assert!(chosen(&fixture("rtmdet_nano_mmdet_legacy"), "rtmdet_nano_mmdet").is_empty());
}

#[test]
fn distillation_checkpoint_gets_the_student() {
    assert_eq!(
        chosen(&fixture("kd_nano_rtmdet_neck"), "rtmdet_nano_mmyolo"),
        ["mmrazor.kd_student"]
    );
}

#[test]
fn distillation_checkpoint_for_an_mmdet_student_takes_two_adapters() {
    assert_eq!(
        chosen(&fixture("kd_nano_rtmdet_neck"), "rtmdet_nano_mmdet"),
        ["mmrazor.kd_student", "mmyolo_to_mmdet.rtmdet"]
    );
}

#[test]
fn mmdet_checkpoint_for_an_mmyolo_model() {
    assert_eq!(
        chosen(&fixture("rtmdet_nano_mmdet"), "rtmdet_nano_mmyolo"),
        ["mmdet_to_mmyolo.rtmdet"]
    );
}

#[test]
fn ddp_wrapped_distillation_checkpoint() {
    let mut kd = fixture("kd_nano_rtmdet_neck");
    kd.sections.shift_remove("ema_state_dict");
    for e in kd.sections.get_mut("state_dict").unwrap() {
        e.key = format!("module.{}", e.key);
    }
    assert_eq!(
        chosen(&kd, "rtmdet_nano_mmyolo"),
        ["mmengine.ddp", "mmrazor.kd_student"]
    );
}

#[test]
fn no_fit_is_grouped_by_prefix_and_short() {
    let kd = fixture("kd_nano_rtmdet_neck");
    let mut expected = expected_from_view(&fixture("rtmdet_nano_mmyolo"), "state_dict");
    // A model with a different head: nothing can fit.
    expected.retain(|k, _| !k.starts_with("bbox_head.head_module.rtm_reg"));
    expected.insert(
        "bbox_head.head_module.rtm_obj.0.weight".into(),
        vec![1, 16, 1, 1],
    );
    let err = choose_chain(
        &kd,
        None,
        &expected,
        &builtins(),
        &AdapterOptions::default(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.lines().count() < 40, "{text}");
    insta::assert_snapshot!("no_fit", text);
}

#[test]
fn a_failing_plain_load_names_the_adapter_that_fixes_it() {
    let kd = fixture("kd_nano_rtmdet_neck");
    let expected = expected_from_view(&fixture("rtmdet_nano_mmyolo"), "state_dict");
    let identity = ResolvedMapping::identity(&kd, "state_dict").unwrap();
    let nofit = explain_mismatch(
        &kd,
        &identity,
        None,
        &expected,
        &builtins(),
        &AdapterOptions::default(),
    );
    assert_eq!(nofit.would_fix, ["mmrazor.kd_student"]);
    // The message mmengine would print as 991 "unexpected" + 476 "missing" lines is ~10 lines.
    insta::assert_snapshot!("kd_without_adapter", nofit.to_string());
}

#[test]
fn convert_chooses_the_student_and_rewrites_meta_cfg() {
    use mmcompat_registry::checkpoint::Checkpoint;
    use mmcompat_registry::config::{Config, Value};
    use mmcompat_registry::convert::{run_with, ConvertOptions};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("student.pth");
    let kd_path = format!(
        "{}/../../tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut model = indexmap::IndexMap::new();
    model.insert("type".to_owned(), Value::Str("YOLODetector".into()));
    let mut tree = indexmap::IndexMap::new();
    tree.insert("default_scope".to_owned(), Value::Str("mmyolo".into()));
    tree.insert("model".to_owned(), Value::Dict(model));
    tree.insert(
        "img_scale".to_owned(),
        Value::Tuple(vec![Value::Int(640), Value::Int(640)]),
    );
    let options = ConvertOptions {
        config: Some(Config::from_tree("student.py", tree)),
        ..Default::default()
    };
    let report = run_with(&kd_path, &out, &options, &builtins()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.adapters, ["mmrazor.kd_student"]);
    assert!(report.automatic && report.meta_cfg_rewritten);
    let written = Checkpoint::open(&out).unwrap();
    let keys: Vec<&String> = written
        .section("state_dict")
        .unwrap()
        .tensors
        .keys()
        .collect();
    let expected: Vec<String> = fixture("rtmdet_nano_mmyolo")
        .section("state_dict")
        .unwrap()
        .iter()
        .map(|e| e.key.clone())
        .collect();
    assert_eq!(keys, expected.iter().collect::<Vec<_>>());
    assert_eq!(
        written.meta_json()["cfg"],
        "default_scope = \"mmyolo\"\nmodel = dict(type=\"YOLODetector\")\nimg_scale = (640, 640)\n"
    );
}
