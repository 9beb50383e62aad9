//! Checkpoint reading benchmark (issue 3): open + list every tensor, and open + read the student
//! of a distillation checkpoint. Python's side is benches/python/torch_load_bench.py; results and
//! ratios are in BENCHMARKS.md ("Checkpoint reading").
//!
//! Inputs: the distillation fixture tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth, and the
//! large files of benches/python/make_big_checkpoint.py in $MMCOMPAT_BENCH_DIR (default
//! /tmp/mmcompat-bench); a missing large file is skipped with a note.
//!
//! Run: cargo bench -p mmcompat-registry --bench checkpoint

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mmcompat_registry::checkpoint::Checkpoint;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn inputs() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let big = std::env::var_os("MMCOMPAT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/mmcompat-bench"));
    let mut out = vec![(
        "kd_nano_rtmdet_neck".to_string(),
        root.join("tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth"),
    )];
    for stem in [
        "rtmdet_l_mmyolo",
        "rtmdet_l_mmyolo_legacy",
        "kd_rtmdet_l_to_s",
    ] {
        let p = big.join(format!("{stem}.pth"));
        if p.exists() {
            out.push((stem.to_string(), p));
        } else {
            eprintln!(
                "note: {} missing (run benches/python/make_big_checkpoint.py); skipped",
                p.display()
            );
        }
    }
    out
}

/// Open, then list every tensor of every section and everything else in the file.
fn open_and_list(path: &Path) -> usize {
    let ck = Checkpoint::open(path).expect("checkpoint opens");
    let mut n = 0;
    for s in ck.sections() {
        for (name, t) in &s.tensors {
            n += name.len() + t.shape.len();
        }
    }
    n + ck.all_tensors().len()
}

/// Open, then read (and touch) every byte of the student (`architecture.*`).
fn open_and_read_student(path: &Path) -> u64 {
    let ck = Checkpoint::open(path).expect("checkpoint opens");
    let mut acc = 0u64;
    let Some(sd) = ck.section("state_dict") else {
        return 0;
    };
    for (_, t) in sd
        .tensors
        .iter()
        .filter(|(k, _)| k.starts_with("architecture."))
    {
        let b = ck.tensor_bytes(t).expect("tensor bytes");
        acc = b.iter().fold(acc, |a, &x| a.wrapping_add(u64::from(x)));
    }
    acc
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, path) in inputs() {
        g.bench_function(format!("open_list/{name}"), |b| {
            b.iter(|| black_box(open_and_list(&path)))
        });
        if name.starts_with("kd_") {
            g.bench_function(format!("open_read_student/{name}"), |b| {
                b.iter(|| black_box(open_and_read_student(&path)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
