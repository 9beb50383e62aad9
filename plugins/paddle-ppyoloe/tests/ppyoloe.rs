//! `paddle.ppyoloe` on tests/fixtures/foreign/ppyoloe_tiny.pdparams (written by
//! tests/fixtures/generate/make_foreign_refs.py as `paddle.save` lays out a state dict — a
//! protocol-4 pickle of numpy arrays plus the `StructuredToParameterName@@` table — with pickle +
//! numpy, paddle not being installable there): the adapted state dict equals, tensor for tensor
//! (names in order, dtype, shape, sha256 of the values), what mmyolo 0.6's `ppyoloe_to_mmyolo.py`
//! wrote for the same file (`ppyoloe_tiny_mmyolo.json`), but for `proj_conv`, which is dropped with
//! its reason (mmyolo's head has no such parameter).

use mmcompat_plugin_paddle_ppyoloe::{PaddlePpyoloe, IMAGENET_OPTION};
use mmcompat_registry::adapter::{
    apply_tensor_ops, AdapterOptions, CheckpointAdapter, CheckpointView, Level, Report,
};
use mmcompat_registry::checkpoint::{Checkpoint, Format};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> String {
    format!(
        "{}/../../tests/fixtures/foreign/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn open(name: &str) -> Checkpoint {
    Checkpoint::open(fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn equals_the_real_converter_tensor_for_tensor_but_proj_conv() {
    let ck = open("ppyoloe_tiny.pdparams");
    assert_eq!(ck.format(), Format::Pickle);
    let view = CheckpointView::from_checkpoint(&ck);
    assert_eq!(PaddlePpyoloe.detect(&view, None).level, Level::High);
    let mapping = PaddlePpyoloe
        .plan(&view, &AdapterOptions::default())
        .unwrap()
        .resolve(&view)
        .unwrap();
    let listing: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("ppyoloe_tiny_mmyolo.json")).unwrap(),
    )
    .unwrap();
    let (proj, want): (Vec<&Value>, Vec<&Value>) = listing["converted"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|e| e["name"] == "bbox_head.head_module.proj_conv.weight");
    assert_eq!(proj.len(), 1);
    assert_eq!(
        mapping.keys(),
        want.iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        "the converter's keys, in its order"
    );
    let section = ck.section(&mapping.section).unwrap();
    for (t, w) in mapping.tensors.iter().zip(&want) {
        let src = &section.tensors[&t.source_key];
        let (dtype, shape, bytes) =
            apply_tensor_ops(src.dtype, &src.shape, ck.tensor_bytes(src).unwrap(), &t.ops).unwrap();
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
    let dropped: Vec<&str> = mapping.dropped.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(dropped, ["yolo_head.proj_conv.weight"]);
}

#[test]
fn the_name_table_is_data_and_numpy_is_not_opaque() {
    let ck = open("ppyoloe_tiny.pdparams");
    let table = ck.root().get("StructuredToParameterName@@").unwrap();
    assert!(table.get("yolo_head.proj_conv.weight").is_some());
    assert!(ck.opaque_globals().is_empty(), "{:?}", ck.opaque_globals());
}

#[test]
fn other_foreign_files_are_not_ppyoloe() {
    for file in ["yolov5_tiny.pt", "yolov7-tiny.pt", "yolox_tiny.pth"] {
        let ck = open(file);
        let view = CheckpointView::from_checkpoint(&ck);
        let c = PaddlePpyoloe.detect(&view, None);
        assert_eq!(c.level, Level::None, "{file}: {}", c.reason);
    }
}

/// The script's --imagenet-pretrain branch forced on a detector file: its keys have no stage
/// index where that branch reads one; the plan fails naming them, as the script would raise.
#[test]
fn the_imagenet_branch_on_a_detector_file_fails_naming_keys() {
    let ck = open("ppyoloe_tiny.pdparams");
    let view = CheckpointView::from_checkpoint(&ck);
    let mut options = AdapterOptions::default();
    options
        .extra
        .insert(IMAGENET_OPTION.to_owned(), "true".to_owned());
    let e = PaddlePpyoloe.plan(&view, &options).unwrap_err();
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn report_snapshot() {
    let ck = open("ppyoloe_tiny.pdparams");
    let view = CheckpointView::from_checkpoint(&ck);
    let plan = PaddlePpyoloe
        .plan(&view, &AdapterOptions::default())
        .unwrap();
    let mapping = plan.resolve(&view).unwrap();
    insta::assert_snapshot!(Report::new(&view, &mapping).render());
}

/// A config for another class count: the adapter still applies, and its reason names both counts
/// and the option that makes them agree.
#[test]
fn class_count_mismatch_names_both_numbers() {
    let ck = open("ppyoloe_tiny.pdparams");
    let view = CheckpointView::from_checkpoint(&ck);
    let config =
        |n: u64| serde_json::json!({"model": {"bbox_head": {"head_module": {"num_classes": n}}}});
    let same = PaddlePpyoloe.detect(&view, Some(&config(8)));
    assert!(!same.reason.contains("classes"), "{}", same.reason);
    let c = PaddlePpyoloe.detect(&view, Some(&config(80)));
    assert_eq!(c.level, Level::High);
    insta::assert_snapshot!(c.reason);
}
