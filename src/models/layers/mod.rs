//! Building blocks shared by backbones, necks and heads (mmcv/mmdet/mmyolo bricks).

pub mod conv_module;
pub mod csp_layer;
pub mod spp;
pub mod yolo_bricks;
