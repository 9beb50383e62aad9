//! Argument parsing and dispatch for the `mmcompat` binary. Each subcommand is a few lines that
//! call the library; output formats are documented in README.md ("Usage") and are a contract.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use mmcompat_registry::adapter::{AdapterSet, EmaChoice};
use mmcompat_registry::config::{Config, ConfigRoots};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "mmcompat",
    version,
    about = "Load and run OpenMMLab (mmdet/mmyolo/mmrazor) detectors without Python"
)]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// `--config-root PKG=DIR`, shared by every command that reads configs.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigRootArgs {
    /// A config root for `PKG::dir/file.py` references (repeatable; several DIRs per package are
    /// searched in order). Also read from MMCOMPAT_CONFIG_ROOTS, and discovered from the packages
    /// installed in the `python3` on PATH (`<pkg>/.mim/configs`).
    #[arg(long = "config-root", value_name = "PKG=DIR")]
    pub config_root: Vec<String>,
}

impl ConfigRootArgs {
    pub fn roots(&self) -> Result<ConfigRoots> {
        Ok(ConfigRoots::from_cli(&self.config_root)?
            .with_env()?
            .discover_python())
    }
}

/// Extra adapters for commands that load checkpoints.
#[derive(Debug, Args, Clone, Default)]
pub struct AdapterArgs {
    /// An adapter file: `.toml` (declarative rules) or a dynamic plugin library (repeatable).
    #[arg(long = "adapters", value_name = "FILE")]
    pub adapter_files: Vec<PathBuf>,
}

