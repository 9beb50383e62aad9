//! The lookup order and the error texts documented in the crate docs.

use super::*;

fn libtorch_dir(with_cuda: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("lib")).expect("mkdir");
    std::fs::write(dir.path().join("lib/libtorch_cpu.so"), b"").expect("write");
    if with_cuda {
        std::fs::write(dir.path().join("lib/libtorch_cuda.so"), b"").expect("write");
    }
    dir
}

fn env<'a>(vars: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

#[test]
fn mmcompat_report_wins_over_libtorch() {
    let reported = libtorch_dir(false);
    let other = libtorch_dir(true);
    let lib = reported.path().join("lib");
    let vars = [
        ("DEP_MMCOMPAT_LIBTORCH_LIB", lib.display().to_string()),
        ("LIBTORCH", other.path().display().to_string()),
    ];
    let found = find_libtorch(env(&vars), "linux").expect("found");
    assert_eq!(
        found,
        Libtorch {
            lib_dir: lib,
            source: Source::Mmcompat,
            cuda: false
        }
    );
}

#[test]
fn libtorch_env_uses_its_lib_folder_and_sees_cuda() {
    let dir = libtorch_dir(true);
    let vars = [("LIBTORCH", dir.path().display().to_string())];
    let found = find_libtorch(env(&vars), "linux").expect("found");
    assert_eq!(found.lib_dir, dir.path().join("lib"));
    assert_eq!(found.source, Source::LibtorchEnv);
    assert!(found.cuda);
}

#[test]
fn a_folder_without_libtorch_names_the_library_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vars = [("LIBTORCH", dir.path().display().to_string())];
    let err = find_libtorch(env(&vars), "linux").unwrap_err().to_string();
    let lib = dir.path().join("lib");
    assert!(err.starts_with(&format!(
        "{} (from LIBTORCH) has no libtorch_cpu.so",
        lib.display()
    )));
    assert!(err.contains("Point LIBTORCH at the folder that holds lib/libtorch_cpu.so"));
    // macOS looks for the .dylib.
    let err = find_libtorch(env(&vars), "macos").unwrap_err().to_string();
    assert!(err.contains("has no libtorch_cpu.dylib"), "{err}");
}

#[test]
fn nothing_set_says_how_to_get_libtorch() {
    let err = find_libtorch(|_| None, "linux").unwrap_err();
    assert!(matches!(err, Error::NotConfigured));
    let text = err.to_string();
    assert!(text.contains("Add `mmcompat` to this crate's [dependencies]"));
    assert!(text.contains("LIBTORCH_USE_PYTORCH=1"));
    // An empty value counts as unset (cargo's [env] can set one).
    let vars = [("LIBTORCH", String::new())];
    assert!(matches!(
        find_libtorch(env(&vars), "linux"),
        Err(Error::NotConfigured)
    ));
}

#[test]
fn python_without_torch_is_a_clear_error() {
    let vars = [
        ("LIBTORCH_USE_PYTORCH", "1".to_owned()),
        ("PYTHON", "/nonexistent/python3".to_owned()),
    ];
    let err = find_libtorch(env(&vars), "linux").unwrap_err().to_string();
    assert!(
        err.starts_with(
            "LIBTORCH_USE_PYTORCH is set but `/nonexistent/python3 -c 'import torch'` failed"
        ),
        "{err}"
    );
}

#[test]
fn directives_embed_an_rpath_except_on_windows() {
    let libtorch = Libtorch {
        lib_dir: PathBuf::from("/opt/libtorch/lib"),
        source: Source::Mmcompat,
        cuda: false,
    };
    let linux = directives(&libtorch, "linux");
    assert!(linux.contains(&"cargo:rustc-link-arg=-Wl,-rpath,/opt/libtorch/lib".to_owned()));
    assert!(linux.contains(&"cargo:rerun-if-env-changed=DEP_MMCOMPAT_LIBTORCH_LIB".to_owned()));
    let windows = directives(&libtorch, "windows");
    assert!(windows
        .iter()
        .all(|l| !l.starts_with("cargo:rustc-link-arg")));
    assert!(windows.iter().any(|l| l.contains("add it to PATH")));
}
