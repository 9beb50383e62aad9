//! mmyolo's `YOLOv6EfficientRep` (`mmyolo/models/backbones/efficient_rep.py: YOLOv6EfficientRep`
//! on `mmyolo/models/backbones/base_backbone.py: BaseBackbone`), the YOLOv6 n/t/s backbone.
//! Module tree: `stem` (a RepVGGBlock 3×3 stride 2), `stage{i}.0` = `Sequential(RepVGGBlock
//! stride 2, RepStageBlock)`, `stage4.1` (`SPPFBottleneck`, kernel 5, the backbone's norm and
//! act). Channels `int(c * widen_factor)` (floor, not `make_divisible`), blocks
//! `make_round(n, deepen_factor)`. The RepVGG blocks take `block_cfg` alone: upstream builds them
//! with `MODELS.build(block_cfg)`, so the backbone's `norm_cfg`/`act_cfg` never reach them.

use super::base::{check_indices, refuse_plugins, Layer, StagedBackbone};
use crate::models::cfg::{join, py_int};
use crate::models::layers::rep_vgg::{RepStageBlock, RepVggBlock};
use crate::models::layers::spp::{Pooling, SppBottleneck};
use crate::models::layers::yolo_bricks::make_round;
use crate::models::param::Ctx;
use crate::models::ModelError;
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

/// Builds the backbone of `spec` (its stages as `StagedBackbone` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<StagedBackbone, ModelError> {
    let cfg: &YoloV6EfficientRepCfg = spec.args()?;
    let path = spec.path.as_str();
    refuse_plugins(&cfg.plugins, spec.type_name, path)?;
    if cfg.use_cspsppf {
        return Err(ModelError::Unsupported {
            what: "use_cspsppf=True (YOLOv6 v3's CSPSPPFBottleneck)".into(),
            path: join(path, "use_cspsppf"),
            hint: "mmcompat implements the v2 n/t/s configs (SPPFBottleneck)".into(),
        });
    }
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
    let norm = Some(&cfg.norm_cfg);
    let block = &cfg.block_cfg;
    let bpath = join(path, "block_cfg");
    let settings = arch_settings(&cfg.arch, path)?;
    check_indices(path, &cfg.out_indices, cfg.frozen_stages, settings.len())?;
    let (w, d) = (cfg.widen_factor, cfg.deepen_factor);
    // YOLOv6EfficientRep.build_stem_layer.
    let stem_out = py_int(settings[0].0 * w);
    let stem = RepVggBlock::new(
        &ctx.sub("stem"),
        (cfg.input_channels, stem_out, 2),
        block,
        &bpath,
    )?;
    let mut channels = vec![stem_out];
    let mut stages = Vec::with_capacity(settings.len());
    // YOLOv6EfficientRep.build_stage_layer.
    for (i, &(cin, cout, blocks, use_spp)) in settings.iter().enumerate() {
        let (cin, cout) = (py_int(cin * w), py_int(cout * w));
        let st = ctx.sub(format!("stage{}", i + 1));
        let ef = st.sub(0);
        let down = RepVggBlock::new(&ef.sub(0), (cin, cout, 2), block, &bpath)?;
        let rep = RepStageBlock::new(
            &ef.sub(1),
            (cout, cout, make_round(blocks, d)),
            block,
            &bpath,
        )?;
        let spp = use_spp
            .then(|| SppBottleneck::new(&st.sub(1), cout, cout, Pooling::Serial(5), norm, act));
        let mut layers: Vec<Box<dyn Layer>> = vec![Box::new(down), Box::new(rep)];
        if let Some(spp) = spp {
            layers.push(Box::new(spp));
        }
        stages.push(layers);
        channels.push(cout);
    }
    Ok(StagedBackbone::new(
        vec![Box::new(stem)],
        stages,
        &channels,
        &cfg.out_indices,
    ))
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv6EfficientRep", Backbone: |s, c| Ok(Box::new(build(s, c)?)));
