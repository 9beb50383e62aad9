//! `ultralytics.yolov8` / `ultralytics.yolov5u` on the REAL fixtures (tests/fixtures/ultralytics, written by
//! tests/fixtures/generate/make_ultralytics_refs.py with ultralytics + mmyolo 0.6): the adapted
//! state dict of the Ultralytics `.pt` equals, tensor for tensor, what mmyolo's
//! `yolov8_to_mmyolo.py` wrote for the same file, after widening both fp16 → fp32 (what
//! `init_detector`'s `load_state_dict` into the fp32 model does).

use mmcompat_plugin_ultralytics::{check_class_count, Ultralytics, YOLOV5U, YOLOV8};
use mmcompat_registry::adapter::{
    apply_tensor_ops, AdapterError, AdapterOptions, CheckpointAdapter, CheckpointView, Level,
    Report, TensorOp,
};
use mmcompat_registry::checkpoint::Checkpoint;
use mmcompat_registry::DType;
use serde_json::json;
use sha2::{Digest, Sha256};

const V8: Ultralytics = Ultralytics(&YOLOV8);

fn open(name: &str) -> Checkpoint {
    let path = format!(
        "{}/../../tests/fixtures/ultralytics/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Checkpoint::open(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// fp32 bytes of a tensor of `ck` (fp16 widened with the same cast the host applies).
fn widened(ck: &Checkpoint, t: &mmcompat_registry::checkpoint::TensorInfo) -> (DType, Vec<u8>) {
    let bytes = ck.tensor_bytes(t).unwrap();
    let ops = if t.dtype == DType::F16 {
        vec![TensorOp::Cast { dtype: DType::F32 }]
    } else {
        Vec::new()
    };
    let (d, _, b) = apply_tensor_ops(t.dtype, &t.shape, bytes, &ops).unwrap();
    (d, b.into_owned())
}

#[test]
fn equals_the_real_converter_tensor_for_tensor() {
    let ck = open("yolov8_tiny.pt");
    let view = CheckpointView::from_checkpoint(&ck);
    assert_eq!(V8.detect(&view, None).level, Level::High);
    let plan = V8.plan(&view, &AdapterOptions::default()).unwrap();
    let mapping = plan.resolve(&view).unwrap();

    let reference = open("yolov8_tiny_mmyolo.pth");
    let want = &reference.section("state_dict").unwrap().tensors;
    assert_eq!(
        mapping.keys(),
        want.keys().map(String::as_str).collect::<Vec<_>>(),
        "same keys in the converter's order"
    );
    let section = ck.section(&mapping.section).unwrap();
    let mut widened_count = 0;
    for t in &mapping.tensors {
        let src = &section.tensors[&t.source_key];
        let (dtype, shape, ours) =
            apply_tensor_ops(src.dtype, &src.shape, ck.tensor_bytes(src).unwrap(), &t.ops).unwrap();
        let r = &want[&t.key];
        assert_eq!(shape, r.shape, "{}", t.key);
        let (rdtype, theirs) = widened(&reference, r);
        assert_eq!(dtype, rdtype, "{}", t.key);
        assert!(
            ours.as_ref() == theirs.as_slice(),
            "{}: values differ",
            t.key
        );
        if src.dtype == DType::F16 {
            widened_count += 1;
            assert_eq!(r.dtype, DType::F16, "the converter keeps fp16");
        }
    }
    assert!(widened_count > 0);
    let nbt = mapping
        .tensors
        .iter()
        .filter(|t| t.key.ends_with("num_batches_tracked"))
        .count();
    assert_eq!(widened_count + nbt, mapping.tensors.len());
}

#[test]
fn report_snapshot() {
    let ck = open("yolov8_tiny.pt");
    let view = CheckpointView::from_checkpoint(&ck);
    let plan = V8.plan(&view, &AdapterOptions::default()).unwrap();
    let mapping = plan.resolve(&view).unwrap();
    insta::assert_snapshot!(Report::new(&view, &mapping).render());
}

#[test]
fn a_newer_layout_fails_naming_the_unmatched_module_paths() {
    let ck = open("yolo11_tiny.pt");
    let view = CheckpointView::from_checkpoint(&ck);
    assert_eq!(V8.detect(&view, None).level, Level::Low);
    let e = V8.plan(&view, &AdapterOptions::default()).unwrap_err();
    let AdapterError::NotApplicable { reason, .. } = &e else {
        panic!("{e}")
    };
    // YOLO11's C2PSA (model.10) and its Detect at model.23 have no place in the v8 table.
    assert!(
        reason.contains("model.10 (42 keys, e.g. model.10.cv1.conv)"),
        "{reason}"
    );
    assert!(reason.contains("model.23 ("), "{reason}");
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn class_count_mismatch_names_both_numbers() {
    let ck = open("yolov8_tiny.pt");
    let view = CheckpointView::from_checkpoint(&ck);
    let config = |n: u64| json!({"model": {"bbox_head": {"head_module": {"num_classes": n}}}});
    assert_eq!(check_class_count(&YOLOV8, &view, Some(&config(8))), Ok(()));
    let e = check_class_count(&YOLOV8, &view, Some(&config(80))).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("the checkpoint has 8 classes") && text.contains("the config has 80"),
        "{text}"
    );
    assert!(text.contains("num_classes=8"), "{text}");
    let c = V8.detect(&view, Some(&config(80)));
    assert_eq!(c.level, Level::High);
    assert!(text.ends_with(&c.reason), "{text} / {}", c.reason);
}

#[test]
fn other_checkpoints_are_not_claimed() {
    let ck = open("yolov8_tiny_mmyolo.pth");
    let view = CheckpointView::from_checkpoint(&ck);
    assert_eq!(V8.detect(&view, None).level, Level::None);
    assert!(matches!(
        V8.plan(&view, &AdapterOptions::default()),
        Err(AdapterError::MissingSection { .. })
    ));
}

#[test]
fn a_bare_ultralytics_state_dict_maps_the_same_way() {
    // `torch.save(model.state_dict(), f)`: the same keys at the top level, no pickled module.
    let ck = open("yolov8_tiny.pt");
    let view = CheckpointView::from_checkpoint(&ck);
    let mut bare = view.clone();
    let model = bare.sections.shift_remove("model").unwrap();
    bare.sections.insert("<root>".to_owned(), model);
    let keys = |v: &CheckpointView| {
        V8.plan(v, &AdapterOptions::default())
            .unwrap()
            .resolve(v)
            .unwrap()
            .keys()
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&bare), keys(&view));
}

/// YOLOv5u: the adapted tensors (fp32 after widening) hash to what mmyolo's
/// `yolov5u_to_mmyolo.py` wrote for the same file, widened the same way
/// (tests/fixtures/ultralytics/yolov5u_tiny.json; the converter's .pth is not committed).
#[test]
fn yolov5u_equals_the_real_converter_tensor_for_tensor() {
    let ck = open("yolov5u_tiny.pt");
    let view = CheckpointView::from_checkpoint(&ck);
    let v5u = Ultralytics(&YOLOV5U);
    assert_eq!(v5u.detect(&view, None).level, Level::High);
    assert_eq!(V8.detect(&view, None).level, Level::None);
    let mapping = v5u
        .plan(&view, &AdapterOptions::default())
        .unwrap()
        .resolve(&view)
        .unwrap();
    let path = format!(
        "{}/../../tests/fixtures/ultralytics/yolov5u_tiny.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let listing: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let want = listing["converted"].as_array().unwrap();
    assert_eq!(
        mapping.keys(),
        want.iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect::<Vec<_>>()
    );
    let section = ck.section(&mapping.section).unwrap();
    for (t, w) in mapping.tensors.iter().zip(want) {
        let src = &section.tensors[&t.source_key];
        let (_, shape, bytes) =
            apply_tensor_ops(src.dtype, &src.shape, ck.tensor_bytes(src).unwrap(), &t.ops).unwrap();
        let want_shape: Vec<usize> = serde_json::from_value(w["shape"].clone()).unwrap();
        assert_eq!(shape, want_shape, "{}", t.key);
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            w["sha256"].as_str().unwrap(),
            "{}",
            t.key
        );
    }
}
