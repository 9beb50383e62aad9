//! The training config an mmengine checkpoint carries: `Runner.save_checkpoint` stores
//! `cfg.pretty_text` as `meta.cfg` (newer mmengine also as `message_hub.runtime_info.cfg`), and
//! `mmengine/infer/infer.py: BaseInferencer._init_model` rebuilds the model from it with
//! `Config.fromstring(cfg_string, file_format='.py')` when no config is given. Same here, read
//! through the safe checkpoint reader and evaluated by our config loader (nothing executed).
//!
//! The text is a dump, so its `_base_` are already merged in; `pkg::` references inside it
//! (MMRazor's `architecture.cfg_path`) still go through the [`ConfigRoots`].

use std::path::{Path, PathBuf};

use super::{loader, Config, ConfigError, ConfigRoots, LOADER_STACK_BYTES};
use crate::checkpoint::{Checkpoint, CheckpointError};

/// Why a checkpoint's own config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedConfigError {
    #[error(transparent)]
    Checkpoint(#[from] Box<CheckpointError>),
    #[error(
        "checkpoint {} carries no config (no string meta.cfg or message_hub.runtime_info.cfg, \
         which mmengine's Runner writes): pass the model's config with --config CFG",
        checkpoint.display()
    )]
    NoConfig { checkpoint: PathBuf },
    #[error("the config stored in checkpoint {} ({key}): {source}", checkpoint.display())]
    Config {
        checkpoint: PathBuf,
        key: &'static str,
        #[source]
        source: Box<ConfigError>,
    },
}

/// The config text stored in `ck` and where it was found: `message_hub.runtime_info.cfg`
/// first, then `meta.cfg` (the order of `BaseInferencer._init_model`).
pub fn embedded_config_text(ck: &Checkpoint) -> Option<(&'static str, &str)> {
    let hub = ck
        .root()
        .get("message_hub")
        .and_then(|h| h.get("runtime_info"))
        .and_then(|r| r.get("cfg"))
        .and_then(|c| c.as_str());
    if let Some(text) = hub {
        return Some(("message_hub.runtime_info.cfg", text));
    }
    ck.meta()
        .and_then(|m| m.get("cfg"))
        .and_then(|c| c.as_str())
        .map(|text| ("meta.cfg", text))
}

impl Config {
    /// `Config.fromstring(text, '.py')`: `name` stands for the file in error messages and in
    /// `{{fileDirname}}`-style placeholders.
    pub fn from_python_text(
        text: &str,
        name: impl Into<PathBuf>,
        roots: &ConfigRoots,
    ) -> Result<Config, ConfigError> {
        let name = name.into();
        // The same large-stack loader thread as `Config::from_file`.
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("mmcompat-config".into())
                .stack_size(LOADER_STACK_BYTES)
                .spawn_scoped(s, || {
                    let mut l = loader::Loader::new(roots);
                    let dict = l.file2dict_text(&name, "py", text.to_string())?;
                    let tree = loader::finish(&dict, &name)?;
                    Ok(Config {
                        path: name.clone(),
                        tree,
                    })
                })
                .map_err(|source| ConfigError::Io {
                    path: name.clone(),
                    source,
                })?
                .join()
                .unwrap_or_else(|_| Err(ConfigError::LoaderPanicked { path: name.clone() }))
        })
    }

    /// The config stored in the checkpoint at `path` (see [`embedded_config_text`]), named
    /// `<checkpoint>:meta.cfg` in messages. Returns the config and the key it came from.
    pub fn from_checkpoint(
        path: &Path,
        roots: &ConfigRoots,
    ) -> Result<(Config, &'static str), EmbeddedConfigError> {
        let ck = Checkpoint::open(path).map_err(Box::new)?;
        let (key, text) =
            embedded_config_text(&ck).ok_or_else(|| EmbeddedConfigError::NoConfig {
                checkpoint: path.to_path_buf(),
            })?;
        let name = PathBuf::from(format!("{}:{key}", loader::abspath(path).display()));
        let config = Config::from_python_text(text, name, roots).map_err(|source| {
            EmbeddedConfigError::Config {
                checkpoint: path.to_path_buf(),
                key,
                source: Box::new(source),
            }
        })?;
        Ok((config, key))
    }
}
