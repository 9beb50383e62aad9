//! Backbones.

pub mod base;
pub mod cspnext;
pub mod ppyoloe_csp_resnet;
pub mod resnet;
pub mod yolov5_csp_darknet;
pub mod yolov6_csp_bep;
pub mod yolov6_efficient_rep;
pub mod yolov7_backbone;
pub mod yolov8_csp_darknet;
pub mod yolox_csp_darknet;
