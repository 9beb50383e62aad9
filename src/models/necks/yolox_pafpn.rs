//! mmyolo's `YOLOXPAFPN` (`mmyolo/models/necks/yolox_pafpn.py` on
//! `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`). Channels are `int(c * widen_factor)`
//! and blocks `round(num_csp_blocks * deepen_factor)` (no `make_divisible`/`make_round`, unlike
//! YOLOv5PAFPN). Weights: `reduce_layers.2` (1×1 ConvModule; the others `nn.Identity`),
//! `top_down_layers.0` (Sequential of mmdet's `CSPLayer` without identity and a 1×1 ConvModule),
//! `top_down_layers.1` (`CSPLayer`), `downsample_layers.{i}` (3×3 stride-2 ConvModule, or
//! `DepthwiseSeparableConvModule` with `use_depthwise`), `bottom_up_layers.{i}` (`CSPLayer`) and
//! `out_layers.{i}` (1×1 ConvModule to `int(out_channels * widen_factor)`); upsampling is
//! `nn.Upsample(scale_factor=2, mode='nearest')`. The CSP layers never get `use_depthwise`.

use super::base::{nearest_x2, YoloNeck};
use crate::models::cfg::{join, py_int, py_round};
use crate::models::layers::conv_module::{AnyConv, ConvModule, ConvSpec};
use crate::models::layers::csp_layer::{CspArgs, CspLayer, CspLayerSpec};
use crate::models::layers::{boxed, Layer, Sequential};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolox_pafpn::YoloXPafpnCfg;

/// Builds the neck of `spec` (its layers as `YoloNeck` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<YoloNeck, ModelError> {
    let cfg: &YoloXPafpnCfg = spec.args()?;
    let path = spec.path.as_str();
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
    let norm = Some(&cfg.norm_cfg);
    // The build_*_layer methods are written for three levels: `build_reduce_layer` tests
    // `idx == 2` and `build_top_down_layer` returns None for any idx but 1 and 2.
    if cfg.in_channels.len() != 3 {
        return Err(ModelError::Invalid {
            path: join(path, "in_channels"),
            message: format!(
                "{} levels; YOLOXPAFPN builds its layers for exactly three",
                cfg.in_channels.len()
            ),
        });
    }
    let w = cfg.widen_factor;
    let inc: Vec<i64> = cfg.in_channels.iter().map(|&c| py_int(c * w)).collect();
    let out = py_int(cfg.out_channels * w);
    let blocks = py_round(cfg.num_csp_blocks as f64 * cfg.deepen_factor);
    let args = CspArgs {
        norm,
        act,
        use_depthwise: false,
    };
    let csp = |c: &Ctx, cin: i64, cout: i64| {
        let spec = CspLayerSpec {
            cin,
            cout,
            expand_ratio: 0.5,
            num_blocks: blocks,
            add_identity: false,
            channel_attention: false,
        };
        CspLayer::with_darknet_blocks(c, spec, &args)
    };
    let conv1x1 =
        |c: &Ctx, cin: i64, cout: i64| ConvModule::new(c, ConvSpec::new(cin, cout, 1), norm, act);
    // BaseYOLONeck.__init__: the lists in registration (= state-dict) order.
    let reduce_layer = conv1x1(&ctx.sub("reduce_layers").sub(2), inc[2], inc[1]);
    let tctx = ctx.sub("top_down_layers");
    let seq = tctx.sub(0);
    let top_down_layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Sequential(vec![
            Box::new(csp(&seq.sub(0), inc[1] * 2, inc[1])),
            Box::new(conv1x1(&seq.sub(1), inc[1], inc[0])),
        ])),
        Box::new(csp(&tctx.sub(1), inc[0] * 2, inc[0])),
    ];
    let dctx = ctx.sub("downsample_layers");
    let downsample_layers: Vec<AnyConv> = (0..2)
        .map(|idx| {
            AnyConv::new(
                &dctx.sub(idx),
                ConvSpec::new(inc[idx], inc[idx], 3).stride(2).padding(1),
                norm,
                act,
                cfg.use_depthwise,
            )
        })
        .collect();
    let bctx = ctx.sub("bottom_up_layers");
    let bottom_up_layers: Vec<CspLayer> = (0..2)
        .map(|idx| csp(&bctx.sub(idx), inc[idx] * 2, inc[idx + 1]))
        .collect();
    let octx = ctx.sub("out_layers");
    let out_layers = (0..3)
        .map(|idx| Some(Box::new(conv1x1(&octx.sub(idx), inc[idx], out)) as Box<dyn Layer>))
        .collect();
    Ok(YoloNeck {
        name: "YOLOXPAFPN",
        in_channels: inc,
        out_channels: vec![out; 3],
        reduce_layers: vec![None, None, Some(Box::new(reduce_layer))],
        upsample_layers: nearest_x2(2),
        top_down_layers,
        downsample_layers: boxed(downsample_layers),
        bottom_up_layers: boxed(bottom_up_layers),
        out_layers,
    })
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOXPAFPN", Neck: |s, c| Ok(Box::new(build(s, c)?)));
