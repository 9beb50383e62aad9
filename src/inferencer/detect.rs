//! `mmcompat detect` as a library function: images (files or folders, searched recursively and
//! sorted, then `--list FILE` entries) → one JSON line (or one human-readable line) per image,
//! optional annotated PNGs. A batch loses nothing: an image that cannot be read or run becomes an
//! error record and the run goes on; `--output`/`--resume` files survive a kill (`records.rs`).
//! The CLI only parses flags into [`DetectOptions`].

mod records;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::ground_truth::{match_detections, GroundTruth, MatchSummary};
use super::{Detection, InferError, Inferencer};
use crate::preprocess::{decode_image_file_with, BgrImage, DEFAULT_MAX_IMAGE_PIXELS};
use crate::registry::adapter::AdapterSet;
use crate::registry::config::ConfigRoots;
use crate::visualize::{draw_detections, save_png};
pub use records::detections_record;
use records::{Earlier, ImageSources, RecordFile};

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
    /// The config already loaded (a checkpoint's `meta.cfg`, `--cfg-options` merged); when set,
    /// `config` only names it.
    pub loaded_config: Option<crate::registry::config::Config>,
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
    /// Options for the adapters (`--adapter-option KEY=VALUE`).
    pub adapter_options: crate::registry::adapter::AdapterOptions,
    /// `--max-image-pixels`: images declaring more pixels are refused before decoding.
    pub max_image_pixels: u64,
    /// `--list FILE`: more image paths, one a line (`-`: stdin), read as the run goes.
    pub list: Option<PathBuf>,
    /// `--output FILE`: the JSON lines (detections and error records) also go to FILE, started
    /// empty, one whole line per image, flushed as each image finishes.
    pub output: Option<PathBuf>,
    /// `--resume FILE`: like `output`, but images FILE already records (detections or errors)
    /// are skipped and the rest appended; a missing FILE starts empty.
    pub resume: Option<PathBuf>,
    /// COCO ground truth (`images`, `annotations`, `categories`): each image's detections at
    /// `draw_score_thr` are checked against it ([`DetectSummary::ground_truth`]).
    pub ground_truth: Option<PathBuf>,
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
            loaded_config: None,
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
            adapter_options: Default::default(),
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
            list: None,
            output: None,
            resume: None,
            ground_truth: None,
        }
    }
}

/// What a `run_detect` call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectSummary {
    /// Images run successfully in this call.
    pub images: usize,
    /// Images that could not be read or run in this call (each has an error record).
    pub failed: usize,
    /// Images skipped because the `--resume` file already records them.
    pub resumed: usize,
    /// Error records among the skipped ones (failures of the earlier run, not retried).
    pub resumed_failed: usize,
    /// Where the JSON records went besides `out` (`--output`/`--resume`).
    pub record_file: Option<PathBuf>,
    /// Detections written (after `score_thr`).
    pub detections: usize,
    pub pngs: Vec<PathBuf>,
    /// Seconds to build the model and load the weights.
    pub load_seconds: f64,
    /// Seconds for all images (decode → detections).
    pub infer_seconds: f64,
    /// With [`DetectOptions::ground_truth`]: each image's verdict, in run order.
    pub ground_truth: Vec<(String, MatchSummary)>,
}

impl DetectSummary {
    /// With ground truth: one line per image (`scene.png: 5/5 objects found, 0 false`, plus what
    /// was missed or false) and a total line; `None` without ground truth.
    pub fn ground_truth_report(&self) -> Option<String> {
        if self.ground_truth.is_empty() {
            return None;
        }
        let mut text = String::new();
        let (mut found, mut objects, mut false_dets) = (0, 0, 0);
        for (image, verdict) in &self.ground_truth {
            found += verdict.found;
            objects += verdict.objects;
            false_dets += verdict.false_detections.len();
            text.push_str(&format!("{image}: {verdict}"));
            for o in &verdict.missed {
                text.push_str(&format!("; missed {} at {:?}", o.class_name, o.bbox));
            }
            for d in &verdict.false_detections {
                text.push_str(&format!(
                    "; false {} {:.3} at {:?}",
                    d.class_name, d.score, d.bbox
                ));
            }
            text.push('\n');
        }
        let verdict = if found == objects && false_dets == 0 {
            "every object found, nothing false"
        } else {
            "NOT every object found without false detections"
        };
        text.push_str(&format!(
            "ground truth: {found}/{objects} objects found, {false_dets} false, in {} images: {verdict}",
            self.ground_truth.len()
        ));
        Some(text)
    }