impl AdapterArgs {
    /// Built-in adapters + `$XDG_CONFIG_HOME/mmcompat/adapters/*.toml` + `--adapters` files: the
    /// one set every command (convert, detect, registry) chooses from.
    pub fn adapter_set(&self) -> Result<AdapterSet> {
        AdapterSet::with_user_adapters(&self.adapter_files).with_context(|| {
            format!(
                "loading the adapters (built-ins, {}, --adapters files)",
                mmcompat_registry::adapter::user_adapter_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "no XDG folder".into())
            )
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Summarise a checkpoint (.pth zip or legacy, .safetensors) without executing anything.
    Inspect {
        /// The checkpoint file.
        ckpt: PathBuf,
        /// Print one JSON object (schema in README.md) instead of text.
        #[arg(long)]
        json: bool,
        /// Also say which adapter chain makes the checkpoint fit this model config (and, when
        /// none does, the grouped key report).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Scope for type resolution with --config (default: the config's default_scope).
        #[arg(long, requires = "config")]
        scope: Option<String>,
        #[command(flatten)]
        roots: ConfigRootArgs,
        #[command(flatten)]
        adapters: AdapterArgs,
    },
    /// Print a config resolved the way mmengine.Config.fromfile does (without executing it).
    Config {
        /// A `.py` (mmengine), or `.toml` config.
        file: PathBuf,
        /// JSON equal to `json.dumps(Config.fromfile(file).to_dict(), sort_keys=True)`.
        #[arg(long, conflicts_with = "toml")]
        json: bool,
        /// TOML that `mmcompat config x.toml` loads back to the same tree.
        #[arg(long)]
        toml: bool,
        /// Print the inference spec instead: the model tree with every component's resolved
        /// type and typed arguments, data preprocessor, test pipeline, test_cfg and class names
        /// (distillation configs reduced to the student). Text, or JSON with --json.
        #[arg(long, conflicts_with = "toml")]
        spec: bool,
        /// With --spec: the scope to build in (default: the config's default_scope, else mmdet).
        #[arg(long, requires = "spec")]
        scope: Option<String>,
        #[command(flatten)]
        roots: ConfigRootArgs,
    },
    /// Write a clean checkpoint (e.g. the student of a distillation checkpoint) and print the
    /// adapter report.
    Convert {
        /// The input checkpoint.
        ckpt: PathBuf,
        /// The output file: `.pth` (torch zip, loads with weights_only=True) or `.safetensors`.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// The student's config: used to choose adapters and stored as `meta.cfg`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Apply these adapters in order instead of choosing automatically (repeatable).
        #[arg(long = "adapter", value_name = "NAME")]
        adapter: Vec<String>,
        /// Scope for type resolution (overrides the config's default_scope).
        #[arg(long)]
        scope: Option<String>,
        /// Require and use the EMA weights (`state_dict` of an EMAHook checkpoint).
        #[arg(long, conflicts_with = "no_ema")]
        ema: bool,
        /// Use the raw (non-averaged) training weights from `ema_state_dict`.
        #[arg(long = "no-ema")]
        no_ema: bool,
        #[command(flatten)]
        roots: ConfigRootArgs,
        #[command(flatten)]
        adapters: AdapterArgs,
    },
    /// Detect objects in images with an mmdet/mmyolo config (a distillation config runs its
    /// student) and a checkpoint (adapters chosen automatically, strict load).
    Detect {
        /// The model config (.py or .toml).
        #[arg(long)]
        config: PathBuf,
        /// The checkpoint (.pth or .safetensors).
        #[arg(long)]
        weights: PathBuf,
        /// Scope for type resolution (default: the config's default_scope).
        #[arg(long)]
        scope: Option<String>,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Keep only detections with score > T (JSON and drawings). Default: everything the
        /// model's test_cfg keeps in the JSON, and 0.3 for the drawings.
        #[arg(long, value_name = "T")]
        score_thr: Option<f32>,
        /// Write one annotated PNG per image into DIR.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// One JSON object per image per line on stdout.
        #[arg(long)]
        json: bool,
        /// Use these adapters in order instead of choosing automatically (repeatable).
        #[arg(long = "adapter", value_name = "NAME")]
        adapter: Vec<String>,
        /// Load even when some weights are missing (warns with the coverage %).
        #[arg(long)]
        non_strict: bool,
        #[command(flatten)]
        adapters: AdapterArgs,
        /// fp16 weights and activations (CUDA only).
        #[arg(long)]
        half: bool,
        /// Fold batch norms into the preceding convolutions: faster; outputs then differ from
        /// PyTorch's by float32 rounding (the default runs conv → BN exactly as PyTorch does).
        #[arg(long)]
        fold_bn: bool,
        /// Refuse images whose header declares more pixels (default 2^30, as OpenCV's
        /// CV_IO_MAX_IMAGE_PIXELS): a guard against decompression bombs.
        #[arg(long, value_name = "N", default_value_t = mmcompat::preprocess::DEFAULT_MAX_IMAGE_PIXELS)]
        max_image_pixels: u64,
        #[command(flatten)]
        roots: ConfigRootArgs,
        /// Image files or folders (searched recursively).
        #[arg(required = true, value_name = "IMAGE_OR_DIR")]
        inputs: Vec<PathBuf>,
    },
    /// List scopes, registered types and adapters.
    Registry {
        /// Only this scope (mmengine, mmdet, mmyolo, mmrazor).
        #[arg(long)]
        scope: Option<String>,
        /// Only this kind (model, transform, task_util).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        adapters: AdapterArgs,
    },
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(cli: Cli) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        Command::Inspect {
            ckpt,
            json,
            config,
            scope,
            roots,
            adapters,
        } => {
            let fit = match &config {
                Some(cfg) => Some(adapter_fit(
                    &ckpt,
                    cfg,
                    scope.as_deref(),
                    &roots,
                    &adapters,
                )?),
                None => None,
            };
            inspect(&ckpt, json, fit, &mut out)
        }
        Command::Config {
            file,
            json,
            toml,
            spec,
            scope,
            roots,
        } => {
            if spec {
                config_spec(&file, json, scope.as_deref(), &roots, &mut out)
            } else {
                config(&file, json, toml, &roots, &mut out)
            }
        }
        Command::Convert {
            ckpt,
            out: dest,
            config,
            adapter,
            scope,
            ema,
            no_ema,
            roots,
            adapters,
        } => {
            let ema = match (ema, no_ema) {
                (true, _) => EmaChoice::Ema,
                (_, true) => EmaChoice::Raw,
                _ => EmaChoice::Default,
            };
            let config = match &config {
                Some(p) => Some(Config::from_file(p, &roots.roots()?)?),
                None => None,
            };
            let options = mmcompat_registry::convert::ConvertOptions {
                config,
                adapters: adapter,
                scope,
                ema,
                ..Default::default()
            };
            let set = adapters.adapter_set()?;
            let report = mmcompat_registry::convert::run_with(&ckpt, &dest, &options, &set)?;
            write!(out, "{report}")?;
            Ok(())
        }
        Command::Detect {
            config,
            weights,
            scope,
            device,
            score_thr,
            out_dir,
            json,
            adapter,
            non_strict,
            adapters,
            half,
            fold_bn,
            max_image_pixels,
            roots,
            inputs,
        } => {
            use mmcompat::inferencer::{run_detect, DetectOptions};
            let mut opts = DetectOptions::new(config, weights, inputs);
            opts.scope = scope;
            opts.device = device;
            opts.score_thr = score_thr;
            if let Some(t) = score_thr {
                opts.draw_score_thr = t;
            }
            opts.out_dir = out_dir;
            opts.json = json;
            opts.adapter_chain = adapter;
            opts.adapter_set = Some(std::sync::Arc::new(adapters.adapter_set()?));
            opts.strict = !non_strict;
            opts.half = half;
            opts.fold_bn = fold_bn;
            opts.max_image_pixels = max_image_pixels;
            opts.config_roots = Some(roots.roots()?);
            run_detect(&opts, &mut out)?;
            Ok(())
        }
        Command::Registry {
            scope,
            kind,
            json,
            adapters,
        } => registry(scope.as_deref(), kind.as_deref(), json, &adapters, &mut out),
    }
}

/// `inspect --config`: the chain `detect` would choose (same adapter set, same strict check).
/// `Ok((chain, None))` when it fits, `Ok((closest, Some(report)))` when nothing does.
fn adapter_fit(
    ckpt: &Path,
    config_path: &Path,
    scope: Option<&str>,
    roots: &ConfigRootArgs,
    adapters: &AdapterArgs,
) -> Result<(Vec<String>, Option<String>)> {
    use mmcompat::core::adapter::{fit_checkpoint, ChainChoice, CheckpointView, FitError};
    use mmcompat::core::checkpoint::Checkpoint;
    use mmcompat::core::spec::InferenceSpec;
    mmcompat::builtin_adapters();
    let roots = roots.roots()?;
    let config = Config::from_file(config_path, &roots)?;
    let spec = InferenceSpec::from_config(&config, scope, &roots)
        .with_context(|| format!("config {}", config_path.display()))?;
    let detector = mmcompat::models::build_detector_from_spec(&spec.model, tch::Device::Cpu)
        .with_context(|| format!("model of {}", config_path.display()))?;
    let expected = mmcompat::models::load::model_state_dict(detector.expected_key_details());
    let set = adapters.adapter_set()?;
    let ck = Checkpoint::open(ckpt)?;
    let view = CheckpointView::from_checkpoint(&ck);
    let config_json = config.to_json();
    let request = mmcompat::core::adapter::FitRequest {
        expected: Some(&expected),
        chain: &ChainChoice::Automatic,
        options: &Default::default(),
        strict: true,
        config: Some(&config_json),
    };
    match fit_checkpoint(&view, &set, request) {
        Ok(fit) => Ok((fit.chain.adapters, None)),
        Err(FitError::NoFit(nofit)) => {
            let closest = nofit
                .attempts
                .first()
                .map(|a| a.adapters.clone())
                .unwrap_or_default();
            Ok((closest, Some(nofit.to_string())))
        }
        Err(e) => Err(e.into()),
    }
}

fn inspect(
    path: &Path,
    json: bool,
    fit: Option<(Vec<String>, Option<String>)>,
    out: &mut dyn Write,
) -> Result<()> {
    use mmcompat_registry::checkpoint::{inspect::InspectReport, Checkpoint};
    let ck = Checkpoint::open(path)?;
    let report = InspectReport::from_checkpoint(&ck, path.display());
    if json {
        let mut v = report.to_json();
        if let (Some((chain, mismatch)), Some(obj)) = (fit, v.as_object_mut()) {
            obj.insert(
                "adapter_fit".to_owned(),
                serde_json::json!({"fits": mismatch.is_none(), "chain": chain, "report": mismatch}),
            );
        }
        writeln!(out, "{}", serde_json::to_string(&v)?)?;
    } else {
        write!(out, "{}", report.render_human())?;
        match fit {
            Some((chain, None)) if chain.is_empty() => writeln!(
                out,
                "adapter fit: the model's keys as they are (no adapter)"
            )?,
            Some((chain, None)) => writeln!(out, "adapter fit: {}", chain.join(" → "))?,
            Some((_, Some(report))) => write!(out, "adapter fit: none\n{report}")?,
            None => {}
        }
    }
    Ok(())
}

fn config(
    path: &Path,
    json: bool,
    toml: bool,
    roots: &ConfigRootArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let cfg = Config::from_file(path, &roots.roots()?)?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&cfg.to_json())?)?;
    } else if toml {
        write!(out, "{}", cfg.to_toml()?)?;
    } else {
        write!(
            out,
            "{}",
            mmcompat_registry::convert::python_config_text(&cfg)
        )?;
    }
    Ok(())
}

