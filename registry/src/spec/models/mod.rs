//! Typed arguments of every model type mmcompat builds, one file per upstream component (the
//! struct mirrors the Python `__init__` keywords: unknown keys are rejected as Python would), and
//! their declarations to the scoped registries. Adding a family = adding its files here and their
//! `register_component!` lines; nothing else in the spec stage changes.

pub mod cspnext;
pub mod cspnext_pafpn_mmdet;
pub mod cspnext_pafpn_mmyolo;
pub mod defaults;
pub mod detector;
pub mod prior_generator;
pub mod rtmdet_head_mmdet;
pub mod rtmdet_head_mmyolo;
pub mod yolov8_csp_darknet;
pub mod yolov8_head;
pub mod yolov8_pafpn;
