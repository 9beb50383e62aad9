//! mmyolo's `YOLOv6CSPBep` (`mmyolo/models/backbones/efficient_rep.py: YOLOv6CSPBep`), the
//! YOLOv6 m/l backbone (v2 and 3.0): `YOLOv6EfficientRep`'s stem and stages
//! (`yolov6_efficient_rep.rs: build_rep_backbone`) with a `BepC3StageBlock` after each stage's
//! stride-2 block instead of a `RepStageBlock`: keys `backbone.stage{i}.0.1.{conv1,conv2,conv3}.*`
//! (1×1 ConvModules with the backbone's norm and act) and `….block.{conv1,block.j}.{alpha,conv1,
//! conv2}.*` (BottleReps of `block_cfg` blocks).

use super::base::{Layer, StagedBackbone};
use super::yolov6_efficient_rep::{build_rep_backbone, RepBackboneArgs};
use crate::models::cfg::{join, Act, NormCfg};
use crate::models::layers::yolov6_bricks::BepC3StageBlock;
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov6_csp_bep::YoloV6CspBepCfg;

/// Builds the backbone of `spec` (its stages as `StagedBackbone` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<StagedBackbone, ModelError> {
    let cfg: &YoloV6CspBepCfg = spec.args()?;
    let path = spec.path.as_str();
    let args = RepBackboneArgs {
        type_name: spec.type_name,
        path,
        arch: &cfg.arch,
        plugins: &cfg.plugins,
        deepen_factor: cfg.deepen_factor,
        widen_factor: cfg.widen_factor,
        input_channels: cfg.input_channels,
        out_indices: &cfg.out_indices,
        frozen_stages: cfg.frozen_stages,
        // Upstream's YOLOv6CSPBep.__init__ stores `use_cspsppf` but does not pass it on to
        // YOLOv6EfficientRep.__init__, which resets `self.use_cspsppf` to its default False
        // before the stages are built: every CSPBep (the 3.0 m/l configs' too) builds a plain
        // SPPFBottleneck (checked against the real models' keys in tests/yolov6.rs).
        use_cspsppf: false,
        norm_cfg: &cfg.norm_cfg,
        act_cfg: &cfg.act_cfg,
        block: &cfg.block,
    };
    let bpath = join(path, "block_cfg");
    // YOLOv6CSPBep.build_stage_layer: BepC3StageBlock(out, out, num_blocks, hidden_ratio,
    // block_cfg, norm_cfg, act_cfg).
    let stage_block =
        |c: &Ctx, ch: i64, n: i64, norm: &NormCfg, act: Act| -> Result<_, ModelError> {
            let geometry = (ch, ch, n, cfg.hidden_ratio);
            let bep = BepC3StageBlock::new(c, geometry, (&cfg.block, &bpath), norm, act)?;
            Ok(Box::new(bep) as Box<dyn Layer>)
        };
    build_rep_backbone(&args, ctx, &stage_block)
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv6CSPBep", Backbone: |s, c| Ok(Box::new(build(s, c)?)));
