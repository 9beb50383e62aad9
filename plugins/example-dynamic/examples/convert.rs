//! A tiny driver of `mmcompat_registry::convert` with every built-in adapter linked, used by
//! `tests/fixtures/generate/check_convert.py` (no libtorch needed):
//!
//! `cargo run -p mmcompat-plugin-example-dynamic --example convert -- CKPT OUT [--config CFG]
//!  [--config-root PKG=DIR]... [--adapter NAME]... [--adapters FILE]... [--scope S] [--ema|--no-ema]`

use std::process::ExitCode;

use mmcompat_registry::adapter::EmaChoice;
use mmcompat_registry::config::{Config, ConfigRoots};
use mmcompat_registry::convert::{run, ConvertOptions};

fn main() -> ExitCode {
    // Keep the static adapter crates linked (their `register_adapter!`s live in them).
    mmcompat_plugin_mmrazor::link();
    mmcompat_plugin_mmengine::link();
    mmcompat_plugin_rtmdet_layout::link();
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut options = ConvertOptions::default();
    let mut config = None;
    let mut roots = Vec::new();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--config" => config = Some(value("--config")?),
            "--config-root" => roots.push(value("--config-root")?),
            "--adapter" => options.adapters.push(value("--adapter")?),
            "--adapters" => options.adapter_files.push(value("--adapters")?.into()),
            "--scope" => options.scope = Some(value("--scope")?),
            "--ema" => options.ema = EmaChoice::Ema,
            "--no-ema" => options.ema = EmaChoice::Raw,
            _ if a.starts_with("--") => return Err(format!("unknown option {a}")),
            _ => positional.push(a),
        }
    }
    let [ckpt, out] = positional.as_slice() else {
        return Err("usage: convert CKPT OUT [--config CFG] [--adapter NAME]...".to_owned());
    };
    if let Some(cfg) = config {
        let roots = ConfigRoots::from_cli(&roots)
            .map_err(|e| e.to_string())?
            .discover_python();
        options.config = Some(Config::from_file(&cfg, &roots).map_err(|e| e.to_string())?);
    }
    let report = run(ckpt, out, &options).map_err(|e| e.to_string())?;
    print!("{report}");
    Ok(())
}
