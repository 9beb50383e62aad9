//! `--cfg-options` against the real mmengine (tests/fixtures/cfg-options/refs.json, written by
//! tests/fixtures/generate/make_cfg_options_refs.py with mmengine's own argparse `DictAction` and
//! `Config.merge_from_dict`), and the config a checkpoint carries in `meta.cfg`.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use mmcompat_registry::config::embedded::EmbeddedConfigError;
use mmcompat_registry::config::options::{parse_value, CfgOption, CfgOptionError};
use mmcompat_registry::config::{Config, ConfigRoots, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dir() -> PathBuf {
    repo().join("tests/fixtures/cfg-options")
}

fn refs() -> serde_json::Value {
    let p = dir().join("refs.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("refs.json")).expect("json")
}

/// The generator's typed JSON: `{"__tuple__": [...]}`, `{"__float__": "inf"}`; 1 vs 1.0 kept.
fn decode(j: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::None,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) if !n.is_f64() => Value::Int(i),
            _ => Value::Float(n.as_f64().expect("number")),
        },
        J::String(s) => Value::Str(s.clone()),
        J::Array(a) => Value::List(a.iter().map(decode).collect()),
        J::Object(o) => {
            if let Some(J::Array(t)) = o.get("__tuple__") {
                return Value::Tuple(t.iter().map(decode).collect());
            }
            if let Some(J::String(f)) = o.get("__float__") {
                return Value::Float(match f.as_str() {
                    "inf" => f64::INFINITY,
                    "-inf" => f64::NEG_INFINITY,
                    _ => f64::NAN,
                });
            }
            Value::Dict(o.iter().map(|(k, v)| (k.clone(), decode(v))).collect())
        }
    }
}

/// Equality with NaN equal to itself (the `NaN` value case).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| k1 == k2 && same(v1, v2))
        }
        _ => a == b,
    }
}

fn base() -> Config {
    Config::from_file(dir().join("base.py"), &ConfigRoots::new()).expect("base.py")
}

#[test]
fn values_parse_as_dict_action_does() {
    let refs = refs();
    let values = refs["values"].as_array().expect("values");
    assert!(values.len() >= 40);
    for case in values {
        let raw = case["raw"].as_str().expect("raw");
        let ours = parse_value(raw);
        match (&case.get("value"), ours) {
            (Some(expected), Ok(got)) => {
                assert!(
                    same(&got, &decode(expected)),
                    "{raw:?}: {got:?} vs {expected}"
                )
            }
            (None, Err(why)) => {
                let kind = case["error"]["type"].as_str().unwrap_or("");
                // AssertionError: mmengine's own text; RecursionError: it never ends upstream.
                if kind == "AssertionError" {
                    assert_eq!(why, case["error"]["message"].as_str().unwrap(), "{raw:?}");
                } else {
                    assert!(why.contains("unbalanced brackets"), "{raw:?}: {why}");
                }
            }
            // Python's int is unbounded; a config holds 64-bit ints (the one value refused).
            (Some(_), Err(why)) if raw == "99999999999999999999" => {
                assert!(why.contains("64 bits"), "{why}")
            }
            (expected, got) => panic!("{raw:?}: mmengine {expected:?}, mmcompat {got:?}"),
        }
    }
}

/// The argv after `--cfg-options`, as clap hands it over (a repeated flag appends).
fn args_of(case: &serde_json::Value) -> Vec<String> {
    case["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("str").to_string())
        .filter(|a| a != "--cfg-options")
        .collect()
}

fn merge(case: &serde_json::Value) -> Result<Config, CfgOptionError> {
    let options = CfgOption::parse_all(&args_of(case))?;
    if let Some(expected) = case.get("options") {
        // DictAction's dict: a repeated key keeps its first place and its last value.
        let mut ours: IndexMap<&str, &Value> = IndexMap::new();
        for o in &options {
            ours.insert(&o.key, &o.value);
        }
        let expected = expected.as_array().expect("options");
        assert_eq!(ours.len(), expected.len(), "{}", case["name"]);
        for ((k, v), e) in ours.iter().zip(expected) {
            assert_eq!(*k, e[0].as_str().unwrap(), "{}", case["name"]);
            assert!(same(v, &decode(&e[1])), "{}: {k}", case["name"]);
        }
    }
    let mut cfg = base();
    cfg.merge_cfg_options(&options)?;
    Ok(cfg)
}

#[test]
fn merges_equal_merge_from_dict() {
    let refs = refs();
    let merges = refs["merges"].as_array().expect("merges");
    assert!(merges.len() >= 12);
    let mut compared = 0;
    for case in merges {
        let name = case["name"].as_str().unwrap();
        let ours = merge(case);
        match (case.get("result"), case["difference"].as_str(), ours) {
            (Some(expected), None, Ok(cfg)) => {
                let got = cfg.to_value();
                assert!(same(&got, &decode(expected)), "{name}: {got:?}");
                compared += 1;
            }
            (Some(_), Some("unknown_key"), Err(CfgOptionError::UnknownKey { .. })) => {}
            (None, None, Err(_)) => {}
            (expected, _, got) => panic!(
                "{name}: mmengine {expected:?} / {:?}, mmcompat {got:?}",
                case.get("error")
            ),
        }
    }
    assert!(compared >= 12, "{compared}");
}

fn error_of(name: &str) -> String {
    let refs = refs();
    let case = refs["merges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name}"))
        .clone();
    merge(&case).expect_err(name).to_string()
}

