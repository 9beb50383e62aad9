//! mmyolo's `YOLOv8CSPDarknet` (`mmyolo/models/backbones/csp_darknet.py: YOLOv8CSPDarknet` on
//! `mmyolo/models/backbones/base_backbone.py: BaseBackbone`). Module tree: `stem` (a ConvModule
//! 3×3 stride 2), `stage{i}.0` (ConvModule 3×3 stride 2), `stage{i}.1` (`CSPLayerWithTwoConv`),
//! `stage4.2` (`SPPFBottleneck`, kernel 5: after the CSP layer, unlike CSPNeXt). Channels
//! `make_divisible(c, widen_factor)`, blocks `make_round(n, deepen_factor)`.

use super::base::{check_indices, refuse_plugins, Layer, StagedBackbone};
use crate::models::cfg::join;
use crate::models::layers::conv_module::{ConvModule, ConvSpec};
use crate::models::layers::spp::{Pooling, SppBottleneck};
use crate::models::layers::yolo_bricks::{
    make_divisible, make_round, CspLayerWithTwoConv, CspTwoConvSpec,
};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov8_csp_darknet::YoloV8CspDarknetCfg;

/// One row of `arch_settings`: in, out, num_blocks, add_identity, use_spp.
type StageSetting = (f64, f64, f64, bool, bool);

/// `YOLOv8CSPDarknet.arch_settings` with the last stage's `None` set to
/// `last_stage_out_channels` (upstream writes it into the class attribute).
fn arch_settings(
    arch: &str,
    last_stage_out_channels: f64,
    path: &str,
) -> Result<Vec<StageSetting>, ModelError> {
    match arch {
        "P5" => Ok(vec![
            (64.0, 128.0, 3.0, true, false),
            (128.0, 256.0, 6.0, true, false),
            (256.0, 512.0, 6.0, true, false),
            (512.0, last_stage_out_channels, 3.0, true, true),
        ]),
        other => Err(ModelError::Invalid {
            path: join(path, "arch"),
            message: format!(
                "arch `{other}` is not P5 (KeyError in YOLOv8CSPDarknet.arch_settings)"
            ),
        }),
    }
}

/// Builds the backbone of `spec` (its stages as `StagedBackbone` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<StagedBackbone, ModelError> {
    let cfg: &YoloV8CspDarknetCfg = spec.args()?;
    let path = spec.path.as_str();
    refuse_plugins(&cfg.plugins, spec.type_name, path)?;
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
    let norm = Some(&cfg.norm_cfg);
    let settings = arch_settings(&cfg.arch, cfg.last_stage_out_channels, path)?;
    check_indices(path, &cfg.out_indices, cfg.frozen_stages, settings.len())?;
    let (w, d) = (cfg.widen_factor, cfg.deepen_factor);
    let stem_out = make_divisible(settings[0].0, w);
    let stem = ConvModule::new(
        &ctx.sub("stem"),
        ConvSpec::new(cfg.input_channels, stem_out, 3)
            .stride(2)
            .padding(1),
        norm,
        act,
    );
    let mut channels = vec![stem_out];
    let mut stages = Vec::with_capacity(settings.len());
    // YOLOv8CSPDarknet.build_stage_layer: conv, CSPLayerWithTwoConv, then SPPF.
    for (i, &(cin, cout, blocks, add_identity, use_spp)) in settings.iter().enumerate() {
        let (cin, cout) = (make_divisible(cin, w), make_divisible(cout, w));
        let st = ctx.sub(format!("stage{}", i + 1));
        let conv = ConvModule::new(
            &st.sub(0),
            ConvSpec::new(cin, cout, 3).stride(2).padding(1),
            norm,
            act,
        );
        let csp = CspLayerWithTwoConv::new(
            &st.sub(1),
            CspTwoConvSpec {
                cin: cout,
                cout,
                expand_ratio: 0.5,
                num_blocks: make_round(blocks, d),
                add_identity,
            },
            norm,
            act,
        );
        let spp = use_spp
            .then(|| SppBottleneck::new(&st.sub(2), cout, cout, Pooling::Serial(5), norm, act));
        let mut layers: Vec<Box<dyn Layer>> = vec![Box::new(conv), Box::new(csp)];
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

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv8CSPDarknet", Backbone: |s, c| Ok(Box::new(build(s, c)?)));
