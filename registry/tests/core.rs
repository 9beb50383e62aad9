//! The core crate's one integration-test binary (no libtorch: builds in seconds).

mod adapters;
mod checkpoint;
mod config;
mod fit;
mod scoped;
