//! Builds (if needed) and loads the example cdylib through the C ABI, as `--adapters lib.so` does.

use std::path::PathBuf;

use mmcompat_registry::adapter::{
    AdapterOptions, AdapterSet, AdapterSource, CheckpointAdapter, CheckpointView, Level,
};
use mmcompat_registry::plugin::load_plugin;

fn lib_name() -> String {
    format!(
        "{}mmcompat_plugin_example_dynamic{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The cdylib cargo built next to this test binary (`target/<profile>/deps/..`); `cargo test`
/// builds it together with the rlib. If it is missing (e.g. a filtered build), build it with the
/// same cargo and target dir.
fn plugin_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    let profile = deps.parent().expect("profile dir").to_path_buf();
    let find = || {
        [profile.join(lib_name()), deps.join(lib_name())]
            .into_iter()
            .find(|p| p.exists())
    };
    if let Some(p) = find() {
        return p;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .args(["build", "-p", "mmcompat-plugin-example-dynamic"])
        .env("CARGO_TARGET_DIR", profile.parent().expect("target dir"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success());
    find().unwrap_or_else(|| panic!("{} not found under {}", lib_name(), profile.display()))
}

/// The real mmyolo fixture's keys as a PyTorch Lightning checkpoint would hold them.
fn lightning_view() -> (CheckpointView, Vec<String>) {
    let path = format!(
        "{}/../../tests/fixtures/checkpoints/rtmdet_nano_mmyolo.keys.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut view = CheckpointView::from_keys_json(path).unwrap();
    let original: Vec<String> = view
        .section("state_dict")
        .unwrap()
        .iter()
        .map(|e| e.key.clone())
        .collect();
    for e in view.sections.get_mut("state_dict").unwrap() {
        e.key = format!("model.{}", e.key);
    }
    view.top_level_keys = [
        "epoch",
        "global_step",
        "pytorch-lightning_version",
        "state_dict",
    ]
    .map(String::from)
    .to_vec();
    (view, original)
}

#[test]
fn loads_and_runs_the_example_plugin() {
    let path = plugin_path();
    let plugin = load_plugin(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plugin.name(), "lightning.model_prefix");
    assert_eq!(plugin.info().version, env!("CARGO_PKG_VERSION"));
    let (view, original) = lightning_view();
    let c = plugin.detect(&view, None);
    assert_eq!(c.level, Level::High, "{}", c.reason);
    let plan = plugin.plan(&view, &AdapterOptions::default()).unwrap();
    let mapping = plan.resolve(&view).unwrap();
    assert_eq!(
        mapping.keys(),
        original.iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[test]
fn a_panicking_plugin_is_an_error_not_an_abort() {
    let plugin = load_plugin(plugin_path()).unwrap();
    let (view, _) = lightning_view();
    let mut options = AdapterOptions::default();
    options
        .extra
        .insert("example_dynamic_panic".into(), "1".into());
    let err = plugin.plan(&view, &options).unwrap_err().to_string();
    assert!(
        err.contains("panicked in plan") && err.contains("example_dynamic_panic requested"),
        "{err}"
    );
    // Still usable afterwards.
    assert!(plugin.plan(&view, &AdapterOptions::default()).is_ok());
}

#[test]
fn adapter_set_lists_the_dynamic_source() {
    let path = plugin_path();
    let mut set = AdapterSet::empty();
    set.load_path(&path).unwrap();
    assert_eq!(
        set.source("lightning.model_prefix"),
        Some(&AdapterSource::Dynamic { path: path.clone() })
    );
    let listing = set.listing();
    assert!(listing[0].source.starts_with("dynamic ("), "{listing:?}");
    // Loading it twice is a duplicate, named with both sources.
    let err = set.load_path(&path).unwrap_err().to_string();
    assert!(err.contains("defined twice"), "{err}");
}
