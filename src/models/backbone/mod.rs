//! Backbones.

pub mod cspnext;
