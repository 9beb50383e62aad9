//! mmengine's classic config pipeline, step by step (`mmengine/config/config.py:
//! Config._file2dict`, lines 824-982 of 0.10.7): text substitutions, `_base_` files (relative or
//! `pkg::`), `_scope_` injection into bases from other packages, execution of the child with
//! `_base_` bound to the live merged base, `{{_base_.x}}` placeholders, `_merge_a_into_b`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use indexmap::IndexMap;
use regex::Regex;
use rustpython_parser::ast::{Expr, Stmt};

use super::error::ConfigError;
use super::eval::{
    self, config_dict_from, deep_copy, new_dict, new_list, skey, DictRef, Interp, Key, Obj,
};
use super::roots::{normalize, package_name, ConfigRoots};
use super::toml_codec;
use super::value::Value;

type R<T> = Result<T, ConfigError>;

/// Keys `Config.__init__` refuses (`config.py: RESERVED_KEYS`).
const RESERVED_KEYS: &[&str] = &["filename", "text", "pretty_text", "env_variables"];

pub(crate) struct Loader<'r> {
    roots: &'r ConfigRoots,
    /// Files being loaded (outermost first), for cycle detection.
    stack: Vec<PathBuf>,
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| {
        Regex::new(pattern).unwrap_or_else(|e| panic!("static regex {pattern}: {e}"))
    })
}

/// `os.path.abspath`: absolute and lexically normalised (no symlink resolution).
pub(crate) fn abspath(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    normalize(&abs)
}

impl<'r> Loader<'r> {
    pub(crate) fn new(roots: &'r ConfigRoots) -> Self {
        Loader {
            roots,
            stack: Vec::new(),
        }
    }

    /// Loads one file with its bases; returns the merged top-level dict (mmengine `_file2dict`).
    pub(crate) fn file2dict(&mut self, path: &Path) -> R<DictRef> {
        let abs = abspath(path);
        if let Some(i) = self.stack.iter().position(|p| *p == abs) {
            let mut chain = self.stack[i..].to_vec();
            chain.push(abs);
            return Err(ConfigError::Cycle { chain });
        }
        let ext = abs
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_string();
        if !matches!(ext.as_str(), "py" | "toml" | "json") {
            return Err(ConfigError::UnsupportedExtension { file: abs, ext });
        }
        let limits = eval::limits::current();
        let io = |source| ConfigError::Io {
            path: abs.clone(),
            source,
        };
        let size = std::fs::metadata(&abs).map_err(io)?.len();
        if size > limits.file_bytes {
            return Err(file_limit(
                &abs,
                "file_bytes",
                limits.file_bytes,
                format!("a file of {size} bytes"),
            ));
        }
        let raw = std::fs::read_to_string(&abs).map_err(io)?;
        self.file2dict_at(&abs, &ext, raw)
    }

    /// [`Loader::file2dict`] for a text already read (`abs` names it and gives the base folder).
    pub(crate) fn file2dict_at(&mut self, abs: &Path, ext: &str, raw: String) -> R<DictRef> {
        let abs = abs.to_path_buf();
        let limits = eval::limits::current();
        if raw.len() as u64 > limits.file_bytes {
            let what = format!("a file of {} bytes", raw.len());
            return Err(file_limit(&abs, "file_bytes", limits.file_bytes, what));
        }
        if self.stack.len() as u64 >= limits.base_depth {
            let what = format!("a `_base_` chain of {} files", self.stack.len() + 1);
            return Err(file_limit(&abs, "base_depth", limits.base_depth, what));
        }
        if !eval::limits::count_file() {
            return Err(file_limit(
                &abs,
                "base_files",
                limits.base_files,
                "one more file".into(),
            ));
        }
        self.stack.push(abs.clone());
        let r = self.file2dict_text(&abs, ext, raw);
        self.stack.pop();
        r
    }

