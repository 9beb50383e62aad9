//! `megvii.yolox` on the fixture of tests/fixtures/foreign (written by
//! tests/fixtures/generate/make_foreign_refs.py: a YOLOX state dict in the layout the real
//! `yolox` package's model has, saved as YOLOX's trainer does): the adapted state dict equals,
//! tensor for tensor (names in order, dtype, shape, sha256 of the values), what mmyolo 0.6's
//! `yolox_to_mmyolo.py` wrote for the same file (`yolox_tiny_mmyolo.json`).

use mmcompat_plugin_megvii_yolox::MegviiYolox;
use mmcompat_registry::adapter::{
    apply_tensor_ops, AdapterError, AdapterOptions, CheckpointAdapter, CheckpointView, Level,
    Report,
};
use mmcompat_registry::checkpoint::Checkpoint;
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
fn equals_the_real_converter_tensor_for_tensor() {
    let ck = open("yolox_tiny.pth");
    let view = CheckpointView::from_checkpoint(&ck);
    assert_eq!(MegviiYolox.detect(&view, None).level, Level::High);
    let mapping = MegviiYolox
        .plan(&view, &AdapterOptions::default())
        .unwrap()
        .resolve(&view)
        .unwrap();
    let listing: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("yolox_tiny_mmyolo.json")).unwrap())
            .unwrap();
    let want = listing["converted"].as_array().unwrap();
    assert_eq!(
        mapping.keys(),
        want.iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        "the converter's keys, in its order"
    );
    assert!(mapping.dropped.is_empty());
    let section = ck.section(&mapping.section).unwrap();
    for (t, w) in mapping.tensors.iter().zip(want) {
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
}

#[test]
fn report_snapshot() {
    let ck = open("yolox_tiny.pth");
    let view = CheckpointView::from_checkpoint(&ck);
    let plan = MegviiYolox.plan(&view, &AdapterOptions::default()).unwrap();
    let mapping = plan.resolve(&view).unwrap();
    insta::assert_snapshot!(Report::new(&view, &mapping).render());
}

#[test]
fn other_checkpoints_are_not_claimed() {
    for name in ["yolov6v2_tiny.pt", "yolov6v3_tiny.pt"] {
        let ck = open(name);
        let view = CheckpointView::from_checkpoint(&ck);
        let c = MegviiYolox.detect(&view, None);
        assert_eq!(c.level, Level::None, "{name}: {}", c.reason);
        assert!(matches!(
            MegviiYolox.plan(&view, &AdapterOptions::default()),
            Err(AdapterError::MissingSection { .. }) | Err(AdapterError::NotApplicable { .. })
        ));
    }
}

/// A key the script has no branch for (a second neck CSP block: `neck_dict` knows `m.0.` only)
/// fails the plan naming the key, where the script would raise UnboundLocalError.
#[test]
fn an_unknown_key_fails_naming_it() {
    let ck = open("yolox_tiny.pth");
    let mut view = CheckpointView::from_checkpoint(&ck);
    let model = view.sections.get_mut("model").unwrap();
    let mut extra = model[0].clone();
    extra.key = "backbone.C3_p4.m.1.conv1.conv.weight".to_owned();
    model.push(extra);
    let e = MegviiYolox
        .plan(&view, &AdapterOptions::default())
        .unwrap_err();
    insta::assert_snapshot!(e.to_string());
}
