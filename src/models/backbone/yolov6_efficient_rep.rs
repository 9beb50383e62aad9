//! mmyolo's `YOLOv6EfficientRep` (`mmyolo/models/backbones/efficient_rep.py: YOLOv6EfficientRep`
//! on `mmyolo/models/backbones/base_backbone.py: BaseBackbone`), the YOLOv6 n/t/s backbone, and
//! the stem/stage construction its subclass `YOLOv6CSPBep` shares (`yolov6_csp_bep.rs`).
//! Module tree: `stem` (a block 3×3 stride 2), `stage{i}.0` = `Sequential(block stride 2,
//! RepStageBlock)`, `stage4.1` (`SPPFBottleneck`, kernel 5, or `CSPSPPFBottleneck` with
//! `use_cspsppf=True` (3.0), with the backbone's norm and act). Channels `int(c * widen_factor)`
//! (floor, not `make_divisible`), blocks `make_round(n, deepen_factor)`. The blocks
//! (`RepVGGBlock` or `ConvWrapper`) take `block_cfg` alone: upstream builds them with
//! `MODELS.build(block_cfg)`, so the backbone's `norm_cfg`/`act_cfg` never reach them.

use super::base::{check_indices, refuse_plugins, Layer, StagedBackbone};
use crate::models::cfg::{join, py_int, Act, ActCfg, NormCfg};
use crate::models::layers::rep_vgg::RepStageBlock;
use crate::models::layers::spp::{Pooling, SppBottleneck};
use crate::models::layers::yolo_bricks::make_round;
use crate::models::layers::yolov6_bricks::{BlockPlace, CspSppfBottleneck, YoloV6Block};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::yolov6_block::YoloV6BlockCfg;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov6_efficient_rep::YoloV6EfficientRepCfg;

/// One row of `arch_settings`: in, out, num_blocks, use_spp.
type StageSetting = (f64, f64, f64, bool);

/// `YOLOv6EfficientRep.arch_settings` (P5 only upstream).
fn arch_settings(arch: &str, path: &str) -> Result<Vec<StageSetting>, ModelError> {
    match arch {
        "P5" => Ok(vec![
            (64.0, 128.0, 6.0, false),
            (128.0, 256.0, 12.0, false),
            (256.0, 512.0, 18.0, false),
            (512.0, 1024.0, 6.0, true),
        ]),
        other => Err(ModelError::Invalid {
            path: join(path, "arch"),
            message: format!(
                "arch `{other}` is not P5 (KeyError in YOLOv6EfficientRep.arch_settings)"
            ),
        }),
    }
}

/// What `YOLOv6EfficientRep` and its subclass `YOLOv6CSPBep` share: `BaseBackbone`'s
/// arguments, `use_cspsppf`, the norm/act of the SPPF (and of CSPBep's BepC3 convs), the blocks.
pub struct RepBackboneArgs<'a> {
    pub type_name: &'a str,
    pub path: &'a str,
    pub arch: &'a str,
    pub plugins: &'a Option<serde_json::Value>,
    pub deepen_factor: f64,
    pub widen_factor: f64,
    pub input_channels: i64,
    pub out_indices: &'a [i64],
    pub frozen_stages: i64,
    pub use_cspsppf: bool,
    pub norm_cfg: &'a NormCfg,
    pub act_cfg: &'a ActCfg,
    pub block: &'a YoloV6BlockCfg,
}

type LayerResult = Result<Box<dyn Layer>, ModelError>;

/// A stage's second layer (after the stride-2 block): `(ctx, channels, num_blocks, norm, act)`
/// → `RepStageBlock` (EfficientRep) or `BepC3StageBlock` (CSPBep).
pub type StageBlockFn<'f> =
    &'f dyn Fn(&Ctx, i64, i64, &NormCfg, Act) -> Result<Box<dyn Layer>, ModelError>;

/// `YOLOv6EfficientRep.build_stem_layer` + `build_stage_layer` (CSPBep overrides only which
/// block follows each stage's stride-2 block).
pub fn build_rep_backbone(
    a: &RepBackboneArgs<'_>,
    ctx: &Ctx,
    stage_block: StageBlockFn<'_>,
) -> Result<StagedBackbone, ModelError> {
    let path = a.path;
    refuse_plugins(a.plugins, a.type_name, path)?;
    a.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = a.act_cfg.to_act(&join(path, "act_cfg"))?;
    let bpath = join(path, "block_cfg");
    let settings = arch_settings(a.arch, path)?;
    check_indices(path, a.out_indices, a.frozen_stages, settings.len())?;
    let (w, d) = (a.widen_factor, a.deepen_factor);
    let strided = |c: &Ctx, cin: i64, cout: i64| {
        YoloV6Block::new(c, (cin, cout), BlockPlace::StridedDown, a.block, &bpath)
    };
    // YOLOv6EfficientRep.build_stem_layer.
    let stem_out = py_int(settings[0].0 * w);
    let stem = strided(&ctx.sub("stem"), a.input_channels, stem_out)?;
    let mut channels = vec![stem_out];
    let mut stages = Vec::with_capacity(settings.len());
    // YOLOv6EfficientRep.build_stage_layer.
    for (i, &(cin, cout, blocks, use_spp)) in settings.iter().enumerate() {
        let (cin, cout) = (py_int(cin * w), py_int(cout * w));
        let st = ctx.sub(format!("stage{}", i + 1));
        let ef = st.sub(0);
        let down = strided(&ef.sub(0), cin, cout)?;
        let rep = stage_block(&ef.sub(1), cout, make_round(blocks, d), a.norm_cfg, act)?;
        let mut layers: Vec<Box<dyn Layer>> = vec![Box::new(down), rep];
        if use_spp {
            let spp: Box<dyn Layer> = if a.use_cspsppf {
                Box::new(CspSppfBottleneck::new(
                    &st.sub(1),
                    (cout, cout),
                    a.norm_cfg,
                    act,
                ))
            } else {
                let pooling = Pooling::Serial(5);
                let norm = Some(a.norm_cfg);
                Box::new(SppBottleneck::new(
                    &st.sub(1),
                    cout,
                    cout,
                    pooling,
                    norm,
                    Some(act),
                ))
            };
            layers.push(spp);
        }
        stages.push(layers);
        channels.push(cout);
    }
    Ok(StagedBackbone::new(
        vec![Box::new(stem)],
        stages,
        &channels,
        a.out_indices,
    ))
}

/// Builds the backbone of `spec` (its stages as `StagedBackbone` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<StagedBackbone, ModelError> {
    let cfg: &YoloV6EfficientRepCfg = spec.args()?;
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
        use_cspsppf: cfg.use_cspsppf,
        norm_cfg: &cfg.norm_cfg,
        act_cfg: &cfg.act_cfg,
        block: &cfg.block,
    };
    let bpath = join(path, "block_cfg");
    // RepStageBlock(out, out, num_blocks, block_cfg): the blocks take block_cfg's norm and act.
    let stage_block = |c: &Ctx, ch: i64, n: i64, _: &NormCfg, _: Act| -> LayerResult {
        let rep = RepStageBlock::new(c, (ch, ch, n), &cfg.block, &bpath)?;
        Ok(Box::new(rep) as Box<dyn Layer>)
    };
    build_rep_backbone(&args, ctx, &stage_block)
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv6EfficientRep", Backbone: |s, c| Ok(Box::new(build(s, c)?)));
