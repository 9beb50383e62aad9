//! Runs a detector through mmcompat's library API from another crate.
//!
//! ```text
//! cargo run -- CONFIG CHECKPOINT IMAGE [PKG=DIR]...
//! ```
//! `PKG=DIR` tells where `pkg::` config references live (`mmyolo=.../configs`). Prints one line
//! per detection with score > 0.3, best first.

use std::process::ExitCode;

use mmcompat::{ConfigRoots, Inferencer};

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [config, weights, image, roots @ ..] = args else {
        return Err(
            "usage: mmcompat-downstream-example CONFIG CHECKPOINT IMAGE [PKG=DIR]...".into(),
        );
    };
    let inferencer = Inferencer::builder()
        .config(config)
        .weights(weights)
        .config_roots(ConfigRoots::from_cli(roots)?)
        .scope("mmyolo")
        .device("cpu")
        .build()?;
    println!(
        "scope {}, adapters [{}]",
        inferencer.scope(),
        inferencer.adapters().join(", ")
    );
    for d in inferencer.infer(image.as_str())? {
        if d.score > 0.3 {
            let [x1, y1, x2, y2] = d.bbox;
            println!(
                "{:>12} {:.3} [{x1:.1}, {y1:.1}, {x2:.1}, {y2:.1}]",
                d.class_name, d.score
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
