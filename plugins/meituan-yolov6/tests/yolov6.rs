//! `meituan.yolov6` / `meituan.yolov6_v3` on the fixtures of tests/fixtures/foreign (written by
//! tests/fixtures/generate/make_foreign_refs.py: stand-in YOLOv6 module trees named after
//! YOLOv6's modules, saved in the released (v2) and trainer (v3) layouts): the adapted state dict
//! equals, tensor for tensor (names in order, dtype, shape, sha256 of the values), what mmyolo
//! 0.6's `yolov6_to_mmyolo.py` / `yolov6_v3_to_mmyolo.py` wrote for the same file
//! (`yolov6v{2,3}_tiny_mmyolo.json`), but for v3's `distill_ns_head`, which is dropped with its
//! reason.

use mmcompat_plugin_meituan_yolov6::{MeituanYolov6, Version};
use mmcompat_registry::adapter::{
    apply_tensor_ops, AdapterOptions, CheckpointAdapter, CheckpointView, Level, Report,
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

fn open(name: &str) -> Checkpoint {
    Checkpoint::open(fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// Our mapping against the converter's listing; returns the listing's `distill_ns_head` keys.
fn check_against_converter(version: Version, file: &str, listing: &str) -> Vec<String> {
    let ck = open(file);
    let view = CheckpointView::from_checkpoint(&ck);
    let adapter = MeituanYolov6(version);
    assert_eq!(adapter.detect(&view, None).level, Level::High);
    let mapping = adapter
        .plan(&view, &AdapterOptions::default())
        .unwrap()
        .resolve(&view)
        .unwrap();
    let listing: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(listing)).unwrap()).unwrap();
    let (distill, want): (Vec<&Value>, Vec<&Value>) = listing["converted"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|e| e["name"].as_str().unwrap().contains(".distill_ns_head."));
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
        if src.dtype.is_float() {
            assert_eq!(src.dtype, DType::F16, "YOLOv6 saves fp16");
            assert_eq!(dtype, DType::F32, "the script's .float()");
        }
        let want_shape: Vec<usize> = serde_json::from_value(w["shape"].clone()).unwrap();
        assert_eq!(shape, want_shape, "{}", t.key);
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            w["sha256"].as_str().unwrap(),
            "{}: values differ",
            t.key
        );
    }
    // Everything else dropped: Detect's proj/proj_conv, and v3's distill_ns_head.
    let dropped: Vec<&str> = mapping.dropped.iter().map(|d| d.key.as_str()).collect();
    let proj = dropped.iter().filter(|k| k.contains("proj")).count();
    assert_eq!(proj, 2, "{dropped:?}");
    let distill_sources: Vec<String> = distill
        .iter()
        .map(|e| {
            e["name"]
                .as_str()
                .unwrap()
                .replace("bbox_head.head_module.distill_ns_head", "detect.reg_preds")
        })
        .collect();
    let ours: Vec<&str> = dropped
        .iter()
        .copied()
        .filter(|k| !k.contains("proj"))
        .collect();
    assert_eq!(ours, distill_sources);
    distill_sources
}

#[test]
fn v2_equals_the_real_converter_tensor_for_tensor() {
    let distill =
        check_against_converter(Version::V2, "yolov6v2_tiny.pt", "yolov6v2_tiny_mmyolo.json");
    assert!(distill.is_empty());
}

#[test]
fn v3_equals_the_real_converter_but_for_distill_ns_head() {
    let distill =
        check_against_converter(Version::V3, "yolov6v3_tiny.pt", "yolov6v3_tiny_mmyolo.json");
    // Three levels, weight and bias each.
    assert_eq!(distill.len(), 6, "{distill:?}");
}

#[test]
fn the_versions_and_other_files_are_told_apart() {
    let v2 = open("yolov6v2_tiny.pt");
    let v3 = open("yolov6v3_tiny.pt");
    let yolox = open("yolox_tiny.pth");
    for (ck, adapter, want) in [
        (&v2, Version::V3, Level::None),
        (&v3, Version::V2, Level::None),
        (&yolox, Version::V2, Level::None),
        (&yolox, Version::V3, Level::None),
    ] {
        let view = CheckpointView::from_checkpoint(ck);
        let c = MeituanYolov6(adapter).detect(&view, None);
        assert_eq!(c.level, want, "{}", c.reason);
    }
}

/// A training run's file holds `model` (raw weights) and `ema` (a module): the script takes `ema`,
/// and so do we; a released file (`ema` None: no `ema` section) gives `model`.
#[test]
fn the_ema_model_is_taken_when_there_is_one() {
    let ck = open("yolov6v3_tiny.pt");
    let released = CheckpointView::from_checkpoint(&ck);
    assert_eq!(released.section_names(), ["model"]);
    let adapter = MeituanYolov6(Version::V3);
    let plan = adapter.plan(&released, &AdapterOptions::default()).unwrap();
    assert_eq!(plan.section, "model");
    let mut trainer = released.clone();
    let ema = trainer.sections["model"].clone();
    trainer.sections.insert("ema".to_owned(), ema);
    assert_eq!(adapter.detect(&trainer, None).level, Level::High);
    let plan = adapter.plan(&trainer, &AdapterOptions::default()).unwrap();
    assert_eq!(plan.section, "ema");
    assert!(
        plan.notes.iter().any(|n| n.contains("EMA weights")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn report_snapshots() {
    for (version, file) in [
        (Version::V2, "yolov6v2_tiny.pt"),
        (Version::V3, "yolov6v3_tiny.pt"),
    ] {
        let ck = open(file);
        let view = CheckpointView::from_checkpoint(&ck);
        let plan = MeituanYolov6(version)
            .plan(&view, &AdapterOptions::default())
            .unwrap();
        let mapping = plan.resolve(&view).unwrap();
        insta::assert_snapshot!(file, Report::new(&view, &mapping).render());
    }
}

/// A config for another class count: the adapter still applies, and its reason names both counts
/// and the option that makes them agree (the strict check then fails on the cls_preds shapes).
#[test]
fn class_count_mismatch_names_both_numbers() {
    let ck = open("yolov6v2_tiny.pt");
    let view = CheckpointView::from_checkpoint(&ck);
    let config =
        |n: u64| serde_json::json!({"model": {"bbox_head": {"head_module": {"num_classes": n}}}});
    let adapter = MeituanYolov6(Version::V2);
    let same = adapter.detect(&view, Some(&config(8)));
    assert!(!same.reason.contains("classes"), "{}", same.reason);
    let c = adapter.detect(&view, Some(&config(80)));
    assert_eq!(c.level, Level::High);
    insta::assert_snapshot!(c.reason);
}
