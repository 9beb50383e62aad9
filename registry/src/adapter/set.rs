//! [`AdapterSet`]: every adapter a run knows, from every source (linked crates, TOML files,
//! dynamic libraries, the user's XDG folder), by unique name. The contract itself is in `mod.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::*;
use crate::scoped::AdapterListing;

/// Where an adapter came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AdapterSource {
    /// Linked into the binary (`module_path!()` of the registration).
    Static { location: String },
    /// A dynamic library loaded through the C ABI.
    Dynamic { path: PathBuf },
    /// A declarative TOML file.
    Toml { path: PathBuf },
    /// Added in code (tests, embedding applications).
    Programmatic,
}

impl fmt::Display for AdapterSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterSource::Static { location } => write!(f, "static ({location})"),
            AdapterSource::Dynamic { path } => write!(f, "dynamic ({})", path.display()),
            AdapterSource::Toml { path } => write!(f, "toml ({})", path.display()),
            AdapterSource::Programmatic => f.write_str("programmatic"),
        }
    }
}

/// All adapters known to a run, from every source, by unique name.
pub struct AdapterSet {
    adapters: BTreeMap<String, (Box<dyn CheckpointAdapter>, AdapterSource)>,
}

impl fmt::Debug for AdapterSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.adapters.iter().map(|(n, (_, s))| (n, s)))
            .finish()
    }
}

impl Default for AdapterSet {
    fn default() -> Self {
        AdapterSet::empty()
    }
}

impl AdapterSet {
    pub fn empty() -> AdapterSet {
        AdapterSet {
            adapters: BTreeMap::new(),
        }
    }

    /// Every `register_adapter!` linked into this binary (the binary must reference the plugin
    /// crates, e.g. `mmcompat_plugin_mmrazor::link()`, or the linker drops them).
    pub fn from_inventory() -> Result<AdapterSet, AdapterError> {
        let mut set = AdapterSet::empty();
        let mut regs: Vec<&AdapterRegistration> =
            inventory::iter::<AdapterRegistration>.into_iter().collect();
        regs.sort_by_key(|r| (r.name, r.location));
        for r in regs {
            set.add(
                (r.make)(),
                AdapterSource::Static {
                    location: r.location.to_owned(),
                },
            )?;
        }
        Ok(set)
    }

    /// The adapters every command uses: the built-ins linked into this binary, then
    /// `$XDG_CONFIG_HOME/mmcompat/adapters/*.toml` (see [`user_adapter_dir`]), then `files`
    /// (`--adapters FILE`, `.toml` or a dynamic library), in that order. A name defined twice is
    /// an error naming both files.
    pub fn with_user_adapters(files: &[PathBuf]) -> Result<AdapterSet, AdapterError> {
        let mut set = AdapterSet::from_inventory()?;
        set.load_user_dir()?;
        for f in files {
            set.load_path(f)?;
        }
        Ok(set)
    }

    /// Adds one adapter; a second adapter with the same name is an error naming both sources.
    pub fn add(
        &mut self,
        adapter: Box<dyn CheckpointAdapter>,
        source: AdapterSource,
    ) -> Result<(), AdapterError> {
        let name = adapter.name().to_owned();
        if let Some((_, first)) = self.adapters.get(&name) {
            return Err(AdapterError::DuplicateAdapter {
                name,
                first: first.to_string(),
                second: source.to_string(),
            });
        }
        self.adapters.insert(name, (adapter, source));
        Ok(())
    }

    /// Loads a declarative adapter file (`--adapters FILE`).
    pub fn load_toml(&mut self, path: impl AsRef<Path>) -> Result<(), AdapterError> {
        let path = path.as_ref();
        let adapter = declarative::TomlAdapter::from_path(path)?;
        self.add(
            Box::new(adapter),
            AdapterSource::Toml {
                path: path.to_path_buf(),
            },
        )
    }

