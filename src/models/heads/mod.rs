//! Dense heads (one file per upstream head) and what their forwards share: the per-level loop of
//! mmyolo's `HeadModule.forward` (`multi_apply(self.forward_single, x, ...)`) and the DFL integral.

pub mod atss_head;
pub mod fcos_head;
pub mod gfl_head;
pub mod ppyoloe_head;
pub mod reppoints_head;
pub mod retina_head;
pub mod rpn_head;
pub mod rtmdet_mmdet;
pub mod rtmdet_mmyolo;
pub mod sep_bn;
pub mod standard_roi_head;
pub mod two_stage;
pub mod yolov5_head;
pub mod yolov6_head;
pub mod yolov7_head;
pub mod yolov8_head;
pub mod yolox_head;

use tch::{Kind, TchError, Tensor};

/// `multi_apply(forward_single, feats)`: level `i`'s `(cls_score, bbox_pred)` from `f(i, x)`, the
/// levels' count checked against the head's (`name` for the message).
pub fn per_level(
    name: &str,
    levels: usize,
    feats: &[Tensor],
    f: impl Fn(usize, &Tensor) -> Result<(Tensor, Tensor), TchError>,
) -> Result<(Vec<Tensor>, Vec<Tensor>), TchError> {
    if feats.len() != levels {
        return Err(TchError::Shape(format!(
            "{name}: {} feature levels for {levels} featmap_strides",
            feats.len()
        )));
    }
    let mut cls = Vec::with_capacity(levels);
    let mut reg = Vec::with_capacity(levels);
    for (i, x) in feats.iter().enumerate() {
        let (c, r) = f(i, x)?;
        cls.push(c);
        reg.push(r);
    }
    Ok((cls, reg))
}

/// The distribution-focal-loss integral of YOLOv8/YOLOv6/PPYOLOE box branches
/// (`mmyolo/models/dense_heads/yolov8_head.py: YOLOv8HeadModule.forward_single`): `dist` is
/// `N × 4·bins × H × W` (channel = side·bins + bin); the result `N × 4 × H × W` is the expected
/// distance `softmax(bins) · arange(bins)` per side, in stride units. `proj` is a non-persistent
/// buffer upstream, moved and cast with the model: hence the input's kind and device here.
pub fn dfl_integral(dist: &Tensor, bins: i64) -> Result<Tensor, TchError> {
    let (b, _, h, w) = dist.size4()?;
    let proj = Tensor::f_arange(bins, (Kind::Float, dist.device()))?.f_to_kind(dist.kind())?;
    dist.f_reshape([-1, 4, bins, h * w])?
        .f_permute([0, 3, 1, 2])?
        .f_softmax(3, None::<Kind>)?
        .f_matmul(&proj.f_view([-1, 1])?)?
        .f_squeeze_dim(-1)?
        .f_transpose(1, 2)?
        .f_reshape([b, -1, h, w])
}
