//! Argument parsing and dispatch for the `mmcompat` binary. Each subcommand is a few lines that
//! call the library; output formats are documented in README.md ("Usage") and are a contract.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use mmcompat_registry::adapter::{AdapterSet, EmaChoice};
use mmcompat_registry::config::{Config, ConfigRoots};
use std::io::Write;
use std::path::{Path, PathBuf};

mod cfg;
use cfg::CfgOptionsArgs;
mod env;
mod export;
mod model;
mod serve;

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
    /// Raise (or lower) a bound of config evaluation, e.g. `steps=20000000` (repeatable). Names:
    /// file_bytes, seq_len, depth, steps, base_fanout, base_depth, base_files (docs/limits.md).
    #[arg(long = "config-limit", value_name = "NAME=N")]
    pub config_limit: Vec<String>,
}

impl ConfigRootArgs {
    /// The config roots; also installs the `--config-limit` values as the process's config
    /// limits (every command that reads a config gets its roots here first).
    pub fn roots(&self) -> Result<ConfigRoots> {
        let limits =
            mmcompat_registry::config::Limits::default().with_assignments(&self.config_limit)?;
        mmcompat_registry::config::set_default_limits(limits);
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
    /// An option an adapter reads, e.g. `yolov7.variant=yolov7-tiny` (repeatable; `mmcompat
    /// registry` lists each adapter's options; a key no adapter reads is an error).
    #[arg(long = "adapter-option", value_name = "KEY=VALUE", value_parser = parse_adapter_option)]
    pub adapter_options: Vec<(String, String)>,
}

/// `KEY=VALUE` of `--adapter-option`.
fn parse_adapter_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "`{s}` is not KEY=VALUE (e.g. --adapter-option yolov7.variant=yolov7-tiny)"
        )),
    }
}