#[test]
fn errors_name_the_key_and_the_fix() {
    let e = error_of("unknown_leaf");
    assert!(
        e.contains("no key 'score_th' in model.test_cfg")
            && e.contains("did you mean 'model.test_cfg.score_thr'?")
            && e.contains("mmengine would add it silently"),
        "{e}"
    );
    let e = error_of("unknown_top");
    assert!(e.contains("did you mean 'model'?"), "{e}");
    let e = error_of("index_past_end");
    assert!(
        e.contains("index 9 is past the end of test_pipeline (a list of 4)"),
        "{e}"
    );
    let e = error_of("value_through_index");
    assert!(
        e.contains("set the whole list: model.neck.in_channels=[...]"),
        "{e}"
    );
    let e = error_of("key_under_int");
    assert!(
        e.contains("model.neck.out_channels is a int, not a dict"),
        "{e}"
    );
    let e = error_of("key_under_tuple");
    assert!(e.contains("model.backbone.out_indices is a tuple"), "{e}");
    let e = error_of("word_key_in_list");
    assert!(
        e.contains("test_pipeline is a list; use an index (e.g. test_pipeline.0.type)"),
        "{e}"
    );
    let e = error_of("conflict");
    assert!(
        e.contains("conflicts with the option model.test_cfg="),
        "{e}"
    );
    let e = error_of("imbalanced");
    assert!(
        e.contains("model.neck.in_channels=[1,2: Imbalanced brackets exist in [1,2"),
        "{e}"
    );
    let e = error_of("no_equals");
    assert!(e.contains("expected KEY=VALUE"), "{e}");
}

#[test]
fn a_failed_merge_leaves_the_config_unchanged() {
    let mut cfg = base();
    let before = cfg.clone();
    let options = CfgOption::parse_all(&["model.test_cfg.score_thr=0.9", "test_pipeline.9.x=1"])
        .expect("parse");
    assert!(cfg.merge_cfg_options(&options).is_err());
    assert_eq!(cfg, before);
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

/// The Runner-written distillation checkpoint carries `cfg.pretty_text` of its training config:
/// read back, it is the tree `Config.fromstring` gives in mmengine (`BaseInferencer._init_model`
/// reads `message_hub.runtime_info.cfg` first, then `meta.cfg`; this mmengine writes both).
#[test]
fn stored_config_equals_config_fromstring() {
    let refs = refs();
    let expected = &refs["checkpoint_config"];
    let ckpt = repo()
        .join("tests/fixtures/checkpoints")
        .join(expected["checkpoint"].as_str().unwrap());
    let (cfg, key) = Config::from_checkpoint(&ckpt, &fixture_roots()).expect("stored config");
    assert_eq!(key, expected["key"].as_str().unwrap());
    assert!(cfg
        .path()
        .display()
        .to_string()
        .ends_with(&format!("kd_nano_rtmdet_neck.pth:{key}")));
    let got = cfg.to_value();
    assert!(same(&got, &decode(&expected["config"])), "{got:?}");
}

#[test]
fn a_checkpoint_without_a_config_says_to_pass_one() {
    let ckpt = repo().join("registry/tests/data/checkpoints/torch_zip.pth");
    let err = Config::from_checkpoint(&ckpt, &ConfigRoots::new()).expect_err("no meta.cfg");
    assert!(matches!(err, EmbeddedConfigError::NoConfig { .. }));
    let text = err.to_string();
    assert!(
        text.contains("torch_zip.pth carries no config") && text.contains("--config CFG"),
        "{text}"
    );
}
