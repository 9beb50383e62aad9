//! Issue 17 items 2 and 7 end to end through the `mmcompat` binary: `detect --weights CKPT`
//! alone runs the training config the checkpoint carries (mmengine's Runner stores it), and
//! `--cfg-options` on `detect`, `config` and `convert` merges as mmengine's `DictAction` +
//! `Config.merge_from_dict` do (expected trees from tests/fixtures/cfg-options/refs.json, written
//! by the real mmengine; detections compared with the `--config` run of the same checkpoint).

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mmcompat(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mmcompat"))
        .args(args)
        .current_dir(repo())
        .env_remove("MMCOMPAT_CONFIG_ROOTS")
        .env("XDG_CONFIG_HOME", repo().join("target/cli-test-no-xdg"))
        .output()
        .expect("run mmcompat")
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// (stdout, stderr) of a successful run.
fn ok(a: &[String]) -> (String, String) {
    let out = mmcompat(a);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mmcompat {a:?} failed:\n{stderr}");
    (String::from_utf8(out.stdout).expect("utf-8"), stderr)
}

/// stderr of a run that must fail cleanly (exit 1, one `error:` line).
fn fails(a: &[String]) -> String {
    let out = mmcompat(a);
    assert_eq!(
        out.status.code(),
        Some(1),
        "mmcompat {a:?} should fail cleanly"
    );
    String::from_utf8(out.stderr).expect("utf-8")
}

fn roots() -> Vec<String> {
    ["mmdet", "mmyolo", "mmrazor"]
        .iter()
        .flat_map(|p| {
            let d = repo().join(".cache/fixture-configs").join(p);
            assert!(
                d.join(".complete").exists(),
                "{} missing: run scripts/install-fixture-configs.sh (make test does)",
                d.display()
            );
            ["--config-root".to_string(), format!("{p}={}", d.display())]
        })
        .collect()
}

fn ckpt(name: &str) -> String {
    format!("tests/fixtures/checkpoints/{name}")
}

fn cfg(name: &str) -> String {
    repo()
        .join(".cache/fixture-configs/mmyolo/mmcompat")
        .join(name)
        .display()
        .to_string()
}

const IMAGES: &[&str] = &[
    "tests/fixtures/inference/images/exif_rot6.jpg",
    "tests/fixtures/inference/images/chelsea.png",
];

/// `detect --json` with `extra` flags, on [`IMAGES`]: one parsed line per image, and stderr.
fn detect(extra: &[&str]) -> (Vec<Value>, String) {
    let mut a = args(&["detect", "--json"]);
    a.extend(roots());
    a.extend(args(extra));
    a.push("--".into());
    a.extend(args(IMAGES));
    let (stdout, stderr) = ok(&a);
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect::<Vec<Value>>();
    assert_eq!(lines.len(), IMAGES.len(), "{stdout}");
    (lines, stderr)
}

fn detections(line: &Value) -> &Vec<Value> {
    line["detections"].as_array().expect("detections")
}

#[test]
fn weights_alone_run_the_distillation_checkpoints_own_config() {
    let kd = ckpt("kd_nano_rtmdet_neck.pth");
    let (alone, stderr) = detect(&["--weights", &kd]);
    let (with_config, quiet) =
        detect(&["--config", &cfg("kd_nano_rtmdet_neck.py"), "--weights", &kd]);
    assert_eq!(alone, with_config);
    assert!(detections(&alone[1]).len() > 10, "{:?}", alone[1]);
    assert!(
        stderr.contains(&format!(
            "config: the training config stored in {kd} (message_hub.runtime_info.cfg); pass --config to use another"
        )) && stderr.contains(
            "config: distillation config (FpnTeacherDistill): running its student, mmyolo::mmcompat/rtmdet_nano_mmyolo.py"
        ),
        "{stderr}"
    );
    assert!(!quiet.contains("config:"), "{quiet}");
}

#[test]
fn weights_alone_run_a_plain_checkpoints_meta_cfg() {
    let w = ckpt("rtmdet_nano_mmyolo.pth");
    let (alone, stderr) = detect(&["--weights", &w]);
    let (with_config, _) = detect(&["--config", &cfg("rtmdet_nano_mmyolo.py"), "--weights", &w]);
    assert_eq!(alone, with_config);
    assert!(
        stderr.contains(&format!("stored in {w} (meta.cfg)")),
        "{stderr}"
    );
}

#[test]
fn weights_without_a_stored_config_say_to_pass_one() {
    let w = "registry/tests/data/checkpoints/torch_zip.pth";
    let e = fails(&args(&["detect", "--weights", w, IMAGES[0]]));
    assert_eq!(
        e.trim_end(),
        format!(
            "error: checkpoint {w} carries no config (no string meta.cfg or message_hub.runtime_info.cfg, \
             which mmengine's Runner writes): pass the model's config with --config CFG"
        )
    );
}

/// `test_cfg` is applied after NMS as mmdet's `_bbox_post_process` does: `max_per_img=2` keeps
/// the two best, a higher `score_thr` keeps exactly the detections above it.
#[test]
fn cfg_options_change_what_detect_keeps() {
    let base = [
        "--config",
        &cfg("rtmdet_nano_mmyolo.py"),
        "--weights",
        &ckpt("rtmdet_nano_mmyolo.pth"),
    ];
    let (all, _) = detect(&base);
    let mut two = base.to_vec();
    two.extend(["--cfg-options", "model.test_cfg.max_per_img=2"]);
    let (top2, _) = detect(&two);
    let mut thr = base.to_vec();
    thr.extend([
        "--cfg-options",
        "model.test_cfg.score_thr=0.05",
        "model.test_cfg.nms.iou_threshold=0.65",
    ]);
    let (above, _) = detect(&thr);
    for i in 0..IMAGES.len() {
        let every = detections(&all[i]);
        assert!(every.len() > 2);
        assert_eq!(detections(&top2[i]), &every[..2].to_vec());
        let expected: Vec<Value> = every
            .iter()
            .filter(|d| d["score"].as_f64().unwrap() > 0.05)
            .cloned()
            .collect();
        assert!(!expected.is_empty() && expected.len() < every.len());
        assert_eq!(detections(&above[i]), &expected);
    }
    // With --weights alone the options apply to the stored config.
    let (alone, _) = detect(&[
        "--weights",
        &ckpt("rtmdet_nano_mmyolo.pth"),
        "--cfg-options",
        "model.test_cfg.max_per_img=2",
    ]);
    assert_eq!(alone, top2);
}

#[test]
fn cfg_options_errors_name_the_key_and_the_fix() {
    let mut a = args(&[
        "detect",
        "--config",
        &cfg("rtmdet_nano_mmyolo.py"),
        "--weights",
        &ckpt("rtmdet_nano_mmyolo.pth"),
    ]);
    a.extend(roots());
    let with = |opts: &[&str]| {
        let mut v = a.clone();
        v.push("--cfg-options".into());
        v.extend(args(opts));
        v.push("--".into());
        v.push(IMAGES[0].into());
        fails(&v)
    };
    let e = with(&["model.test_cfg.score_th=0.5"]);
    assert!(
        e.contains("--cfg-options model.test_cfg.score_th: the config has no key 'score_th' in model.test_cfg (did you mean 'model.test_cfg.score_thr'?)")
            && e.contains("mmengine would add it silently"),
        "{e}"
    );
    let e = with(&["model.test_cfg.score_thr=[0.5,0.6"]);
    assert!(e.contains("--cfg-options model.test_cfg.score_thr=[0.5,0.6: Imbalanced brackets exist in [0.5,0.6"), "{e}");
    let e = with(&["model.test_cfg.score_thr"]);
    assert!(
        e.contains("--cfg-options 'model.test_cfg.score_thr': expected KEY=VALUE"),
        "{e}"
    );
    let e = with(&["model.neck.in_channels.0=8"]);
    assert!(
        e.contains("set the whole list: model.neck.in_channels=[...]"),
        "{e}"
    );
}

/// The generator's typed JSON as plain JSON (what `config --json` prints: tuples are lists).
fn plain(v: &Value) -> Value {
    match v {
        Value::Object(o) if o.contains_key("__tuple__") => plain(&o["__tuple__"]),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), plain(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(plain).collect()),
        other => other.clone(),
    }
}

