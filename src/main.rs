//! The `mmcompat` command line: a thin shell over the library (anyhow only here).
//!
//! Subcommands and their output schemas are a contract that tools script against:
//! `inspect`, `config`, `convert`, `export`, `registry`, `detect`, `serve`, `env`.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    mmcompat::builtin_adapters();
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, skipping a cause whose text the message before it already holds
/// (our library errors usually embed their source's text), so nothing is printed twice.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
