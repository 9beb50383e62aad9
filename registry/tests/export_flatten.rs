//! The config flattener of `mmcompat export --format mmdet` (`mmcompat_registry::export`):
//! each fixture config flattened to one `.py` must be byte-equal to the file that
//! `tests/fixtures/generate/check_export_package.py` loaded with the real `Config.fromfile` and
//! `init_detector` (committed as `tests/fixtures/export/<case>.py`), and the tree mmengine read
//! back from it (types included: tuples, ints vs floats) must be the tree we printed.

use std::path::PathBuf;

use indexmap::IndexMap;
use mmcompat_registry::config::{Config, ConfigRoots, Limits, Value};
use mmcompat_registry::export::{
    flat_config_source, flatten_config, python::one_line, python_source, ExportError,
};
use serde_json::json;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture_roots() -> ConfigRoots {
    let mut roots = ConfigRoots::new();
    for pkg in ["mmdet", "mmyolo", "mmrazor"] {
        let d = repo().join(".cache/fixture-configs").join(pkg);
        assert!(
            d.join(".complete").exists(),
            "{} missing: run scripts/install-fixture-configs.sh (make test does)",
            d.display()
        );
        roots.add(pkg, d);
    }
    roots
}

fn verdict() -> serde_json::Value {
    let p = repo().join("tests/fixtures/export/package-check.json");
    serde_json::from_slice(&std::fs::read(&p).expect("package-check.json")).expect("json")
}

/// The generator's `tagged()`: tuples as `{"__tuple__": [...]}`.
fn tagged(v: &Value) -> serde_json::Value {
    match v {
        Value::Tuple(items) => json!({"__tuple__": items.iter().map(tagged).collect::<Vec<_>>()}),
        Value::List(items) => serde_json::Value::Array(items.iter().map(tagged).collect()),
        Value::Dict(d) => {
            serde_json::Value::Object(d.iter().map(|(k, x)| (k.clone(), tagged(x))).collect())
        }
        other => other.to_json(),
    }
}

fn tagged_tree(tree: &IndexMap<String, Value>) -> serde_json::Value {
    tagged(&Value::Dict(tree.clone()))
}

/// `<pkg>::rel` → the fixture config file.
fn config_file(name: &str) -> PathBuf {
    let (pkg, rel) = name.split_once("::").expect("pkg::rel");
    repo().join(".cache/fixture-configs").join(pkg).join(rel)
}

#[test]
fn flattened_fixture_configs_equal_the_files_mmengine_loaded() {
    let verdict = verdict();
    let roots = fixture_roots();
    let cases = verdict["cases"].as_object().expect("cases");
    assert_eq!(cases.len(), 4, "distillation, demo, mmyolo, mmdet");
    for (case, record) in cases {
        assert_eq!(
            record["config_fromfile_equal_expected"], true,
            "{case}: the generator found differences: {}",
            record["config_differences"]
        );
        let cfg = Config::from_file(config_file(record["config"].as_str().unwrap()), &roots)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let flat = flatten_config(&cfg, None, &roots).unwrap_or_else(|e| panic!("{case}: {e}"));
        let source = flat_config_source(&flat);
        let checked =
            std::fs::read_to_string(repo().join(format!("tests/fixtures/export/{case}.py")))
                .expect("committed flattened config");
        assert_eq!(source, checked, "{case}: flattened config changed");
        // mmengine's Config.fromfile(<case>.py) gave exactly the tree we printed.
        assert_eq!(
            tagged_tree(&flat.tree),
            record["config_tagged"],
            "{case}: the tree mmengine read back differs"
        );
        // And our own loader reads it back the same way.
        let back = Config::from_text("flat.py", &source, &ConfigRoots::new(), &Limits::default())
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(back.tree(), &flat.tree, "{case}");
        let distillation = record["config"].as_str().unwrap().contains("kd_");
        assert_eq!(flat.distillation.is_some(), distillation, "{case}");
        assert_eq!(
            flat.tree["default_scope"].as_str(),
            Some(flat.scope.as_str())
        );
    }
}

