//! Issue 17 item 4 end to end: `detect --model NAME` as `DetInferencer(model=NAME)`. Names
//! resolve to the config the real mmengine loads (tests/fixtures/model-names.json, written by
//! tests/fixtures/generate/make_model_names.py); weights come from the torch.hub cache folder
//! under the URL's file name, downloaded when absent with torch.hub's hash check, from a local
//! HTTP server started here (`MMCOMPAT_DOWNLOAD_MIRROR`), never from the internet. Detections
//! of a name are those of the same config and checkpoint given as files (which tests/cli.rs
//! checks against init_detector).

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn image() -> String {
    repo()
        .join("tests/fixtures/inference/images/astronaut.png")
        .display()
        .to_string()
}

fn run(args: &[String], envs: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mmcompat"));
    cmd.args(args)
        .current_dir(repo())
        .env_remove("MMCOMPAT_CONFIG_ROOTS")
        .env_remove("MMCOMPAT_CONFIG_CACHE")
        .env_remove("MMCOMPAT_DOWNLOAD_MIRROR")
        .env("XDG_CONFIG_HOME", repo().join("target/cli-test-no-xdg"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run mmcompat")
}

fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 serving `files` (URL path -> bytes), 404 otherwise.
/// It stops when dropped, and after two minutes in any case.
struct LocalServer {
    url: String,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl LocalServer {
    fn start(files: Vec<(String, Vec<u8>)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                h.fetch_add(1, Ordering::SeqCst);
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req);
                let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                let _ = match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => conn
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| conn.write_all(body)),
                    None => conn.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            }
        });
        LocalServer { url, hits, stop }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn fixture_root(pkg: &str) -> PathBuf {
    let d = repo().join(".cache/fixture-configs").join(pkg);
    assert!(
        d.join(".complete").exists(),
        "{} missing: run scripts/install-fixture-configs.sh (make test does)",
        d.display()
    );
    d
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// A package root holding a model-index.yml and one metafile whose entry is the fixture
/// distillation config (FpnTeacherDistill; its checkpoint is MMRazor's real layout: architecture,
/// teacher, distiller, EMA), published at `weights_url`.
fn zoo_root(dir: &Path, weights_url: &str) -> PathBuf {
    let root = dir.join("zoo");
    std::fs::create_dir_all(root.join("kd")).unwrap();
    std::fs::write(
        root.join("model-index.yml"),
        "Import:\n  - configs/kd/metafile.yml\n",
    )
    .unwrap();
    std::fs::write(
        root.join("kd/metafile.yml"),
        format!(
            "Models:\n  - Name: kd_nano_rtmdet_neck_fixture\n    Alias:\n      - kd-nano\n    \
             Config: configs/kd/kd_nano_rtmdet_neck_fixture.py\n    Weights: {weights_url}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("kd/kd_nano_rtmdet_neck_fixture.py"),
        "_base_ = 'mmyolo::mmcompat/kd_nano_rtmdet_neck.py'\n",
    )
    .unwrap();
    root
}

fn root_args(zoo: &Path) -> Vec<String> {
    let mut a = Vec::new();
    for pkg in ["mmdet", "mmyolo", "mmrazor"] {
        a.push("--config-root".into());
        a.push(format!("{pkg}={}", fixture_root(pkg).display()));
    }
    a.push("--config-root".into());
    a.push(format!("mmyolo={}", zoo.display()));
    a
}

#[test]
fn a_name_downloads_once_into_the_torch_hub_cache_and_detects_as_the_files_do() {
    let ckpt =
        std::fs::read(repo().join("tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth")).unwrap();
    let file = format!(
        "kd_nano_rtmdet_neck_20991231-{}.pth",
        &sha256_hex(&ckpt)[..8]
    );
    let server = LocalServer::start(vec![(format!("/v1/kd/{file}"), ckpt.clone())]);
    let tmp = tempfile::tempdir().unwrap();
    let zoo = zoo_root(
        tmp.path(),
        &format!("https://download.example.invalid/v1/kd/{file}"),
    );
    let torch_home = tmp.path().join("torch");
    let envs = [
        ("TORCH_HOME", torch_home.display().to_string()),
        ("MMCOMPAT_DOWNLOAD_MIRROR", server.url.clone()),
    ];
    let mut args = strings(&["detect", "--model", "KD-NANO", "--json"]);
    args.extend(root_args(&zoo));
    args.push(image());
    let out = run(&args, &envs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let cached = torch_home.join("hub/checkpoints").join(&file);
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        ckpt,
        "the cached file is the served one"
    );
    assert!(
        stderr.contains(&format!(
            "Downloading: \"{}/v1/kd/{file}\" to {}",
            server.url,
            cached.display()
        )),
        "{stderr}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(cached.parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    // The same detections as the config and checkpoint given as files.
    let mut files = strings(&["detect", "--json", "--config"]);
    files.push(
        zoo.join("kd/kd_nano_rtmdet_neck_fixture.py")
            .display()
            .to_string(),
    );
    files.push("--weights".into());
    files.push(
        repo()
            .join("tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth")
            .display()
            .to_string(),
    );
    files.extend(root_args(&zoo));
    files.push(image());
    let want = run(&files, &[]);
    assert!(
        want.status.success(),
        "{}",
        String::from_utf8_lossy(&want.stderr)
    );
    let dets: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!dets["detections"].as_array().unwrap().is_empty());
    assert_eq!(out.stdout, want.stdout);

    // A second run uses the cache: no request.
    let again = run(&args, &envs);
    assert!(again.status.success());
    assert_eq!(again.stdout, want.stdout);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn a_wrong_hash_or_a_missing_file_is_an_error_and_leaves_nothing_cached() {
    let body = b"not the published checkpoint".to_vec();
    let file = "kd_nano_rtmdet_neck_20991231-deadbeef.pth";
    let server = LocalServer::start(vec![(format!("/v1/kd/{file}"), body.clone())]);
    let tmp = tempfile::tempdir().unwrap();
    let torch_home = tmp.path().join("torch");
    let envs = [
        ("TORCH_HOME", torch_home.display().to_string()),
        ("MMCOMPAT_DOWNLOAD_MIRROR", server.url.clone()),
    ];
    let zoo = zoo_root(
        tmp.path(),
        &format!("https://download.example.invalid/v1/kd/{file}"),
    );
    let mut args = strings(&["detect", "--model", "kd_nano_rtmdet_neck_fixture"]);
    args.extend(root_args(&zoo));
    args.push(image());
    let out = run(&args, &envs);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let digest = sha256_hex(&body);
    assert!(
        err.contains(&format!(
            "invalid hash value (expected \"deadbeef\", got \"{digest}\")"
        )),
        "{err}"
    );
    let dir = torch_home.join("hub/checkpoints");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing cached"
    );

    // A URL the server does not have: the error names the URL and where the file would go.
    let zoo = zoo_root(
        &tmp.path().join("b"),
        "https://download.example.invalid/v1/kd/gone-0a.pth",
    );
    let mut args = strings(&["detect", "--model", "kd-nano"]);
    args.extend(root_args(&zoo));
    args.push(image());
    let out = run(&args, &envs);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: downloading {}/v1/kd/gone-0a.pth: ",
            server.url
        )),
        "{err}"
    );
    assert!(err.contains("404"), "{err}");
    assert!(
        err.contains(&format!(
            "The weights are cached as {}: put the file there",
            dir.join("gone-0a.pth").display()
        )),
        "{err}"
    );
}

