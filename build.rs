//! Embeds libtorch's library folder as an rpath so `cargo run`, `cargo test` and the built binary run
//! with nothing exported (`[env] LD_LIBRARY_PATH` cannot work: cargo sets that variable itself).
//! torch-sys passes its rpath only to its own targets, hence this script in every crate linking tch.
//!
//! The folder is also reported to crates that depend on mmcompat (`links = "mmcompat"` turns
//! `cargo:libtorch_lib=DIR` into their `DEP_MMCOMPAT_LIBTORCH_LIB`): their build script gets the
//! same rpath from `mmcompat_build::link_libtorch()` (build-support/).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // Known at run time so that CUDA support (libtorch_cuda.so, dropped by --as-needed) can be
        // dlopen'ed from the same folder; see src/device.rs.
        println!("cargo:rustc-env=MMCOMPAT_LIBTORCH_LIB={lib}");
        println!("cargo:libtorch_lib={lib}");
    } else {
        println!("cargo:rustc-env=MMCOMPAT_LIBTORCH_LIB=");
    }
}
