//! Build-script helper for crates that depend on `mmcompat`: makes their binaries find libtorch at
//! run time, with no `LD_LIBRARY_PATH`.
//!
//! `tch` links libtorch dynamically, and cargo passes torch-sys's rpath only to torch-sys's own
//! targets, so a downstream binary builds but dies at start with `libtorch_cpu.so: cannot open
//! shared object file`. mmcompat's build script reports the libtorch folder tch was built against
//! (`links = "mmcompat"` → `DEP_MMCOMPAT_LIBTORCH_LIB` in the build script of every crate that
//! depends on mmcompat directly); [`link_libtorch`] embeds it as an rpath:
//!
//! ```toml
//! [dependencies]
//! mmcompat = "0.1"
//! [build-dependencies]
//! mmcompat-build = "0.1"
//! ```
//!
//! ```no_run
//! // build.rs
//! fn main() {
//!     mmcompat_build::link_libtorch();
//! }
//! ```
//!
//! Where libtorch comes from is decided when tch builds: `LIBTORCH=/path/to/libtorch` (or the
//! `torch/` folder of a `torch==2.11.0` wheel, CPU or CUDA), or `LIBTORCH_USE_PYTORCH=1` with that
//! torch in the `python3` on PATH. A CUDA libtorch needs nothing more: mmcompat loads
//! `libtorch_cuda.so` from the same folder at start-up. This crate never downloads anything and
//! never links anything itself; it only emits cargo directives.

// The example above is a whole build.rs, `fn main` included.
#![allow(clippy::needless_doctest_main)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the library folder was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `DEP_MMCOMPAT_LIBTORCH_LIB`: exactly what tch linked (the normal case).
    Mmcompat,
    /// `$LIBTORCH/lib` (the calling crate does not depend on mmcompat directly).
    LibtorchEnv,
    /// `LIBTORCH_USE_PYTORCH`: the `lib/` folder of the `torch` package of `python3`.
    Python,
}

/// A libtorch library folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Libtorch {
    /// The folder holding `libtorch_cpu.so` (`.dylib` on macOS, `torch_cpu.dll` on Windows).
    pub lib_dir: PathBuf,
    pub source: Source,
    /// Whether `libtorch_cuda` sits next to it (a CUDA build).
    pub cuda: bool,
}

/// Why libtorch could not be located.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "libtorch not found: DEP_MMCOMPAT_LIBTORCH_LIB, LIBTORCH and LIBTORCH_USE_PYTORCH are all unset. \
         Add `mmcompat` to this crate's [dependencies] (its build script reports the libtorch it \
         was built with), or set LIBTORCH to a libtorch 2.11.0 folder (e.g. the `torch/` folder of \
         a torch==2.11.0 install), or LIBTORCH_USE_PYTORCH=1 with that torch in python3"
    )]
    NotConfigured,
    #[error(
        "{} (from {var}) has no {library}: it is not a libtorch library folder. Point LIBTORCH at \
         the folder that holds lib/{library} (a libtorch 2.11.0 download or the `torch/` folder \
         of a torch==2.11.0 install) and rebuild",
        dir.display()
    )]
    MissingLibrary {
        dir: PathBuf,
        var: &'static str,
        library: String,
    },
    #[error(
        "LIBTORCH_USE_PYTORCH is set but `{python} -c 'import torch'` failed ({message}): \
         install torch==2.11.0 into that python, or set PYTHON to one that has it, or set LIBTORCH instead"
    )]
    Python { python: String, message: String },
}

/// The file every libtorch has, for `target_os` (the `CARGO_CFG_TARGET_OS` of the build).
pub fn core_library(target_os: &str) -> String {
    match target_os {
        "windows" => "torch_cpu.dll".to_owned(),
        "macos" | "ios" => "libtorch_cpu.dylib".to_owned(),
        _ => "libtorch_cpu.so".to_owned(),
    }
}

fn cuda_library(target_os: &str) -> &'static str {
    if target_os == "windows" {
        "torch_cuda.dll"
    } else {
        "libtorch_cuda.so"
    }
}

