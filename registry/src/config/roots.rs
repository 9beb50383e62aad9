//! Where `pkg::dir/file.py` config references are looked up: package config roots.
//!
//! mmengine resolves `mmdet::x/y.py` to `<installed mmdet>/.mim/configs/x/y.py`
//! (`mmengine/config/utils.py: _get_external_cfg_base_path`). We never import or install
//! anything; the roots come from, in this order of precedence:
//! 1. `--config-root PKG=DIR` (repeatable; several dirs per package are searched in order),
//! 2. the environment variable `MMCOMPAT_CONFIG_ROOTS`: the same `PKG=DIR` entries separated by
//!    `:` or `,` (e.g. `mmyolo=/src/mmyolo/configs,mmdet=/opt/mmdet/configs`),
//! 3. for a package with no root from 1 or 2, discovery of `<pkg>/.mim/configs` of packages
//!    installed in the `python3` on `PATH`: one subprocess that only asks `importlib.util.find_spec` (no package code runs), cached.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use indexmap::IndexMap;

use super::error::ConfigError;

/// Environment variable holding extra roots (`PKG=DIR` separated by `:` or `,`).
pub const CONFIG_ROOTS_ENV: &str = "MMCOMPAT_CONFIG_ROOTS";

/// `mmengine/config/utils.py: MODULE2PACKAGE`: scope prefix -> pip distribution name.
pub const MODULE2PACKAGE: &[(&str, &str)] = &[
    ("mmcls", "mmcls"),
    ("mmdet", "mmdet"),
    ("mmdet3d", "mmdet3d"),
    ("mmseg", "mmsegmentation"),
    ("mmaction", "mmaction2"),
    ("mmtrack", "mmtrack"),
    ("mmpose", "mmpose"),
    ("mmedit", "mmedit"),
    ("mmocr", "mmocr"),
    ("mmgen", "mmgen"),
    ("mmfewshot", "mmfewshot"),
    ("mmrazor", "mmrazor"),
    ("mmflow", "mmflow"),
    ("mmhuman3d", "mmhuman3d"),
    ("mmrotate", "mmrotate"),
    ("mmselfsup", "mmselfsup"),
    ("mmyolo", "mmyolo"),
    ("mmpretrain", "mmpretrain"),
    ("mmagic", "mmagic"),
];

/// Pip name of a scope prefix (`mmseg` -> `mmsegmentation`).
pub fn package_name(scope: &str) -> Option<&'static str> {
    MODULE2PACKAGE
        .iter()
        .find(|(m, _)| *m == scope)
        .map(|(_, p)| *p)
}

/// Package config roots. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ConfigRoots {
    explicit: IndexMap<String, Vec<PathBuf>>,
    discover: bool,
}

static DISCOVERED: OnceLock<IndexMap<String, PathBuf>> = OnceLock::new();

impl ConfigRoots {
    /// No roots, no discovery.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `PKG=DIR` entries (from repeated `--config-root` flags).
    pub fn from_cli(specs: &[String]) -> Result<Self, ConfigError> {
        let mut roots = Self::new();
        for spec in specs {
            roots.add_spec(spec)?;
        }
        Ok(roots)
    }

    fn add_spec(&mut self, spec: &str) -> Result<(), ConfigError> {
        let (pkg, dir) = spec.split_once('=').ok_or_else(|| ConfigError::BadRoot {
            spec: spec.into(),
            why: "no '='".into(),
        })?;
        let pkg = pkg.trim();
        if pkg.is_empty() || !pkg.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(ConfigError::BadRoot {
                spec: spec.into(),
                why: format!("'{pkg}' is not a package name"),
            });
        }
        if dir.is_empty() {
            return Err(ConfigError::BadRoot {
                spec: spec.into(),
                why: "empty directory".into(),
            });
        }
        self.add(pkg, dir);
        Ok(())
    }

    /// Adds a directory searched (after the ones already added) for `pkg::...` references.
    pub fn add(&mut self, pkg: &str, dir: impl Into<PathBuf>) -> &mut Self {
        self.explicit
            .entry(pkg.to_string())
            .or_default()
            .push(dir.into());
        self
    }

    /// Appends the entries of `MMCOMPAT_CONFIG_ROOTS` (after the CLI ones).
    pub fn with_env(mut self) -> Result<Self, ConfigError> {
        if let Ok(v) = std::env::var(CONFIG_ROOTS_ENV) {
            self.add_env_str(&v)?;
        }
        Ok(self)
    }

    /// Parses the `MMCOMPAT_CONFIG_ROOTS` syntax.
    pub fn add_env_str(&mut self, v: &str) -> Result<(), ConfigError> {
        // Split on ',' and ':' but only before a `PKG=` so that `C:\..` style paths survive where
        // they can: an entry without '=' continues the previous directory.
        let mut entries: Vec<String> = Vec::new();
        for part in v.split([',', ':']) {
            if part.trim().is_empty() {
                continue;
            }
            match (part.contains('='), entries.last_mut()) {
                (false, Some(last)) => {
                    last.push(':');
                    last.push_str(part);
                }
                _ => entries.push(part.to_string()),
            }
        }
        for e in entries {
            self.add_spec(e.trim())?;
        }
        Ok(())
    }

    /// Also look in `<pkg>/.mim/configs` of the packages installed in `python3` (last resort:
    /// only for a package that has no explicit root, so that a command given its roots never
    /// pays for starting Python).
    pub fn discover_python(mut self) -> Self {
        self.discover = true;
        self
    }

    /// The directories searched for `pkg::`, in order.
    pub fn dirs(&self, pkg: &str) -> Vec<PathBuf> {
        let mut out = self.explicit.get(pkg).cloned().unwrap_or_default();
        if self.discover && out.is_empty() {
            if let Some(d) = discovered().get(pkg) {
                out.push(d.clone());
            }
        }
        out
    }

    /// Packages with at least one explicit root.
    pub fn packages(&self) -> impl Iterator<Item = &str> {
        self.explicit.keys().map(String::as_str)
    }
}

/// One `python3` subprocess that prints `module<TAB>dir` for each importable OpenMMLab package.
fn discovered() -> &'static IndexMap<String, PathBuf> {
    DISCOVERED.get_or_init(|| {
        let mods: Vec<&str> = MODULE2PACKAGE.iter().map(|(m, _)| *m).collect();
        let script = format!(
            "import importlib.util, os\nfor m in {mods:?}:\n    try:\n        s = importlib.util.find_spec(m)\n    except Exception:\n        s = None\n    if s and s.origin:\n        d = os.path.join(os.path.dirname(s.origin), '.mim', 'configs')\n        if os.path.isdir(d):\n            print(m + '\\t' + d)\n"
        );
        let out = std::process::Command::new("python3").arg("-I").arg("-c").arg(script).output();
        let mut map = IndexMap::new();
        match out {
            Ok(o) if o.status.success() => {
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    if let Some((m, d)) = line.split_once('\t') {
                        map.insert(m.to_string(), PathBuf::from(d));
                    }
                }
                tracing::debug!(found = map.len(), "python3 config roots discovered");
            }
            Ok(o) => tracing::debug!(status = ?o.status, "python3 config-root discovery failed"),
            Err(e) => tracing::debug!(error = %e, "no python3 for config-root discovery"),
        }
        map
    })
}

/// Lexical normalisation (`a/./b/../c` -> `a/c`), like `os.path.normpath`.
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    out.iter().collect()
}