#[test]
fn real_names_resolve_to_mmengines_config_and_cache_file() {
    // The fetched trees (no --config-root); a mirror with nothing on it stops each run right
    // after resolution, whose result stderr shows.
    let server = LocalServer::start(Vec::new());
    let tmp = tempfile::tempdir().unwrap();
    let envs = [
        ("TORCH_HOME", tmp.path().display().to_string()),
        ("MMCOMPAT_DOWNLOAD_MIRROR", server.url.clone()),
    ];
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/model-names.json")).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let (Some(config), Some(url)) = (case["config"].as_str(), case["weights"].as_str()) else {
            continue;
        };
        let (scope, name) = (
            case["scope"].as_str().unwrap(),
            case["name"].as_str().unwrap(),
        );
        let out = run(
            &strings(&["detect", "--scope", scope, "--model", name, &image()]),
            &envs,
        );
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        let cfg = repo().join(".cache/configs").join(scope).join(config);
        assert!(
            err.starts_with(&format!("model {name}: {} ", cfg.display())),
            "{name}: {err}"
        );
        let file = url.split('?').next().unwrap().rsplit('/').next().unwrap();
        assert!(
            err.contains(&format!(
                "The weights are cached as {}:",
                tmp.path().join("hub/checkpoints").join(file).display()
            )),
            "{err}"
        );
        checked += 1;
    }
    assert!(checked >= 8, "{checked}");
}

#[test]
fn unknown_names_suggest_the_closest() {
    let out = run(
        &strings(&["detect", "--model", "rtmdet-tiny", &image()]),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: unknown model name 'rtmdet-tiny' (did you mean rtmdet-t,"),
        "{err}"
    );
    assert!(
        err.contains("mmyolo/model-index.yml (74 models, mmyolo)"),
        "{err}"
    );
}

/// The guide's case by name: `kd_tiny_rtmdet_s_neck_300e_coco` is MMRazor's FpnTeacherDistill
/// config; `detect` builds its student from `architecture.cfg_path` and the mmrazor adapters
/// take the student out of a distillation checkpoint. The published checkpoint is not
/// downloadable here, so the reduced-width fixture of the same layout is given: every key maps
/// through `mmrazor.kd_student` and only the widths differ.
#[test]
fn the_distillation_entry_builds_the_student_and_picks_the_mmrazor_adapter() {
    let ckpt = repo().join("tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth");
    let out = run(
        &strings(&[
            "detect",
            "--model",
            "kd_tiny_rtmdet_s_neck_300e_coco",
            "--weights",
            ckpt.to_str().unwrap(),
            &image(),
        ]),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rtmdet/distillation/kd_tiny_rtmdet_s_neck_300e_coco.py (mmyolo metafile"),
        "{err}"
    );
    assert!(err.contains("closest chain: mmrazor.kd_student ("), "{err}");
    // RTMDet-tiny's stem is 12 wide (widen_factor 0.375): the student, not the RTMDet-s teacher.
    assert!(
        err.contains("backbone.stem.0.conv.weight: model [12, 3, 3, 3], checkpoint [2, 3, 3, 3]"),
        "{err}"
    );
    let after_chain = err
        .split("closest chain: mmrazor.kd_student")
        .nth(1)
        .unwrap();
    assert!(
        !after_chain.contains("missing keys"),
        "every key maps: {after_chain}"
    );
}
