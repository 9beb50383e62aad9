//! Embeds the libtorch folder mmcompat was built with as this crate's rpath, so the binary runs
//! without LD_LIBRARY_PATH (see the mmcompat-build crate).
fn main() {
    mmcompat_build::link_libtorch();
}
