//! Where `pkg::dir/file.py` config references are looked up: package config roots.
//!
//! mmengine resolves `mmdet::x/y.py` to `<installed mmdet>/.mim/configs/x/y.py`
//! (`mmengine/config/utils.py: _get_external_cfg_base_path`). We never import or install
//! anything; the roots come from, in this order of precedence:
//! 1. `--config-root PKG=DIR` (repeatable; several dirs per package are searched in order),
//! 2. the environment variable `MMCOMPAT_CONFIG_ROOTS`: the same `PKG=DIR` entries separated by
//!    `:` or `,` (e.g. `mmyolo=/src/mmyolo/configs,mmdet=/opt/mmdet/configs`),
//! 3. for a package with no root from 1 or 2 (with [`ConfigRoots::discover`]), first the trees
//!    `make setup` fetched (`scripts/fetch-config-trees.sh`): `<base>/<pkg>` where `<base>` is
//!    `$MMCOMPAT_CONFIG_CACHE` when set, else the `.cache/configs` of the checkout the
//!    executable lives in (or was built from), then `$XDG_CACHE_HOME/mmcompat/configs`
//!    (default `~/.cache/mmcompat/configs`);
//! 4. then `<pkg>/.mim/configs` of the package installed in the `python3` on `PATH` (or
//!    `$MMCOMPAT_PYTHON`): one subprocess that only asks `importlib.util.find_spec` for the
//!    top-level name (no package code runs), cached for the process.
//!
//! When nothing provides a package, [`ConfigRoots::tried`] lists every place looked at, for the
//! error message. This module never imports a package or writes anything.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

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

/// Environment variable naming the folder that holds fetched config trees (`<DIR>/<pkg>`); when
/// set, it is the only such folder looked at.
pub const CONFIG_CACHE_ENV: &str = "MMCOMPAT_CONFIG_CACHE";

/// Environment variable naming the Python interpreter asked where packages are installed
/// (default `python3` on `PATH`).
pub const PYTHON_ENV: &str = "MMCOMPAT_PYTHON";

/// The packages `make setup` fetches (`scripts/fetch-config-trees.sh`).
pub const FETCHED_PACKAGES: &[&str] = &["mmdet", "mmyolo", "mmrazor"];

/// Where a config root came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// `--config-root PKG=DIR`.
    Cli,
    /// `MMCOMPAT_CONFIG_ROOTS`.
    Env,
    /// Added through the library API ([`ConfigRoots::add`]).
    Api,
    /// A tree fetched by `make setup` (`scripts/fetch-config-trees.sh`).
    Fetched,
    /// `<pkg>/.mim/configs` of the package installed in this interpreter.
    Python { interpreter: String },
}

impl std::fmt::Display for RootSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootSource::Cli => f.write_str("--config-root"),
            RootSource::Env => write!(f, "{CONFIG_ROOTS_ENV}"),
            RootSource::Api => f.write_str("library API"),
            RootSource::Fetched => f.write_str("fetched by `make setup`"),
            RootSource::Python { interpreter } => write!(f, "installed in {interpreter}"),
        }
    }
}

/// One package root and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRoot {
    pub package: String,
    pub dir: PathBuf,
    pub source: RootSource,
}

/// Package config roots. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ConfigRoots {
    explicit: IndexMap<String, Vec<(PathBuf, RootSource)>>,
    discover: bool,
}

/// What the `python3` subprocess answered, once per process.
#[derive(Debug)]
struct PythonDiscovery {
    interpreter: String,
    /// `Err(why)` when the interpreter could not be run or failed.
    found: Result<IndexMap<String, PathBuf>, String>,
}

