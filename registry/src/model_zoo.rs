//! Model names as `DetInferencer(model=NAME)` accepts them: a metafile `Name`
//! (`rtmdet_tiny_syncbn_fast_8xb32-300e_coco`) or one of its `Alias`es (`rtmdet-t`), resolved
//! through the packages' `model-index.yml` and the `metafile.yml` files it imports, to the config
//! file and the published weights URL.
//!
//! Mirrors `mmengine/infer/infer.py: BaseInferencer._load_model_from_metafile` (names and
//! aliases compared lower-cased, the first match in index order wins, `Weights` may be a list:
//! its first item) and `_get_models_from_metafile` (`model-index.yml`'s `Import` list, each
//! metafile's `Models`). The indexes are found beside the config roots of [`ConfigRoots`]:
//! `<root>/../model-index.yml` (an installed package's `.mim/`, or a source checkout) or
//! `<root>/model-index.yml` (the trees `make setup` fetched); a root without either is scanned
//! for `metafile.yml` files. This module only reads YAML: it never downloads (see the root
//! crate's `download.rs`) and never loads the config.

use std::path::{Path, PathBuf};

use serde_norway::Value as Yaml;

use crate::config::roots::{ConfigRoots, FoundRoot};

/// The packages searched for a name when the caller names none, in this order.
pub const DEFAULT_PACKAGES: &[&str] = &["mmdet", "mmyolo", "mmrazor"];

/// One `Models` entry of a metafile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// The scope / package whose index lists it (`mmyolo`).
    pub package: String,
    /// `Name` (`rtmdet_tiny_syncbn_fast_8xb32-300e_coco`).
    pub name: String,
    /// `Alias` (`rtmdet-t`), a string or a list upstream.
    pub aliases: Vec<String>,
    /// `Config`, resolved against the package's config root.
    pub config: PathBuf,
    /// `Weights` (the first one when a list), when the entry has any.
    pub weights: Option<String>,
    /// The metafile listing it.
    pub metafile: PathBuf,
}

/// One package root that was searched, for messages and `mmcompat env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchedRoot {
    pub root: FoundRoot,
    /// The `model-index.yml` used, or `None` when the root was scanned for metafiles.
    pub index: Option<PathBuf>,
    pub models: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelZooError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid YAML: {why}")]
    Yaml { path: PathBuf, why: String },
    #[error("{path}: {why} (expected mmengine's metafile layout: `Models: [{{Name, Config, Weights, Alias}}]`)")]
    Layout { path: PathBuf, why: String },
    #[error(
        "unknown model name '{name}'{suggest}; searched {searched}. A name is a metafile `Name` \
         or `Alias` (as DetInferencer(model=...) takes), e.g. rtmdet-t or \
         rtmdet_tiny_syncbn_fast_8xb32-300e_coco",
        suggest = did_you_mean(.closest),
        searched = describe_searched(.searched)
    )]
    UnknownModel {
        name: String,
        searched: Vec<SearchedRoot>,
        closest: Vec<String>,
    },
    #[error(
        "no model index to look up '{name}' in: no config root for {packages}. Tried: {tried}. \
         To fix: {fix}",
        packages = .packages.join(", "),
        tried = .tried.join("; "),
        fix = ConfigRoots::how_to_fix(.packages.first().map(String::as_str).unwrap_or("mmdet"))
    )]
    NoRoots {
        name: String,
        packages: Vec<String>,
        tried: Vec<String>,
    },
}

fn did_you_mean(closest: &[String]) -> String {
    if closest.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", closest.join(", "))
    }
}

