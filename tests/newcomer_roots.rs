//! Issue 17 items 3 and 5 end to end through the `mmcompat` binary: config roots without flags
//! (the trees `make setup` fetched, then the packages installed in a `python3`, then an error
//! listing every place tried and the fix), and `mmcompat env`. The reference for a resolved
//! config is the run with explicit `--config-root` flags, which tests/cli.rs and the registry's
//! corpus test check against the real mmengine.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config whose `_base_` chain reaches `mmdet::` (an mmrazor distillation config).
fn mmrazor_config() -> PathBuf {
    let p = repo().join(
        ".cache/configs/mmrazor/distill/mmdet/cwd/cwd_cls_head_gfl_r101_fpn_gfl_r50_fpn_1x_coco.py",
    );
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch-config-trees.sh (make setup)",
        p.display()
    );
    p
}

/// `mmcompat` run from a folder outside the checkout, with `envs` set and the user's roots unset.
fn run(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mmcompat"));
    cmd.args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("MMCOMPAT_CONFIG_ROOTS")
        .env_remove("MMCOMPAT_CONFIG_CACHE")
        .env_remove("MMCOMPAT_PYTHON")
        .env_remove("RUST_LOG")
        .env("XDG_CONFIG_HOME", repo().join("target/cli-test-no-xdg"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run mmcompat")
}

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

/// A PATH holding nothing, so that no `python3` is found.
fn empty_path() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn fetched_trees_are_used_without_flags_and_logged() {
    let cfg = mmrazor_config();
    let cfg = cfg.to_str().unwrap();
    let explicit: Vec<String> = ["mmdet", "mmyolo", "mmrazor"]
        .iter()
        .flat_map(|p| {
            [
                "--config-root".to_string(),
                format!("{p}={}", repo().join(".cache/configs").join(p).display()),
            ]
        })
        .collect();
    let mut with_flags = vec!["config", cfg, "--json"];
    with_flags.extend(explicit.iter().map(String::as_str));
    let want = stdout_ok(&run(&with_flags, &[]));
    // No python3 on PATH: the fetched trees alone must do (found from the executable's checkout).
    let path = empty_path();
    let out = run(&["-v", "config", cfg, "--json"], &[("PATH", path.path())]);
    assert_eq!(stdout_ok(&out), want);
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("config root") && l.contains("\"mmdet\""))
        .unwrap_or_else(|| panic!("no info line for the mmdet root:\n{log}"));
    assert!(line.contains(".cache/configs/mmdet"), "{line}");
    assert!(line.contains("fetched by `make setup`"), "{line}");
}

#[test]
fn nothing_found_lists_every_place_tried_and_make_setup() {
    let cfg = mmrazor_config();
    let cache = tempfile::tempdir().unwrap();
    let path = empty_path();
    let out = run(
        &["config", cfg.to_str().unwrap(), "--json"],
        &[
            ("MMCOMPAT_CONFIG_CACHE", cache.path()),
            ("PATH", path.path()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one error line: {err}");
    for needle in [
        "package 'mmdet' is not available",
        "needed for 'mmdet::_base_/datasets/coco_detection.py'",
        "Tried: --config-root mmdet=DIR: not given; MMCOMPAT_CONFIG_ROOTS: not set; ",
        &format!(
            "fetched tree {}: not there; ",
            cache.path().join("mmdet").display()
        ),
        "python3: could not be run (",
        "To fix: run `make setup` in the mmcompat checkout",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
}

/// A virtual environment whose site-packages holds an `mmdet` that must never be imported
/// (its `__init__` exits) with the real config tree as its `.mim/configs`.
fn venv_with_mmdet(dir: &Path) -> PathBuf {
    let status = Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(dir)
        .status()
        .expect("python3 -m venv (python3 is needed by `make setup` too)");
    assert!(status.success());
    let python = dir.join("bin/python");
    let site = Command::new(&python)
        .args([
            "-I",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .unwrap();
    let site = PathBuf::from(String::from_utf8(site.stdout).unwrap().trim());
    let pkg = site.join("mmdet");
    std::fs::create_dir_all(pkg.join(".mim")).unwrap();
    std::fs::write(
        pkg.join("__init__.py"),
        "raise SystemExit('mmdet was imported: discovery must only locate it')\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        repo().join(".cache/configs/mmdet"),
        pkg.join(".mim/configs"),
    )
    .unwrap();
    python
}

#[test]
fn python_site_packages_come_after_fetched_trees() {
    let tmp = tempfile::tempdir().unwrap();
    let python = venv_with_mmdet(&tmp.path().join("venv"));
    let cache = tmp.path().join("no-cache");
    let envs = [
        ("MMCOMPAT_CONFIG_CACHE", cache.as_path()),
        ("MMCOMPAT_PYTHON", python.as_path()),
    ];
    // mmdet from the interpreter; mmyolo nowhere (the error names the interpreter asked).
    let v: Value = serde_json::from_str(&stdout_ok(&run(&["env", "--json"], &envs))).unwrap();
    let mmdet = &v["config_roots"]["mmdet"]["roots"][0];
    assert!(
        mmdet["dir"]
            .as_str()
            .unwrap()
            .ends_with("mmdet/.mim/configs"),
        "{mmdet}"
    );
    assert_eq!(
        mmdet["source"],
        format!("installed in {}", python.display()).as_str()
    );
    assert_eq!(v["config_roots"]["mmyolo"]["roots"], serde_json::json!([]));
    let tried = v["config_roots"]["mmyolo"]["tried"].to_string();
    assert!(
        tried.contains(&format!(
            "{}: no importable package 'mmyolo'",
            python.display()
        )),
        "{tried}"
    );
    // The config resolves through that site-packages, without importing the package.
    let cfg = mmrazor_config();
    let mut roots = vec![
        "--config-root".to_string(),
        format!(
            "mmrazor={}",
            repo().join(".cache/configs/mmrazor").display()
        ),
    ];
    let mut args = vec!["config", cfg.to_str().unwrap(), "--json"];
    args.extend(roots.iter().map(String::as_str));
    let got = stdout_ok(&run(&args, &envs));
    roots.extend([
        "--config-root".to_string(),
        format!("mmdet={}", repo().join(".cache/configs/mmdet").display()),
    ]);
    let mut args = vec!["config", cfg.to_str().unwrap(), "--json"];
    args.extend(roots.iter().map(String::as_str));
    assert_eq!(got, stdout_ok(&run(&args, &[])));
}

#[test]
fn env_reports_libtorch_cuda_roots_and_adapters() {
    let v: Value = serde_json::from_str(&stdout_ok(&run(&["env", "--json"], &[]))).unwrap();
    assert_eq!(v["mmcompat"], env!("CARGO_PKG_VERSION"));
    // tch 0.24 requires exactly libtorch 2.11.0; the version is read from its version.py.
    let version = v["libtorch"]["version"].as_str().unwrap_or_default();
    assert!(version.starts_with("2.11.0"), "{}", v["libtorch"]);
    assert_eq!(
        Path::new(v["libtorch"]["lib"].as_str().unwrap()),
        Path::new(mmcompat::device::LIBTORCH_LIB)
    );
    assert_eq!(v["cuda"]["available"], tch::Cuda::is_available());
    for pkg in ["mmdet", "mmyolo", "mmrazor"] {
        let root = &v["config_roots"][pkg]["roots"][0];
        assert_eq!(root["source"], "fetched by `make setup`", "{pkg}: {root}");
        assert_eq!(
            std::fs::canonicalize(root["dir"].as_str().unwrap()).unwrap(),
            std::fs::canonicalize(repo().join(".cache/configs").join(pkg)).unwrap()
        );
    }
    let names: Vec<&str> = v["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for a in [
        "mmrazor.kd_student",
        "mmengine.ema",
        "mmdet_to_mmyolo.rtmdet",
    ] {
        assert!(names.contains(&a), "{a} not in {names:?}");
    }
    // The text form says the same, one `key: value` line each.
    let text = stdout_ok(&run(&["env"], &[]));
    assert!(
        text.contains(&format!("mmcompat: {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("libtorch version: {version} ")),
        "{text}"
    );
    assert!(
        text.contains("  mmrazor.kd_student: static (mmcompat_plugin_mmrazor)\n"),
        "{text}"
    );
    assert!(text.contains("CUDA available: "), "{text}");
}
