//! Model names through the packages' metafiles (`model_zoo.rs`) against the real mmengine:
//! tests/fixtures/model-names.json records what `BaseInferencer._load_model_from_metafile`
//! returns for each name (tests/fixtures/generate/make_model_names.py) and how many models
//! `_get_models_from_metafile` lists per package, read from the trees `make setup` fetched.

use std::path::{Path, PathBuf};

use mmcompat_registry::config::roots::RootSource;
use mmcompat_registry::config::ConfigRoots;
use mmcompat_registry::model_zoo::{ModelIndex, ModelZooError};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/model-names.json"))
        .expect("tests/fixtures/model-names.json");
    serde_json::from_str(&text).expect("json")
}

/// The fetched trees (with their model-index.yml); the test fails without them.
fn fetched_roots(pkg: &str) -> (ConfigRoots, PathBuf) {
    let dir = repo().join(".cache/configs").join(pkg);
    assert!(
        dir.join("model-index.yml").is_file(),
        "{} is missing: run scripts/fetch-config-trees.sh (make setup) first",
        dir.join("model-index.yml").display()
    );
    let mut roots = ConfigRoots::new();
    roots.add(pkg, &dir);
    (roots, dir)
}

#[test]
fn model_counts_equal_mmengines() {
    let want = fixture();
    for (pkg, count) in want["counts"].as_object().expect("counts") {
        let (roots, _) = fetched_roots(pkg);
        let index = ModelIndex::load(&roots, &[pkg.as_str()]).expect("index");
        assert_eq!(
            index.entries().len() as u64,
            count.as_u64().unwrap(),
            "{pkg}"
        );
        assert_eq!(index.searched().len(), 1);
        assert_eq!(index.searched()[0].root.source, RootSource::Api);
        assert!(index.searched()[0].index.is_some(), "model-index.yml used");
    }
}

#[test]
fn names_and_aliases_resolve_as_mmengine_does() {
    let want = fixture();
    for case in want["cases"].as_array().expect("cases") {
        let pkg = case["scope"].as_str().unwrap();
        let name = case["name"].as_str().unwrap();
        let (roots, dir) = fetched_roots(pkg);
        let index = ModelIndex::load(&roots, &[pkg]).expect("index");
        match (index.resolve(name), case.get("error")) {
            (Ok(entry), None) => {
                let rel = case["config"].as_str().unwrap();
                assert_eq!(entry.config, dir.join(rel), "{name}");
                assert!(entry.config.is_file(), "{}", entry.config.display());
                assert_eq!(entry.weights.as_deref(), case["weights"].as_str(), "{name}");
                assert_eq!(entry.package, pkg);
            }
            (Err(ModelZooError::UnknownModel { name: n, .. }), Some(err)) => {
                assert_eq!(
                    err.as_str().unwrap(),
                    format!(
                        "ValueError: Cannot find model: {} in {pkg}",
                        n.to_lowercase()
                    )
                );
            }
            (got, want) => panic!("{pkg}/{name}: ours {got:?}, mmengine {want:?}"),
        }
    }
}

#[test]
fn unknown_name_error_names_the_closest_and_the_indexes() {
    let mut roots = ConfigRoots::new();
    for pkg in ["mmdet", "mmyolo"] {
        roots.add(pkg, repo().join(".cache/configs").join(pkg));
    }
    let err = ModelIndex::lookup(&roots, &["mmdet", "mmyolo"], "rtmdet-tiny").unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("unknown model name 'rtmdet-tiny' (did you mean rtmdet-t"),
        "{text}"
    );
    assert!(
        text.contains("mmdet/model-index.yml (583 models, mmdet)"),
        "{text}"
    );
    assert!(
        text.contains("mmyolo/model-index.yml (74 models, mmyolo)"),
        "{text}"
    );
}

#[test]
fn no_root_at_all_lists_what_was_tried_and_the_fix() {
    let err = ModelIndex::lookup(&ConfigRoots::new(), &["mmdet"], "rtmdet-t").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ModelZooError::NoRoots { .. }));
    assert!(
        text.contains("mmdet: --config-root mmdet=DIR: not given"),
        "{text}"
    );
    assert!(text.contains("To fix: run `make setup`"), "{text}");
}

#[test]
fn a_root_without_index_is_scanned_and_bad_metafiles_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("configs");
    std::fs::create_dir_all(cfg.join("toy")).unwrap();
    std::fs::write(
        cfg.join("toy/metafile.yml"),
        "Models:\n  - Name: toy_model\n    Alias: toy\n    Config: configs/toy/toy.py\n    Weights:\n      - http://x/toy-abc.pth\n",
    )
    .unwrap();
    let mut roots = ConfigRoots::new();
    roots.add("mmdet", &cfg);
    let entry = ModelIndex::lookup(&roots, &["mmdet"], "TOY").unwrap();
    assert_eq!(entry.name, "toy_model");
    assert_eq!(entry.config, cfg.join("toy/toy.py"));
    assert_eq!(entry.weights.as_deref(), Some("http://x/toy-abc.pth"));

    std::fs::write(cfg.join("toy/metafile.yml"), "Models:\n  - Alias: toy\n").unwrap();
    let err = ModelIndex::lookup(&roots, &["mmdet"], "toy").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: Models[0] has no string `Name` (expected mmengine's metafile layout: `Models: [{{Name, Config, Weights, Alias}}]`)",
            cfg.join("toy/metafile.yml").display()
        )
    );
    std::fs::write(cfg.join("toy/metafile.yml"), "Models: [\n").unwrap();
    let err = ModelIndex::lookup(&roots, &["mmdet"], "toy").unwrap_err();
    assert!(matches!(err, ModelZooError::Yaml { .. }), "{err}");
}