#[test]
fn distillation_config_becomes_its_student() {
    let roots = fixture_roots();
    let cfg = Config::from_file(
        config_file("mmyolo::mmcompat/kd_nano_rtmdet_neck.py"),
        &roots,
    )
    .unwrap();
    let flat = flatten_config(&cfg, None, &roots).unwrap();
    assert_eq!(flat.distillation.as_deref(), Some("FpnTeacherDistill"));
    assert_eq!(flat.scope, "mmyolo");
    assert_eq!(
        flat.source.file_name().unwrap(),
        "rtmdet_nano_mmyolo.py",
        "keys from the student's own config"
    );
    assert_eq!(
        flat.tree["model"].get("type").and_then(Value::as_str),
        Some("YOLODetector")
    );
    // The hooks of the distillation run (StopDistillHook) are not in the student's config; the
    // student config names no MMRazor type, so nothing had to be dropped.
    assert!(flat.dropped.is_empty(), "{:?}", flat.dropped);
    let source = flat_config_source(&flat);
    let leftovers: Vec<&str> = source
        .lines()
        .filter(|l| l.contains("_base_") || l.contains("::"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:#?}");
    insta::with_settings!({ prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("export_flat_kd_nano_rtmdet_neck", source);
    });
}

/// Printer edge cases, read back by our mmengine-equivalent loader (the fixture configs above are
/// the ones checked against the real mmengine).
#[test]
fn python_literals_round_trip() {
    let mut tree = IndexMap::new();
    let long: Vec<Value> = (0..40).map(|i| Value::Float(i as f64 / 3.0)).collect();
    tree.insert(
        "values".to_string(),
        Value::Dict(IndexMap::from([
            ("one".to_string(), Value::Tuple(vec![Value::Int(1)])),
            ("empty".to_string(), Value::Tuple(vec![])),
            (
                "floats".to_string(),
                Value::List(vec![
                    Value::Float(1e-5),
                    Value::Float(1e20),
                    Value::Float(-0.0),
                    Value::Float(0.1),
                    Value::Float(100.0),
                    Value::Float(f64::INFINITY),
                ]),
            ),
            (
                "flags".to_string(),
                Value::List(vec![Value::None, Value::Bool(true), Value::Bool(false)]),
            ),
            (
                "text".to_string(),
                Value::Str("quote \" back \\ newline \n {{ fileDirname }} é".into()),
            ),
            ("long".to_string(), Value::Tuple(long)),
        ])),
    );
    tree.insert(
        "odd_keys".to_string(),
        Value::Dict(IndexMap::from([
            ("with space".to_string(), Value::Int(1)),
            ("class".to_string(), Value::Int(2)),
        ])),
    );
    let source = python_source(&["header".to_string()], &tree);
    assert!(source.lines().all(|l| l.len() <= 100), "{source}");
    assert!(
        source.contains("{\"with space\": 1, \"class\": 2}"),
        "{source}"
    );
    let back = Config::from_text("t.py", &source, &ConfigRoots::new(), &Limits::default())
        .unwrap_or_else(|e| panic!("{e}\n{source}"));
    assert_eq!(back.tree(), &tree, "{source}");
    assert_eq!(
        one_line(&Value::Tuple(vec![Value::Str("a".into())])),
        "(\"a\",)"
    );
}

#[test]
fn leftover_package_reference_and_bad_names_are_errors() {
    let roots = ConfigRoots::new();
    let model = Value::Dict(IndexMap::from([
        ("type".to_string(), Value::Str("YOLODetector".into())),
        (
            "init_cfg".to_string(),
            Value::Dict(IndexMap::from([(
                "cfg".to_string(),
                Value::Str("mmdet::rtmdet/x.py".into()),
            )])),
        ),
    ]));
    let cfg = Config::from_tree(
        "/x/cfg.py",
        IndexMap::from([
            ("default_scope".to_string(), Value::Str("mmyolo".into())),
            ("model".to_string(), model),
        ]),
    );
    let err = flatten_config(&cfg, None, &roots).unwrap_err();
    assert!(matches!(err, ExportError::PackageReference { .. }), "{err}");
    assert!(err.to_string().contains("`model.init_cfg.cfg`"), "{err}");

    let cfg = Config::from_tree(
        "/x/cfg.json",
        IndexMap::from([
            ("model".to_string(), Value::Dict(IndexMap::new())),
            ("not-a-name".to_string(), Value::Int(1)),
        ]),
    );
    let err = flatten_config(&cfg, None, &roots).unwrap_err();
    assert!(err.to_string().contains("`not-a-name`"), "{err}");
}
