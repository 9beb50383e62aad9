//! mmcompat core: everything a user can do without running a model.
//!
//! Data flows one way: config file → [`config`] tree → [`scoped`] registries (scope resolution);
//! checkpoint → [`checkpoint`] (safe reader, no code execution) → [`adapter`] plans.
//! This crate never links libtorch and never decodes images.

pub mod adapter;
pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod dtype;
pub mod plugin;
pub mod scoped;
pub mod spec;
pub use inventory;

pub use dtype::DType;
