//! mmyolo's `YOLOv7Backbone` (`mmyolo/models/backbones/yolov7_backbone.py` on
//! `mmyolo/models/backbones/base_backbone.py: BaseBackbone`), every `arch`:
//! * Tiny: stem two 3×3 stride-2 ConvModules; `stage1.0` a `TinyDownSampleBlock`, later stages
//!   `MaxPool2d(2, 2)` then the block (`stage{i}.1`);
//! * L / X: stem three 3×3 ConvModules (stride 1, 2, 1); `stage1` a 3×3 stride-2 ConvModule to
//!   `out // 2` then an `ELANBlock`, later stages `MaxPoolAndStrideConvBlock(in, in)` then the
//!   block;
//! * W / E / D / E2E (P6, 5 stages): a `Focus` stem; W downsamples with a 3×3 stride-2
//!   ConvModule, E / D / E2E with `MaxPoolAndStrideConvBlock(in, out, use_in_channels_of_middle)`;
//!   E2E's blocks are `EELANBlock`s.
//!
//! Channels `int(c * widen_factor)` (`deepen_factor` is accepted and unused, as upstream).

use super::base::{check_indices, refuse_plugins, Layer, StagedBackbone};
use super::yolox_csp_darknet::Focus;
use crate::models::cfg::{join, py_int};
use crate::models::layers::yolov7_bricks::{
    ConvArgs, EElanBlock, ElanBlock, ElanSpec, MaxPool2d, MaxPoolAndStrideConvBlock,
    TinyDownSampleBlock,
};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov7_backbone::YoloV7BackboneCfg;

/// A stage block of `YOLOv7Backbone.arch_settings`.
#[derive(Debug, Clone, Copy)]
enum StageBlock {
    /// `TinyDownSampleBlock(middle_ratio)`.
    Tiny(f64),
    /// `ELANBlock(middle_ratio=block_ratio=r, num_blocks, num_convs_in_block=2)`.
    Elan(f64, i64),
    /// `EELANBlock(num_elan_block=2, ...)` over `Elan`.
    EElan(f64, i64),
}

/// `YOLOv7Backbone.arch_settings`: (in, out, block) per stage.
fn arch_settings(arch: &str, path: &str) -> Result<Vec<(f64, f64, StageBlock)>, ModelError> {
    use StageBlock::*;
    let rows: &[(f64, f64, StageBlock)] = match arch {
        "Tiny" => &[
            (64.0, 64.0, Tiny(0.5)),
            (64.0, 128.0, Tiny(1.0)),
            (128.0, 256.0, Tiny(1.0)),
            (256.0, 512.0, Tiny(1.0)),
        ],
        "L" => &[
            (64.0, 256.0, Elan(0.5, 2)),
            (256.0, 512.0, Elan(0.5, 2)),
            (512.0, 1024.0, Elan(0.5, 2)),
            (1024.0, 1024.0, Elan(0.25, 2)),
        ],
        "X" => &[
            (80.0, 320.0, Elan(0.4, 3)),
            (320.0, 640.0, Elan(0.4, 3)),
            (640.0, 1280.0, Elan(0.4, 3)),
            (1280.0, 1280.0, Elan(0.2, 3)),
        ],
        "W" => &[
            (64.0, 128.0, Elan(0.5, 2)),
            (128.0, 256.0, Elan(0.5, 2)),
            (256.0, 512.0, Elan(0.5, 2)),
            (512.0, 768.0, Elan(0.5, 2)),
            (768.0, 1024.0, Elan(0.5, 2)),
        ],
        "E" => &[
            (80.0, 160.0, Elan(0.4, 3)),
            (160.0, 320.0, Elan(0.4, 3)),
            (320.0, 640.0, Elan(0.4, 3)),
            (640.0, 960.0, Elan(0.4, 3)),
            (960.0, 1280.0, Elan(0.4, 3)),
        ],
        "D" => &[
            (96.0, 192.0, Elan(1.0 / 3.0, 4)),
            (192.0, 384.0, Elan(1.0 / 3.0, 4)),
            (384.0, 768.0, Elan(1.0 / 3.0, 4)),
            (768.0, 1152.0, Elan(1.0 / 3.0, 4)),
            (1152.0, 1536.0, Elan(1.0 / 3.0, 4)),
        ],
        "E2E" => &[
            (80.0, 160.0, EElan(0.4, 3)),
            (160.0, 320.0, EElan(0.4, 3)),
            (320.0, 640.0, EElan(0.4, 3)),
            (640.0, 960.0, EElan(0.4, 3)),
            (960.0, 1280.0, EElan(0.4, 3)),
        ],
        other => {
            return Err(ModelError::Invalid {
                path: join(path, "arch"),
                message: format!(
                    "arch `{other}` is not one of Tiny, L, X, W, E, D, E2E (AssertionError in \
                     YOLOv7Backbone.__init__)"
                ),
            })
        }
    };
    Ok(rows.to_vec())
}