    pub(crate) fn file2dict_text(&mut self, abs: &Path, ext: &str, raw: String) -> R<DictRef> {
        let text = substitute_predefined_vars(&raw, abs);
        let text = substitute_env_vars(&text, abs)?;
        let (text, base_vars) = pre_substitute_base_vars(&text);

        // Parse, and find the `_base_` entries (`Config._get_base_files`).
        enum Parsed {
            Py(Arc<Vec<Stmt>>),
            Data(Obj),
        }
        let (parsed, base_entries) = match ext {
            "py" => {
                let body = parse_python_cached(&text, abs)?;
                let entries = py_base_entries(&body, &text, abs)?;
                (Parsed::Py(body), entries)
            }
            _ => {
                let v = if ext == "toml" {
                    toml_codec::parse(&text, abs)?
                } else {
                    let j: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| ConfigError::Json {
                            file: abs.to_path_buf(),
                            message: e.to_string(),
                        })?;
                    Value::from_json(&j)
                };
                let entries = match v.get("_base_") {
                    None => Vec::new(),
                    Some(b) => value_base_entries(b, abs)?,
                };
                (Parsed::Data(value_to_obj(&v)), entries)
            }
        };

        let fanout = eval::limits::current().base_fanout;
        if base_entries.len() as u64 > fanout {
            let what = format!("{} `_base_` entries", base_entries.len());
            return Err(file_limit(abs, "base_fanout", fanout, what));
        }

        // Bases, merged into one ConfigDict; sibling bases may not share top-level keys.
        let base_cfg = match new_dict(IndexMap::new(), true) {
            Obj::Dict(d) => d,
            _ => unreachable_dict(),
        };
        for entry in &base_entries {
            let (base_path, scope) = self.resolve(entry, abs)?;
            let base = self.file2dict(&base_path)?;
            let mut dup: Vec<String> = base
                .borrow()
                .map
                .keys()
                .filter(|k| base_cfg.borrow().map.contains_key(*k))
                .map(|k| k.json_string())
                .collect();
            if !dup.is_empty() {
                dup.sort();
                return Err(ConfigError::DuplicateBaseKeys {
                    file: abs.to_path_buf(),
                    keys: dup,
                });
            }
            let converted = dict_to_config_dict(&Obj::Dict(base), scope.as_deref(), true);
            if let Obj::Dict(c) = converted {
                let entries: Vec<(Key, Obj)> = c
                    .borrow()
                    .map
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let mut b = base_cfg.borrow_mut();
                for (k, v) in entries {
                    b.map.insert(k, v);
                }
            }
        }

        // Execute (evaluate) the file with `_base_` bound to the live merged base.
        let cfg: DictRef = match parsed {
            Parsed::Py(body) => {
                let mut interp = Interp::new(abs, &text);
                interp
                    .globals
                    .insert("_base_".into(), Obj::Dict(base_cfg.clone()));
                interp.exec_block(&body)?;
                let mut map = IndexMap::new();
                for (k, v) in interp.globals {
                    if k == "_base_" || k.starts_with("__") {
                        continue;
                    }
                    // mmengine drops functions and modules (`config.py:934-937`).
                    if matches!(v, Obj::Function(_) | Obj::Module(_)) {
                        continue;
                    }
                    map.insert(Key::Str(k), v);
                }
                match new_dict(map, false) {
                    Obj::Dict(d) => d,
                    _ => unreachable_dict(),
                }
            }
            Parsed::Data(Obj::Dict(d)) => d,
            Parsed::Data(_) => {
                return Err(ConfigError::BadBase {
                    file: abs.to_path_buf(),
                    got: "a top level that is not a table".into(),
                })
            }
        };

        if let Some(dep) = cfg.borrow_mut().map.shift_remove(&skey("_deprecation_")) {
            tracing::warn!(file = %abs.display(), info = %eval::repr(&dep), "The config file will be deprecated in the future");
        }