fn describe_searched(searched: &[SearchedRoot]) -> String {
    searched
        .iter()
        .map(|s| {
            let from = s
                .index
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| format!("metafiles under {}", s.root.dir.display()));
            format!("{} ({} models, {})", from, s.models, s.root.package)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every model the metafiles of some packages list, in mmengine's lookup order.
#[derive(Debug, Clone, Default)]
pub struct ModelIndex {
    entries: Vec<ModelEntry>,
    searched: Vec<SearchedRoot>,
}

impl ModelIndex {
    /// Reads the indexes of `packages` (each package's roots in `roots` order).
    pub fn load(roots: &ConfigRoots, packages: &[&str]) -> Result<Self, ModelZooError> {
        let mut index = ModelIndex::default();
        for pkg in packages {
            for root in roots.found(pkg) {
                index.add_root(root)?;
            }
        }
        Ok(index)
    }

    fn add_root(&mut self, root: FoundRoot) -> Result<(), ModelZooError> {
        let dir = &root.dir;
        let index_file = [
            dir.join("model-index.yml"),
            dir.join("..").join("model-index.yml"),
        ]
        .into_iter()
        .find(|p| p.is_file());
        let metafiles = match &index_file {
            Some(f) => {
                let doc = load_yaml(f)?;
                let imports = doc
                    .get("Import")
                    .and_then(Yaml::as_sequence)
                    .ok_or_else(|| ModelZooError::Layout {
                        path: f.clone(),
                        why: "no `Import` list".into(),
                    })?;
                imports
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(|s| resolve_in_root(dir, f, s))
                            .ok_or_else(|| ModelZooError::Layout {
                                path: f.clone(),
                                why: "an `Import` item is not a string".into(),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => {
                tracing::debug!(root = %dir.display(), "no model-index.yml: scanning for metafile.yml");
                let mut found = Vec::new();
                find_metafiles(dir, &mut found);
                found.sort();
                found
            }
        };
        let before = self.entries.len();
        for m in metafiles {
            self.add_metafile(&root.package, dir, &m)?;
        }
        self.searched.push(SearchedRoot {
            models: self.entries.len() - before,
            root,
            index: index_file,
        });
        Ok(())
    }

    fn add_metafile(
        &mut self,
        package: &str,
        root: &Path,
        path: &Path,
    ) -> Result<(), ModelZooError> {
        let doc = load_yaml(path)?;
        let layout = |why: String| ModelZooError::Layout {
            path: path.to_path_buf(),
            why,
        };
        let Some(models) = doc.get("Models").and_then(Yaml::as_sequence) else {
            // A metafile with only `Collections` lists no model (mmengine: `metainfo['Models']`).
            return Ok(());
        };
        for (i, m) in models.iter().enumerate() {
            let name = m
                .get("Name")
                .and_then(Yaml::as_str)
                .ok_or_else(|| layout(format!("Models[{i}] has no string `Name`")))?;
            let config = m
                .get("Config")
                .and_then(Yaml::as_str)
                .ok_or_else(|| layout(format!("Models[{i}] ({name}) has no string `Config`")))?;
            let aliases = match m.get("Alias") {
                Some(Yaml::String(s)) => vec![s.clone()],
                Some(Yaml::Sequence(a)) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            };
            let weights = match m.get("Weights") {
                Some(Yaml::String(s)) => Some(s.clone()),
                Some(Yaml::Sequence(a)) => a.first().and_then(|x| x.as_str()).map(String::from),
                _ => None,
            };
            self.entries.push(ModelEntry {
                package: package.to_string(),
                name: name.to_string(),
                aliases,
                config: resolve_in_root(root, path, config),
                weights,
                metafile: path.to_path_buf(),
            });
        }
        Ok(())
    }

    /// All entries, in lookup order.
    pub fn entries(&self) -> &[ModelEntry] {
        &self.entries
    }

    /// The roots searched (with their index file and model count).
    pub fn searched(&self) -> &[SearchedRoot] {
        &self.searched
    }

    /// The entry whose `Name` or an `Alias` equals `name`, compared lower-cased; the first in
    /// index order, as mmengine's loop returns.
    pub fn resolve(&self, name: &str) -> Result<&ModelEntry, ModelZooError> {
        let wanted = name.to_lowercase();
        self.entries
            .iter()
            .find(|e| {
                e.name.to_lowercase() == wanted
                    || e.aliases.iter().any(|a| a.to_lowercase() == wanted)
            })
            .ok_or_else(|| {
                let names = self
                    .entries
                    .iter()
                    .flat_map(|e| std::iter::once(&e.name).chain(&e.aliases))
                    .map(String::as_str);
                ModelZooError::UnknownModel {
                    name: name.to_string(),
                    searched: self.searched.clone(),
                    closest: crate::scoped::closest(name, names, 3),
                }
            })
    }

    /// [`ModelIndex::load`] then [`ModelIndex::resolve`], with the error that names every place
    /// tried when no package has a root at all.
    pub fn lookup(
        roots: &ConfigRoots,
        packages: &[&str],
        name: &str,
    ) -> Result<ModelEntry, ModelZooError> {
        let index = Self::load(roots, packages)?;
        if index.searched.is_empty() {
            let tried = packages
                .iter()
                .flat_map(|p| roots.tried(p).into_iter().map(move |t| format!("{p}: {t}")))
                .collect();
            return Err(ModelZooError::NoRoots {
                name: name.to_string(),
                packages: packages.iter().map(|p| p.to_string()).collect(),
                tried,
            });
        }
        index.resolve(name).cloned()
    }
}

/// An index path (`configs/rtmdet/metafile.yml`, relative to the folder holding `configs/`)
/// inside the config root `root` (which is that `configs/` folder); a path without the
/// `configs/` prefix is relative to the file naming it.
fn resolve_in_root(root: &Path, naming_file: &Path, rel: &str) -> PathBuf {
    match rel.strip_prefix("configs/") {
        Some(rest) => root.join(rest),
        None => naming_file.parent().unwrap_or(Path::new("")).join(rel),
    }
}

fn load_yaml(path: &Path) -> Result<Yaml, ModelZooError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelZooError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_norway::from_str(&text).map_err(|e| ModelZooError::Yaml {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

fn find_metafiles(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_metafiles(&p, out);
        } else if p.file_name().is_some_and(|n| n == "metafile.yml") {
            out.push(p);
        }
    }
}
