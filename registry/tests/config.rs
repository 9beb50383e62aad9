//! Config loading against the real mmengine 0.10.7: the whole shipped corpus (mmdet 3.3.0,
//! mmyolo 0.6.0, mmrazor 1.0.0 `.mim/configs`, references made by
//! tests/fixtures/generate/config_corpus.py) plus focused semantics and error tests.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use mmcompat_registry::config::{self, Config, ConfigError, ConfigRoots, Value};

fn cases_dir() -> PathBuf {
    fixtures().join("cases")
}

fn cases_json() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("cases.json")).expect("cases.json"),
    )
    .expect("json")
}

const PACKAGES: &[&str] = &["mmdet", "mmyolo", "mmrazor"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/config-corpus")
}

/// The unpacked wheel trees; the test fails (not skips) without them.
fn corpus_roots() -> ConfigRoots {
    let mut roots = ConfigRoots::new();
    for pkg in PACKAGES {
        let dir = repo().join(".cache/configs").join(pkg);
        assert!(
            dir.is_dir(),
            "config corpus tree {} is missing: run scripts/fetch-config-trees.sh first (the Makefile test target does)",
            dir.display()
        );
        roots.add(pkg, dir);
    }
    roots
}

fn read_refs(pkg: &str) -> BTreeMap<String, serde_json::Value> {
    let path = fixtures().join(format!("{pkg}.json.gz"));
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .expect("gzip");
    serde_json::from_str(&s).expect("reference json")
}

/// First differing path between two JSON values (for readable failures).
fn first_diff(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value as J;
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => {
                        if let Some(d) = first_diff(p, q, &format!("{at}.{k}")) {
                            return Some(d);
                        }
                    }
                    (p, q) => return Some(format!("{at}.{k}: ours {p:?} vs mmengine {q:?}")),
                }
            }
            None
        }
        (J::Array(x), J::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_diff(p, q, &format!("{at}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{at}: ours {a} vs mmengine {b}")),
    }
}

#[test]
fn corpus_matches_mmengine() {
    let roots = corpus_roots();
    let failures: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("failures.json")).expect("failures.json"),
    )
    .expect("failures json");
    let mut report = Vec::new();
    let (mut total, mut same, mut toml_same) = (0usize, 0usize, 0usize);
    let tmp = tempfile::tempdir().expect("tempdir");
    for pkg in PACKAGES {
        let tree = repo().join(".cache/configs").join(pkg);
        let refs = read_refs(pkg);
        for (rel, want) in &refs {
            total += 1;
            match Config::from_file(tree.join(rel), &roots) {
                Ok(cfg) => {
                    let got = cfg.to_json();
                    // TOML is lossless: writing and reading back gives the same tree.
                    let toml_path = tmp.path().join(format!("{total}.toml"));
                    std::fs::write(&toml_path, cfg.to_toml().expect("to_toml")).expect("write");
                    match Config::from_file(&toml_path, &roots) {
                        Ok(back) if back.tree() == cfg.tree() => toml_same += 1,
                        Ok(_) => {
                            report.push(format!("{pkg}/{rel}: TOML round trip changed the tree"))
                        }
                        Err(e) => report.push(format!("{pkg}/{rel}: TOML round trip failed: {e}")),
                    }
                    if &got == want {
                        same += 1;
                    } else {
                        report.push(format!(
                            "{pkg}/{rel}: {}",
                            first_diff(&got, want, "").unwrap_or_default()
                        ));
                    }
                }
                Err(e) => report.push(format!("{pkg}/{rel}: we fail: {e}")),
            }
        }
    }
    // Files mmengine itself cannot load: we must fail for the same reason.
    let mut failure_mismatch = Vec::new();
    let fails = failures["failures"].as_object().expect("failures map");
    for (key, why) in fails {
        let (pkg, rel) = key.split_once('/').expect("pkg/rel");
        let tree = repo().join(".cache/configs").join(pkg);
        let kind = why["type"].as_str().unwrap_or_default();
        let msg = why["message"].as_str().unwrap_or_default();
        let ours = Config::from_file(tree.join(rel), &roots);
        let ok = match (&ours, kind) {
            (Err(ConfigError::PackageNotAvailable { package, .. }), "ModuleNotFoundError") => {
                msg.starts_with(&format!("{package} is not installed"))
            }
            (Err(ConfigError::BaseNotFound { tried, .. }), "FileNotFoundError") => {
                let want = mmengine_path(msg);
                tried.iter().any(|t| config::roots::normalize(t) == want)
            }
            // `json.dumps` fails on functions left in a lazy-mode result; we refuse these scripts.
            (Err(_), "TypeError") if msg.contains("not JSON serializable") => true,
            _ => false,
        };
        if !ok {
            failure_mismatch.push(format!("{key}: mmengine {kind}: {msg}\n    ours: {ours:?}"));
        }
    }
    let ratio = same as f64 / total as f64;
    eprintln!(
        "config corpus: {same}/{total} identical ({:.2}%), {}/{} mmengine failures reproduced",
        ratio * 100.0,
        fails.len() - failure_mismatch.len(),
        fails.len()
    );
    for r in report.iter().take(30) {
        eprintln!("  DIFF {r}");
    }
    for r in failure_mismatch.iter().take(30) {
        eprintln!("  FAIL {r}");
    }
    // The issue asks for >= 99%; all files match today, so any regression fails.
    assert_eq!(
        same, total,
        "only {same}/{total} configs identical to mmengine"
    );
    assert_eq!(toml_same, same, "TOML round trip must keep every tree");
    assert!(
        failure_mismatch.is_empty(),
        "{} mmengine failures not reproduced",
        failure_mismatch.len()
    );
}