        // `{{_base_.x}}` placeholders get the real values (`_substitute_base_vars`). That function
        // deep-copies every container level separately, so it always runs: it is what breaks the
        // aliasing of `test_dataloader = val_dataloader` before `_delete_` is popped in the merge.
        let cfg = match substitute_base_vars(&Obj::Dict(cfg), &base_vars, &base_cfg, abs)? {
            Obj::Dict(d) => d,
            _ => unreachable_dict(),
        };
        cfg.borrow_mut().map.shift_remove(&skey("_base_"));
        let merged = merge_a_into_b(&cfg, &base_cfg, abs, "")?;
        merged
            .borrow_mut()
            .map
            .retain(|k, _| !matches!(k, Key::Str(s) if s.starts_with("__")));
        Ok(merged)
    }

    /// `Config._get_cfg_path`: `pkg::rel` through the package roots, else relative to the file.
    pub(crate) fn resolve(&self, entry: &str, current: &Path) -> R<(PathBuf, Option<String>)> {
        if entry.contains("::") {
            let (scope, rel) = split_package_path(entry, current)?;
            let package = package_name(&scope).unwrap_or(&scope).to_string();
            let dirs = self.roots.dirs(&scope);
            if dirs.is_empty() {
                return Err(ConfigError::PackageNotAvailable {
                    file: current.to_path_buf(),
                    tried: self.roots.tried(&scope),
                    scope,
                    package,
                    reference: entry.to_string(),
                });
            }
            let mut tried = Vec::new();
            for d in &dirs {
                // `Path::join` drops `d` for an absolute `rel`, as `os.path.join` does (mmrazor#460).
                let cand = d.join(&rel);
                if cand.is_file() {
                    return Ok((cand, Some(scope)));
                }
                tried.push(cand);
            }
            Err(ConfigError::BaseNotFound {
                file: current.to_path_buf(),
                base: entry.to_string(),
                tried,
                did_you_mean: super::suggest::closest_config(&dirs, &rel)
                    .map(|r| format!("{scope}::{r}")),
            })
        } else {
            let dir = current.parent().unwrap_or(Path::new(""));
            let cand = dir.join(entry);
            if cand.is_file() {
                Ok((cand, None))
            } else {
                Err(ConfigError::BaseNotFound {
                    file: current.to_path_buf(),
                    base: entry.to_string(),
                    tried: vec![cand],
                    did_you_mean: None,
                })
            }
        }
    }
}

/// A limit on whole files (size, `_base_` fan-out/depth/count): located at the file.
fn file_limit(file: &Path, limit: &'static str, max: u64, what: String) -> ConfigError {
    eval::limits::record(limit, max, what.clone());
    ConfigError::LimitExceeded {
        at: file.display().to_string(),
        limit,
        max,
        what,
        snippet: String::new(),
    }
}

/// The error for a limit hit outside any expression (while merging or converting the result).
pub(crate) fn pending_limit(file: &Path) -> Option<ConfigError> {
    let hit = eval::limits::hit()?;
    Some(ConfigError::LimitExceeded {
        at: file.display().to_string(),
        limit: hit.limit,
        max: hit.max,
        what: format!("{} (while building the config)", hit.what),
        snippet: String::new(),
    })
}

fn unreachable_dict() -> DictRef {
    // new_dict always returns Obj::Dict; this keeps the matches total without panicking.
    std::rc::Rc::new(std::cell::RefCell::new(eval::PyDict::default()))
}

