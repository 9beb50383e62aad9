//! `mmcompat export`: the model `detect` would run (same config choice, same adapters, strict)
//! written for deployment. `--format onnx` hands the loaded [`Inferencer`] to
//! `mmcompat::export::onnx`; `--format mmdet|safetensors` are the core's package writers
//! (`mmcompat_registry::export`), given the model's expected keys so that the adapter chain is
//! checked exactly as `detect`'s strict load checks it. Options of one format are refused with
//! another, before anything is read.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use mmcompat::Inferencer;
use mmcompat_registry::adapter::{AdapterOptions, EmaChoice};
use mmcompat_registry::config::{Config, ConfigRoots};
use mmcompat_registry::export::{PackageFormat, PackageOptions};
use sha2::{Digest, Sha256};

use super::model::{ModelArgs, ResolvedModelArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The network as ONNX (`-o model.onnx`), plus its pre-processing as JSON next to it.
    Onnx,
    /// A folder with `<name>.py` (the config flattened into one file) and `<name>.pth` that
    /// stock mmdet's `init_detector` loads strictly.
    Mmdet,
    /// One `.safetensors` file: the weights, the config as JSON in the header metadata.
    Safetensors,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model as `detect` takes it; a distillation config exports its student.
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The output: a `.onnx` file, a folder (mmdet) or a `.safetensors` file.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// (onnx) ONNX opset; default 17.
    #[arg(long, value_name = "N")]
    pub opset: Option<i64>,
    /// (onnx) A symbolic batch dimension instead of 1.
    #[arg(long)]
    pub dynamic_batch: bool,
    /// (onnx) The network input size; default: the test pipeline's scale.
    #[arg(long, value_name = "H,W")]
    pub input_size: Option<String>,
    /// (onnx) Decoding and NMS inside the graph: outputs `dets [B,N,5]`, `labels [B,N]`.
    #[arg(long)]
    pub end2end: bool,
    /// (onnx) fp16 weights and activations.
    #[arg(long)]
    pub half: bool,
    /// Require and use the EMA weights (`state_dict` of an EMAHook checkpoint).
    #[arg(long, conflicts_with = "no_ema")]
    pub ema: bool,
    /// Use the raw (non-averaged) training weights from `ema_state_dict`.
    #[arg(long = "no-ema")]
    pub no_ema: bool,
}

impl ExportArgs {
    /// The ONNX-only flags given, by name.
    fn onnx_flags(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        if self.opset.is_some() {
            given.push("--opset");
        }
        if self.dynamic_batch {
            given.push("--dynamic-batch");
        }
        if self.input_size.is_some() {
            given.push("--input-size");
        }
        if self.end2end {
            given.push("--end2end");
        }
        if self.half {
            given.push("--half");
        }
        given
    }

    fn ema_choice(&self) -> EmaChoice {
        match (self.ema, self.no_ema) {
            (true, _) => EmaChoice::Ema,
            (_, true) => EmaChoice::Raw,
            _ => EmaChoice::Default,
        }
    }
}

/// `--input-size H,W` (also `HxW`), both positive.
pub fn parse_input_size(s: &str) -> Result<(i64, i64)> {
    let parts: Vec<&str> = s.split([',', 'x']).map(str::trim).collect();
    let parsed: Option<Vec<i64>> = match parts.as_slice() {
        [h, w] => [h, w].iter().map(|p| p.parse().ok()).collect(),
        _ => None,
    };
    match parsed.as_deref() {
        Some(&[h, w]) if h > 0 && w > 0 => Ok((h, w)),
        _ => bail!(
            "--input-size {s:?}: expected two positive integers H,W (e.g. --input-size 640,640)"
        ),
    }
}

