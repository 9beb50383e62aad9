//! `mmcompat detect` as a library function: images (files or folders, searched recursively and
//! sorted) → one JSON line (or one human-readable line) per image, optional annotated PNGs.
//! The CLI only parses flags into [`DetectOptions`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::{Detection, InferError, Inferencer};
use crate::core::adapter::AdapterSet;
use crate::core::config::ConfigRoots;
use crate::preprocess::{decode_image_file_with, DEFAULT_MAX_IMAGE_PIXELS};
use crate::visualize::{draw_detections, save_png};

/// mmengine's `IMG_EXTENSIONS` (what DetInferencer lists in a folder).
const IMG_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

/// From this many images on, a progress bar is drawn on stderr.
const PROGRESS_FROM: usize = 8;

/// Options of `mmcompat detect`.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    pub config: PathBuf,
    pub weights: PathBuf,
    /// `--scope`; None: the config's `default_scope`.
    pub scope: Option<String>,
    /// `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// Extra filter (`score > thr`) on top of what `test_cfg` keeps; None keeps everything.
    pub score_thr: Option<f32>,
    /// Write `<stem>.png` per image with boxes drawn here.
    pub out_dir: Option<PathBuf>,
    /// Boxes drawn on the PNGs need `score > draw_score_thr` (DetInferencer's `pred_score_thr`,
    /// 0.3 by default).
    pub draw_score_thr: f32,
    /// One JSON object per image per line instead of a human-readable summary.
    pub json: bool,
    /// Image files or folders.
    pub inputs: Vec<PathBuf>,
    pub config_roots: Option<ConfigRoots>,
    pub half: bool,
    /// Fold batch norms into the convolutions (faster; outputs differ from PyTorch's by
    /// float32 rounding, ~1e-4 relative on the head outputs).
    pub fold_bn: bool,
    pub strict: bool,
    /// Forced adapter chain (`--adapter NAME`...; empty: automatic).
    pub adapter_chain: Vec<String>,
    /// The adapters to choose from (`--adapters FILE`...); `None`: built-ins + the XDG folder.
    pub adapter_set: Option<Arc<AdapterSet>>,
    /// `--max-image-pixels`: images declaring more pixels are refused before decoding.
    pub max_image_pixels: u64,
}

