//! mmrazor adapters on the REAL distillation checkpoint's keys
//! (`tests/fixtures/checkpoints/kd_nano_rtmdet_neck.keys.json`, written by mmengine's CheckpointHook
//! during 2 iterations of FpnTeacherDistill with EMAHook on).

use mmcompat_plugin_mmrazor::{KdStudent, KdTeacher};
use mmcompat_registry::adapter::{
    AdapterOptions, AdapterSet, CheckpointAdapter, CheckpointView, EmaChoice, Level, Report,
    TensorEntry,
};

fn fixture(name: &str) -> CheckpointView {
    let path = format!(
        "{}/../../tests/fixtures/checkpoints/{name}.keys.json",
        env!("CARGO_MANIFEST_DIR")
    );
    CheckpointView::from_keys_json(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn keys(view: &CheckpointView, section: &str) -> Vec<(String, Vec<usize>)> {
    view.section(section)
        .unwrap()
        .iter()
        .map(|e| (e.key.clone(), e.shape.clone()))
        .collect()
}

#[test]
fn kd_student_gives_exactly_the_plain_mmyolo_students_keys() {
    let kd = fixture("kd_nano_rtmdet_neck");
    let c = KdStudent.detect(&kd, None);
    assert_eq!(c.level, Level::High, "{}", c.reason);
    let plan = KdStudent.plan(&kd, &AdapterOptions::default()).unwrap();
    let mapping = plan.resolve(&kd).unwrap();
    // The student config is rtmdet_nano_mmyolo: same keys, same shapes, same order.
    let out: Vec<(String, Vec<usize>)> = mapping
        .tensors
        .iter()
        .map(|t| (t.key.clone(), t.shape.clone()))
        .collect();
    assert_eq!(out, keys(&fixture("rtmdet_nano_mmyolo"), "state_dict"));
    assert_eq!(mapping.dropped.len(), 512 + 3);
    assert!(mapping.unused_ops.is_empty(), "{:?}", mapping.unused_ops);
    insta::assert_snapshot!("kd_student_report", Report::new(&kd, &mapping).render());
    insta::assert_snapshot!("kd_student_keys", mapping.key_listing());
}

#[test]
fn kd_student_raw_weights_come_from_ema_state_dict() {
    let kd = fixture("kd_nano_rtmdet_neck");
    let options = AdapterOptions {
        ema: EmaChoice::Raw,
        ..Default::default()
    };
    let mapping = KdStudent.plan(&kd, &options).unwrap().resolve(&kd).unwrap();
    assert_eq!(mapping.section, "ema_state_dict");
    assert!(mapping
        .tensors
        .iter()
        .all(|t| t.source_key.starts_with("module.architecture.")));
    let out: Vec<(String, Vec<usize>)> = mapping
        .tensors
        .iter()
        .map(|t| (t.key.clone(), t.shape.clone()))
        .collect();
    assert_eq!(out, keys(&fixture("rtmdet_nano_mmyolo"), "state_dict"));
    insta::assert_snapshot!("kd_student_raw_report", Report::new(&kd, &mapping).render());
}

#[test]
fn kd_student_strips_architecture_only_at_the_start() {
    // MMRazor's convert_kd_ckpt_to_student.py would turn this key into `backbone.stem.weight`.
    let view = CheckpointView {
        top_level_keys: vec!["state_dict".into()],
        sections: [(
            "state_dict".to_owned(),
            vec![
                TensorEntry {
                    key: "architecture.backbone.architecture.stem.weight".into(),
                    dtype: mmcompat_registry::DType::F32,
                    shape: vec![1],
                },
                TensorEntry {
                    key: "teacher.backbone.stem.weight".into(),
                    dtype: mmcompat_registry::DType::F32,
                    shape: vec![1],
                },
            ],
        )]
        .into_iter()
        .collect(),
        meta: serde_json::Value::Null,
    };
    let mapping = KdStudent
        .plan(&view, &AdapterOptions::default())
        .unwrap()
        .resolve(&view)
        .unwrap();
    assert_eq!(mapping.keys(), ["backbone.architecture.stem.weight"]);
}

#[test]
fn old_architecture_model_layout() {
    // MMRazor 1.0.0rc layout, the inverse of tools/model_converters/convert_kd_ckpt.py:
    // architecture.X → architecture.model.X, teacher.X → architecture.model.distiller.teacher.X.
    let mut kd = fixture("kd_nano_rtmdet_neck");
    for e in kd.sections.get_mut("state_dict").unwrap() {
        if let Some(rest) = e.key.strip_prefix("architecture.") {
            e.key = format!("architecture.model.{rest}");
        } else if let Some(rest) = e.key.strip_prefix("teacher.") {
            e.key = format!("architecture.model.distiller.teacher.{rest}");
        }
    }
    kd.sections.shift_remove("ema_state_dict");
    assert_eq!(KdStudent.detect(&kd, None).level, Level::High);
    let mapping = KdStudent
        .plan(&kd, &AdapterOptions::default())
        .unwrap()
        .resolve(&kd)
        .unwrap();
    let out: Vec<(String, Vec<usize>)> = mapping
        .tensors
        .iter()
        .map(|t| (t.key.clone(), t.shape.clone()))
        .collect();
    assert_eq!(out, keys(&fixture("rtmdet_nano_mmyolo"), "state_dict"));
    let teacher = KdTeacher
        .plan(&kd, &AdapterOptions::default())
        .unwrap()
        .resolve(&kd)
        .unwrap();
    assert_eq!(teacher.tensors.len(), 512);
    assert!(teacher
        .tensors
        .iter()
        .all(|t| !t.key.starts_with("architecture.")));
}

#[test]
fn kd_teacher_takes_the_teacher() {
    let kd = fixture("kd_nano_rtmdet_neck");
    assert_eq!(KdTeacher.detect(&kd, None).level, Level::Low);
    let mapping = KdTeacher
        .plan(&kd, &AdapterOptions::default())
        .unwrap()
        .resolve(&kd)
        .unwrap();
    assert_eq!(mapping.tensors.len(), 512);
    assert!(mapping
        .tensors
        .iter()
        .all(|t| t.source_key == format!("teacher.{}", t.key)));
    insta::assert_snapshot!("kd_teacher_report", Report::new(&kd, &mapping).render());
    insta::assert_snapshot!("kd_teacher_keys", mapping.key_listing());
}

#[test]
fn not_a_distillation_checkpoint() {
    let plain = fixture("rtmdet_nano_mmyolo");
    assert_eq!(KdStudent.detect(&plain, None).level, Level::None);
    let err = KdStudent
        .plan(&plain, &AdapterOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no `architecture.` keys"), "{err}");
}

#[test]
fn registered_statically() {
    mmcompat_plugin_mmrazor::link();
    let set = AdapterSet::from_inventory().unwrap();
    assert!(
        set.get("mmrazor.kd_student").is_ok() && set.get("mmrazor.kd_teacher").is_ok(),
        "{:?}",
        set.names()
    );
}
