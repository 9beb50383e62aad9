//! The function each fuzz target calls with libFuzzer's input. The same file is compiled into
//! the stable test binary `registry/tests/core.rs` (`fuzz_replay`, through `#[path]`), which
//! feeds it every file of `fuzz/corpus/<target>/` on each CI run: what the fuzzer found stays
//! fixed without a nightly toolchain. Each function must return normally for every input; a
//! panic, an abort, a hang or an oversized allocation is a finding.
//!
//! The config targets run with tighter [`Limits`] than the defaults (a tenth of the steps and
//! of the sequence length) so that one execution stays in milliseconds; the limits themselves
//! are tested at their defaults by registry/tests/limits.rs.

use std::path::Path;
use std::sync::OnceLock;

use mmcompat_registry::adapter::declarative::TomlAdapter;
use mmcompat_registry::adapter::{AdapterOptions, CheckpointAdapter, CheckpointView};
use mmcompat_registry::checkpoint::inspect::InspectReport;
use mmcompat_registry::checkpoint::module_tree;
use mmcompat_registry::checkpoint::pickle::{unpickle, Limits as PickleLimits, PidMode};
use mmcompat_registry::checkpoint::Checkpoint;
use mmcompat_registry::config::{Config, ConfigError, ConfigRoots, Limits};

/// Opens the bytes as a checkpoint named `name` and walks everything a user can ask of it.
fn checkpoint(name: &str, data: &[u8]) {
    if let Ok(ck) = Checkpoint::from_bytes(name, data) {
        let _ = ck.meta_json();
        let _ = ck.top_level_keys();
        let _ = InspectReport::from_checkpoint(&ck, name).to_json();
        for (_, t) in ck.all_tensors() {
            let _ = ck.tensor_bytes(t);
        }
        let _ = CheckpointView::from_checkpoint(&ck);
    }
}

/// A torch zip checkpoint (`torch.save` since 1.6): the zip reader, then the pickle in it.
pub fn checkpoint_zip(data: &[u8]) {
    checkpoint("fuzz.pth", data)
}

/// The legacy container (`_use_new_zipfile_serialization=False`): magic, protocol and sys-info
/// pickles, the object pickle, then raw storages. Same entry as the zip target (the format is
/// sniffed from the content); separate seeds and corpus.
pub fn checkpoint_legacy(data: &[u8]) {
    checkpoint("fuzz.pt", data)
}

/// A `.safetensors` file: the JSON header and the tensor extents.
pub fn safetensors(data: &[u8]) {
    checkpoint("fuzz.safetensors", data)
}

/// The pickle virtual machine alone; the first byte picks the persistent-id mode.
pub fn pickle(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let mode = match mode % 3 {
        0 => PidMode::Forbidden,
        1 => PidMode::Zip,
        _ => PidMode::Legacy,
    };
    let limits = PickleLimits::for_input(body.len(), body.len() as u64);
    if let Ok(u) = unpickle(body, 0, mode, &limits) {
        let _ = u.value.to_json();
        let _ = u.value.tensor_leaves();
    }
}

/// The object pickle of a whole pickled `nn.Module` (`data.pkl` of an Ultralytics, YOLOv5,
/// YOLOv6 or YOLOv7 `.pt`; zip persistent ids), then the module-tree walker
/// (`checkpoint/module_tree.rs`) on the root and on every top-level value that looks like a
/// module, as `Checkpoint` and `mmcompat inspect` walk them.
pub fn module_tree(data: &[u8]) {
    let limits = PickleLimits::for_input(data.len(), data.len() as u64);
    let Ok(u) = unpickle(data, 0, PidMode::Zip, &limits) else {
        return;
    };
    let walk = |v: &mmcompat_registry::checkpoint::Value| {
        if module_tree::is_module(v) {
            if let Ok(tree) = module_tree::walk(v) {
                let _ = tree.class();
                let _ = tree.class_counts();
                let _ = tree.state_dict.keys().map(String::len).sum::<usize>();
            }
        }
    };
    walk(&u.value);
    if let mmcompat_registry::checkpoint::Value::Dict(d) = &u.value {
        for (_, v) in &d.items {
            walk(v);
        }
    }
}

fn fuzz_limits() -> Limits {
    Limits {
        steps: 500_000,
        seq_len: 100_000,
        ..Limits::default()
    }
}

/// A folder with the base files of the fixture cases (`./base_a.py`, `sub/base_b.py`, ...), so
/// that `_base_` inheritance, merging and `{{_base_.x}}` are reached from the seeds.
fn bases_dir() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mmcompat-fuzz-bases-{}", std::process::id()));
        let files = [
            (
                "base_a.py",
                include_str!("../../tests/fixtures/config-corpus/cases/base_a.py"),
            ),
            (
                "base_c.py",
                include_str!("../../tests/fixtures/config-corpus/cases/base_c.py"),
            ),
            (
                "sub/base_b.py",
                include_str!("../../tests/fixtures/config-corpus/cases/sub/base_b.py"),
            ),
            (
                "equivalent.toml",
                include_str!("../../tests/fixtures/config-corpus/cases/equivalent.toml"),
            ),
        ];
        for (name, text) in files {
            let p = dir.join(name);
            if let Some(parent) = p.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(p, text);
        }
        dir
    })
}

/// A config's text evaluated as `cfg.<ext>` next to the fixture bases.
fn config(ext: &str, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = bases_dir().join(format!("cfg.{ext}"));
    match Config::from_text(&path, text, &ConfigRoots::new(), &fuzz_limits()) {
        Ok(cfg) => {
            let _ = cfg.to_json();
            // What `mmcompat config --toml` writes must load back.
            if let Ok(toml) = cfg.to_toml() {
                let back = path.with_extension("toml");
                no_loader_panic(Config::from_text(
                    &back,
                    &toml,
                    &ConfigRoots::new(),
                    &fuzz_limits(),
                ));
            }
        }
        other => no_loader_panic(other),
    }
}

/// The loader runs on its own thread and turns a panic there into `LoaderPanicked`; with
/// panic=unwind (the stable replay) nothing would abort, so that error is a finding here.
fn no_loader_panic<T>(r: Result<T, ConfigError>) {
    if let Err(e @ ConfigError::LoaderPanicked { .. }) = r {
        panic!("{e}");
    }
}

/// A `.py` config: the Python parser and the evaluator.
pub fn config_py(data: &[u8]) {
    config("py", data)
}

/// A `.toml` config (the lossless codec of None and tuples).
pub fn config_toml(data: &[u8]) {
    config("toml", data)
}

/// A declarative adapter file, then its detection and plan on a real checkpoint's key listing
/// (the distillation fixture: teacher, student, EMA sections).
pub fn adapter_toml(data: &[u8]) {
    static VIEW: OnceLock<CheckpointView> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(adapter) = TomlAdapter::from_str_at(text, Path::new("fuzz.toml")) else {
        return;
    };
    let view = VIEW.get_or_init(|| {
        CheckpointView::from_keys_json_str(include_str!(
            "../../tests/fixtures/checkpoints/rtmdet_nano_mmyolo.keys.json"
        ))
        .unwrap_or_default()
    });
    let _ = adapter.detect(view, None);
    if let Ok(plan) = adapter.plan(view, &AdapterOptions::default()) {
        let _ = plan.ops.iter().map(|op| op.describe()).collect::<Vec<_>>();
        if let Ok(mapping) = plan.validate().and_then(|()| plan.resolve(view)) {
            let _ = mapping.key_listing();
        }
    }
}
