//! `mmcompat env`: what this installation runs on, in the spirit of
//! `mmdet/utils/collect_env.py: collect_env` (and `mmengine/utils/dl_utils/collect_env.py`):
//! versions, the libtorch and its build, CUDA, the config roots with where each came from, and
//! the adapters. Text (one `key: value` line each, as collect_env prints) or `--json`.
//! It only reads: nothing is downloaded, written or imported (the python3 asked for roots runs
//! `importlib.util.find_spec` only).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use mmcompat_registry::config::roots::{self, ConfigRoots, FETCHED_PACKAGES};
use serde_json::{json, Value};

use super::AdapterArgs;

/// Collects everything as one JSON object (the `--json` schema; the text is rendered from it).
pub fn collect(roots: &ConfigRoots, adapters: &AdapterArgs) -> Result<Value> {
    let lib_dir = PathBuf::from(mmcompat::device::LIBTORCH_LIB);
    let torch_dir = lib_dir.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut build = read_version_py(&torch_dir.join("version.py"));
    // A standalone libtorch (the zip from pytorch.org) has `build-version` instead.
    if let Ok(v) = std::fs::read_to_string(torch_dir.join("build-version")) {
        build.entry("__version__".into()).or_insert(json!(v.trim()));
    }
    let backend = match mmcompat::device::init_cuda_backend() {
        mmcompat::device::CudaBackend::Loaded(p) => {
            json!({"state": "loaded", "path": p.display().to_string()})
        }
        mmcompat::device::CudaBackend::Absent => {
            json!({"state": "absent", "why": "no libtorch_cuda.so: a CPU-only libtorch"})
        }
        mmcompat::device::CudaBackend::Failed(why) => json!({"state": "failed", "why": why}),
    };
    let cuda_available = tch::Cuda::is_available();
    let mut packages: Vec<String> = FETCHED_PACKAGES.iter().map(|p| p.to_string()).collect();
    for p in roots.packages() {
        if !packages.iter().any(|q| q == p) {
            packages.push(p.to_string());
        }
    }
    let mut config_roots = serde_json::Map::new();
    for pkg in &packages {
        let found = roots.found(pkg);
        let v = if found.is_empty() {
            json!({"roots": [], "tried": roots.tried(pkg), "fix": ConfigRoots::how_to_fix(pkg)})
        } else {
            let list: Vec<Value> = found
                .iter()
                .map(
                    |r| json!({"dir": r.dir.display().to_string(), "source": r.source.to_string()}),
                )
                .collect();
            json!({ "roots": list })
        };
        config_roots.insert(pkg.clone(), v);
    }
    let (interpreter, py) = roots::python_roots();
    let python = match py {
        Ok(map) => json!({
            "interpreter": interpreter,
            "packages": map.iter().map(|(k, v)| (k.clone(), json!(v.display().to_string()))).collect::<serde_json::Map<_, _>>(),
        }),
        Err(why) => json!({"interpreter": interpreter, "error": why}),
    };
    let listing = adapters.adapter_set()?.listing();
    let adapter_dir = mmcompat_registry::adapter::user_adapter_dir();
    Ok(json!({
        "mmcompat": env!("CARGO_PKG_VERSION"),
        "platform": format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        "libtorch": {
            "path": torch_dir.display().to_string(),
            "lib": lib_dir.display().to_string(),
            "version": build.get("__version__"),
            "git_version": build.get("git_version"),
            "cuda": build.get("cuda"),
            "build_config": torch_dir.join("version.py").is_file().then(|| torch_dir.join("version.py").display().to_string()),
            "cuda_backend": backend,
            "threads": tch::get_num_threads(),
            "openmp": tch::utils::has_openmp(),
            "mkl": tch::utils::has_mkl(),
            "mkldnn": tch::utils::has_mkldnn(),
        },
        "cuda": {
            "available": cuda_available,
            "device_count": if cuda_available { tch::Cuda::device_count() } else { 0 },
            "cudnn_available": cuda_available && tch::Cuda::cudnn_is_available(),
        },
        "config_roots": config_roots,
        "python": python,
        "adapters": listing.iter().map(|a| json!({"name": a.name, "scope": a.scope, "source": a.source})).collect::<Vec<_>>(),
        "adapter_dir": adapter_dir.as_ref().map(|d| json!({"path": d.display().to_string(), "exists": d.is_dir()})),
        "weights_cache": mmcompat::download::hub_checkpoints_dir().map(|d| d.display().to_string()),
    }))
}

