//! `ultralytics.yolov5` (the anchor-based v7.0 layout) on the fixture of tests/fixtures/foreign
//! (tests/fixtures/generate/make_foreign_refs.py: the real `yolov5` package's DetectionModel,
//! saved by its train.py layout and its own `strip_optimizer`): the adapted state dict equals,
//! tensor for tensor, what mmyolo 0.6's `yolov5_to_mmyolo.py` wrote for the same file, both
//! widened fp16 → fp32 (`yolov5_tiny_mmyolo.json` holds the converter's fp16 values).

use mmcompat_plugin_ultralytics::yolov5::Yolov5;
use mmcompat_plugin_ultralytics::{Ultralytics, YOLOV5U, YOLOV8};
use mmcompat_registry::adapter::{
    apply_tensor_ops, AdapterOptions, CheckpointAdapter, CheckpointView, Level, Report, TensorOp,
};
use mmcompat_registry::checkpoint::Checkpoint;
use mmcompat_registry::DType;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> String {
    format!(
        "{}/../../tests/fixtures/foreign/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn equals_the_real_converter_tensor_for_tensor() {
    let ck = Checkpoint::open(fixture("yolov5_tiny.pt")).unwrap();
    let view = CheckpointView::from_checkpoint(&ck);
    assert_eq!(Yolov5.detect(&view, None).level, Level::High);
    // The anchor-free adapters step aside.
    assert_eq!(Ultralytics(&YOLOV8).detect(&view, None).level, Level::None);
    assert_eq!(Ultralytics(&YOLOV5U).detect(&view, None).level, Level::None);
    let mapping = Yolov5
        .plan(&view, &AdapterOptions::default())
        .unwrap()
        .resolve(&view)
        .unwrap();
    let listing: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("yolov5_tiny_mmyolo.json")).unwrap())
            .unwrap();
    let want = listing["converted"].as_array().unwrap();
    assert_eq!(
        mapping.keys(),
        want.iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect::<Vec<_>>()
    );
    assert_eq!(mapping.dropped.len(), 1, "{:?}", mapping.dropped);
    assert_eq!(mapping.dropped[0].key, "model.24.anchors");
    let section = ck.section(&mapping.section).unwrap();
    for (t, w) in mapping.tensors.iter().zip(want) {
        let src = &section.tensors[&t.source_key];
        let (dtype, shape, ours) =
            apply_tensor_ops(src.dtype, &src.shape, ck.tensor_bytes(src).unwrap(), &t.ops).unwrap();
        let want_shape: Vec<usize> = serde_json::from_value(w["shape"].clone()).unwrap();
        assert_eq!(shape, want_shape, "{}", t.key);
        // The converter kept the source dtype; ours is that widened.
        assert_eq!(
            src.dtype.torch_name(),
            w["dtype"].as_str().unwrap(),
            "{}",
            t.key
        );
        let theirs = if src.dtype == DType::F16 {
            assert_eq!(dtype, DType::F32);
            // Our source bytes, narrowed back, must hash to the converter's fp16 values.
            let (_, _, narrowed) = apply_tensor_ops(
                dtype,
                &shape,
                ours.clone(),
                &[TensorOp::Cast { dtype: DType::F16 }],
            )
            .unwrap();
            format!("{:x}", Sha256::digest(&narrowed))
        } else {
            format!("{:x}", Sha256::digest(&ours))
        };
        assert_eq!(
            theirs,
            w["sha256"].as_str().unwrap(),
            "{}: values differ",
            t.key
        );
    }
}

#[test]
fn report_snapshot() {
    let ck = Checkpoint::open(fixture("yolov5_tiny.pt")).unwrap();
    let view = CheckpointView::from_checkpoint(&ck);
    let plan = Yolov5.plan(&view, &AdapterOptions::default()).unwrap();
    let mapping = plan.resolve(&view).unwrap();
    insta::assert_snapshot!(Report::new(&view, &mapping).render());
}

#[test]
fn anchor_free_files_are_not_claimed() {
    for name in ["yolov8_tiny.pt", "yolov5u_tiny.pt", "yolo11_tiny.pt"] {
        let path = format!(
            "{}/../../tests/fixtures/ultralytics/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let ck = Checkpoint::open(path).unwrap();
        let view = CheckpointView::from_checkpoint(&ck);
        assert_eq!(Yolov5.detect(&view, None).level, Level::None, "{name}");
    }
}
