//! mmyolo's `YOLOv5CSPDarknet` (`mmyolo/models/backbones/csp_darknet.py: YOLOv5CSPDarknet` on
//! `mmyolo/models/backbones/base_backbone.py: BaseBackbone`). Module tree: `stem` (a ConvModule
//! 6×6 stride 2 padding 2, not a Focus), `stage{i}.0` (ConvModule 3×3 stride 2), `stage{i}.1`
//! (mmdet's `CSPLayer` with `DarknetBottleneck`s), `stage{last}.2` (`SPPFBottleneck`, kernel 5).
//! `arch='P6'` inserts a 512→768 stage before the last. Channels
//! `make_divisible(c, widen_factor)`, blocks `make_round(n, deepen_factor)`.

use super::base::{check_indices, refuse_plugins, Layer, StagedBackbone};
use crate::models::cfg::join;
use crate::models::layers::conv_module::{ConvModule, ConvSpec};
use crate::models::layers::csp_layer::{CspArgs, CspLayer, CspLayerSpec};
use crate::models::layers::spp::{Pooling, SppBottleneck};
use crate::models::layers::yolo_bricks::{make_divisible, make_round};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov5_csp_darknet::YoloV5CspDarknetCfg;

/// One row of `arch_settings`: in, out, num_blocks, add_identity, use_spp.
type StageSetting = (f64, f64, f64, bool, bool);

/// `YOLOv5CSPDarknet.arch_settings`.
fn arch_settings(arch: &str, path: &str) -> Result<Vec<StageSetting>, ModelError> {
    let mut p5 = vec![
        (64.0, 128.0, 3.0, true, false),
        (128.0, 256.0, 6.0, true, false),
        (256.0, 512.0, 9.0, true, false),
        (512.0, 1024.0, 3.0, true, true),
    ];
    match arch {
        "P5" => Ok(p5),
        "P6" => {
            p5[3] = (512.0, 768.0, 3.0, true, false);
            p5.push((768.0, 1024.0, 3.0, true, true));
            Ok(p5)
        }
        other => Err(ModelError::Invalid {
            path: join(path, "arch"),
            message: format!(
                "arch `{other}` is neither P5 nor P6 (KeyError in YOLOv5CSPDarknet.arch_settings)"
            ),
        }),
    }
}

/// Builds the backbone of `spec` (its stages as `StagedBackbone` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<StagedBackbone, ModelError> {
    let cfg: &YoloV5CspDarknetCfg = spec.args()?;
    let path = spec.path.as_str();
    refuse_plugins(&cfg.plugins, spec.type_name, path)?;
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
    let norm = Some(&cfg.norm_cfg);
    let settings = arch_settings(&cfg.arch, path)?;
    check_indices(path, &cfg.out_indices, cfg.frozen_stages, settings.len())?;
    let (w, d) = (cfg.widen_factor, cfg.deepen_factor);
    let stem_out = make_divisible(settings[0].0, w);
    // YOLOv5CSPDarknet.build_stem_layer.
    let stem = ConvModule::new(
        &ctx.sub("stem"),
        ConvSpec::new(cfg.input_channels, stem_out, 6)
            .stride(2)
            .padding(2),
        norm,
        act,
    );
    let csp_args = CspArgs {
        norm,
        act,
        use_depthwise: false,
    };
    let mut channels = vec![stem_out];
    let mut stages = Vec::with_capacity(settings.len());
    // YOLOv5CSPDarknet.build_stage_layer: conv, CSPLayer, then SPPF.
    for (i, &(cin, cout, blocks, add_identity, use_spp)) in settings.iter().enumerate() {
        let (cin, cout) = (make_divisible(cin, w), make_divisible(cout, w));
        let st = ctx.sub(format!("stage{}", i + 1));
        let conv = ConvModule::new(
            &st.sub(0),
            ConvSpec::new(cin, cout, 3).stride(2).padding(1),
            norm,
            act,
        );
        let csp = CspLayer::with_darknet_blocks(
            &st.sub(1),
            CspLayerSpec {
                cin: cout,
                cout,
                expand_ratio: 0.5,
                num_blocks: make_round(blocks, d),
                add_identity,
                channel_attention: false,
            },
            &csp_args,
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

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv5CSPDarknet", Backbone: |s, c| Ok(Box::new(build(s, c)?)));
