//! mmyolo's `PPYOLOECSPResNet` (`mmyolo/models/backbones/csp_resnet.py: PPYOLOECSPResNet` on
//! `mmyolo/models/backbones/base_backbone.py: BaseBackbone`), the PPYOLOE / PPYOLOE+ backbone.
//! Module tree: `stem` = `Sequential` of two ConvModules (3×3 s2 to `c0 // 2`, 3×3 to `c0`) or,
//! with `use_large_stem`, three (3×3 s2 to `c0 // 2`, 3×3, 3×3 to `c0`); `stage{i}.0` = one
//! `CSPResLayer(stride=2)` with the EffectiveSE attention. Channels `int(c * widen_factor)`
//! (floor), blocks `round(n * deepen_factor)` (half to even, no `max(.., 1)`).

use super::base::{check_indices, refuse_plugins, Layer, StagedBackbone};
use crate::models::cfg::{join, py_int, py_round};
use crate::models::layers::conv_module::{ConvModule, ConvSpec};
use crate::models::layers::ppyoloe_bricks::{CspResLayer, CspResSpec};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::ppyoloe_csp_resnet::PpyoloeCspResNetCfg;

/// `PPYOLOECSPResNet.arch_settings` (P5 only upstream): in, out, num_blocks.
fn arch_settings(cfg: &PpyoloeCspResNetCfg, path: &str) -> Result<Vec<[f64; 3]>, ModelError> {
    if let Some(over) = &cfg.arch_ovewrite {
        return Ok(over.clone());
    }
    match cfg.arch.as_str() {
        "P5" => Ok(vec![
            [64.0, 128.0, 3.0],
            [128.0, 256.0, 6.0],
            [256.0, 512.0, 6.0],
            [512.0, 1024.0, 3.0],
        ]),
        other => Err(ModelError::Invalid {
            path: join(path, "arch"),
            message: format!(
                "arch `{other}` is not P5 (KeyError in PPYOLOECSPResNet.arch_settings)"
            ),
        }),
    }
}

/// Builds the backbone of `spec` (its stages as `StagedBackbone` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<StagedBackbone, ModelError> {
    let cfg: &PpyoloeCspResNetCfg = spec.args()?;
    let path = spec.path.as_str();
    refuse_plugins(&cfg.plugins, spec.type_name, path)?;
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
    let norm = Some(&cfg.norm_cfg);
    let (w, d) = (cfg.widen_factor, cfg.deepen_factor);
    let settings: Vec<(i64, i64, i64)> = arch_settings(cfg, path)?
        .iter()
        .map(|&[cin, cout, n]| (py_int(cin * w), py_int(cout * w), py_round(n * d)))
        .collect();
    if settings.is_empty() {
        return Err(ModelError::Invalid {
            path: join(path, "arch_ovewrite"),
            message: "needs at least one stage".into(),
        });
    }
    check_indices(path, &cfg.out_indices, cfg.frozen_stages, settings.len())?;
    // PPYOLOECSPResNet.build_stem_layer.
    let c0 = settings[0].0;
    let sctx = ctx.sub("stem");
    let conv3 = |i: i64, cin: i64, cout: i64, stride: i64| {
        ConvModule::new(
            &sctx.sub(i),
            ConvSpec::new(cin, cout, 3).stride(stride).padding(1),
            norm,
            act,
        )
    };
    let mut stem: Vec<Box<dyn Layer>> = vec![Box::new(conv3(0, cfg.input_channels, c0 / 2, 2))];
    if cfg.use_large_stem {
        stem.push(Box::new(conv3(1, c0 / 2, c0 / 2, 1)));
        stem.push(Box::new(conv3(2, c0 / 2, c0, 1)));
    } else {
        stem.push(Box::new(conv3(1, c0 / 2, c0, 1)));
    }
    // PPYOLOECSPResNet.build_stage_layer: one CSPResLayer(stride=2) per stage.
    let mut channels = vec![c0];
    let mut stages = Vec::with_capacity(settings.len());
    for (i, &(cin, cout, blocks)) in settings.iter().enumerate() {
        let layer = CspResLayer::new(
            &ctx.sub(format!("stage{}", i + 1)).sub(0),
            CspResSpec {
                cin,
                cout,
                num_blocks: blocks,
                stride: 2,
                use_spp: false,
            },
            (&cfg.block_cfg, cfg.attention_cfg.as_ref()),
            (&cfg.norm_cfg, &cfg.act_cfg),
            path,
        )?;
        stages.push(vec![Box::new(layer) as Box<dyn Layer>]);
        channels.push(cout);
    }
    Ok(StagedBackbone::new(
        stem,
        stages,
        &channels,
        &cfg.out_indices,
    ))
}

crate::register_tch_component!(scope: "mmyolo", name: "PPYOLOECSPResNet", Backbone: |s, c| Ok(Box::new(build(s, c)?)));
