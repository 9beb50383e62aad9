//! mmyolo's `YOLOv5PAFPN` (`mmyolo/models/necks/yolov5_pafpn.py` on
//! `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`). Weights: `reduce_layers.{n-1}` (a 1×1
//! ConvModule on the coarsest level only; the others are `nn.Identity`), `top_down_layers.{j}`
//! (mmdet's `CSPLayer` without identity, followed by a 1×1 ConvModule as `.0`/`.1` of a
//! Sequential except for the last, finest one), `downsample_layers.{i}` (3×3 stride-2 ConvModule)
//! and `bottom_up_layers.{i}` (`CSPLayer`, no identity); upsampling is
//! `nn.Upsample(scale_factor=2, mode='nearest')`, the out layers `nn.Identity`.

use super::base::{identities, nearest_x2, YoloNeck};
use crate::models::cfg::join;
use crate::models::layers::conv_module::{ConvModule, ConvSpec};
use crate::models::layers::csp_layer::{CspArgs, CspLayer, CspLayerSpec};
use crate::models::layers::yolo_bricks::{make_divisible, make_round};
use crate::models::layers::{boxed, Layer, Sequential};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov5_pafpn::YoloV5PafpnCfg;

/// Builds the neck of `spec` (its layers as `YoloNeck` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<YoloNeck, ModelError> {
    let cfg: &YoloV5PafpnCfg = spec.args()?;
    let path = spec.path.as_str();
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
    let norm = Some(&cfg.norm_cfg);
    let inc = &cfg.in_channels;
    let n = inc.len();
    // build_reduce_layer(n - 1) reads in_channels[n - 2].
    if n < 2 {
        return Err(ModelError::Invalid {
            path: join(path, "in_channels"),
            message: format!("{n} levels; YOLOv5PAFPN needs at least two (IndexError)"),
        });
    }
    let w = cfg.widen_factor;
    let md = |c: f64| make_divisible(c, w);
    let blocks = make_round(cfg.num_csp_blocks as f64, cfg.deepen_factor);
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
    let reduce_layer = conv1x1(
        &ctx.sub("reduce_layers").sub(n - 1),
        md(inc[n - 1]),
        md(inc[n - 2]),
    );
    let tctx = ctx.sub("top_down_layers");
    let top_down_layers = (1..n)
        .rev()
        .enumerate()
        .map(|(j, idx)| {
            let (cin, cout) = (md(inc[idx - 1] * 2.0), md(inc[idx - 1]));
            if idx == 1 {
                Box::new(csp(&tctx.sub(j), cin, cout)) as Box<dyn Layer>
            } else {
                let seq = tctx.sub(j);
                Box::new(Sequential(vec![
                    Box::new(csp(&seq.sub(0), cin, cout)),
                    Box::new(conv1x1(&seq.sub(1), cout, md(inc[idx - 2]))),
                ]))
            }
        })
        .collect();
    let dctx = ctx.sub("downsample_layers");
    let downsample_layers = (0..n - 1)
        .map(|idx| {
            let c = md(inc[idx]);
            ConvModule::new(
                &dctx.sub(idx),
                ConvSpec::new(c, c, 3).stride(2).padding(1),
                norm,
                act,
            )
        })
        .collect();
    let bctx = ctx.sub("bottom_up_layers");
    let bottom_up_layers = (0..n - 1)
        .map(|idx| csp(&bctx.sub(idx), md(inc[idx] * 2.0), md(inc[idx + 1])))
        .collect();
    let in_channels: Vec<i64> = inc.iter().map(|&c| md(c)).collect();
    let mut reduce_layers = identities(n - 1);
    reduce_layers.push(Some(Box::new(reduce_layer)));
    Ok(YoloNeck {
        name: "YOLOv5PAFPN",
        out_channels: in_channels.clone(),
        in_channels,
        reduce_layers,
        upsample_layers: nearest_x2(n - 1),
        top_down_layers,
        downsample_layers: boxed(downsample_layers),
        bottom_up_layers: boxed(bottom_up_layers),
        out_layers: identities(n),
    })
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv5PAFPN", Neck: |s, c| Ok(Box::new(build(s, c)?)));