/// `_get_package_and_cfg_path`: `\w*::\w*/\w*`, a single `::`, a known package prefix.
pub(crate) fn split_package_path(entry: &str, file: &Path) -> R<(String, String)> {
    static PKG_RE: OnceLock<Regex> = OnceLock::new();
    let bad = |why: &str| ConfigError::BadPackagePath {
        file: file.to_path_buf(),
        reference: entry.into(),
        why: why.into(),
    };
    if !re(&PKG_RE, r"^\w*::\w*/\w*").is_match(entry) {
        return Err(bad("expected 'pkg::dir/file.py' (a sub-directory is required), like 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'"));
    }
    let parts: Vec<&str> = entry.split("::").collect();
    let [scope, rel] = parts.as_slice() else {
        return Err(bad("'::' may appear only once"));
    };
    if package_name(scope).is_none() {
        return Err(bad(&format!(
            "mmengine does not support to load {scope} config"
        )));
    }
    Ok((scope.to_string(), rel.to_string()))
}

/// Parsed files by exact text (after the text substitutions). Bases such as
/// `_base_/default_runtime.py` are shared by hundreds of configs; the AST is immutable, so reusing
/// it changes nothing but the time. Bounded so that a long-running process cannot grow it forever.
static PARSE_CACHE: OnceLock<Mutex<HashMap<String, Arc<Vec<Stmt>>>>> = OnceLock::new();
const PARSE_CACHE_MAX_BYTES: usize = 64 << 20;
static PARSE_CACHE_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Empties the parse cache (benchmarks measure a cold pass with it).
pub(crate) fn clear_parse_cache() {
    if let Some(c) = PARSE_CACHE.get() {
        if let Ok(mut c) = c.lock() {
            c.clear();
        }
    }
    PARSE_CACHE_BYTES.store(0, std::sync::atomic::Ordering::Relaxed);
}

fn parse_python_cached(text: &str, path: &Path) -> R<Arc<Vec<Stmt>>> {
    let cache = PARSE_CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(text).cloned()) {
        return Ok(hit);
    }
    let body = Arc::new(parse_python(text, path)?);
    use std::sync::atomic::Ordering;
    if PARSE_CACHE_BYTES.fetch_add(text.len(), Ordering::Relaxed) + text.len()
        <= PARSE_CACHE_MAX_BYTES
    {
        if let Ok(mut c) = cache.lock() {
            c.insert(text.to_string(), body.clone());
        }
    }
    Ok(body)
}

pub(crate) fn parse_python(text: &str, path: &Path) -> R<Vec<Stmt>> {
    <rustpython_parser::ast::Suite as rustpython_parser::Parse>::parse(
        text,
        &path.to_string_lossy(),
    )
    .map_err(|e| {
        let starts = eval::line_starts(text);
        let (at, snippet) = eval::location_in(path, text, &starts, e.offset.to_usize());
        ConfigError::Syntax {
            at,
            message: e.error.to_string(),
            snippet,
        }
    })
}

/// The first top-level `_base_ = ...`, evaluated as a literal (`Config._get_base_files`).
fn py_base_entries(body: &[Stmt], text: &str, path: &Path) -> R<Vec<String>> {
    let Some(value) = body.iter().find_map(|s| match s {
        Stmt::Assign(a) if matches!(a.targets.first(), Some(Expr::Name(n)) if n.id.as_str() == "_base_") => {
            Some(a.value.as_ref())
        }
        _ => None,
    }) else {
        return Ok(Vec::new());
    };
    let mut interp = Interp::new(path, text);
    let v = interp.eval(value)?;
    base_entries_of(&v, path)
}

fn base_entries_of(v: &Obj, path: &Path) -> R<Vec<String>> {
    let bad = |o: &Obj| ConfigError::BadBase {
        file: path.to_path_buf(),
        got: eval::repr(o),
    };
    match v {
        Obj::Str(s) => Ok(vec![s.clone()]),
        Obj::List(l) => l
            .borrow()
            .iter()
            .map(|x| match x {
                Obj::Str(s) => Ok(s.clone()),
                other => Err(bad(other)),
            })
            .collect(),
        other => Err(bad(other)),
    }
}

fn value_base_entries(v: &Value, path: &Path) -> R<Vec<String>> {
    base_entries_of(&value_to_obj(v), path)
}

