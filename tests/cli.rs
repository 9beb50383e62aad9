//! The `mmcompat` command line as users script it: subcommand names, flags and output schemas
//! (README "Usage"). Expected values come from the fixtures the real Python stack wrote
//! (key listings, mmengine's config JSON, init_detector's detections), never from our own output.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn mmcompat(args: &[&str]) -> Output {
    mmcompat_with_xdg(args, &repo().join("target/cli-test-no-xdg"))
}

/// `mmcompat` with `$XDG_CONFIG_HOME` at `xdg` (where user adapters are looked up).
fn mmcompat_with_xdg(args: &[&str], xdg: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mmcompat"))
        .args(args)
        .current_dir(repo())
        // Config roots come from the arguments only: no python3 discovery, no user env.
        .env_remove("MMCOMPAT_CONFIG_ROOTS")
        // Logs at the level the arguments ask for (tests read `-v` output).
        .env_remove("RUST_LOG")
        .env("XDG_CONFIG_HOME", xdg)
        .output()
        .expect("run mmcompat")
}

pub(crate) fn ok_stdout(args: &[&str]) -> String {
    let out = mmcompat(args);
    assert!(
        out.status.success(),
        "mmcompat {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

pub(crate) fn err_stderr(args: &[&str]) -> String {
    let out = mmcompat(args);
    assert!(!out.status.success(), "mmcompat {args:?} should fail");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a clean error exit, not a crash"
    );
    String::from_utf8(out.stderr).expect("utf-8 stderr")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ckpt(name: &str) -> String {
    format!("tests/fixtures/checkpoints/{name}")
}

/// Config trees laid out by scripts/install-fixture-configs.sh (run by `make test`).
fn fixture_configs(pkg: &str) -> PathBuf {
    let p = repo().join(".cache/fixture-configs").join(pkg);
    assert!(
        p.join(".complete").exists(),
        "{} missing: run scripts/install-fixture-configs.sh (make test does)",
        p.display()
    );
    p
}

fn root_args() -> Vec<String> {
    ["mmdet", "mmyolo", "mmrazor"]
        .iter()
        .flat_map(|p| {
            [
                "--config-root".to_string(),
                format!("{p}={}", fixture_configs(p).display()),
            ]
        })
        .collect()
}

/// Counts per first dotted component, from the generator's key listing.
fn prefix_counts(keys: &Value) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for k in keys.as_array().expect("key list") {
        let name = k["name"].as_str().expect("name");
        let first = name.split('.').next().unwrap_or(name).to_string();
        let n = m.get(&first).and_then(Value::as_u64).unwrap_or(0);
        m.insert(first, Value::from(n + 1));
    }
    m
}

#[test]
fn inspect_json_schema_on_the_distillation_checkpoint() {
    let listing = read_json(&repo().join(ckpt("kd_nano_rtmdet_neck.keys.json")));
    let path = ckpt("kd_nano_rtmdet_neck.pth");
    let v: Value = serde_json::from_str(&ok_stdout(&["inspect", &path, "--json"])).unwrap();
    assert_eq!(v["path"], Value::from(path.clone()));
    assert_eq!(v["format"], "torch-zip");
    assert_eq!(v["top_level_keys"], listing["top_level_keys"]);
    for section in ["state_dict", "ema_state_dict"] {
        let keys = &listing["sections"][section];
        let s = &v["sections"][section];
        assert_eq!(
            s["tensors"].as_u64(),
            Some(keys.as_array().unwrap().len() as u64)
        );
        assert_eq!(
            s["prefixes"],
            Value::Object(prefix_counts(keys)),
            "{section}"
        );
        let params: u64 = keys
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                k["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .product::<u64>()
            })
            .sum();
        assert_eq!(s["parameters"].as_u64(), Some(params), "{section}");
    }
    assert_eq!(
        v["meta"]["dataset_meta"]["classes"],
        listing["meta"]["dataset_meta"]["classes"]
    );
    let opaque: Vec<&str> = v["opaque_globals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert!(opaque.contains(&"mmengine.logging.history_buffer.HistoryBuffer"));
}

#[test]
fn inspect_human_names_the_distillation_prefixes() {
    let listing = read_json(&repo().join(ckpt("kd_nano_rtmdet_neck.keys.json")));
    let counts = prefix_counts(&listing["sections"]["state_dict"]);
    let text = ok_stdout(&["inspect", &ckpt("kd_nano_rtmdet_neck.pth")]);
    let expected: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    assert!(
        text.contains(&expected.join(", ")),
        "{text}\nshould list {expected:?}"
    );
    assert!(text.contains("format: torch-zip"), "{text}");
}

#[test]
fn inspect_legacy_format() {
    let v: Value = serde_json::from_str(&ok_stdout(&[
        "inspect",
        &ckpt("rtmdet_nano_mmdet_legacy.pth"),
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["format"], "torch-legacy");
}

#[test]
fn config_json_equals_mmengine() {
    let cfg = fixture_configs("mmyolo").join("rtmdet/rtmdet_tiny_syncbn_fast_8xb32-300e_coco.py");
    let gz =
        std::fs::File::open(repo().join("tests/fixtures/config-corpus/mmyolo.json.gz")).unwrap();
    let corpus: Value = serde_json::from_reader(flate2::read::GzDecoder::new(gz)).unwrap();
    let reference = &corpus["rtmdet/rtmdet_tiny_syncbn_fast_8xb32-300e_coco.py"];
    assert!(reference.is_object(), "reference present");
    let mut args = vec![
        "config".to_string(),
        cfg.display().to_string(),
        "--json".into(),
    ];
    args.extend(root_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ours: Value = serde_json::from_str(&ok_stdout(&args)).unwrap();
    assert_eq!(&ours, reference);
}

#[test]
fn config_toml_round_trip_through_the_cli() {
    let cfg = fixture_configs("mmyolo").join("mmcompat/kd_nano_rtmdet_neck.py");
    let mut base = vec!["config".to_string(), cfg.display().to_string()];
    base.extend(root_args());
    let run = |extra: &str, file: Option<&Path>| {
        let mut a = base.clone();
        if let Some(f) = file {
            a[1] = f.display().to_string();
        }
        a.push(extra.to_string());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ok_stdout(&a)
    };
    let json: Value = serde_json::from_str(&run("--json", None)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("kd.toml");
    std::fs::write(&toml_path, run("--toml", None)).unwrap();
    let back: Value = serde_json::from_str(&run("--json", Some(&toml_path))).unwrap();
    assert_eq!(json, back);
    assert_eq!(json["model"]["type"], "FpnTeacherDistill");
}

#[test]
fn config_errors_name_the_missing_base() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("broken.py");
    std::fs::write(&cfg, "_base_ = './does_not_exist.py'\nx = 1\n").unwrap();
    let err = err_stderr(&["config", cfg.to_str().unwrap(), "--json"]);
    assert!(err.contains("does_not_exist.py"), "{err}");
    assert!(err.contains("tried"), "{err}");
}

#[test]
fn convert_extracts_the_student_with_the_plain_model_keys() {
    let listing = read_json(&repo().join(ckpt("kd_nano_rtmdet_neck.keys.json")));
    let student: Vec<String> = listing["sections"]["state_dict"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| {
            k["name"]
                .as_str()?
                .strip_prefix("architecture.")
                .map(String::from)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("student.pth");
    let report = ok_stdout(&[
        "convert",
        &ckpt("kd_nano_rtmdet_neck.pth"),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(report.contains("mmrazor.kd_student"), "{report}");
    let v: Value =
        serde_json::from_str(&ok_stdout(&["inspect", out.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(
        v["top_level_keys"],
        serde_json::json!(["meta", "state_dict"])
    );
    assert_eq!(
        v["sections"]["state_dict"]["tensors"].as_u64(),
        Some(student.len() as u64)
    );
    assert!(v["sections"]["state_dict"]["prefixes"]
        .get("teacher")
        .is_none());
    assert_eq!(
        v["meta"]["dataset_meta"]["classes"],
        listing["meta"]["dataset_meta"]["classes"]
    );
}

#[test]
fn convert_unknown_adapter_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.pth");
    let err = err_stderr(&[
        "convert",
        &ckpt("kd_nano_rtmdet_neck.pth"),
        "-o",
        out.to_str().unwrap(),
        "--adapter",
        "mmrazor.kd_studnet",
    ]);
    assert!(
        err.contains("mmrazor.kd_student"),
        "suggests the right name: {err}"
    );
}

#[test]
fn registry_lists_scopes_types_and_adapters() {
    let v: Value = serde_json::from_str(&ok_stdout(&["registry", "--json"])).unwrap();
    let text = v.to_string();
    for needle in [
        "mmengine",
        "mmdet",
        "mmyolo",
        "mmrazor",
        "CSPNeXt",
        "mmrazor.kd_student",
        "mmengine.ema",
        "FpnTeacherDistill",
    ] {
        assert!(text.contains(needle), "registry --json lacks {needle}");
    }
    let human = ok_stdout(&["registry", "--scope", "mmyolo"]);
    assert!(human.contains("scope mmyolo (parent mmengine)"), "{human}");
    let err = err_stderr(&["registry", "--kind", "modle"]);
    assert!(err.contains("model"), "{err}");
    let err = err_stderr(&["registry", "--scope", "mmyol"]);
    assert!(
        err.contains("unknown scope `mmyol`") && err.contains("mmyolo"),
        "{err}"
    );
}

pub(crate) fn detect_args(model: &str, extra: &[&str]) -> Vec<String> {
    let (cfg, weights) = match model {
        "mmyolo" => (
            "mmyolo/mmcompat/rtmdet_nano_mmyolo.py",
            "rtmdet_nano_mmyolo.pth",
        ),
        "kd" => (
            "mmyolo/mmcompat/kd_nano_rtmdet_neck.py",
            "kd_nano_rtmdet_neck.pth",
        ),
        other => panic!("{other}"),
    };
    let mut a = vec![
        "detect".to_string(),
        "--config".into(),
        repo()
            .join(".cache/fixture-configs")
            .join(cfg)
            .display()
            .to_string(),
        "--weights".into(),
        ckpt(weights),
    ];
    a.extend(root_args());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn detect_json_lines_match_init_detector() {
    let reference = read_json(&repo().join("tests/fixtures/inference/kd_student__astronaut.json"));
    let scores: Vec<f64> = reference["detections"]["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    let image = "tests/fixtures/inference/images/astronaut.png";
    let args = detect_args("kd", &["--scope", "mmyolo", "--json", image]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = ok_stdout(&args);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object per image");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["image"], image);
    let shape = reference["pipeline"]["ori_shape"].as_array().unwrap();
    assert_eq!(v["height"], shape[0]);
    assert_eq!(v["width"], shape[1]);
    let dets = v["detections"].as_array().unwrap();
    assert_eq!(dets.len(), scores.len(), "every detection test_cfg keeps");
    let ours: Vec<f64> = dets.iter().map(|d| d["score"].as_f64().unwrap()).collect();
    assert!(
        ours.windows(2).all(|w| w[0] >= w[1]),
        "sorted by descending score"
    );
    for d in dets {
        let obj = d.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["bbox", "class", "label", "score"]);
        assert_eq!(d["bbox"].as_array().unwrap().len(), 4);
    }
    // The best detection is the Python one (scores agree within 1e-4, tests/inference.rs).
    assert!(
        (ours[0] - scores[0]).abs() < 1e-4,
        "{} vs {}",
        ours[0],
        scores[0]
    );

    // --score-thr filters the JSON further (score > T), as DetInferencer's pred_score_thr.
    let args = detect_args(
        "kd",
        &["--scope", "mmyolo", "--json", "--score-thr", "0.3", image],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v: Value = serde_json::from_str(ok_stdout(&args).trim()).unwrap();
    let kept = v["detections"].as_array().unwrap().len();
    let near = scores.iter().filter(|s| (**s - 0.3).abs() < 1e-4).count();
    let python = scores.iter().filter(|s| **s > 0.3).count();
    assert!(kept.abs_diff(python) <= near, "{kept} vs {python}");
}

#[test]
fn detect_writes_annotated_png() {
    let dir = tempfile::tempdir().unwrap();
    let args = detect_args(
        "mmyolo",
        &[
            "--out-dir",
            dir.path().to_str().unwrap(),
            "tests/fixtures/inference/images/chelsea.png",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok_stdout(&args);
    let png = dir.path().join("chelsea.png");
    let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    let reference = read_json(&repo().join("tests/fixtures/inference/mmyolo__chelsea.json"));
    let shape = reference["pipeline"]["ori_shape"].as_array().unwrap();
    assert_eq!(u64::from(img.height()), shape[0].as_u64().unwrap());
    assert_eq!(u64::from(img.width()), shape[1].as_u64().unwrap());
}

#[test]
fn detect_errors_are_specific() {
    // Student config + distillation checkpoint loads through the adapters; a wrong device is a
    // clear error before any work.
    let args = detect_args(
        "mmyolo",
        &[
            "--device",
            "cuda:7",
            "tests/fixtures/inference/images/chelsea.png",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = err_stderr(&args);
    assert!(err.to_lowercase().contains("cuda"), "{err}");

    // The student config with the distillation checkpoint and a wrong forced adapter: the
    // grouped report names the adapter that fits.
    let mut args = detect_args(
        "mmyolo",
        &[
            "--adapter",
            "mmengine.ddp",
            "tests/fixtures/inference/images/chelsea.png",
        ],
    );
    args[4] = ckpt("kd_nano_rtmdet_neck.pth");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = err_stderr(&args);
    assert!(err.contains("teacher.backbone.*"), "{err}");
    assert!(err.contains("--adapter mmrazor.kd_student"), "{err}");

    let args = detect_args("mmyolo", &["tests/fixtures/inference/images/no_such.png"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = err_stderr(&args);
    assert!(err.contains("no_such.png"), "{err}");
}

/// The fixture checkpoint as `torch.compile` saves it: every key under `_orig_mod.`, which no
/// built-in adapter strips (only `examples/adapters/strip_orig_mod.toml` does).
fn write_orig_mod_checkpoint(out: &Path) {
    use mmcompat::registry::checkpoint::{write_pth, Checkpoint, TensorData};
    let ck = Checkpoint::open(repo().join(ckpt("rtmdet_nano_mmyolo.pth"))).expect("fixture");
    let section = ck.section("state_dict").expect("state_dict");
    let tensors: Vec<(String, TensorData<'_>)> = section
        .tensors
        .iter()
        .map(|(k, info)| {
            let bytes = ck.tensor_bytes(info).expect("tensor bytes");
            let t = TensorData::new(info.dtype, info.shape.clone(), bytes);
            (format!("_orig_mod.{k}"), t)
        })
        .collect();
    write_pth(out, &tensors, Some(&ck.meta_json())).expect("write_pth");
}

fn detections_json(stdout: &str) -> Value {
    let v: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert!(!v["detections"].as_array().unwrap().is_empty());
    v["detections"].clone()
}

#[test]
fn detect_uses_user_adapters_from_the_flag_and_the_xdg_folder() {
    let dir = tempfile::tempdir().unwrap();
    let compiled = dir.path().join("compiled.pth");
    write_orig_mod_checkpoint(&compiled);
    let toml = repo().join("examples/adapters/strip_orig_mod.toml");
    let image = "tests/fixtures/inference/images/chelsea.png";

    let plain = detect_args("mmyolo", &["--json", image]);
    let plain: Vec<&str> = plain.iter().map(String::as_str).collect();
    let expected = detections_json(&ok_stdout(&plain));

    let with_weights = |extra: &[&str]| {
        let mut args = detect_args("mmyolo", extra);
        args[4] = compiled.display().to_string();
        args
    };

    // (a) --adapters FILE.
    let args = with_weights(&["--json", "--adapters", toml.to_str().unwrap(), image]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(detections_json(&ok_stdout(&args)), expected, "--adapters");

    // (b) the same file in $XDG_CONFIG_HOME/mmcompat/adapters/.
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("mmcompat/adapters")).unwrap();
    std::fs::copy(&toml, xdg.join("mmcompat/adapters/strip_orig_mod.toml")).unwrap();
    let args = with_weights(&["--json", image]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = mmcompat_with_xdg(&args, &xdg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(detections_json(&stdout), expected, "XDG folder");

    // (c) without the adapter: the strict error groups the keys under the prefix.
    let err = err_stderr(&args);
    assert!(err.contains("do not fit"), "{err}");
    assert!(err.contains("missing keys"), "{err}");
    assert!(err.contains("_orig_mod.backbone.*"), "{err}");

    // `inspect --config` says which chain `detect` would use, from the same adapter set.
    let inspect = |extra: &[&str]| {
        let mut args = vec![
            "inspect".to_string(),
            compiled.display().to_string(),
            "--config".into(),
            detect_args("mmyolo", &[])[2].clone(),
        ];
        args.extend(root_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let args = inspect(&["--adapters", toml.to_str().unwrap()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = ok_stdout(&args);
    assert!(text.contains("adapter fit: torch.strip_orig_mod"), "{text}");
    let args = inspect(&["--json"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v: Value = serde_json::from_str(ok_stdout(&args).trim()).unwrap();
    assert_eq!(v["adapter_fit"]["fits"], false);
    let report = v["adapter_fit"]["report"].as_str().unwrap();
    assert!(report.contains("_orig_mod.backbone.*"), "{report}");
}
