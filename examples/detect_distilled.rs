//! The seed's case: a distilled RTMDet (MMRazor `FpnTeacherDistill` config + its training
//! checkpoint) run with scope `mmyolo` on a chosen device, without ever building the teacher.
//!
//! ```text
//! cargo run --release --example detect_distilled -- KD_CONFIG KD_CHECKPOINT IMAGE [DEVICE] [PKG=CONFIG_DIR ...]
//! # MMCOMPAT_REPEAT=N: after 3 warm-up runs, time N more and print the median (benches/bench_detect.sh)
//! # MMCOMPAT_SCOPE=S: resolve types in scope S (default mmyolo, the seed's; "" = the config's own)
//! # e.g.
//! cargo run --release --example detect_distilled -- \
//!     configs/rtmdet/distillation/kd_tiny_rtmdet_s_neck_300e_coco.py work_dirs/kd/epoch_300.pth demo.jpg cuda \
//!     mmyolo=/path/to/mmyolo/configs mmrazor=/path/to/mmrazor/configs
//! ```
//! `pkg::` config references (`architecture.cfg_path='mmyolo::rtmdet/...'`) are looked up in the
//! `PKG=DIR` roots given here and `MMCOMPAT_CONFIG_ROOTS`; without either, in the configs of the
//! packages installed in `python3`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mmcompat::inferencer::Inferencer;
use mmcompat::registry::config::ConfigRoots;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Time spent inside the spans `roi_head_forward` (a two-stage detector's RoIAlign + box head,
/// which run inside post-processing but are network forward: the benchmark moves them over) and
/// `roi_extractor` (its RoIAlign alone, on tch ops).
#[derive(Clone, Default)]
struct SecondStageTimer(Arc<Mutex<[Duration; 2]>>);

struct Entered(Instant);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SecondStageTimer {
    fn on_new_span(&self, _: &Attributes<'_>, _: &Id, _: Context<'_, S>) {}
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if matches!(span.name(), "roi_head_forward" | "roi_extractor") {
                span.extensions_mut().insert(Entered(Instant::now()));
            }
        }
    }
    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(Entered(t)) = span.extensions_mut().remove::<Entered>() {
                let slot = usize::from(span.name() == "roi_extractor");
                self.0.lock().expect("timer")[slot] += t.elapsed();
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, weights, image, rest @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: detect_distilled KD_CONFIG KD_CHECKPOINT IMAGE [DEVICE] [PKG=CONFIG_DIR ...]"
        );
    };
    let (device, root_specs): (&str, Vec<String>) = match rest.split_first() {
        Some((d, more)) if !d.contains('=') => (d.as_str(), more.to_vec()),
        _ => ("cpu", rest.to_vec()),
    };
    let mut roots = ConfigRoots::from_cli(&root_specs)?.with_env()?;
    if roots.packages().next().is_none() {
        // Asking python3 where its packages live costs a subprocess: only without explicit roots.
        roots = roots.discover_python();
    }

    let timer = SecondStageTimer::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(timer.clone()))?;

    let t0 = std::time::Instant::now();
    let scope = std::env::var("MMCOMPAT_SCOPE").unwrap_or_else(|_| "mmyolo".into());
    let mut builder = Inferencer::builder()
        .config(config)
        .weights(weights)
        .device(device)
        .config_roots(roots);
    if !scope.is_empty() {
        builder = builder.scope(scope);
    }
    let inferencer = builder.build()?;
    eprintln!(
        "loaded in {:.2}s: {} (student of {}), adapters [{}], {:.1}% of the weights matched",
        t0.elapsed().as_secs_f64(),
        config,
        inferencer.distillation().unwrap_or("no distillation"),
        inferencer.adapters().join(" → "),
        inferencer.load_report().coverage()
    );

    let t1 = std::time::Instant::now();
    let detections = inferencer.infer(image.as_str())?;
    eprintln!(
        "{} detections in {:.1} ms",
        detections.len(),
        t1.elapsed().as_secs_f64() * 1e3
    );
    if let Some(n) = std::env::var("MMCOMPAT_REPEAT")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        // Steady state on the decoded image (decode excluded, like inference_detector on an array).
        let img = mmcompat::preprocess::decode_image_file(std::path::Path::new(image))?;
        for _ in 0..3 {
            inferencer.infer(&img)?;
        }
        let mut ms: Vec<f64> = (0..n.max(1))
            .map(|_| {
                let t = std::time::Instant::now();
                inferencer
                    .infer(&img)
                    .map(|_| t.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<_, _>>()?;
        // The same split as benches/python/detect_bench.py: forward (data preprocessor +
        // network) and post-processing (predict_by_feat) alone.
        let pre = inferencer.preprocess(&img)?;
        let mut decode_pre = Vec::new();
        let mut fwd = Vec::new();
        let mut post = Vec::new();
        let mut second = Vec::new();
        let mut roi_align = Vec::new();
        for _ in 0..n.max(1) {
            // Our side of "decode + pre-processing" (BENCHMARKS.md "## Families"): the image file
            // decoded and run through the test pipeline (resize + pad), as `detect` does per file.
            let t = std::time::Instant::now();
            let decoded = mmcompat::preprocess::decode_image_file(std::path::Path::new(image))?;
            inferencer.preprocess(&decoded)?;
            decode_pre.push(t.elapsed().as_secs_f64() * 1e3);
            let t = std::time::Instant::now();
            let outs = inferencer.head_outputs(&[&pre])?;
            fwd.push(t.elapsed().as_secs_f64() * 1e3);
            let before = *timer.0.lock().expect("timer");
            let t = std::time::Instant::now();
            inferencer.postprocess(&outs, &[&pre])?;
            post.push(t.elapsed().as_secs_f64() * 1e3);
            let after = *timer.0.lock().expect("timer");
            second.push((after[0] - before[0]).as_secs_f64() * 1e3);
            roi_align.push((after[1] - before[1]).as_secs_f64() * 1e3);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "{{\"steady_median_ms\": {:.3}, \"decode_preprocess_median_ms\": {:.3}, \"forward_median_ms\": {:.3}, \"postprocess_median_ms\": {:.3}, \"second_stage_forward_median_ms\": {:.3}, \"roi_align_median_ms\": {:.3}, \"runs\": {}}}",
            median(&mut ms),
            median(&mut decode_pre),
            median(&mut fwd),
            median(&mut post),
            median(&mut second),
            median(&mut roi_align),
            ms.len()
        );
    }
    for d in detections.iter().filter(|d| d.score > 0.3).take(20) {
        println!(
            "{:>16} {:.3}  [{:.1}, {:.1}, {:.1}, {:.1}]",
            d.class_name, d.score, d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]
        );
    }
    Ok(())
}