pub(crate) fn value_to_obj(v: &Value) -> Obj {
    match v {
        Value::None => Obj::None,
        Value::Bool(b) => Obj::Bool(*b),
        Value::Int(i) => Obj::Int(*i),
        Value::Float(f) => Obj::Float(*f),
        Value::Str(s) => Obj::Str(s.clone()),
        Value::List(l) => new_list(l.iter().map(value_to_obj).collect()),
        Value::Tuple(t) => Obj::Tuple(std::rc::Rc::new(t.iter().map(value_to_obj).collect())),
        Value::Dict(d) => new_dict(
            d.iter()
                .map(|(k, v)| (Key::Str(k.clone()), value_to_obj(v)))
                .collect(),
            false,
        ),
    }
}

/// `Config.to_dict()` then what `json.dumps` accepts.
pub(crate) fn obj_to_value(o: &Obj, file: &Path, key: &str) -> R<Value> {
    let Some(_deep) = eval::Deep::enter() else {
        return Err(ConfigError::NotSerializable {
            file: file.to_path_buf(),
            key: key.to_string(),
            type_name: "circular or too deeply nested container",
        });
    };
    // The result tree is built item by item, each with its key path for messages: charged at
    // four steps an item (measured: converting is that much slower than a visit), so that an
    // expansion of shared references stops as early as the copies of the evaluator do.
    if !eval::limits::charge(eval::container_len(o).saturating_mul(4)) {
        return Ok(Value::None);
    }
    Ok(match o {
        Obj::None => Value::None,
        Obj::Bool(b) => Value::Bool(*b),
        Obj::Int(i) => Value::Int(*i),
        Obj::Float(f) => Value::Float(*f),
        Obj::Str(s) if !eval::limits::charge(s.len()) => Value::None,
        Obj::Str(s) => Value::Str(s.clone()),
        Obj::List(l) => Value::List(
            l.borrow()
                .iter()
                .enumerate()
                .map(|(i, x)| obj_to_value(x, file, &format!("{key}[{i}]")))
                .collect::<R<_>>()?,
        ),
        Obj::Tuple(t) => Value::Tuple(
            t.iter()
                .enumerate()
                .map(|(i, x)| obj_to_value(x, file, &format!("{key}[{i}]")))
                .collect::<R<_>>()?,
        ),
        Obj::Dict(d) => {
            let mut m = IndexMap::new();
            for (k, v) in &d.borrow().map {
                let ks = k.json_string();
                let sub = if key.is_empty() {
                    ks.clone()
                } else {
                    format!("{key}.{ks}")
                };
                m.insert(ks, obj_to_value(v, file, &sub)?);
            }
            Value::Dict(m)
        }
        other => {
            return Err(ConfigError::NotSerializable {
                file: file.to_path_buf(),
                key: key.to_string(),
                type_name: other.type_name(),
            })
        }
    })
}

/// Converts a loaded top-level dict into the public tree (`Config.__init__` + `to_dict`).
pub(crate) fn finish(d: &DictRef, file: &Path) -> R<IndexMap<String, Value>> {
    for k in RESERVED_KEYS {
        if d.borrow().map.contains_key(&skey(k)) {
            return Err(ConfigError::ReservedKey {
                file: file.to_path_buf(),
                key: k.to_string(),
            });
        }
    }
    match obj_to_value(&Obj::Dict(d.clone()), file, "")? {
        Value::Dict(m) => Ok(m),
        _ => Ok(IndexMap::new()),
    }
}