/// The path in an mmengine `FileNotFoundError` message, with `<configs:pkg>` made real.
fn mmengine_path(msg: &str) -> PathBuf {
    let quoted = msg
        .split(['"', '\''])
        .find(|s| s.contains("<configs:"))
        .unwrap_or(msg)
        .to_string();
    let mut p = quoted;
    for pkg in PACKAGES {
        let real = repo().join(".cache/configs").join(pkg);
        p = p.replace(&format!("<configs:{pkg}>"), &real.to_string_lossy());
    }
    config::roots::normalize(Path::new(&p))
}

fn case_roots() -> ConfigRoots {
    let mut roots = ConfigRoots::new();
    roots.add("mmdet", repo().join(".cache/configs/mmdet"));
    roots
}

#[test]
fn hand_written_cases_match_mmengine() {
    let cases = cases_json();
    let roots = case_roots();
    for (rel, want) in cases["cases"].as_object().expect("cases") {
        let path = cases_dir().join(rel);
        let ours = Config::from_file(&path, &roots);
        if let Some(ok) = want.get("ok") {
            if rel == "errors/exec_call.py" {
                // mmengine executes `exec(...)`; we refuse to run code (by design).
                assert!(
                    matches!(ours, Err(ConfigError::Unsupported { .. })),
                    "{rel}: {ours:?}"
                );
                continue;
            }
            let cfg = ours.unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(
                &cfg.to_json(),
                ok,
                "{rel}: {:?}",
                first_diff(&cfg.to_json(), ok, "")
            );
            continue;
        }
        let kind = want["error"].as_str().expect("error kind");
        let err = match ours {
            Err(e) => e,
            Ok(_) => panic!("{rel}: mmengine fails with {kind}, we load it"),
        };
        let text = err.to_string();
        match kind {
            // mmengine recurses until the interpreter gives up; we name the cycle.
            "RecursionError" => {
                assert!(matches!(err, ConfigError::Cycle { .. }), "{rel}: {err:?}");
                assert!(
                    text.contains("cycle_a.py") && text.contains("cycle_b.py"),
                    "{text}"
                );
            }
            // `import subprocess` flips mmengine into lazy-import mode, which then fails; we refuse
            // the import itself.
            "RuntimeError" => assert!(
                matches!(err, ConfigError::Unsupported { .. }),
                "{rel}: {err:?}"
            ),
            _ => assert_eq!(err.python_kind(), kind, "{rel}: {err}"),
        }
        let message = want["message"].as_str().unwrap_or_default();
        match rel.as_str() {
            "errors/syntax.py" => {
                assert!(text.contains("syntax.py:4:"), "{text}");
                assert!(
                    text.contains("depth=50 50)") && text.contains('^'),
                    "caret line: {text}"
                );
            }
            "errors/undefined.py" => {
                assert!(
                    message.contains("'dept'") && text.contains("name 'dept' is not defined"),
                    "{text}"
                );
                assert!(
                    text.contains("undefined.py:2:20") && text.contains("did you mean 'depth'"),
                    "{text}"
                );
            }
            "errors/missing_base.py" => {
                let ConfigError::BaseNotFound { tried, .. } = &err else {
                    unreachable!()
                };
                let want = config::roots::normalize(Path::new(
                    &message
                        .replace("<cases>", &cases_dir().to_string_lossy())
                        .split('\'')
                        .nth(1)
                        .unwrap_or_default()
                        .to_string(),
                ));
                assert!(
                    tried.iter().any(|t| config::roots::normalize(t) == want),
                    "{tried:?} vs {want:?}"
                );
            }
            "errors/merge_type.py" => {
                assert!(message.contains("is of type <class 'int'>"), "{message}");
                let ConfigError::MergeType {
                    key,
                    base_type,
                    child_type,
                    ..
                } = &err
                else {
                    unreachable!()
                };
                assert_eq!(
                    (key.as_str(), *child_type, *base_type),
                    ("max_epochs", "dict", "int")
                );
            }
            "errors/duplicate.py" => {
                let ConfigError::DuplicateBaseKeys { keys, .. } = &err else {
                    unreachable!()
                };
                for k in keys {
                    assert!(message.contains(&format!("'{k}'")), "{k} not in {message}");
                }
                assert_eq!(keys.len(), message.matches('\'').count() / 2);
            }
            "errors/no_package.py" => {
                let ConfigError::PackageNotAvailable { package, .. } = &err else {
                    unreachable!()
                };
                assert!(message.starts_with(&format!("{package} is not installed")));
                assert!(text.contains("--config-root mmcls=DIR"), "{text}");
            }
            _ => {}
        }
    }
}

