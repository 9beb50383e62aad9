//! `wongkinyiu.yolov7` on tests/fixtures/foreign/yolov7-tiny.pt (written by
//! tests/fixtures/generate/make_foreign_refs.py: a STAND-IN of WongKinYiu's reparameterized
//! yolov7-tiny `models.yolo.Model`, module classes named after the repo's, saved as its
//! tools/reparameterization.ipynb saves a deploy model): the adapted state dict equals, tensor for
//! tensor (names in order, dtype, shape, sha256 of the values), what mmyolo 0.6's
//! `yolov7_to_mmyolo.py` wrote for the same file (`yolov7_tiny_mmyolo.json`), the ImplicitA /
//! ImplicitM tensors it adds included (the script sizes them with the released model's constants;
//! the listing holds them at this model's widths and says what the script wrote: see lib.rs).

use mmcompat_plugin_wongkinyiu_yolov7::{WongKinYiuYolov7, VARIANT_OPTION};
use mmcompat_registry::adapter::{
    apply_tensor_ops, AdapterOptions, CheckpointAdapter, CheckpointView, Level, Report, TensorOp,
};
use mmcompat_registry::checkpoint::Checkpoint;
use mmcompat_registry::DType;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

fn fixture(name: &str) -> String {
    format!(
        "{}/../../tests/fixtures/foreign/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn open(name: &str) -> Checkpoint {
    Checkpoint::open(fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn listing() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("yolov7_tiny_mmyolo.json")).unwrap())
        .unwrap()
}

#[test]
fn equals_the_real_converter_tensor_for_tensor() {
    let ck = open("yolov7-tiny.pt");
    let view = CheckpointView::from_checkpoint(&ck);
    assert_eq!(WongKinYiuYolov7.detect(&view, None).level, Level::High);
    let mapping = WongKinYiuYolov7
        .plan(&view, &AdapterOptions::default())
        .unwrap()
        .resolve(&view)
        .unwrap();
    let listing = listing();
    let want = listing["converted"].as_array().unwrap();
    assert_eq!(
        mapping.keys(),
        want.iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        "the converter's keys, in its order"
    );
    let section = ck.section(&mapping.section).unwrap();
    let mut added = 0;
    for (t, w) in mapping.tensors.iter().zip(want) {
        let (dtype, shape, bytes) = if t.source_key.is_empty() {
            added += 1;
            assert!(matches!(t.ops[..], [TensorOp::Fill { .. }]), "{t:?}");
            apply_tensor_ops(t.dtype, &t.shape, Cow::Borrowed(&[]), &t.ops).unwrap()
        } else {
            let src = &section.tensors[&t.source_key];
            if src.dtype.is_float() {
                assert_eq!(src.dtype, DType::F16, "YOLOv7 saves fp16");
            }
            apply_tensor_ops(src.dtype, &src.shape, ck.tensor_bytes(src).unwrap(), &t.ops).unwrap()
        };
        assert_eq!(
            dtype.torch_name(),
            w["dtype"].as_str().unwrap(),
            "{}",
            t.key
        );
        let want_shape: Vec<usize> = serde_json::from_value(w["shape"].clone()).unwrap();
        assert_eq!(shape, want_shape, "{}", t.key);
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            w["sha256"].as_str().unwrap(),
            "{}: values differ",
            t.key
        );
    }
    // Three levels, ImplicitA + ImplicitM each; what the script itself wrote for them.
    assert_eq!(added, 6);
    let wrote = listing["implicit_shapes_written_by_the_converter"]
        .as_object()
        .unwrap();
    assert_eq!(wrote.len(), 6);
    assert_eq!(
        wrote["bbox_head.head_module.convs_pred.0.2.implicit"],
        serde_json::json!([1, 255, 1, 1])
    );
    // Only the Detect's anchors / anchor_grid are dropped.
    let dropped: Vec<&str> = mapping.dropped.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(dropped, ["model.77.anchors", "model.77.anchor_grid"]);
}

#[test]
fn other_foreign_files_are_not_yolov7() {
    for file in ["yolov5_tiny.pt", "yolov6v2_tiny.pt", "yolox_tiny.pth"] {
        let ck = open(file);
        let view = CheckpointView::from_checkpoint(&ck);
        let c = WongKinYiuYolov7.detect(&view, None);
        assert_eq!(c.level, Level::None, "{file}: {}", c.reason);
    }
}

/// The option names a variant whose table does not fit this file: the plan fails naming the
/// keys the script would raise a KeyError on.
#[test]
fn a_wrong_variant_option_fails_naming_the_keys() {
    let ck = open("yolov7-tiny.pt");
    let view = CheckpointView::from_checkpoint(&ck);
    let mut options = AdapterOptions::default();
    options
        .extra
        .insert(VARIANT_OPTION.to_owned(), "yolov7x".to_owned());
    let e = WongKinYiuYolov7.plan(&view, &options).unwrap_err();
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn report_snapshot() {
    let ck = open("yolov7-tiny.pt");
    let view = CheckpointView::from_checkpoint(&ck);
    let plan = WongKinYiuYolov7
        .plan(&view, &AdapterOptions::default())
        .unwrap();
    let mapping = plan.resolve(&view).unwrap();
    insta::assert_snapshot!(Report::new(&view, &mapping).render());
}

/// A config for another class count: the adapter still applies, and its reason names both counts
/// and the option that makes them agree.
#[test]
fn class_count_mismatch_names_both_numbers() {
    let ck = open("yolov7-tiny.pt");
    let view = CheckpointView::from_checkpoint(&ck);
    let config =
        |n: u64| serde_json::json!({"model": {"bbox_head": {"head_module": {"num_classes": n}}}});
    let same = WongKinYiuYolov7.detect(&view, Some(&config(8)));
    assert!(!same.reason.contains("classes"), "{}", same.reason);
    let c = WongKinYiuYolov7.detect(&view, Some(&config(80)));
    assert_eq!(c.level, Level::High);
    insta::assert_snapshot!(c.reason);
}