static DISCOVERED: OnceLock<PythonDiscovery> = OnceLock::new();
/// Packages whose roots were already logged (the info log says once which roots are used).
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl ConfigRoots {
    /// No roots, no discovery.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `PKG=DIR` entries (from repeated `--config-root` flags).
    pub fn from_cli(specs: &[String]) -> Result<Self, ConfigError> {
        let mut roots = Self::new();
        for spec in specs {
            roots.add_spec(spec, RootSource::Cli)?;
        }
        Ok(roots)
    }

    fn add_spec(&mut self, spec: &str, source: RootSource) -> Result<(), ConfigError> {
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
        self.push(pkg, PathBuf::from(dir), source);
        Ok(())
    }

    fn push(&mut self, pkg: &str, dir: PathBuf, source: RootSource) {
        self.explicit
            .entry(pkg.to_string())
            .or_default()
            .push((dir, source));
    }

    /// Adds a directory searched (after the ones already added) for `pkg::...` references.
    pub fn add(&mut self, pkg: &str, dir: impl Into<PathBuf>) -> &mut Self {
        self.push(pkg, dir.into(), RootSource::Api);
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
            self.add_spec(e.trim(), RootSource::Env)?;
        }
        Ok(())
    }

    /// For a package with no explicit root, also look at the trees `make setup` fetched, then
    /// at `<pkg>/.mim/configs` of the packages installed in `python3` (last resort, so that a
    /// command given its roots never pays for starting Python).
    pub fn discover(mut self) -> Self {
        self.discover = true;
        self
    }

    /// The same as [`ConfigRoots::discover`] (fetched trees first, then `python3`): the name it
    /// had before fetched trees were looked at.
    pub fn discover_python(self) -> Self {
        self.discover()
    }

    /// The directories searched for `pkg::`, in order.
    pub fn dirs(&self, pkg: &str) -> Vec<PathBuf> {
        self.found(pkg).into_iter().map(|r| r.dir).collect()
    }

    /// The roots of `pkg` with where each came from, in search order. Logs them (info) the first
    /// time a package is asked for in this process.
    pub fn found(&self, pkg: &str) -> Vec<FoundRoot> {
        let mut out: Vec<FoundRoot> = self
            .explicit
            .get(pkg)
            .into_iter()
            .flatten()
            .map(|(dir, source)| FoundRoot {
                package: pkg.to_string(),
                dir: dir.clone(),
                source: source.clone(),
            })
            .collect();
        if self.discover && out.is_empty() {
            out.extend(fetched_trees(pkg).into_iter().map(|dir| FoundRoot {
                package: pkg.to_string(),
                dir,
                source: RootSource::Fetched,
            }));
            if out.is_empty() {
                let py = discovered();
                if let Ok(Some(dir)) = py.found.as_ref().map(|m| m.get(pkg)) {
                    out.push(FoundRoot {
                        package: pkg.to_string(),
                        dir: dir.clone(),
                        source: RootSource::Python {
                            interpreter: py.interpreter.clone(),
                        },
                    });
                }
            }
        }
        log_once(pkg, &out);
        out
    }

    /// Packages with at least one explicit root.
    pub fn packages(&self) -> impl Iterator<Item = &str> {
        self.explicit.keys().map(String::as_str)
    }

    /// Every place looked at for `pkg` (for the error when none had it), one line each.
    pub fn tried(&self, pkg: &str) -> Vec<String> {
        let mut out = vec![
            format!("--config-root {pkg}=DIR: not given"),
            match std::env::var(CONFIG_ROOTS_ENV) {
                Ok(v) => format!("{CONFIG_ROOTS_ENV}={v:?}: no entry for {pkg}"),
                Err(_) => format!("{CONFIG_ROOTS_ENV}: not set"),
            },
        ];
        if !self.discover {
            out.push("discovery of fetched trees and installed packages: off".into());
            return out;
        }
        for base in fetched_bases() {
            out.push(format!(
                "fetched tree {}: not there",
                base.join(pkg).display()
            ));
        }
        let py = discovered();
        out.push(match &py.found {
            Ok(_) => format!("{}: no importable package '{pkg}'", py.interpreter),
            Err(why) => format!("{}: {why}", py.interpreter),
        });
        out
    }

    /// The one thing that makes `pkg` available.
    pub fn how_to_fix(pkg: &str) -> String {
        if FETCHED_PACKAGES.contains(&pkg) {
            format!(
                "run `make setup` in the mmcompat checkout (it fetches the {} config trees into \
                 .cache/configs), or pass `--config-root {pkg}=DIR`",
                FETCHED_PACKAGES.join(", ")
            )
        } else {
            let package = package_name(pkg).unwrap_or(pkg);
            format!(
                "pass `--config-root {pkg}=DIR` (or MMCOMPAT_CONFIG_ROOTS='{pkg}=DIR'), or \
                 `pip install {package}` in the python3 on PATH"
            )
        }
    }
}

