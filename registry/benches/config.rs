//! Whole-corpus config loading (issue 4): every `.py` config of the mmdet 3.3.0, mmyolo 0.6.0 and
//! mmrazor 1.0.0 wheels (`scripts/fetch-config-trees.sh` puts them in .cache/configs), loaded with
//! `Config::from_file` and turned into JSON, failures included. The Python side of the comparison
//! is benches/python/config_bench.py; the ratio goes to BENCHMARKS.md "## Config loading".
//!
//! Run: `scripts/fetch-config-trees.sh && cargo bench -p mmcompat-registry --bench config`

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use mmcompat_registry::config::{clear_parse_cache, Config, ConfigRoots};

const PACKAGES: &[&str] = &["mmdet", "mmyolo", "mmrazor"];

fn py_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            py_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "py") {
            out.push(p);
        }
    }
}

/// CPU time of this process, all threads (Linux `/proc/self/stat` utime + stime, in USER_HZ =
/// 100 ticks per second), if available.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)`; utime and stime are fields 14 and 15 of the whole line.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn corpus(c: &mut Criterion) {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/configs");
    let mut roots = ConfigRoots::new();
    let mut files = Vec::new();
    for pkg in PACKAGES {
        let dir = cache.join(pkg);
        assert!(
            dir.is_dir(),
            "{} missing: run scripts/fetch-config-trees.sh",
            dir.display()
        );
        roots.add(pkg, &dir);
        py_files(&dir, &mut files);
    }
    let load_all = || {
        let mut ok = 0usize;
        for f in &files {
            if let Ok(cfg) = Config::from_file(f, &roots) {
                std::hint::black_box(cfg.to_json());
                ok += 1;
            }
        }
        ok
    };
    // One cold pass timed by wall clock and by CPU time: on a shared machine the CPU time is the
    // steadier number to compare with benches/python/config_bench.py's `cpu_seconds`.
    clear_parse_cache();
    let (cpu0, t0) = (cpu_seconds(), std::time::Instant::now());
    let ok = load_all();
    let (wall, cpu) = (
        t0.elapsed().as_secs_f64(),
        cpu_seconds().zip(cpu0).map(|(a, b)| a - b),
    );
    eprintln!(
        "config corpus: {} files, {ok} load; one cold pass: {wall:.3} s wall, {} CPU",
        files.len(),
        cpu.map(|c| format!("{c:.3} s"))
            .unwrap_or_else(|| "n/a".into())
    );
    let mut group = c.benchmark_group("config");
    group.sample_size(10);
    // Cold: every file text parsed again, as mmengine does on each `Config.fromfile` (bases shared
    // within the pass are parsed once). Warm: the process-wide parse cache already holds them all.
    group.bench_function(format!("load_corpus_{}_files_cold", files.len()), |b| {
        b.iter(|| {
            clear_parse_cache();
            load_all()
        })
    });
    group.bench_function(format!("load_corpus_{}_files_warm", files.len()), |b| {
        b.iter(load_all)
    });
    group.finish();
}

criterion_group!(benches, corpus);
criterion_main!(benches);
