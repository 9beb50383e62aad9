//! Batch runs of `mmcompat detect` that lose nothing (issue 18): bad images among good ones become
//! error records while the run goes on, `--output` files survive a kill, `--resume` continues
//! them without a gap or a repeat; and the text output (issue 17 item 6). Each good image's record
//! is compared with a single-image run of the same binary, whose detections tests/cli.rs and
//! tests/inference.rs check against the real `inference_detector`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cli::detect_args;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `mmcompat detect` on the mmyolo fixture model, as tests/cli.rs runs it (no python3
/// discovery, no user adapters).
fn detect(extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mmcompat"));
    c.args(detect_args("mmyolo", extra))
        .current_dir(repo())
        .env_remove("MMCOMPAT_CONFIG_ROOTS")
        .env("XDG_CONFIG_HOME", repo().join("target/cli-test-no-xdg"));
    c
}

fn run(extra: &[&str]) -> Output {
    detect(extra).output().expect("run mmcompat")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn image_formats(name: &str) -> PathBuf {
    repo().join("tests/fixtures/image_formats").join(name)
}

/// Small good images of several formats (the model runs at 640x640 whatever their size).
const GOOD: &[&str] = &[
    "jpeg_q95.jpg",
    "png_rgb.png",
    "webp_lossy.webp",
    "bmp_24.bmp",
];

/// Bad images: (file name, bytes, a word the error names).
fn bad_images() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let png = std::fs::read(image_formats("png_rgb.png")).expect("png");
    vec![
        ("truncated.png", png[..png.len() / 2].to_vec(), "PNG"),
        (
            "not_an_image.jpg",
            b"just some text, not a JPEG".to_vec(),
            "format",
        ),
        (
            "bomb.png",
            crate::image_formats::png_declaring(100_000, 100_000),
            "--max-image-pixels",
        ),
        ("empty.bmp", Vec::new(), "empty.bmp"),
    ]
}

