//! mmdet ↔ mmyolo RTMDet key layouts on the REAL fixtures, checked against the REAL converter:
//! `tests/data/rtmdet_to_mmyolo_keys.json` is what mmyolo 0.6.0's `rtmdet_to_mmyolo.py` produced
//! from `rtmdet_nano_mmdet.pth` (recorded by `tests/data/record_rtmdet_to_mmyolo.py`).

use mmcompat_plugin_rtmdet_layout::{MmdetToMmyolo, MmyoloToMmdet};
use mmcompat_registry::adapter::{
    AdapterOptions, AdapterSet, CheckpointAdapter, CheckpointView, Level, Report,
};
use serde_json::json;

fn fixture(name: &str) -> CheckpointView {
    let path = format!(
        "{}/../../tests/fixtures/checkpoints/{name}.keys.json",
        env!("CARGO_MANIFEST_DIR")
    );
    CheckpointView::from_keys_json(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn recorded() -> serde_json::Value {
    serde_json::from_str(include_str!("data/rtmdet_to_mmyolo_keys.json")).unwrap()
}

#[test]
fn mmdet_to_mmyolo_matches_the_real_converter_key_for_key() {
    let mmdet = fixture("rtmdet_nano_mmdet");
    let rec = recorded();
    let src: Vec<&str> = rec["source_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let want: Vec<&str> = rec["output_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ours_src: Vec<&str> = mmdet
        .section("state_dict")
        .unwrap()
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(ours_src, src, "the recording was made from this fixture");
    let mapping = MmdetToMmyolo
        .plan(&mmdet, &AdapterOptions::default())
        .unwrap()
        .resolve(&mmdet)
        .unwrap();
    assert_eq!(mapping.keys(), want);
    // And it is exactly the key set (and shapes) of the mmyolo model.
    let mut ours: Vec<(String, Vec<usize>)> = mapping
        .tensors
        .iter()
        .map(|t| (t.key.clone(), t.shape.clone()))
        .collect();
    let mut yolo: Vec<(String, Vec<usize>)> = fixture("rtmdet_nano_mmyolo")
        .section("state_dict")
        .unwrap()
        .iter()
        .map(|e| (e.key.clone(), e.shape.clone()))
        .collect();
    ours.sort();
    yolo.sort();
    assert_eq!(ours, yolo);
    // The converter loses meta (writes None); we keep it: the plan has no meta op and says so.
    assert!(rec["output_meta"].is_null());
    assert!(mapping.notes.iter().any(|n| n.contains("meta kept")));
    insta::assert_snapshot!(
        "mmdet_to_mmyolo_report",
        Report::new(&mmdet, &mapping).render()
    );
    insta::assert_snapshot!("mmdet_to_mmyolo_keys", mapping.key_listing());
}

#[test]
fn mmyolo_to_mmdet_gives_the_mmdet_keys() {
    let yolo = fixture("rtmdet_nano_mmyolo");
    let mapping = MmyoloToMmdet
        .plan(&yolo, &AdapterOptions::default())
        .unwrap()
        .resolve(&yolo)
        .unwrap();
    let mut ours: Vec<(String, Vec<usize>)> = mapping
        .tensors
        .iter()
        .map(|t| (t.key.clone(), t.shape.clone()))
        .collect();
    let mut mmdet: Vec<(String, Vec<usize>)> = fixture("rtmdet_nano_mmdet")
        .section("state_dict")
        .unwrap()
        .iter()
        .map(|e| (e.key.clone(), e.shape.clone()))
        .collect();
    ours.sort();
    mmdet.sort();
    assert_eq!(ours, mmdet);
    insta::assert_snapshot!(
        "mmyolo_to_mmdet_report",
        Report::new(&yolo, &mapping).render()
    );
    insta::assert_snapshot!("mmyolo_to_mmdet_keys", mapping.key_listing());
}

#[test]
fn round_trip_is_identity() {
    let mmdet = fixture("rtmdet_nano_mmdet");
    let there = MmdetToMmyolo
        .plan(&mmdet, &AdapterOptions::default())
        .unwrap()
        .resolve(&mmdet)
        .unwrap();
    let yolo_view = there.as_view(&mmdet);
    let back = MmyoloToMmdet
        .plan(&yolo_view, &AdapterOptions::default())
        .unwrap()
        .resolve(&yolo_view)
        .unwrap();
    let original: Vec<&str> = mmdet
        .section("state_dict")
        .unwrap()
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(back.keys(), original);
}

#[test]
fn detection_uses_the_config_model_type() {
    let mmdet = fixture("rtmdet_nano_mmdet");
    let yolo_cfg = json!({"model": {"type": "YOLODetector"}});
    let mmdet_cfg = json!({"model": {"type": "mmdet.RTMDet"}});
    assert_eq!(
        MmdetToMmyolo.detect(&mmdet, Some(&yolo_cfg)).level,
        Level::High
    );
    assert_eq!(MmdetToMmyolo.detect(&mmdet, None).level, Level::Low);
    assert_eq!(
        MmdetToMmyolo.detect(&mmdet, Some(&mmdet_cfg)).level,
        Level::None
    );
    assert_eq!(
        MmyoloToMmdet.detect(&mmdet, Some(&mmdet_cfg)).level,
        Level::None
    );
    let yolo = fixture("rtmdet_nano_mmyolo");
    assert_eq!(
        MmyoloToMmdet.detect(&yolo, Some(&mmdet_cfg)).level,
        Level::High
    );
    assert_eq!(
        MmdetToMmyolo.detect(&yolo, Some(&yolo_cfg)).level,
        Level::None
    );
    // The distillation checkpoint is not an RTMDet state dict before the student is extracted.
    assert_eq!(
        MmdetToMmyolo
            .detect(&fixture("kd_nano_rtmdet_neck"), None)
            .level,
        Level::None
    );
}

#[test]
fn registered_statically() {
    mmcompat_plugin_rtmdet_layout::link();
    let set = AdapterSet::from_inventory().unwrap();
    assert!(
        set.get("mmdet_to_mmyolo.rtmdet").is_ok() && set.get("mmyolo_to_mmdet.rtmdet").is_ok(),
        "{:?}",
        set.names()
    );
}