/// `mmcompat config FILE --spec`: the spec stage alone (no checkpoint, no model built).
fn config_spec(
    path: &Path,
    json: bool,
    scope: Option<&str>,
    roots: &ConfigRootArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let roots = roots.roots()?;
    let cfg = Config::from_file(path, &roots)?;
    let spec = mmcompat_registry::spec::InferenceSpec::from_config(&cfg, scope, &roots)
        .with_context(|| format!("config {}", path.display()))?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&spec.to_json())?)?;
    } else {
        write!(out, "{}", spec.render())?;
    }
    Ok(())
}

fn registry(
    scope: Option<&str>,
    kind: Option<&str>,
    json: bool,
    adapters: &AdapterArgs,
    out: &mut dyn Write,
) -> Result<()> {
    use mmcompat_registry::scoped::{
        canonical_kind, render_registry, render_registry_json, Registries,
    };
    if let Some(k) = kind {
        if canonical_kind(k).is_none() {
            bail!("unknown registry kind `{k}`; known kinds: model, transform, task_util");
        }
    }
    let regs = Registries::from_inventory()?;
    if let Some(s) = scope {
        let known: Vec<&str> = regs.scopes().into_iter().map(|(name, _)| name).collect();
        if !known.contains(&s) {
            bail!("unknown scope `{s}`; known scopes: {}", known.join(", "));
        }
    }
    let listing = adapters.adapter_set()?.listing();
    if json {
        let v = render_registry_json(&regs, &listing, scope, kind);
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        write!(out, "{}", render_registry(&regs, &listing, scope, kind))?;
    }
    Ok(())
}
