//! Detection heads of RTMDet (mmyolo and mmdet flavours).

pub mod rtmdet_mmdet;
pub mod rtmdet_mmyolo;
pub mod sep_bn;
pub mod yolov8_head;