impl DetectOptions {
    /// Options with the defaults of the CLI (device cpu, strict, PNG threshold 0.3).
    pub fn new(
        config: impl Into<PathBuf>,
        weights: impl Into<PathBuf>,
        inputs: Vec<PathBuf>,
    ) -> Self {
        DetectOptions {
            config: config.into(),
            weights: weights.into(),
            scope: None,
            device: "cpu".into(),
            score_thr: None,
            out_dir: None,
            draw_score_thr: 0.3,
            json: false,
            inputs,
            config_roots: None,
            half: false,
            fold_bn: false,
            strict: true,
            adapter_chain: Vec::new(),
            adapter_set: None,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}

/// What a `run_detect` call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectSummary {
    pub images: usize,
    /// Detections written (after `score_thr`).
    pub detections: usize,
    pub pngs: Vec<PathBuf>,
    /// Seconds to build the model and load the weights.
    pub load_seconds: f64,
    /// Seconds for all images (decode → detections).
    pub infer_seconds: f64,
}

/// Image files of `inputs`: files as given, folders searched recursively, each folder's images
/// sorted by path. Returns (file, path relative to its input folder, for output names).
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<(PathBuf, PathBuf)>, InferError> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            walk(input, &mut found)?;
            found.sort();
            for f in found {
                let rel = f
                    .strip_prefix(input)
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|_| f.clone());
                out.push((f, rel));
            }
        } else if input.is_file() {
            let rel = PathBuf::from(input.file_name().unwrap_or(input.as_os_str()));
            out.push((input.clone(), rel));
        } else {
            return Err(InferError::Io {
                path: input.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such image file or folder",
                ),
            });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), InferError> {
    let io = |source| InferError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMG_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Runs detection on every image of `opts.inputs`, writing one line per image to `out`.
pub fn run_detect(opts: &DetectOptions, out: &mut dyn Write) -> Result<DetectSummary, InferError> {
    let images = collect_images(&opts.inputs)?;
    if images.is_empty() {
        return Err(InferError::Input(format!(
            "no images found in {} (extensions: {})",
            opts.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            IMG_EXTENSIONS.join(", ")
        )));
    }
    let t0 = Instant::now();
    let mut builder = Inferencer::builder()
        .config(&opts.config)
        .weights(&opts.weights)
        .device(opts.device.clone())
        .half(opts.half)
        .fold_bn(opts.fold_bn)
        .strict(opts.strict)
        .max_image_pixels(opts.max_image_pixels)
        .adapter_chain(opts.adapter_chain.clone());
    if let Some(set) = &opts.adapter_set {
        builder = builder.adapters(Arc::clone(set));
    }
    if let Some(s) = &opts.scope {
        builder = builder.scope(s.clone());
    }
    if let Some(r) = &opts.config_roots {
        builder = builder.config_roots(r.clone());
    }
    let inferencer = builder.build()?;
    let mut summary = DetectSummary {
        load_seconds: t0.elapsed().as_secs_f64(),
        ..Default::default()
    };
    if let Some(dir) = &opts.out_dir {
        std::fs::create_dir_all(dir).map_err(|source| InferError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let bar = (images.len() >= PROGRESS_FROM).then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(images.len() as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images {elapsed} (eta {eta}) {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let t1 = Instant::now();
    for (path, rel) in &images {
        let img = decode_image_file_with(path, inferencer.decode_limits()).map_err(|source| {
            InferError::Preprocess {
                image: path.clone(),
                source: Box::new(source),
            }
        })?;
        let dets: Vec<Detection> = inferencer
            .infer(&img)?
            .into_iter()
            .filter(|d| opts.score_thr.is_none_or(|t| d.score > t))
            .collect();
        summary.images += 1;
        summary.detections += dets.len();
        write_line(out, opts.json, path, img.width, img.height, &dets).map_err(|source| {
            InferError::Io {
                path: PathBuf::from("<output>"),
                source,
            }
        })?;
        if let Some(dir) = &opts.out_dir {
            let png = dir.join(rel).with_extension("png");
            if let Some(parent) = png.parent() {
                std::fs::create_dir_all(parent).map_err(|source| InferError::Io {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            let drawn: Vec<([f32; 4], f32, usize)> =
                dets.iter().map(|d| (d.bbox, d.score, d.label)).collect();
            let canvas = draw_detections(
                &img,
                &drawn,
                inferencer.class_names(),
                opts.draw_score_thr,
                inferencer.palette(),
            );
            save_png(&canvas, &png)?;
            summary.pngs.push(png);
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    summary.infer_seconds = t1.elapsed().as_secs_f64();
    Ok(summary)
}

fn write_line(
    out: &mut dyn Write,
    as_json: bool,
    path: &Path,
    width: usize,
    height: usize,
    dets: &[Detection],
) -> std::io::Result<()> {
    if as_json {
        let line = json!({
            "image": path.display().to_string(),
            "width": width,
            "height": height,
            "detections": dets.iter().map(|d| json!({
                "bbox": d.bbox,
                "score": d.score,
                "label": d.label,
                "class": d.class_name,
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{line}")
    } else {
        let best: Vec<String> = dets
            .iter()
            .take(3)
            .map(|d| {
                format!(
                    "{} {:.3} [{:.1}, {:.1}, {:.1}, {:.1}]",
                    d.class_name, d.score, d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]
                )
            })
            .collect();
        writeln!(
            out,
            "{} ({width}x{height}): {} detections; best: {}",
            path.display(),
            dets.len(),
            best.join("; ")
        )
    }
}