#[test]
fn config_with_cfg_options_prints_what_mmengine_merges() {
    let refs: Value = serde_json::from_slice(
        &std::fs::read(repo().join("tests/fixtures/cfg-options/refs.json")).expect("refs.json"),
    )
    .expect("json");
    for name in [
        "list_index_dict",
        "delete",
        "quoting",
        "repeated_flag",
        "nested_brackets",
    ] {
        let case = refs["merges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .expect(name);
        let mut a = args(&[
            "config",
            "tests/fixtures/cfg-options/base.py",
            "--json",
            "--cfg-options",
        ]);
        a.extend(
            case["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string()),
        );
        let (stdout, _) = ok(&a);
        let got: Value = serde_json::from_str(&stdout).expect("config --json");
        assert_eq!(got, plain(&case["result"]), "{name}");
    }
    let e = fails(&args(&[
        "config",
        "tests/fixtures/cfg-options/base.py",
        "--cfg-options",
        "modle.x=1",
    ]));
    assert!(
        e.contains("no key 'modle' in its top level (did you mean 'model'?)"),
        "{e}"
    );
}

/// `convert --cfg-options` stores the merged config as `meta.cfg`, so `detect --weights OUT`
/// alone runs it.
#[test]
fn convert_stores_the_overridden_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("student.pth").display().to_string();
    let w = ckpt("rtmdet_nano_mmyolo.pth");
    let mut a = args(&[
        "convert",
        &w,
        "-o",
        &out,
        "--config",
        &cfg("rtmdet_nano_mmyolo.py"),
    ]);
    a.extend(roots());
    a.extend(args(&["--cfg-options", "model.test_cfg.max_per_img=2"]));
    ok(&a);
    let (converted, stderr) = detect(&["--weights", &out]);
    assert!(stderr.contains("(meta.cfg)"), "{stderr}");
    let (top2, _) = detect(&[
        "--weights",
        &w,
        "--cfg-options",
        "model.test_cfg.max_per_img=2",
    ]);
    for (c, t) in converted.iter().zip(&top2) {
        assert_eq!(detections(c), detections(t));
    }
    let e = fails(&args(&[
        "convert",
        &w,
        "-o",
        &out,
        "--cfg-options",
        "model.test_cfg.max_per_img=2",
    ]));
    assert!(e.contains("--cfg-options needs --config CFG"), "{e}");
}