    /// Loads a dynamic adapter plugin (a `.so`/`.dylib`/`.dll` exporting the mmcompat C ABI).
    pub fn load_dynamic(&mut self, path: impl AsRef<Path>) -> Result<(), AdapterError> {
        let path = path.as_ref();
        let adapter = crate::plugin::load_plugin(path)?;
        self.add(
            Box::new(adapter),
            AdapterSource::Dynamic {
                path: path.to_path_buf(),
            },
        )
    }

    /// Loads a file by its extension: `.toml` declarative, anything else a dynamic library.
    pub fn load_path(&mut self, path: impl AsRef<Path>) -> Result<(), AdapterError> {
        let path = path.as_ref();
        if path.extension().is_some_and(|e| e == "toml") {
            self.load_toml(path)
        } else {
            self.load_dynamic(path)
        }
    }

    /// Loads `*.toml` from `$XDG_CONFIG_HOME/mmcompat/adapters/` (or `~/.config/...`), sorted by
    /// file name. A missing directory is not an error. Returns the files loaded.
    pub fn load_user_dir(&mut self) -> Result<Vec<PathBuf>, AdapterError> {
        let Some(dir) = user_adapter_dir() else {
            return Ok(Vec::new());
        };
        self.load_dir(&dir)
    }

    /// Loads every `*.toml` of `dir`, sorted by file name.
    pub fn load_dir(&mut self, dir: &Path) -> Result<Vec<PathBuf>, AdapterError> {
        let Ok(read) = std::fs::read_dir(dir) else {
            return Ok(Vec::new());
        };
        let mut files: Vec<PathBuf> = read
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for f in &files {
            self.load_toml(f)?;
        }
        Ok(files)
    }

    pub fn get(&self, name: &str) -> Result<&dyn CheckpointAdapter, AdapterError> {
        match self.adapters.get(name) {
            Some((a, _)) => Ok(a.as_ref()),
            None => {
                let known: Vec<String> = self.adapters.keys().cloned().collect();
                Err(AdapterError::UnknownAdapter {
                    name: name.to_owned(),
                    suggestions: crate::scoped::closest(name, known.iter().map(String::as_str), 3),
                    known,
                })
            }
        }
    }

    /// Every option key an adapter of the set reads, `(key, adapter)`, sorted by key.
    pub fn option_keys(&self) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> = self
            .adapters
            .iter()
            .flat_map(|(name, (a, _))| {
                a.option_keys()
                    .iter()
                    .map(move |k| (k.to_string(), name.clone()))
            })
            .collect();
        keys.sort();
        keys
    }

    /// Refuses an `extra` option no adapter of the set reads (a misspelt `--adapter-option`
    /// would otherwise change nothing, silently), naming the known keys and the closest.
    pub fn check_options(&self, options: &AdapterOptions) -> Result<(), AdapterError> {
        let known: Vec<String> = self.option_keys().into_iter().map(|(k, _)| k).collect();
        match options.extra.keys().find(|k| !known.contains(k)) {
            None => Ok(()),
            Some(key) => Err(AdapterError::UnknownOption {
                key: key.clone(),
                suggestions: crate::scoped::closest(key, known.iter().map(String::as_str), 3),
                known,
            }),
        }
    }

    pub fn source(&self, name: &str) -> Option<&AdapterSource> {
        self.adapters.get(name).map(|(_, s)| s)
    }

    /// Adapters sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&dyn CheckpointAdapter, &AdapterSource)> {
        self.adapters.values().map(|(a, s)| (a.as_ref(), s))
    }

    pub fn names(&self) -> Vec<String> {
        self.adapters.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.adapters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.adapters.is_empty()
    }

    /// For `mmcompat registry`.
    pub fn listing(&self) -> Vec<AdapterListing> {
        self.iter()
            .map(|(a, s)| AdapterListing {
                scope: a.scope().to_owned(),
                name: a.name().to_owned(),
                source: s.to_string(),
                description: a.description().to_owned(),
                options: a.option_keys().iter().map(|k| k.to_string()).collect(),
            })
            .collect()
    }
}

/// `$XDG_CONFIG_HOME/mmcompat/adapters`, or `$HOME/.config/mmcompat/adapters`.
pub fn user_adapter_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("mmcompat").join("adapters"))
}
