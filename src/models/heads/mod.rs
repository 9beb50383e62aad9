//! Detection heads of RTMDet (mmyolo and mmdet flavours).

pub mod rtmdet_mmdet;
pub mod rtmdet_mmyolo;
pub mod sep_bn;
pub mod yolov5_head;
pub mod yolov6_head;
pub mod yolov8_head;
