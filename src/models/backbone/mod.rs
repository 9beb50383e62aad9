//! Backbones.

pub mod cspnext;
pub mod yolov8_csp_darknet;