#[test]
fn toml_twin_loads_like_the_python_file() {
    let cases = cases_json();
    let want = &cases["cases"]["equivalent.py"]["ok"];
    let cfg =
        Config::from_file(cases_dir().join("equivalent.toml"), &ConfigRoots::new()).expect("toml");
    assert_eq!(&cfg.to_json(), want);
    let py = Config::from_file(cases_dir().join("equivalent.py"), &ConfigRoots::new()).expect("py");
    // Same tree, tuples and None included (JSON alone cannot tell a tuple from a list).
    assert_eq!(cfg.tree(), py.tree());
    assert_eq!(
        cfg.get("shape"),
        Some(&Value::Tuple(vec![
            Value::Int(1),
            Value::Int(3),
            Value::Int(640),
            Value::Int(640)
        ]))
    );
    assert_eq!(cfg.get("flag"), Some(&Value::None));
}

#[test]
fn python_types_and_access_paths() {
    let cases = cases_json();
    let want = &cases["cases"]["semantics.py"]["ok"];
    let cfg = Config::from_file(cases_dir().join("semantics.py"), &ConfigRoots::new())
        .expect("semantics");
    // int vs float and tuples vs lists, which JSON equality alone checks only partly.
    assert_eq!(cfg.get("half"), Some(&Value::Float(0.5)));
    assert_eq!(
        cfg.get("neg_floor"),
        Some(&Value::Int(want["neg_floor"].as_i64().expect("int")))
    );
    assert!(matches!(cfg.get("tup"), Some(Value::Tuple(_))));
    assert!(matches!(cfg.get("nested[0]"), Some(Value::Tuple(_))));
    assert!(matches!(cfg.get("nested.1"), Some(Value::List(_))));
    assert_eq!(
        cfg.get("model.backbone.depth").map(Value::to_json),
        Some(want["model"]["backbone"]["depth"].clone())
    );
    assert_eq!(
        cfg.get("model.neck.in_channels[0]").map(Value::to_json),
        Some(want["model"]["neck"]["in_channels"][0].clone())
    );
    assert_eq!(
        cfg.get("fmt1").map(Value::to_json),
        Some(want["fmt1"].clone())
    );
    assert!(cfg.get("__dunder").is_none() && cfg.get("fn").is_none() && cfg.get("math").is_none());
    assert!(cfg.get("_private").is_some());
    // `_delete_` leaks when the base lacks the key (mmengine behaviour, kept on purpose).
    assert_eq!(cfg.get("new_head._delete_"), Some(&Value::Bool(true)));
}