/// `Config._dict_to_config_dict`: ConfigDict copies, and `_scope_` on the outermost dicts that
/// have a `type` (not overwriting a set one) when the base comes from another package.
pub(crate) fn dict_to_config_dict(o: &Obj, scope: Option<&str>, has_scope: bool) -> Obj {
    let Some(_deep) = eval::Deep::enter() else {
        return o.clone();
    };
    match o {
        Obj::Dict(d) => {
            let mut map = d.borrow().map.clone();
            let mut has_scope = has_scope;
            if has_scope && map.contains_key(&skey("type")) {
                has_scope = false;
                if let Some(s) = scope {
                    if matches!(map.get(&skey("_scope_")), None | Some(Obj::None)) {
                        map.insert(skey("_scope_"), Obj::Str(s.to_string()));
                    }
                }
            }
            let map = map
                .into_iter()
                .map(|(k, v)| (k, dict_to_config_dict(&v, scope, has_scope)))
                .collect();
            new_dict(map, true)
        }
        Obj::List(l) => new_list(
            l.borrow()
                .iter()
                .map(|x| dict_to_config_dict(x, scope, has_scope))
                .collect(),
        ),
        Obj::Tuple(t) => Obj::Tuple(std::rc::Rc::new(
            t.iter()
                .map(|x| dict_to_config_dict(x, scope, has_scope))
                .collect(),
        )),
        other => eval::leaf_clone(other),
    }
}

/// `Config._merge_a_into_b(a=child, b=base)` (`config.py:1288-1346`), non-inplace on `b`.
pub(crate) fn merge_a_into_b(a: &DictRef, b: &DictRef, file: &Path, prefix: &str) -> R<DictRef> {
    let out = {
        let bb = b.borrow();
        match new_dict(bb.map.clone(), bb.config) {
            Obj::Dict(d) => d,
            _ => unreachable_dict(),
        }
    };
    let entries: Vec<(Key, Obj)> = a
        .borrow()
        .map
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in entries {
        let path = if prefix.is_empty() {
            k.json_string()
        } else {
            format!("{prefix}.{}", k.json_string())
        };
        match &v {
            Obj::Dict(vd) => {
                let existing = out.borrow().map.get(&k).cloned();
                // `k in b and not v.pop('_delete_', False)`: the pop only happens when the base has
                // the key, so `_delete_` leaks into the result otherwise (mmdetection#3285).
                let keep_base = match &existing {
                    Some(_) => !vd
                        .borrow_mut()
                        .map
                        .shift_remove(&skey("_delete_"))
                        .is_some_and(|x| x.truthy()),
                    None => false,
                };
                if keep_base {
                    match existing {
                        Some(Obj::Dict(bd)) => {
                            let m = merge_a_into_b(vd, &bd, file, &path)?;
                            out.borrow_mut().map.insert(k, Obj::Dict(m));
                        }
                        Some(other) => {
                            return Err(ConfigError::MergeType {
                                file: file.to_path_buf(),
                                key: path,
                                child_type: "dict",
                                base_type: other.type_name(),
                            })
                        }
                        None => {}
                    }
                } else {
                    let copy = config_dict_from(&vd.borrow());
                    out.borrow_mut().map.insert(k, copy);
                }
            }
            _ => {
                out.borrow_mut().map.insert(k, v);
            }
        }
    }
    Ok(out)
}

/// `_substitute_predefined_vars`: `{{ fileDirname }}` and friends, as plain text.
fn substitute_predefined_vars(text: &str, abs: &Path) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    let dirname = abs
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let basename = abs
        .file_name()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = match basename.rfind('.') {
        Some(i) if i > 0 => (basename[..i].to_string(), basename[i..].to_string()),
        _ => (basename.clone(), String::new()),
    };
    static RE: OnceLock<Regex> = OnceLock::new();
    let r = re(
        &RE,
        r"\{\{\s*(fileDirname|fileBasenameNoExtension|fileBasename|fileExtname)\s*\}\}",
    );
    r.replace_all(text, |c: &regex::Captures| {
        let v = match &c[1] {
            "fileDirname" => &dirname,
            "fileBasename" => &basename,
            "fileBasenameNoExtension" => &stem,
            _ => &ext,
        };
        v.replace('\\', "/")
    })
    .into_owned()
}