fn log_once(pkg: &str, roots: &[FoundRoot]) {
    let Ok(mut logged) = LOGGED.lock() else {
        return;
    };
    if logged.iter().any(|p| p == pkg) {
        return;
    }
    logged.push(pkg.to_string());
    if roots.is_empty() {
        tracing::info!(package = pkg, "no config root");
    }
    for r in roots {
        tracing::info!(package = pkg, dir = %r.dir.display(), source = %r.source, "config root");
    }
}

/// The folders that may hold fetched trees (`<base>/<pkg>`), in search order.
pub fn fetched_bases() -> Vec<PathBuf> {
    if let Some(v) = std::env::var_os(CONFIG_CACHE_ENV) {
        return vec![PathBuf::from(v)];
    }
    let mut out: Vec<PathBuf> = Vec::new();
    // The checkout the executable lives in: target/{debug,release}[/deps]/<exe> sits below it.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(base) = exe
            .ancestors()
            .skip(1)
            .map(|a| a.join(".cache/configs"))
            .find(|c| c.is_dir())
        {
            out.push(base);
        }
    }
    // The checkout this crate was built from (a CARGO_TARGET_DIR outside the checkout).
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/configs"));
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(x) = xdg {
        out.push(x.join("mmcompat/configs"));
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    for p in out {
        let n = normalize(&p);
        if !seen.contains(&n) {
            seen.push(n);
        }
    }
    seen
}

/// The fetched trees of `pkg` that exist.
fn fetched_trees(pkg: &str) -> Vec<PathBuf> {
    fetched_bases()
        .into_iter()
        .map(|b| b.join(pkg))
        .filter(|d| d.is_dir())
        .collect()
}

/// Config roots found by asking the Python interpreter (`$MMCOMPAT_PYTHON`, default `python3`):
/// `(interpreter, Ok(package -> dir) | Err(why it could not be asked))`.
pub fn python_roots() -> (String, Result<IndexMap<String, PathBuf>, String>) {
    let d = discovered();
    (d.interpreter.clone(), d.found.clone())
}

/// One subprocess that prints `module<TAB>dir` for each importable OpenMMLab package:
/// `<pkg>/.mim/configs` (`mmengine/config/utils.py: _get_external_cfg_base_path`), else a source
/// checkout's `configs` beside the package (`mmengine/infer/infer.py: _get_repo_or_mim_dir`).
/// Nothing is imported: `find_spec` of a top-level name only locates it.
fn discovered() -> &'static PythonDiscovery {
    DISCOVERED.get_or_init(|| {
        let interpreter = std::env::var(PYTHON_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "python3".to_string());
        let mods: Vec<&str> = MODULE2PACKAGE.iter().map(|(m, _)| *m).collect();
        let script = format!(
            "import importlib.util, os\nfor m in {mods:?}:\n    try:\n        s = importlib.util.find_spec(m)\n    except Exception:\n        s = None\n    if s and s.origin:\n        p = os.path.dirname(s.origin)\n        for d in (os.path.join(p, '.mim', 'configs'), os.path.join(os.path.dirname(p), 'configs')):\n            if os.path.isdir(d):\n                print(m + '\\t' + d)\n                break\n"
        );
        let out = std::process::Command::new(&interpreter)
            .arg("-I")
            .arg("-c")
            .arg(script)
            .output();
        let found = match out {
            Ok(o) if o.status.success() => {
                let mut map = IndexMap::new();
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    if let Some((m, d)) = line.split_once('\t') {
                        map.insert(m.to_string(), PathBuf::from(d));
                    }
                }
                tracing::debug!(found = map.len(), %interpreter, "python config roots discovered");
                Ok(map)
            }
            Ok(o) => Err(format!("failed ({})", o.status)),
            Err(e) => Err(format!("could not be run ({e})")),
        };
        PythonDiscovery { interpreter, found }
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