#[test]
fn cfg_path_resolves_like_mmengine_hub() {
    let cases = cases_json();
    let mut roots = ConfigRoots::new();
    for pkg in PACKAGES {
        roots.add(pkg, repo().join(".cache/configs").join(pkg));
    }
    for (key, want) in cases["cfg_path"].as_object().expect("cfg_path") {
        let (file, path) = key.split_once(':').expect("file:path");
        let (pkg, rel) = file.split_once('/').expect("pkg/rel");
        let cfg = Config::from_file(repo().join(".cache/configs").join(pkg).join(rel), &roots)
            .expect("kd config");
        let m = cfg
            .resolve_cfg_path(path, &roots)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(
            m.model.to_json(),
            want["model"],
            "{key}: {:?}",
            first_diff(&m.model.to_json(), &want["model"], "")
        );
        assert_eq!(m.scope, want["scope"].as_str().expect("scope"));
    }
    // Without a root for the package: a clear error naming it.
    let arch = Value::Dict(
        [(
            "cfg_path".to_string(),
            Value::Str("mmyolo::rtmdet/x.py".into()),
        )]
        .into_iter()
        .collect(),
    );
    let err = config::load_cfg_path(&arch, &ConfigRoots::new()).expect_err("no roots");
    assert!(
        err.to_string().contains("--config-root mmyolo=DIR"),
        "{err}"
    );
}

#[test]
fn config_roots_from_cli_and_env_syntax() {
    let roots = ConfigRoots::from_cli(&["mmyolo=/a".into(), "mmyolo=/b".into(), "mmdet=/c".into()])
        .expect("cli");
    assert_eq!(
        roots.dirs("mmyolo"),
        vec![PathBuf::from("/a"), PathBuf::from("/b")]
    );
    let mut env = ConfigRoots::new();
    env.add_env_str("mmdet=/x/configs:mmyolo=/y,mmrazor=/z")
        .expect("env");
    assert_eq!(env.dirs("mmdet"), vec![PathBuf::from("/x/configs")]);
    assert_eq!(env.dirs("mmrazor"), vec![PathBuf::from("/z")]);
    assert!(ConfigRoots::from_cli(&["no-equals".into()]).is_err());
    assert!(ConfigRoots::from_cli(&["mmdet=".into()]).is_err());
}

#[test]
fn overlay_root_is_searched_before_the_package_tree() {
    let overlay = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(overlay.path().join("_base_")).expect("mkdir");
    std::fs::write(
        overlay.path().join("_base_/default_runtime.py"),
        "overlaid = True\n",
    )
    .expect("write");
    let child = overlay.path().join("child.py");
    std::fs::write(&child, "_base_ = 'mmdet::_base_/default_runtime.py'\n").expect("write");
    let mut roots = ConfigRoots::new();
    roots.add("mmdet", overlay.path());
    roots.add("mmdet", repo().join(".cache/configs/mmdet"));
    let cfg = Config::from_file(&child, &roots).expect("overlay");
    assert_eq!(cfg.get("overlaid"), Some(&Value::Bool(true)));
}

#[test]
fn circular_and_deeply_nested_values_are_errors_not_crashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    // Python: json.dumps raises "Circular reference detected"; we must not recurse forever.
    let circular = write("circular.py", "a = [1]\na.append(a)\n".into());
    let err = Config::from_file(&circular, &ConfigRoots::new()).expect_err("circular");
    assert!(err.to_string().contains("circular"), "{err}");
    let ok = write(
        "nested_ok.py",
        format!("x = {}1{}\n", "[".repeat(300), "]".repeat(300)),
    );
    assert!(Config::from_file(&ok, &ConfigRoots::new()).is_ok());
    let deep = write(
        "nested_deep.py",
        format!("x = {}1{}\n", "[".repeat(5000), "]".repeat(5000)),
    );
    assert!(Config::from_file(&deep, &ConfigRoots::new()).is_err());
}

#[test]
fn json_config_with_base() {
    // mmengine reads `.json` configs the same way (`_base_` key, then merge).
    let cases = cases_json();
    let mut want = cases["cases"]["base_a.py"]["ok"].clone();
    want["lr"] = serde_json::json!(0.1);
    want["model"]["backbone"]["depth"] = serde_json::json!(18);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("child.json");
    let base = cases_dir().join("base_a.py");
    let text = serde_json::json!({"_base_": base.to_string_lossy(), "lr": 0.1, "model": {"backbone": {"depth": 18}}});
    std::fs::write(&file, text.to_string()).expect("write");
    let cfg = Config::from_file(&file, &ConfigRoots::new()).expect("json config");
    assert_eq!(cfg.to_json(), want);
}
