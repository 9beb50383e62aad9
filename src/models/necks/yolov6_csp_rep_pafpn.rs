//! mmyolo's `YOLOv6CSPRepPAFPN` (v2 m/l) and `YOLOv6CSPRepBiPAFPN` (3.0 m/l)
//! (`mmyolo/models/necks/yolov6_pafpn.py`): `YOLOv6RepPAFPN` / `YOLOv6RepBiPAFPN` with
//! `BepC3StageBlock(cin, cout, num_blocks, hidden_ratio, block_cfg, norm_cfg, block_act_cfg)`
//! as top-down and bottom-up blocks (`build_top_down_layer` / `build_bottom_up_layer`); the
//! rest is built by `yolov6_rep_pafpn.rs: build_rep_pafpn`.

use super::yolov6_rep_pafpn::{build_rep_pafpn, RepPafpnArgs};
use crate::models::cfg::join;
use crate::models::component::Neck;
use crate::models::layers::yolov6_bricks::BepC3StageBlock;
use crate::models::layers::Layer;
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov6_csp_rep_pafpn::YoloV6CspRepPafpnCfg;

/// Builds the neck of `spec` (`YOLOv6CSPRepPAFPN` or `YOLOv6CSPRepBiPAFPN`).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Box<dyn Neck>, ModelError> {
    let cfg: &YoloV6CspRepPafpnCfg = spec.args()?;
    let path = spec.path.as_str();
    let args = RepPafpnArgs {
        type_name: spec.type_name,
        path,
        in_channels: &cfg.in_channels,
        out_channels: &cfg.out_channels,
        deepen_factor: cfg.deepen_factor,
        widen_factor: cfg.widen_factor,
        num_csp_blocks: cfg.num_csp_blocks,
        norm_cfg: &cfg.norm_cfg,
        act_cfg: &cfg.act_cfg,
        bi: spec.type_name == "YOLOv6CSPRepBiPAFPN",
    };
    let block_act = cfg.block_act_cfg.to_act(&join(path, "block_act_cfg"))?;
    let bpath = join(path, "block_cfg");
    let stage = |c: &Ctx, cin: i64, cout: i64, n: i64| -> Result<_, ModelError> {
        let geometry = (cin, cout, n, cfg.hidden_ratio);
        let bep =
            BepC3StageBlock::new(c, geometry, (&cfg.block, &bpath), &cfg.norm_cfg, block_act)?;
        Ok(Box::new(bep) as Box<dyn Layer>)
    };
    build_rep_pafpn(&args, ctx, &stage)
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv6CSPRepPAFPN", Neck: build);
crate::register_tch_component!(scope: "mmyolo", name: "YOLOv6CSPRepBiPAFPN", Neck: build);
