//! The core crate's one integration-test binary (no libtorch: builds in seconds).

mod adapters;
mod cfg_options;
mod checkpoint;
mod config;
mod export_flatten;
mod fit;
mod foreign;
mod fuzz_replay;
mod limits;
mod mmdet_spec;
mod model_zoo;
mod razor_mmdet;
mod scoped;
mod ultralytics;