    /// Failed images, this call's and those the `--resume` file recorded as failed.
    pub fn failed_total(&self) -> usize {
        self.failed + self.resumed_failed
    }

    /// `Some("3 of 120 images failed ...")` when any image failed (the CLI then exits non-zero).
    pub fn failure_message(&self) -> Option<String> {
        let failed = self.failed_total();
        if failed == 0 {
            return None;
        }
        let total = self.images + self.failed + self.resumed;
        let earlier = match self.resumed_failed {
            0 => String::new(),
            n => format!(", {n} of them recorded by the earlier run and not retried"),
        };
        let records = match &self.record_file {
            Some(p) => format!("error records in {}", p.display()),
            None => "error records on the output".to_string(),
        };
        Some(format!(
            "{failed} of {total} images failed{earlier} ({records}; each reason was also logged above)"
        ))
    }
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

/// Runs detection on every image of `opts.inputs` and `opts.list`, writing one line per image to
/// `out` (and one JSON record per image to `opts.output`/`opts.resume`). An image that cannot be
/// decoded or run (missing, corrupt, over the pixel limit, ...) is logged, gets an error record
/// `{"image", "error"}` and the run goes on: check [`DetectSummary::failure_message`]. Errors of
/// the run itself (model, output files) end it.
pub fn run_detect(opts: &DetectOptions, out: &mut dyn Write) -> Result<DetectSummary, InferError> {
    let given = collect_images(&opts.inputs)?;
    if given.is_empty() && opts.list.is_none() {
        return Err(no_images(opts));
    }
    let mut sources = ImageSources::new(given, opts.list.as_deref())?;
    let mut recorded = match &opts.resume {
        Some(p) => records::read_recorded(p)?,
        None => Default::default(),
    };
    let ground_truth = match &opts.ground_truth {
        Some(p) => Some(GroundTruth::load(p).map_err(|e| InferError::Input(e.to_string()))?),
        None => None,
    };
    let t0 = Instant::now();
    let inferencer = build_inferencer(opts)?;
    let mut summary = DetectSummary {
        load_seconds: t0.elapsed().as_secs_f64(),
        ..Default::default()
    };
    // Before the record file, which may live inside it (`--out-dir D --output D/x.jsonl`).
    if let Some(dir) = &opts.out_dir {
        std::fs::create_dir_all(dir).map_err(|source| InferError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let mut record_file = match (&opts.resume, &opts.output) {
        (Some(p), _) => Some(RecordFile::open(p, true)?),
        (None, Some(p)) => Some(RecordFile::open(p, false)?),
        (None, None) => None,
    };
    summary.record_file = record_file.as_ref().map(|f| f.path().to_path_buf());
    let bar = progress_bar(sources.known_len());
    let stdout_err = |source| InferError::Io {
        path: PathBuf::from("<output>"),
        source,
    };
    let t1 = Instant::now();
    for entry in &mut sources {
        let (path, rel) = entry?;
        let image = path.display().to_string();
        match recorded.take(&image) {
            Earlier::NotRecorded => {}
            Earlier::Detections => {
                summary.resumed += 1;
                continue;
            }
            Earlier::Failed => {
                summary.resumed += 1;
                summary.resumed_failed += 1;
                continue;
            }
        }
        let (record, line) = match detect_one(&inferencer, opts, &path) {
            Ok((img, dets)) => {
                summary.images += 1;
                summary.detections += dets.len();
                if let Some(dir) = &opts.out_dir {
                    summary
                        .pngs
                        .push(draw(&inferencer, opts, dir, &rel, &img, &dets)?);
                }
                if let Some(gt) = &ground_truth {
                    match gt.objects_of(&path) {
                        Ok(objects) => summary.ground_truth.push((
                            image.clone(),
                            match_detections(&dets, objects, opts.draw_score_thr),
                        )),
                        Err(e) => tracing::warn!("{image}: not checked: {e}"),
                    }
                }
                let record = records::detections_record(&image, img.width, img.height, &dets);
                let line = if opts.json {
                    record.clone()
                } else {
                    records::text_line(&image, img.width, img.height, &dets)
                };
                (record, line)
            }
            Err(e) => {
                summary.failed += 1;
                let message = e.to_string();
                let log = || tracing::error!("skipping {image}: {message}");
                match &bar {
                    Some(bar) => bar.suspend(log),
                    None => log(),
                }
                let record = records::error_record(&image, &message);
                let line = if opts.json {
                    record.clone()
                } else {
                    format!("{image}: error: {message}")
                };
                (record, line)
            }
        };
        if let Some(f) = &mut record_file {
            f.write_record(&record)?;
        }
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(stdout_err)?;
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if summary.images + summary.failed + summary.resumed == 0 {
        return Err(no_images(opts));
    }
    if summary.resumed > 0 {
        tracing::info!(
            skipped = summary.resumed,
            "--resume: images already recorded were skipped"
        );
    }
    summary.infer_seconds = t1.elapsed().as_secs_f64();
    Ok(summary)
}

fn no_images(opts: &DetectOptions) -> InferError {
    let mut places: Vec<String> = opts
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if let Some(l) = &opts.list {
        places.push(format!("--list {}", l.display()));
    }
    InferError::Input(format!(
        "no images found in {} (extensions: {})",
        places.join(", "),
        IMG_EXTENSIONS.join(", ")
    ))
}

/// The [`Inferencer`] `detect` runs for `opts` (model flags only; also `mmcompat serve`'s).
pub fn build_inferencer(opts: &DetectOptions) -> Result<Inferencer, InferError> {
    let mut builder = Inferencer::builder()
        .config(&opts.config)
        .weights(&opts.weights)
        .device(opts.device.clone())
        .half(opts.half)
        .fold_bn(opts.fold_bn)
        .strict(opts.strict)
        .max_image_pixels(opts.max_image_pixels)
        .adapter_chain(opts.adapter_chain.clone())
        .adapter_options(opts.adapter_options.clone());
    if let Some(set) = &opts.adapter_set {
        builder = builder.adapters(Arc::clone(set));
    }
    if let Some(s) = &opts.scope {
        builder = builder.scope(s.clone());
    }
    if let Some(r) = &opts.config_roots {
        builder = builder.config_roots(r.clone());
    }
    if let Some(c) = &opts.loaded_config {
        builder = builder.loaded_config(c.clone());
    }
    builder.build()
}

/// Decode and run one image; every error here is this image's alone (the run goes on).
fn detect_one(
    inferencer: &Inferencer,
    opts: &DetectOptions,
    path: &Path,
) -> Result<(BgrImage, Vec<Detection>), InferError> {
    let img = decode_image_file_with(path, inferencer.decode_limits()).map_err(|source| {
        InferError::Preprocess {
            image: path.to_path_buf(),
            source: Box::new(source),
        }
    })?;
    let dets = inferencer
        .infer(&img)?
        .into_iter()
        .filter(|d| opts.score_thr.is_none_or(|t| d.score > t))
        .collect();
    Ok((img, dets))
}

/// Writes `<out_dir>/<rel>.png` with the boxes drawn.
fn draw(
    inferencer: &Inferencer,
    opts: &DetectOptions,
    dir: &Path,
    rel: &Path,
    img: &BgrImage,
    dets: &[Detection],
) -> Result<PathBuf, InferError> {
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
        img,
        &drawn,
        inferencer.class_names(),
        opts.draw_score_thr,
        inferencer.palette(),
    );
    save_png(&canvas, &png)?;
    Ok(png)
}

/// A bar on stderr for 8+ images (hidden when stderr is not a terminal); a counter when the
/// total is unknown (`--list`).
fn progress_bar(len: Option<usize>) -> Option<indicatif::ProgressBar> {
    let (bar, template) = match len {
        Some(n) if n < PROGRESS_FROM => return None,
        Some(n) => (
            indicatif::ProgressBar::with_draw_target(
                Some(n as u64),
                indicatif::ProgressDrawTarget::stderr(),
            ),
            "{bar:40} {pos}/{len} images {elapsed} (eta {eta}) {msg}",
        ),
        None => (
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr()),
            "{pos} images {elapsed} ({per_sec}) {msg}",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}
