//! The extension finds libtorch at run time in the `torch` package installed next to it
//! (`site-packages/mmcompat/_mmcompat.abi3.so` → `site-packages/torch/lib`), never in the folder
//! it was built against: the wheel must run on machines without this checkout. Only the cdylib
//! gets the rpath; `mmcompat/__init__.py` also loads that libtorch before importing us, which
//! covers a torch installed elsewhere on `sys.path`.
fn main() {
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
}
