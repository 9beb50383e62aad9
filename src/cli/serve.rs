//! `mmcompat serve`: the model flags of `detect` (resolved exactly as `detect` resolves them:
//! `--model`, the checkpoint's stored config, `--cfg-options`, adapters) plus the server's
//! address and bounds, then `mmcompat::serve::Server` until SIGINT/SIGTERM. The server itself
//! (routes, limits, metrics) lives in the library (src/serve).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;

use super::cfg::{self, CfgOptionsArgs};
use super::{model, AdapterArgs, ConfigRootArgs};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model config (.py or .toml). Default: the training config the checkpoint carries.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A model name from the packages' metafiles (as `detect --model`).
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    model: Option<String>,
    /// The checkpoint (.pth or .safetensors). With --model: instead of the published weights.
    #[arg(long, required_unless_present = "model")]
    weights: Option<PathBuf>,
    /// Scope for type resolution (default: the config's default_scope).
    #[arg(long)]
    scope: Option<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Keep only detections with score > T in the answers (default: all that test_cfg keeps).
    #[arg(long, value_name = "T")]
    score_thr: Option<f32>,
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
    /// Fold batch norms into the preceding convolutions (faster; float32 rounding differs).
    #[arg(long)]
    fold_bn: bool,
    /// Refuse images whose header declares more pixels (422).
    #[arg(long, value_name = "N", default_value_t = mmcompat::preprocess::DEFAULT_MAX_IMAGE_PIXELS)]
    max_image_pixels: u64,
    /// Address to listen on (loopback by default: put a proxy in front to expose it).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the log says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Largest request body in MiB (413 beyond).
    #[arg(long, value_name = "N", default_value_t = 32)]
    max_body_mb: usize,
    /// Inferences at once (default: the number of CPU cores).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Requests that may wait for an inference beyond --concurrency (default: 2 × concurrency);
    /// beyond that, 429 with Retry-After.
    #[arg(long, value_name = "N")]
    queue: Option<usize>,
    #[command(flatten)]
    roots: ConfigRootArgs,
    #[command(flatten)]
    cfg_options: CfgOptionsArgs,
}

pub fn run(args: ServeArgs) -> Result<()> {
    use mmcompat::inferencer::{build_inferencer, DetectOptions};
    use mmcompat::serve::{ServeOptions, Server};

    if args.concurrency == Some(0) {
        bail!("--concurrency 0 would never run a request: give 1 or more");
    }
    let max_body_bytes = args
        .max_body_mb
        .checked_mul(1 << 20)
        .filter(|&n| n > 0)
        .ok_or_else(|| anyhow::anyhow!("--max-body-mb {}: give 1 or more", args.max_body_mb))?;
    let roots = args.roots.roots()?;
    let (config, weights) = model::detect_inputs(
        args.model.as_deref(),
        args.config,
        args.weights,
        args.scope.as_deref(),
        &roots,
    )?;
    let (config, loaded_config) = cfg::detect_config(config, &weights, &roots, &args.cfg_options)?;
    // The same options `detect` builds its Inferencer from (no images: only the model flags).
    let mut opts = DetectOptions::new(config, weights, Vec::new());
    opts.loaded_config = loaded_config;
    opts.scope = args.scope;
    opts.device = args.device;
    opts.adapter_chain = args.adapter;
    opts.adapter_set = Some(Arc::new(args.adapters.adapter_set()?));
    opts.strict = !args.non_strict;
    opts.half = args.half;
    opts.fold_bn = args.fold_bn;
    opts.max_image_pixels = args.max_image_pixels;
    opts.config_roots = Some(roots);
    let inferencer = Arc::new(build_inferencer(&opts)?);

    let mut options = ServeOptions {
        max_body_bytes,
        score_thr: args.score_thr,
        ..ServeOptions::default()
    };
    if let Some(n) = args.concurrency {
        options.concurrency = n;
        options.queue = 2 * n;
    }
    if let Some(q) = args.queue {
        options.queue = q;
    }
    let server = Server::bind((args.host.as_str(), args.port), inferencer, options)?;
    // stderr, not only the log: the port is what a script started with --port 0 needs.
    eprintln!("listening on http://{}", server.local_addr());
    server.run_until_signal()?;
    Ok(())
}