fn stage_block(
    ctx: &Ctx,
    block: StageBlock,
    (cin, cout): (i64, i64),
    a: ConvArgs,
) -> Box<dyn Layer> {
    let elan = |ratio: f64, num_blocks: i64| ElanSpec {
        cin,
        cout,
        middle_ratio: ratio,
        block_ratio: ratio,
        num_blocks,
        num_convs_in_block: 2,
    };
    match block {
        StageBlock::Tiny(ratio) => {
            Box::new(TinyDownSampleBlock::new(ctx, (cin, cout), ratio, 3, a))
        }
        StageBlock::Elan(r, n) => Box::new(ElanBlock::new(ctx, elan(r, n), a)),
        StageBlock::EElan(r, n) => Box::new(EElanBlock::new(ctx, 2, elan(r, n), a)),
    }
}

/// Builds the backbone of `spec` (its stages as `StagedBackbone` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<StagedBackbone, ModelError> {
    let cfg: &YoloV7BackboneCfg = spec.args()?;
    let path = spec.path.as_str();
    refuse_plugins(&cfg.plugins, spec.type_name, path)?;
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let a = ConvArgs {
        norm: Some(&cfg.norm_cfg),
        act: Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?),
    };
    let arch = cfg.arch.as_str();
    let settings = arch_settings(arch, path)?;
    check_indices(path, &cfg.out_indices, cfg.frozen_stages, settings.len())?;
    let w = cfg.widen_factor;
    let first = settings[0].0 * w;
    // `int(c * w // 2)` and `int(c * w)` of build_stem_layer.
    let (half, full) = ((first / 2.0).floor() as i64, py_int(first));
    let sctx = ctx.sub("stem");
    let stem: Box<dyn Layer> = match arch {
        "L" | "X" => Box::new(crate::models::layers::Sequential(vec![
            Box::new(a.conv(&sctx.sub(0), (3, half, 3, 1))),
            Box::new(a.conv(&sctx.sub(1), (half, full, 3, 2))),
            Box::new(a.conv(&sctx.sub(2), (full, full, 3, 1))),
        ])),
        "Tiny" => Box::new(crate::models::layers::Sequential(vec![
            Box::new(a.conv(&sctx.sub(0), (3, half, 3, 2))),
            Box::new(a.conv(&sctx.sub(1), (half, full, 3, 2))),
        ])),
        _ => Box::new(Focus::new(&sctx, (3, full, 3), a.norm, a.act)),
    };
    let mut channels = vec![full];
    let mut stages = Vec::with_capacity(settings.len());
    // YOLOv7Backbone.build_stage_layer + _build_downsample_layer.
    for (i, &(cin, cout, block)) in settings.iter().enumerate() {
        let (cin, cout) = (py_int(cin * w), py_int(cout * w));
        let st = ctx.sub(format!("stage{}", i + 1));
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        let block_in = match arch {
            "Tiny" => {
                if i != 0 {
                    layers.push(Box::new(MaxPool2d {
                        kernel: 2,
                        stride: 2,
                        padding: 0,
                    }));
                }
                cin
            }
            "L" | "X" if i == 0 => {
                layers.push(Box::new(a.conv(&st.sub(0), (cin, cout / 2, 3, 2))));
                cout / 2
            }
            "L" | "X" => {
                let c = st.sub(0);
                layers.push(Box::new(MaxPoolAndStrideConvBlock::new(
                    &c,
                    (cin, cin),
                    false,
                    a,
                )));
                cin
            }
            "W" => {
                layers.push(Box::new(a.conv(&st.sub(0), (cin, cout, 3, 2))));
                cout
            }
            _ => {
                let c = st.sub(0);
                layers.push(Box::new(MaxPoolAndStrideConvBlock::new(
                    &c,
                    (cin, cout),
                    true,
                    a,
                )));
                cout
            }
        };
        let bctx = st.sub(layers.len());
        layers.push(stage_block(&bctx, block, (block_in, cout), a));
        stages.push(layers);
        channels.push(cout);
    }
    Ok(StagedBackbone::new(
        vec![stem],
        stages,
        &channels,
        &cfg.out_indices,
    ))
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv7Backbone", Backbone: |s, c| Ok(Box::new(build(s, c)?)));
