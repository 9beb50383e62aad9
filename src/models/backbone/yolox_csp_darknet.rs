//! mmyolo's `YOLOXCSPDarknet` (`mmyolo/models/backbones/csp_darknet.py: YOLOXCSPDarknet` on
//! `mmyolo/models/backbones/base_backbone.py: BaseBackbone`). Module tree: `stem` (mmdet's
//! `Focus`: space-to-depth, then a 3×3 ConvModule `stem.conv`), `stage{i}.0` (3×3 stride-2
//! ConvModule, a `DepthwiseSeparableConvModule` with `use_depthwise`), in the last stage
//! `stage4.1` (`SPPFBottleneck` with `spp_kernal_sizes`, parallel pools 5/9/13: *before* the CSP
//! layer), then mmdet's `CSPLayer` (`DarknetBottleneck`s, never depthwise: upstream does not pass
//! `use_depthwise` to it; the last stage without identity). Channels
//! `make_divisible(c, widen_factor)`, blocks `make_round(n, deepen_factor)`.

use tch::{TchError, Tensor};

use super::base::{check_indices, refuse_plugins, Layer, StagedBackbone};
use crate::export::onnx::graph::attr_i;
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::cfg::{join, Act, NormCfg};
use crate::models::layers::conv_module::{AnyConv, ConvModule, ConvSpec, Fuse};
use crate::models::layers::csp_layer::{CspArgs, CspLayer, CspLayerSpec};
use crate::models::layers::spp::{Pooling, SppBottleneck};
use crate::models::layers::yolo_bricks::{make_divisible, make_round};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::yolox_csp_darknet::SppKernelSizes;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolox_csp_darknet::YoloXCspDarknetCfg;

/// mmdet's `Focus` (`mmdet/models/backbones/csp_darknet.py: Focus`): the four pixel phases
/// concatenated on channels, then `conv` (a ConvModule, `padding=(k - 1) // 2`, stride 1).
#[derive(Debug)]
pub struct Focus {
    pub conv: ConvModule,
}

impl Focus {
    pub fn new(
        ctx: &Ctx,
        (cin, cout, kernel): (i64, i64, i64),
        norm: Option<&NormCfg>,
        act: Option<Act>,
    ) -> Self {
        let spec = ConvSpec::new(cin * 4, cout, kernel).padding((kernel - 1) / 2);
        Focus {
            conv: ConvModule::new(&ctx.sub("conv"), spec, norm, act),
        }
    }
}

impl Layer for Focus {
    /// `cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1)`:
    /// top-left, bottom-left, top-right, bottom-right.
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let phase = |row: i64, col: i64| -> Result<Tensor, TchError> {
            x.f_slice(2, row, None, 2)?.f_slice(3, col, None, 2)
        };
        let cat = Tensor::f_cat(&[phase(0, 0)?, phase(1, 0)?, phase(0, 1)?, phase(1, 1)?], 1)?;
        self.conv.forward(&cat)
    }
    fn fuse(&mut self, mode: Fuse) {
        self.conv.fuse(mode);
    }
    /// The four phases as strided ONNX `Slice`s (steps 2 on H and W), in `forward`'s order.
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let axes = g.const_i64("focus_axes", vec![2], &[2, 3]);
        let ends = g.const_i64("focus_ends", vec![2], &[i64::MAX, i64::MAX]);
        let steps = g.const_i64("focus_steps", vec![2], &[2, 2]);
        let mut phases = Vec::with_capacity(4);
        for (row, col) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let starts = g.const_i64("focus_starts", vec![2], &[row, col]);
            phases.push(g.op("Slice", &[x, starts, ends, axes, steps], vec![]));
        }
        let cat = g.op("Concat", &phases, vec![attr_i("axis", 1)]);
        self.conv.emit_onnx(g, cat)
    }
}

/// One row of `arch_settings`: in, out, num_blocks, add_identity, use_spp.
type StageSetting = (f64, f64, f64, bool, bool);

/// `YOLOXCSPDarknet.arch_settings` (P5 only).
fn arch_settings(arch: &str, path: &str) -> Result<Vec<StageSetting>, ModelError> {
    match arch {
        "P5" => Ok(vec![
            (64.0, 128.0, 3.0, true, false),
            (128.0, 256.0, 9.0, true, false),
            (256.0, 512.0, 9.0, true, false),
            (512.0, 1024.0, 3.0, false, true),
        ]),
        other => Err(ModelError::Invalid {
            path: join(path, "arch"),
            message: format!(
                "arch `{other}` is not P5 (KeyError in YOLOXCSPDarknet.arch_settings)"
            ),
        }),
    }
}

/// Builds the backbone of `spec` (its stages as `StagedBackbone` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<StagedBackbone, ModelError> {
    let cfg: &YoloXCspDarknetCfg = spec.args()?;
    let path = spec.path.as_str();
    refuse_plugins(&cfg.plugins, spec.type_name, path)?;
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
    let norm = Some(&cfg.norm_cfg);
    let settings = arch_settings(&cfg.arch, path)?;
    check_indices(path, &cfg.out_indices, cfg.frozen_stages, settings.len())?;
    let pooling = match &cfg.spp_kernal_sizes {
        SppKernelSizes::Serial(k) => Pooling::Serial(*k),
        SppKernelSizes::Parallel(ks) => Pooling::Parallel(ks.clone()),
    };
    let (w, d) = (cfg.widen_factor, cfg.deepen_factor);
    // YOLOXCSPDarknet.build_stem_layer: `Focus(3, ...)`, 3 channels whatever input_channels says.
    let stem_out = make_divisible(64.0, w);
    let stem = Focus::new(&ctx.sub("stem"), (3, stem_out, 3), norm, act);
    let csp_args = CspArgs {
        norm,
        act,
        use_depthwise: false,
    };
    let mut channels = vec![stem_out];
    let mut stages = Vec::with_capacity(settings.len());
    // YOLOXCSPDarknet.build_stage_layer: conv, SPP (last stage), then CSPLayer.
    for (i, &(cin, cout, blocks, add_identity, use_spp)) in settings.iter().enumerate() {
        let (cin, cout) = (make_divisible(cin, w), make_divisible(cout, w));
        let st = ctx.sub(format!("stage{}", i + 1));
        let conv = AnyConv::new(
            &st.sub(0),
            ConvSpec::new(cin, cout, 3).stride(2).padding(1),
            norm,
            act,
            cfg.use_depthwise,
        );
        let mut layers: Vec<Box<dyn Layer>> = vec![Box::new(conv)];
        if use_spp {
            let spp = SppBottleneck::new(&st.sub(1), cout, cout, pooling.clone(), norm, act);
            layers.push(Box::new(spp));
        }
        let csp = CspLayer::with_darknet_blocks(
            &st.sub(layers.len()),
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
        layers.push(Box::new(csp));
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

crate::register_tch_component!(scope: "mmyolo", name: "YOLOXCSPDarknet", Backbone: |s, c| Ok(Box::new(build(s, c)?)));
