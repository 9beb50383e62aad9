//! The default values of upstream keyword arguments that several components share, named after
//! the value (serde's `default = "..."` needs a function): `d::f_one` is `1.0`, `d::bn_yolo` is
//! mmyolo's usual `dict(type='BN', momentum=0.03, eps=0.001)`.

use crate::spec::layers::{ActCfg, NormCfg};

pub fn f_one() -> f64 {
    1.0
}
pub fn f_half() -> f64 {
    0.5
}
pub fn i_one() -> i64 {
    1
}
pub fn i_three() -> i64 {
    3
}
pub fn minus_one() -> i64 {
    -1
}
pub fn yes() -> bool {
    true
}
/// `arch='P5'` of the YOLO backbones.
pub fn arch_p5() -> String {
    "P5".into()
}
/// `out_indices=(2, 3, 4)` of the YOLO backbones.
pub fn out_indices_234() -> Vec<i64> {
    vec![2, 3, 4]
}
/// `featmap_strides=[8, 16, 32]` of the heads.
pub fn strides_8_16_32() -> Vec<i64> {
    vec![8, 16, 32]
}
/// `dict(type='BN')`: PyTorch's defaults (eps 1e-5, momentum 0.1).
pub fn bn_torch() -> NormCfg {
    NormCfg::bn(1e-5, 0.1)
}
/// `dict(type='BN', momentum=0.03, eps=0.001)`.
pub fn bn_yolo() -> NormCfg {
    NormCfg::bn(1e-3, 0.03)
}
/// `dict(type='SiLU')`.
pub fn silu() -> ActCfg {
    ActCfg::named("SiLU")
}
/// `dict(type='SiLU', inplace=True)`.
pub fn silu_inplace() -> ActCfg {
    let mut act = ActCfg::named("SiLU");
    act.inplace = Some(true);
    act
}