/// Finds the libtorch library folder from the variables a build script sees (`env`), in order:
/// `DEP_MMCOMPAT_LIBTORCH_LIB`, `LIBTORCH` (its `lib/`), `LIBTORCH_USE_PYTORCH` (asks `python3`,
/// or `$PYTHON`, where torch is). Checks that the folder holds libtorch's core library.
pub fn find_libtorch(
    env: impl Fn(&str) -> Option<String>,
    target_os: &str,
) -> Result<Libtorch, Error> {
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
    let (lib_dir, source, var) = if let Some(dir) = non_empty("DEP_MMCOMPAT_LIBTORCH_LIB") {
        (
            PathBuf::from(dir),
            Source::Mmcompat,
            "DEP_MMCOMPAT_LIBTORCH_LIB",
        )
    } else if let Some(dir) = non_empty("LIBTORCH") {
        (Path::new(&dir).join("lib"), Source::LibtorchEnv, "LIBTORCH")
    } else if non_empty("LIBTORCH_USE_PYTORCH").is_some() {
        let python = non_empty("PYTHON").unwrap_or_else(|| "python3".to_owned());
        (
            python_torch_lib(&python)?,
            Source::Python,
            "LIBTORCH_USE_PYTORCH",
        )
    } else {
        return Err(Error::NotConfigured);
    };
    let library = core_library(target_os);
    if !lib_dir.join(&library).is_file() {
        return Err(Error::MissingLibrary {
            dir: lib_dir,
            var,
            library,
        });
    }
    let cuda = lib_dir.join(cuda_library(target_os)).is_file();
    Ok(Libtorch {
        lib_dir,
        source,
        cuda,
    })
}

/// `torch/lib` of the torch that `python` imports (what torch-sys uses for LIBTORCH_USE_PYTORCH).
fn python_torch_lib(python: &str) -> Result<PathBuf, Error> {
    let fail = |message: String| Error::Python {
        python: python.to_owned(),
        message,
    };
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(
            stderr.lines().last().unwrap_or("no output").to_owned(),
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The cargo directives that make this crate's binaries, tests and examples find `libtorch` at
/// run time: an rpath where the platform has one. Windows has none: the folder must be on `PATH`.
pub fn directives(libtorch: &Libtorch, target_os: &str) -> Vec<String> {
    let dir = libtorch.lib_dir.display();
    let mut out = vec![
        "cargo:rerun-if-env-changed=DEP_MMCOMPAT_LIBTORCH_LIB".to_owned(),
        "cargo:rerun-if-env-changed=LIBTORCH".to_owned(),
        "cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH".to_owned(),
    ];
    if target_os == "windows" {
        out.push(format!(
            "cargo:warning=libtorch is in {dir}: add it to PATH to run (Windows has no rpath)"
        ));
    } else {
        out.push(format!("cargo:rustc-link-arg=-Wl,-rpath,{dir}"));
    }
    out
}

/// Like [`link_libtorch`], returning the error instead of failing the build.
pub fn try_link_libtorch() -> Result<Libtorch, Error> {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let found = find_libtorch(|k| std::env::var(k).ok(), &target_os);
    if found.is_err() {
        // Still rerun when the user fixes the environment.
        for var in [
            "DEP_MMCOMPAT_LIBTORCH_LIB",
            "LIBTORCH",
            "LIBTORCH_USE_PYTORCH",
        ] {
            println!("cargo:rerun-if-env-changed={var}");
        }
    }
    let libtorch = found?;
    for line in directives(&libtorch, &target_os) {
        println!("{line}");
    }
    Ok(libtorch)
}

/// Call from `build.rs`: embeds the libtorch folder mmcompat was built with as an rpath of this
/// crate's binaries, tests and examples. Fails the build with the reason and the fix when no
/// libtorch can be found.
pub fn link_libtorch() -> Libtorch {
    match try_link_libtorch() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests;
