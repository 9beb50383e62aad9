//! CI replay of the fuzzing corpora (FUZZING.md), on the stable toolchain: every file of
//! `fuzz/corpus/<target>/` (the minimised corpus) and `fuzz/regressions/<target>/` (each
//! finding) goes through the very entry function the libFuzzer target calls, compiled in from
//! fuzz/src/entries.rs. A panic names the target and the file.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/entries.rs"]
mod entries;

type Entry = fn(&[u8]);

const TARGETS: &[(&str, Entry)] = &[
    ("checkpoint_zip", entries::checkpoint_zip),
    ("checkpoint_legacy", entries::checkpoint_legacy),
    ("safetensors", entries::safetensors),
    ("pickle", entries::pickle),
    ("config_py", entries::config_py),
    ("config_toml", entries::config_toml),
    ("adapter_toml", entries::adapter_toml),
    ("module_tree", entries::module_tree),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file());
    v.sort();
    v
}

fn replay(kind: &str, min_files: usize) {
    let mut total = 0;
    for (target, entry) in TARGETS {
        let dir = fuzz_dir().join(kind).join(target);
        let inputs = files(&dir);
        for f in &inputs {
            let data = std::fs::read(f).expect("read corpus file");
            let r = std::panic::catch_unwind(|| entry(&data));
            assert!(r.is_ok(), "fuzz target {target} panics on {}", f.display());
        }
        total += inputs.len();
    }
    assert!(total >= min_files, "only {total} files under fuzz/{kind}/");
}

#[test]
fn fuzz_corpora_replay() {
    // Every target has a committed corpus (at least its seeds).
    for (target, _) in TARGETS {
        let n = files(&fuzz_dir().join("corpus").join(target)).len();
        assert!(n > 0, "fuzz/corpus/{target} is empty: see FUZZING.md");
    }
    replay("corpus", TARGETS.len());
    replay("regressions", 0);
}

/// Finding (review while fuzzing `config_py`): a list method whose argument is the list itself
/// (`a.extend(a)`, `e.count(e)`) borrowed the list twice and panicked (reported as "internal
/// error in the config loader"). Expected values from CPython 3.11 on the same file
/// (fuzz/regressions/config_py/list_method_on_itself.py).
#[test]
fn list_methods_on_the_list_itself_match_python() {
    use mmcompat_registry::config::{Config, ConfigRoots};
    let path = fuzz_dir().join("regressions/config_py/list_method_on_itself.py");
    let cfg = Config::from_file(&path, &ConfigRoots::new()).expect("loads");
    let want = serde_json::json!({
        "a": [1, 1], "b": [2, 2], "d": {"x": 1}, "e": [1], "c": 0, "i": 1
    });
    assert_eq!(cfg.to_json(), want);
}
