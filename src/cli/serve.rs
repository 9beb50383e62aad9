//! `mmcompat serve`: the model flags of `detect` (resolved exactly as `detect` resolves them:
//! `--model`, the checkpoint's stored config, `--cfg-options`, adapters) plus the server's
//! address and bounds, then `mmcompat::serve::Server` until SIGINT/SIGTERM. The server itself
//! (routes, limits, metrics) lives in the library (src/serve).

use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;

use super::model::{self, ModelArgs, RunArgs};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Keep only detections with score > T in the answers (default: all that test_cfg keeps).
    #[arg(long, value_name = "T")]
    score_thr: Option<f32>,
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
}

pub fn run(args: ServeArgs) -> Result<()> {
    use mmcompat::inferencer::build_inferencer;
    use mmcompat::serve::{ServeOptions, Server};

    if args.concurrency == Some(0) {
        bail!("--concurrency 0 would never run a request: give 1 or more");
    }
    let max_body_bytes = args
        .max_body_mb
        .checked_mul(1 << 20)
        .filter(|&n| n > 0)
        .ok_or_else(|| anyhow::anyhow!("--max-body-mb {}: give 1 or more", args.max_body_mb))?;
    // The same options `detect` builds its Inferencer from (no images: only the model flags).
    let opts = model::detect_options(&args.model, args.run, Vec::new())?;
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