pub fn run(args: ExportArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let onnx_flags = args.onnx_flags();
    if args.format != ExportFormat::Onnx && !onnx_flags.is_empty() {
        let format = format!("{:?}", args.format).to_lowercase();
        bail!(
            "{} {} only to --format onnx; --format {format} writes the weights as they are (fp32; \
             mmdet's own decoding and NMS run after loading): drop {}",
            onnx_flags.join(", "),
            if onnx_flags.len() == 1 {
                "applies"
            } else {
                "apply"
            },
            if onnx_flags.len() == 1 { "it" } else { "them" }
        );
    }
    let input_size = args
        .input_size
        .as_deref()
        .map(parse_input_size)
        .transpose()?;
    let ResolvedModelArgs {
        config: config_path,
        loaded_config: loaded,
        weights,
        roots,
        adapter_set: set,
    } = args.model.resolve()?;
    match args.format {
        ExportFormat::Onnx => {
            let mut b = Inferencer::builder()
                .weights(&weights)
                .device("cpu")
                .config_roots(roots)
                .adapters(set)
                .adapter_chain(args.model.adapter.clone())
                .adapter_options(AdapterOptions {
                    ema: args.ema_choice(),
                    extra: args.model.adapters.extra_options(),
                })
                .strict(true);
            b = match loaded {
                Some(c) => b.loaded_config(c),
                None => b.config(config_path),
            };
            if let Some(s) = &args.model.scope {
                b = b.scope(s);
            }
            let inferencer = b.build()?;
            let opts = mmcompat::export::onnx::OnnxOptions {
                opset: args.opset.unwrap_or(17),
                dynamic_batch: args.dynamic_batch,
                input_size,
                end2end: args.end2end,
                half: args.half,
                // BatchNorm folded, as the issue asks (`OnnxOptions::fold_bn`: false keeps
                // BatchNormalization nodes, raw outputs within 1e-4 of Python's).
                fold_bn: true,
            };
            let report = mmcompat::export::onnx::export_onnx(&inferencer, &opts, &args.out)?;
            writeln!(out, "{report}")?;
            for file in [&report.model, &report.preprocess_json] {
                writeln!(out, "{}", sha256_line(file)?)?;
            }
        }
        ExportFormat::Mmdet | ExportFormat::Safetensors => {
            let config = match loaded {
                Some(c) => c,
                None => Config::from_file(&config_path, &roots)?,
            };
            let expected = expected_keys(&config, args.model.scope.as_deref(), &roots)?;
            let options = PackageOptions {
                adapters: args.model.adapter.clone(),
                ema: args.ema_choice(),
                extra: args.model.adapters.extra_options(),
                scope: args.model.scope.clone(),
                expected: Some(expected),
            };
            let format = match args.format {
                ExportFormat::Mmdet => PackageFormat::Mmdet,
                _ => PackageFormat::Safetensors,
            };
            let report = mmcompat_registry::export::export_package(
                &weights, &config, &roots, &args.out, format, &options, &set,
            )?;
            write!(out, "{report}")?;
            for file in &report.files {
                writeln!(out, "{}", sha256_line(file)?)?;
            }
        }
    }
    Ok(())
}

/// The state dict our model of `config` has (keys and shapes): the chain must produce exactly
/// these, as `detect`'s strict load requires. Builds the network on the CPU, loads nothing.
fn expected_keys(
    config: &Config,
    scope: Option<&str>,
    roots: &ConfigRoots,
) -> Result<mmcompat_registry::adapter::chain::ExpectedKeys> {
    use mmcompat_registry::spec::InferenceSpec;
    mmcompat::builtin_adapters();
    let name = config.path().display().to_string();
    let spec = InferenceSpec::from_config(config, scope, roots)
        .with_context(|| format!("config {name}"))?;
    let detector = mmcompat::models::build_detector_from_spec(&spec.model, tch::Device::Cpu)
        .with_context(|| format!("model of {name}"))?;
    Ok(mmcompat::models::load::model_state_dict(
        detector.expected_key_details(),
    ))
}

/// `sha256 <hex>  <path>` (the hash pinned by the export fixtures).
fn sha256_line(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading back {}", path.display()))?;
    Ok(format!(
        "sha256 {:x}  {}",
        Sha256::digest(&bytes),
        path.display()
    ))
}