/// `torch/version.py` of the wheel libtorch comes from: `name = 'value'` lines (no execution).
fn read_version_py(path: &Path) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    for line in text.lines() {
        let Some((lhs, rhs)) = line.split_once('=') else {
            continue;
        };
        let key = lhs.split(':').next().unwrap_or_default().trim();
        let rhs = rhs.trim();
        let value = if let Some(s) = rhs.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            json!(s)
        } else if rhs == "None" {
            Value::Null
        } else {
            continue;
        };
        out.insert(key.to_string(), value);
    }
    out
}

/// Prints the text form: `key: value` lines, then the roots and adapters, one per line.
pub fn render_text(v: &Value, out: &mut dyn Write) -> Result<()> {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "unknown".into(),
        other => other.to_string(),
    };
    let lt = &v["libtorch"];
    writeln!(out, "mmcompat: {}", s(&v["mmcompat"]))?;
    writeln!(out, "Platform: {}", s(&v["platform"]))?;
    writeln!(out, "libtorch: {}", s(&lt["path"]))?;
    writeln!(
        out,
        "libtorch version: {} (git {}, built with CUDA {})",
        s(&lt["version"]),
        s(&lt["git_version"]),
        match &lt["cuda"] {
            Value::Null => "none".to_string(),
            c => s(c),
        }
    )?;
    let backend = &lt["cuda_backend"];
    writeln!(
        out,
        "libtorch CUDA backend: {}{}",
        s(&backend["state"]),
        backend
            .get("path")
            .or_else(|| backend.get("why"))
            .map(|p| format!(" ({})", s(p)))
            .unwrap_or_default()
    )?;
    writeln!(
        out,
        "CPU threads: {} (OpenMP {}, MKL {}, MKL-DNN {})",
        lt["threads"], lt["openmp"], lt["mkl"], lt["mkldnn"]
    )?;
    writeln!(out, "CUDA available: {}", v["cuda"]["available"])?;
    writeln!(out, "GPU count: {}", v["cuda"]["device_count"])?;
    writeln!(out, "cuDNN available: {}", v["cuda"]["cudnn_available"])?;
    writeln!(out, "Weights cache: {}", s(&v["weights_cache"]))?;
    writeln!(out, "Config roots:")?;
    if let Some(map) = v["config_roots"].as_object() {
        for (pkg, r) in map {
            match r["roots"].as_array() {
                Some(list) if !list.is_empty() => {
                    for root in list {
                        writeln!(out, "  {pkg}: {} ({})", s(&root["dir"]), s(&root["source"]))?;
                    }
                }
                _ => writeln!(out, "  {pkg}: none; to fix: {}", s(&r["fix"]))?,
            }
        }
    }
    let py = &v["python"];
    match py.get("packages").and_then(Value::as_object) {
        Some(p) if !p.is_empty() => writeln!(
            out,
            "Python ({}): {}",
            s(&py["interpreter"]),
            p.iter()
                .map(|(k, d)| format!("{k} at {}", s(d)))
                .collect::<Vec<_>>()
                .join(", ")
        )?,
        Some(_) => writeln!(
            out,
            "Python ({}): no OpenMMLab package",
            s(&py["interpreter"])
        )?,
        None => writeln!(
            out,
            "Python ({}): {}",
            s(&py["interpreter"]),
            s(&py["error"])
        )?,
    }
    writeln!(out, "Adapters:")?;
    for a in v["adapters"].as_array().into_iter().flatten() {
        writeln!(out, "  {}: {}", s(&a["name"]), s(&a["source"]))?;
    }
    match &v["adapter_dir"] {
        Value::Null => writeln!(out, "Adapter folder: none (no XDG_CONFIG_HOME or HOME)")?,
        d => writeln!(
            out,
            "Adapter folder: {} ({})",
            s(&d["path"]),
            if d["exists"] == Value::Bool(true) {
                "present"
            } else {
                "absent"
            }
        )?,
    }
    Ok(())
}
