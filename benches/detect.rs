//! Steady-state detection latency (BENCHMARKS.md "## Detection"): one 640x640 network input,
//! after warm-up, for the mmyolo nano fixture and the distilled student (KD config + KD
//! checkpoint), split into the whole `infer`, the forward pass and the post-processing alone.
//!
//! `cargo bench --bench detect` (needs `.cache/configs` from scripts/fetch-config-trees.sh, or
//! MMCOMPAT_CONFIG_ROOTS pointing at package config trees that contain the fixture overlay).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use mmcompat::inferencer::Inferencer;
use mmcompat::preprocess::decode_image_file;
use mmcompat::registry::config::ConfigRoots;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped config trees plus the fixture overlay, linked into one tree per package (the
/// overlay's relative `_base_`s point into the shipped tree).
fn roots() -> ConfigRoots {
    let base = std::env::temp_dir().join(format!("mmcompat-bench-roots-{}", std::process::id()));
    let mut roots = ConfigRoots::new();
    for pkg in ["mmyolo", "mmdet", "mmrazor"] {
        let tree = base.join(pkg);
        std::fs::create_dir_all(tree.join("mmcompat")).expect("mkdir");
        let shipped = repo().join(".cache/configs").join(pkg);
        for entry in std::fs::read_dir(&shipped)
            .expect("run scripts/fetch-config-trees.sh")
            .flatten()
        {
            let _ = std::os::unix::fs::symlink(entry.path(), tree.join(entry.file_name()));
        }
        let overlay = repo()
            .join("tests/fixtures/configs/overlay")
            .join(pkg)
            .join("mmcompat");
        for entry in std::fs::read_dir(&overlay).into_iter().flatten().flatten() {
            let _ = std::os::unix::fs::symlink(
                entry.path(),
                tree.join("mmcompat").join(entry.file_name()),
            );
        }
        roots.add(pkg, tree);
    }
    roots
}

fn bench(c: &mut Criterion) {
    let roots = roots();
    let img = decode_image_file(&repo().join("tests/fixtures/inference/images/astronaut.png"))
        .expect("image");
    let cases = [
        (
            "mmyolo_nano",
            "mmyolo/mmcompat/rtmdet_nano_mmyolo.py",
            "rtmdet_nano_mmyolo.pth",
        ),
        (
            "kd_student",
            "mmyolo/mmcompat/kd_nano_rtmdet_neck.py",
            "kd_nano_rtmdet_neck.pth",
        ),
    ];
    let mut group = c.benchmark_group("detect");
    group.sample_size(20);
    for (name, config, ckpt) in cases {
        let (pkg, rel) = config.split_once('/').expect("pkg/rel");
        let inf = Inferencer::builder()
            .config(roots.dirs(pkg)[0].join(rel))
            .weights(repo().join("tests/fixtures/checkpoints").join(ckpt))
            .scope("mmyolo")
            .config_roots(roots.clone())
            .build()
            .expect("inferencer");
        let pre = inf.preprocess(&img).expect("pipeline");
        let outs = inf.head_outputs(&[&pre]).expect("forward");
        group.bench_function(format!("{name}/infer"), |b| {
            b.iter(|| inf.infer(&img).expect("infer"))
        });
        group.bench_function(format!("{name}/forward"), |b| {
            b.iter(|| inf.head_outputs(&[&pre]).expect("forward"))
        });
        group.bench_function(format!("{name}/postprocess"), |b| {
            b.iter(|| inf.postprocess(&outs, &[&pre]).expect("postprocess"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
