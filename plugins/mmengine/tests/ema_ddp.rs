//! mmengine adapters on the REAL fixture keys (`tests/fixtures/checkpoints/*.keys.json`).

use mmcompat_plugin_mmengine::{Ddp, Ema};
use mmcompat_registry::adapter::{
    AdapterOptions, AdapterSet, CheckpointAdapter, CheckpointView, EmaChoice, Level, Report,
};

fn fixture(name: &str) -> CheckpointView {
    let path = format!(
        "{}/../../tests/fixtures/checkpoints/{name}.keys.json",
        env!("CARGO_MANIFEST_DIR")
    );
    CheckpointView::from_keys_json(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn ema_default_is_state_dict_and_the_report_says_so() {
    let kd = fixture("kd_nano_rtmdet_neck");
    assert_eq!(Ema.detect(&kd, None).level, Level::Low);
    let mapping = Ema
        .plan(&kd, &AdapterOptions::default())
        .unwrap()
        .resolve(&kd)
        .unwrap();
    assert_eq!(mapping.section, "state_dict");
    assert_eq!(mapping.tensors.len(), 991);
    let report = Report::new(&kd, &mapping).render();
    assert!(report.contains("state_dict = the EMA weights"), "{report}");
    insta::assert_snapshot!("ema_default_report", report);
}

#[test]
fn ema_raw_uses_ema_state_dict_without_module_and_steps() {
    let kd = fixture("kd_nano_rtmdet_neck");
    let options = AdapterOptions {
        ema: EmaChoice::Raw,
        ..Default::default()
    };
    let mapping = Ema.plan(&kd, &options).unwrap().resolve(&kd).unwrap();
    assert_eq!(mapping.section, "ema_state_dict");
    // Same keys as state_dict (EMAHook swaps every `module.` key with the state_dict key).
    let state: Vec<&str> = kd
        .section("state_dict")
        .unwrap()
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(mapping.keys(), state);
    assert_eq!(mapping.dropped.len(), 1);
    assert_eq!(mapping.dropped[0].key, "steps");
    insta::assert_snapshot!("ema_raw_report", Report::new(&kd, &mapping).render());
}

#[test]
fn explicit_ema_on_a_checkpoint_without_ema_is_an_error() {
    let plain = fixture("rtmdet_nano_mmdet");
    assert_eq!(Ema.detect(&plain, None).level, Level::None);
    let options = AdapterOptions {
        ema: EmaChoice::Ema,
        ..Default::default()
    };
    let err = Ema.plan(&plain, &options).unwrap_err().to_string();
    assert!(err.contains("no ema_state_dict"), "{err}");
}

#[test]
fn ddp_strips_only_the_leading_module() {
    let mut view = fixture("rtmdet_nano_mmdet");
    let original: Vec<String> = view
        .section("state_dict")
        .unwrap()
        .iter()
        .map(|e| e.key.clone())
        .collect();
    for e in view.sections.get_mut("state_dict").unwrap() {
        e.key = format!("module.{}", e.key);
    }
    // A key with `module.` inside must keep it.
    view.sections.get_mut("state_dict").unwrap()[0].key = "module.backbone.module.weight".into();
    assert_eq!(Ddp.detect(&view, None).level, Level::High);
    let mapping = Ddp
        .plan(&view, &AdapterOptions::default())
        .unwrap()
        .resolve(&view)
        .unwrap();
    assert_eq!(mapping.keys()[0], "backbone.module.weight");
    assert_eq!(
        mapping.keys()[1..],
        original.iter().map(String::as_str).collect::<Vec<_>>()[1..]
    );
    insta::assert_snapshot!("ddp_report", Report::new(&view, &mapping).render());
}

#[test]
fn registered_statically() {
    mmcompat_plugin_mmengine::link();
    let set = AdapterSet::from_inventory().unwrap();
    assert!(
        set.get("mmengine.ema").is_ok() && set.get("mmengine.ddp").is_ok(),
        "{:?}",
        set.names()
    );
}