/// The one record a single-image `detect --json` run writes for `path`.
fn single_image_record(path: &str) -> Value {
    let out = run(&["--json", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut lines = json_lines(&text(&out.stdout));
    assert_eq!(lines.len(), 1);
    lines.remove(0)
}

#[test]
fn a_folder_with_bad_images_gives_every_good_detection_and_one_error_record_per_bad_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("images");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for name in GOOD {
        std::fs::copy(image_formats(name), dir.join(name)).expect("copy");
    }
    let bad = bad_images();
    for (name, bytes, _) in &bad {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
    std::fs::write(dir.join("notes.txt"), "not listed: no image extension").expect("write");
    let output = tmp.path().join("out.jsonl");
    let out = run(&[
        "--json",
        "--output",
        output.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "non-zero exit: {stderr}");
    let total = GOOD.len() + bad.len();
    assert!(
        stderr.contains(&format!("{} of {total} images failed", bad.len())),
        "summary: {stderr}"
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        std::fs::read_to_string(&output).expect("output file"),
        stdout,
        "--output holds the same JSON lines as stdout"
    );
    let records = json_lines(&stdout);
    assert_eq!(records.len(), total, "one record per image");
    for name in GOOD {
        let path = dir.join(name).display().to_string();
        let mine: Vec<&Value> = records.iter().filter(|r| r["image"] == path).collect();
        assert_eq!(mine.len(), 1, "{name}");
        assert_eq!(mine[0], &single_image_record(&path), "{name}");
        assert!(!mine[0]["detections"].as_array().unwrap().is_empty());
    }
    for (name, _, word) in &bad {
        let path = dir.join(name).display().to_string();
        let mine: Vec<&Value> = records.iter().filter(|r| r["image"] == path).collect();
        assert_eq!(mine.len(), 1, "{name}");
        let keys: Vec<&String> = mine[0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["image", "error"], "{name}");
        let error = mine[0]["error"].as_str().unwrap();
        assert!(
            error.contains(name) && error.contains(word),
            "{name}: {error}"
        );
        assert!(
            stderr.contains(&path),
            "{name} reported on stderr: {stderr}"
        );
    }
}

/// Waits until `file` holds at least `n` whole lines.
fn wait_for_lines(file: &Path, n: usize, child: &mut std::process::Child) {
    let start = Instant::now();
    loop {
        let lines = std::fs::read(file)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        if lines >= n {
            return;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the run ended ({status}) before {n} records were written");
        }
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_killed_run_resumed_equals_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("images");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // 16 distinct paths (the good images under several names) and one bad image in the middle.
    let mut list = String::new();
    for i in 0..16 {
        let name = GOOD[i % GOOD.len()];
        let dest = dir.join(format!("{i:02}_{name}"));
        std::fs::copy(image_formats(name), &dest).expect("copy");
        list.push_str(&format!("{}\n", dest.display()));
        if i == 7 {
            let bad = dir.join("07_truncated.png");
            std::fs::write(&bad, &bad_images()[0].1).expect("write");
            list.push_str(&format!("{}\n", bad.display()));
        }
    }
    let total = 17;
    let list_file = tmp.path().join("list.txt");
    std::fs::write(&list_file, &list).expect("write list");
    let list_arg = list_file.to_str().unwrap();

    let full = tmp.path().join("full.jsonl");
    let out = run(&["--list", list_arg, "--output", full.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let full_text = std::fs::read_to_string(&full).expect("full");
    assert_eq!(full_text.lines().count(), total);

    // The same run, killed (SIGKILL) once 5 records are written.
    let part = tmp.path().join("part.jsonl");
    let mut child = detect(&["--list", list_arg, "--resume", part.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for_lines(&part, 5, &mut child);
    child.kill().expect("kill");
    child.wait().expect("wait");
    let killed = std::fs::read_to_string(&part).expect("part");
    let done = killed.lines().count();
    assert!(
        (5..total).contains(&done),
        "killed midway: {done} of {total}"
    );
    assert!(
        full_text.starts_with(&killed),
        "the records written before the kill are the uninterrupted run's"
    );
    // As if the kill had hit in the middle of a write: --resume must cut the partial line.
    std::fs::write(&part, format!("{killed}{{\"image\": \"{}", dir.display())).expect("append");

    // Resumed, with the list on stdin this time.
    let mut child = detect(&["--json", "--list", "-", "--resume", part.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(list.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("resume");
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the bad image still fails: {stderr}"
    );
    assert!(
        stderr.contains(&format!("1 of {total} images failed")),
        "{stderr}"
    );
    assert_eq!(
        text(&out.stdout).lines().count(),
        total - done,
        "only the images not yet recorded are run"
    );
    assert_eq!(
        std::fs::read_to_string(&part).expect("part"),
        full_text,
        "resumed = uninterrupted: nothing missing, nothing repeated"
    );

    // Resuming a finished file runs nothing and still reports the recorded failure.
    let out = run(&["--list", list_arg, "--resume", part.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1 of 17 images failed, 1 of them recorded by the earlier run"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&part).expect("part"), full_text);
}

#[test]
fn resume_refuses_a_file_that_detect_did_not_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, "my notes\n").expect("write");
    let image = image_formats(GOOD[0]);
    let out = run(&["--resume", notes.to_str().unwrap(), image.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("notes.txt line 1: not a `detect` record"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
}

/// Text output: one line per image with its size, count and three best detections; no trailer
/// when there is nothing to list; an error line for a bad image.
#[test]
fn text_output_is_one_readable_line_per_image() {
    let chelsea = "tests/fixtures/inference/images/chelsea.png";
    let reference: Value = serde_json::from_slice(
        &std::fs::read(repo().join("tests/fixtures/inference/mmyolo__chelsea.json")).unwrap(),
    )
    .unwrap();
    let scores = reference["detections"]["scores"].as_array().unwrap();
    let n = scores.len();
    assert!(n > 3);
    let json = single_image_record(chelsea);
    let best: Vec<String> = json["detections"].as_array().unwrap()[..3]
        .iter()
        .zip(scores)
        .map(|(d, s)| {
            // Our score agrees with Python's within 1e-4 (tests/inference.rs).
            assert!((d["score"].as_f64().unwrap() - s.as_f64().unwrap()).abs() < 1e-4);
            format!(
                "{} {:.3}",
                d["class"].as_str().unwrap(),
                d["score"].as_f64().unwrap()
            )
        })
        .collect();
    let out = run(&[chelsea]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{chelsea} (451x300): {n} detections: {} (+{} more)\n",
            best.join(", "),
            n - 3
        )
    );

    // Nothing above the threshold: the line ends at the count.
    let out = run(&["--score-thr", "0.99", chelsea]);
    assert_eq!(
        text(&out.stdout),
        format!("{chelsea} (451x300): no detections\n")
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let out = run(&[chelsea, bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[1].starts_with(&format!("{}: error: ", bad.display())),
        "{stdout}"
    );
}
