//! CLI glue for `--cfg-options KEY=VALUE ...` (on `detect`, `config`, `convert`) and for
//! `detect --weights CKPT` without `--config`, which runs the training config the checkpoint
//! carries. Parsing, merging and reading the stored config are the core's
//! (`config::options`, `config::embedded`); this only chooses, and says on stderr what it chose.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use mmcompat_registry::config::options::CfgOption;
use mmcompat_registry::config::{Config, ConfigRoots, Value};

/// `--cfg-options`, shared by the commands that read a config.
#[derive(Debug, Args, Clone, Default)]
pub struct CfgOptionsArgs {
    /// Override config keys as mmengine tools' --cfg-options does (DictAction +
    /// Config.merge_from_dict): dotted keys, list indices (test_pipeline.1.scale=(320,320)),
    /// values 1, 0.5, true, None, 'text', [a,b], (a,b), a,b. Unlike mmengine, a key the config
    /// does not have is an error naming the closest key (mmengine adds it silently). Takes every
    /// following word: put it last or end its list with `--`.
    #[arg(long = "cfg-options", value_name = "KEY=VALUE", num_args = 1..)]
    pub cfg_options: Vec<String>,
}

impl CfgOptionsArgs {
    pub fn is_empty(&self) -> bool {
        self.cfg_options.is_empty()
    }

    /// Parses every option, then merges them into `config` (unchanged on error).
    pub fn apply(&self, config: &mut Config) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let options = CfgOption::parse_all(&self.cfg_options)?;
        config
            .merge_cfg_options(&options)
            .with_context(|| format!("config {}", config.path().display()))
    }

    /// `Config.fromfile(path)` then `merge_from_dict(options)`.
    pub fn load(&self, path: &Path, roots: &ConfigRoots) -> Result<Config> {
        // Parse first: a malformed option is reported before the config is read.
        CfgOption::parse_all(&self.cfg_options)?;
        let mut config = Config::from_file(path, roots)?;
        self.apply(&mut config)?;
        Ok(config)
    }
}

/// The config `detect` runs: `--config`, else the one stored in the checkpoint (announced on
/// stderr), with `--cfg-options` merged. Returns the path that names it and, when it had to be
/// loaded here, the loaded config (`None`: a plain `--config` path the Inferencer loads itself).
pub fn detect_config(
    config: Option<PathBuf>,
    weights: &Path,
    roots: &ConfigRoots,
    options: &CfgOptionsArgs,
) -> Result<(PathBuf, Option<Config>)> {
    match config {
        Some(path) if options.is_empty() => Ok((path, None)),
        Some(path) => {
            let config = options.load(&path, roots)?;
            Ok((path, Some(config)))
        }
        None => {
            CfgOption::parse_all(&options.cfg_options)?;
            let (mut config, key) = Config::from_checkpoint(weights, roots)?;
            eprintln!("{}", announce(weights, key, &config));
            options.apply(&mut config)?;
            Ok((config.path().to_path_buf(), Some(config)))
        }
    }
}

/// `config: the training config stored in CKPT (meta.cfg); ...`: which config runs, and for a
/// distillation config, which student.
fn announce(weights: &Path, key: &str, config: &Config) -> String {
    let mut line = format!(
        "config: the training config stored in {} ({key}); pass --config to use another",
        weights.display()
    );
    let algorithm = config.get("model.type").and_then(Value::as_str);
    if let (Some(algorithm), Some(arch)) = (algorithm, config.get("model.architecture")) {
        let student = match arch.get("cfg_path").and_then(Value::as_str) {
            Some(p) => p.to_string(),
            None => "the inline architecture".into(),
        };
        line.push_str(&format!(
            "\nconfig: distillation config ({algorithm}): running its student, {student}"
        ));
    }
    line
}