/// `_substitute_env_variables`: `{{$NAME:default}}` (optionally quoted inside the braces).
fn substitute_env_vars(text: &str, abs: &Path) -> R<String> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    static RE: OnceLock<Regex> = OnceLock::new();
    let r = re(&RE, r#"\{\{['"]?\s*\$(\w+)\s*:\s*(\S*?)\s*['"]?\}\}"#);
    let mut err = None;
    let out = r.replace_all(text, |c: &regex::Captures| {
        let name = &c[1];
        let value = std::env::var(name).unwrap_or_else(|_| c[2].to_string());
        if value.is_empty() && err.is_none() {
            err = Some(ConfigError::MissingEnv {
                file: abs.to_path_buf(),
                name: name.to_string(),
            });
        }
        value
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out.into_owned()),
    }
}

/// `_pre_substitute_base_vars`: each `{{_base_.a.b}}` becomes a quoted unique token.
fn pre_substitute_base_vars(text: &str) -> (String, IndexMap<String, String>) {
    let mut vars = IndexMap::new();
    if !text.contains("{{") {
        return (text.to_string(), vars);
    }
    static RE: OnceLock<Regex> = OnceLock::new();
    let r = re(&RE, r"\{\{\s*_base_\.([\w\.]+)\s*\}\}");
    let mut tokens: IndexMap<String, String> = IndexMap::new();
    let out = r.replace_all(text, |c: &regex::Captures| {
        let var = c[1].to_string();
        let n = tokens.len();
        let token = tokens
            .entry(var.clone())
            .or_insert_with(|| format!("_{var}_mmcompat{n:04}"))
            .clone();
        format!("\"{token}\"")
    });
    for (var, token) in tokens {
        vars.insert(token, var);
    }
    (out.into_owned(), vars)
}

/// `_substitute_base_vars`: deep copy with token strings replaced by values of the merged base.
fn substitute_base_vars(
    o: &Obj,
    vars: &IndexMap<String, String>,
    base: &DictRef,
    file: &Path,
) -> R<Obj> {
    let Some(_deep) = eval::Deep::enter() else {
        return Err(ConfigError::NotSerializable {
            file: file.to_path_buf(),
            key: String::new(),
            type_name: "circular or too deeply nested container",
        });
    };
    // A full copy of the file's result: charged per item like the evaluator's copies (twice:
    // each item is visited here and copied by `deep_copy`).
    if !eval::limits::charge(eval::container_len(o).saturating_mul(2)) {
        return Ok(Obj::None);
    }
    Ok(match o {
        Obj::Str(s) if vars.contains_key(s) => {
            let path = &vars[s];
            let mut cur = Obj::Dict(base.clone());
            for step in path.split('.') {
                let next = match &cur {
                    Obj::Dict(d) => d.borrow().map.get(&skey(step)).cloned(),
                    _ => None,
                };
                cur = next.ok_or_else(|| ConfigError::Eval {
                    at: super::error::Location {
                        path: file.to_path_buf(),
                        line: 0,
                        col: 0,
                    },
                    kind: "KeyError",
                    message: format!("'{step}' (in {{{{_base_.{path}}}}})"),
                    snippet: String::new(),
                })?;
            }
            cur
        }
        Obj::Dict(d) => {
            let dd = d.borrow();
            let mut m = IndexMap::new();
            for (k, v) in &dd.map {
                m.insert(k.clone(), substitute_base_vars(v, vars, base, file)?);
            }
            new_dict(m, dd.config)
        }
        Obj::List(l) => new_list(
            l.borrow()
                .iter()
                .map(|x| substitute_base_vars(x, vars, base, file))
                .collect::<R<_>>()?,
        ),
        Obj::Tuple(t) => Obj::Tuple(std::rc::Rc::new(
            t.iter()
                .map(|x| substitute_base_vars(x, vars, base, file))
                .collect::<R<_>>()?,
        )),
        other => deep_copy(other),
    })
}