impl AdapterArgs {
    /// `--adapter-option`s as [`AdapterOptions::extra`](mmcompat_registry::adapter::AdapterOptions)
    /// (a repeated key: the last one wins).
    pub fn extra_options(&self) -> std::collections::BTreeMap<String, String> {
        self.adapter_options.iter().cloned().collect()
    }

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
        #[command(flatten)]
        cfg_options: CfgOptionsArgs,
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
        /// (needs --config: the options change that config, stored as meta.cfg)
        #[command(flatten)]
        cfg_options: CfgOptionsArgs,
    },
    /// Detect objects in images with an mmdet/mmyolo config (a distillation config runs its
    /// student) and a checkpoint (adapters chosen automatically, strict load).
    Detect {
        #[command(flatten)]
        model: model::ModelArgs,
        #[command(flatten)]
        run: model::RunArgs,
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
        /// More images: a file of paths, one a line (`-`: stdin), read as the run goes.
        #[arg(long, value_name = "FILE")]
        list: Option<PathBuf>,
        /// Also write the JSON lines (detections and error records) to FILE: one whole line per
        /// image, flushed as each image finishes.
        #[arg(long, value_name = "FILE", conflicts_with = "resume")]
        output: Option<PathBuf>,
        /// Continue a killed --output run: skip the images FILE records (error records too) and
        /// append the rest (a missing FILE starts empty).
        #[arg(long, value_name = "FILE")]
        resume: Option<PathBuf>,
        /// COCO ground truth for the images (matched by file name): prints, per image, how many
        /// objects the detections at the drawing threshold found (same class, IoU >= 0.5) and
        /// which were false ("7/7 objects found, 0 false"), then the total, on stderr.
        #[arg(long, value_name = "COCO_JSON")]
        ground_truth: Option<PathBuf>,
        /// Image files or folders (searched recursively).
        #[arg(required_unless_present = "list", value_name = "IMAGE_OR_DIR")]
        inputs: Vec<PathBuf>,
    },
    /// Serve a detector over HTTP: POST /v1/detect (image bytes or multipart → the `detect
    /// --json` record), GET /healthz, GET /metrics; bounded body size, concurrency and queue
    /// (429/503 beyond), graceful shutdown on SIGINT/SIGTERM.
    Serve(serve::ServeArgs),
    /// Export the model `detect` runs (a distillation config's student) for deployment: ONNX,
    /// a clean mmdet/mmyolo package (flattened config + strict-loading checkpoint) or safetensors.
    Export(export::ExportArgs),
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
    /// What this installation runs on (as `python -m mmdet.utils.collect_env`): versions, the
    /// libtorch and its build, CUDA, config roots found and where from, adapters and plugins.
    Env {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        roots: ConfigRootArgs,
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
            inspect(&ckpt, json, fit, &adapters, &mut out)
        }
        Command::Config {
            file,
            json,
            toml,
            spec,
            scope,
            roots,
            cfg_options,
        } => {
            if spec {
                config_spec(
                    &file,
                    json,
                    scope.as_deref(),
                    &roots,
                    &cfg_options,
                    &mut out,
                )
            } else {
                config(&file, json, toml, &roots, &cfg_options, &mut out)
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
            cfg_options,
        } => {
            let ema = match (ema, no_ema) {
                (true, _) => EmaChoice::Ema,
                (_, true) => EmaChoice::Raw,
                _ => EmaChoice::Default,
            };
            let config = match &config {
                Some(p) => Some(cfg_options.load(p, &roots.roots()?)?),
                None if !cfg_options.is_empty() => {
                    bail!("--cfg-options needs --config CFG: the options change that config, which convert stores as meta.cfg")
                }
                None => None,
            };
            let options = mmcompat_registry::convert::ConvertOptions {
                config,
                adapters: adapter,
                scope,
                ema,
                extra: adapters.extra_options(),
                ..Default::default()
            };
            let set = adapters.adapter_set()?;
            let report = mmcompat_registry::convert::run_with(&ckpt, &dest, &options, &set)?;
            write!(out, "{report}")?;
            Ok(())
        }
        Command::Detect {
            model,
            run,
            score_thr,
            out_dir,
            json,
            list,
            output,
            resume,
            ground_truth,
            inputs,
        } => {
            use mmcompat::inferencer::run_detect;
            let mut opts = model::detect_options(&model, run, inputs)?;
            opts.score_thr = score_thr;
            if let Some(t) = score_thr {
                opts.draw_score_thr = t;
            }
            opts.out_dir = out_dir;
            opts.json = json;
            opts.list = list;
            opts.output = output;
            opts.resume = resume;
            opts.ground_truth = ground_truth;
            let summary = run_detect(&opts, &mut out)?;
            if let Some(report) = summary.ground_truth_report() {
                eprintln!("{report}");
            }
            // Every image was attempted and recorded; the exit status still says some failed.
            if let Some(message) = summary.failure_message() {
                bail!(message);
            }
            Ok(())
        }
        Command::Serve(args) => serve::run(args),
        Command::Export(args) => export::run(args, &mut out),
        Command::Registry {
            scope,
            kind,
            json,
            adapters,
        } => registry(scope.as_deref(), kind.as_deref(), json, &adapters, &mut out),
        Command::Env {
            json,
            roots,
            adapters,
        } => {
            let v = env::collect(&roots.roots()?, &adapters)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                env::render_text(&v, &mut out)?;
            }
            Ok(())
        }
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
    use mmcompat::registry::adapter::{fit_checkpoint, ChainChoice, CheckpointView, FitError};
    use mmcompat::registry::checkpoint::Checkpoint;
    use mmcompat::registry::spec::InferenceSpec;
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
    let request = mmcompat::registry::adapter::FitRequest {
        expected: Some(&expected),
        chain: &ChainChoice::Automatic,
        options: &mmcompat::registry::adapter::AdapterOptions {
            extra: adapters.extra_options(),
            ..Default::default()
        },
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
    adapters: &AdapterArgs,
    out: &mut dyn Write,
) -> Result<()> {
    use mmcompat_registry::checkpoint::{inspect::InspectReport, Checkpoint};
    let ck = Checkpoint::open(path)?;
    let mut report = InspectReport::from_checkpoint(&ck, path.display());
    // Which adapters recognise the file (e.g. `ultralytics.yolov8` for a pickled module tree).
    mmcompat::builtin_adapters();
    report.detect_adapters(&ck, &adapters.adapter_set()?);
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
    cfg_options: &CfgOptionsArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let cfg = cfg_options.load(path, &roots.roots()?)?;
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
    cfg_options: &CfgOptionsArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let roots = roots.roots()?;
    let cfg = cfg_options.load(path, &roots)?;
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
