//! mmyolo's `YOLOv6RepPAFPN` (`mmyolo/models/necks/yolov6_pafpn.py: YOLOv6RepPAFPN` on
//! `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`), the YOLOv6 v2 n/t/s neck. Weights:
//! `reduce_layers.2` (1×1 ConvModule; levels 0 and 1 are `nn.Identity`), `upsample_layers.{j}`
//! (`nn.ConvTranspose2d(k=2, s=2, bias=True)`), `top_down_layers.{j}` (`RepStageBlock`, and for
//! `j = 0` a `Sequential(RepStageBlock, 1×1 ConvModule)`), `downsample_layers.{i}` (3×3 stride-2
//! ConvModule), `bottom_up_layers.{i}` (`RepStageBlock`); out layers are `nn.Identity`. Channels
//! `int(c * widen_factor)` of the summed upstream widths, as upstream writes them.

use super::base::{identities, YoloNeck};
use crate::models::cfg::{join, py_int};
use crate::models::layers::conv_module::{ConvModule, ConvSpec};
use crate::models::layers::rep_vgg::{ConvTranspose2d, RepStageBlock};
use crate::models::layers::yolo_bricks::make_round;
use crate::models::layers::{boxed, Layer, Sequential};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::yolov8_pafpn::ChannelsCfg;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov6_rep_pafpn::YoloV6RepPafpnCfg;

/// Builds the neck of `spec` (its layers as `YoloNeck` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<YoloNeck, ModelError> {
    let cfg: &YoloV6RepPafpnCfg = spec.args()?;
    let path = spec.path.as_str();
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
    let norm = Some(&cfg.norm_cfg);
    let block = &cfg.block_cfg;
    let bpath = join(path, "block_cfg");
    let inc = &cfg.in_channels;
    let n = inc.len();
    // build_top_down_layer returns a layer for idx 1 and 2 only (None otherwise, which fails
    // in forward): two or three levels build.
    if !(2..=3).contains(&n) {
        return Err(ModelError::Invalid {
            path: join(path, "in_channels"),
            message: format!(
                "{n} levels; YOLOv6RepPAFPN builds top-down layers for 2 or 3 levels only"
            ),
        });
    }
    let outc = match &cfg.out_channels {
        ChannelsCfg::PerLevel(v) if v.len() >= n => v,
        ChannelsCfg::PerLevel(v) => {
            return Err(ModelError::Invalid {
                path: join(path, "out_channels"),
                message: format!(
                    "{} entries for {n} levels (IndexError in YOLOv6RepPAFPN's layers)",
                    v.len()
                ),
            })
        }
        ChannelsCfg::Single(c) => {
            return Err(ModelError::Invalid {
                path: join(path, "out_channels"),
                message: format!(
                    "a single value ({c}) where YOLOv6RepPAFPN indexes one per level \
                         (TypeError in Python): give a list of {n}"
                ),
            })
        }
    };
    let w = cfg.widen_factor;
    let c = |x: f64| py_int(x * w);
    let blocks = make_round(cfg.num_csp_blocks as f64, cfg.deepen_factor);
    let conv1x1 =
        |m: &Ctx, cin: i64, cout: i64| ConvModule::new(m, ConvSpec::new(cin, cout, 1), norm, act);
    // BaseYOLONeck.__init__: the lists in registration (= state-dict) order.
    let rctx = ctx.sub("reduce_layers");
    let reduce_layers = (0..n)
        .map(|idx| {
            (idx == 2).then(|| {
                Box::new(conv1x1(&rctx.sub(idx), c(inc[idx]), c(outc[idx - 1]))) as Box<dyn Layer>
            })
        })
        .collect();
    let (uctx, tctx) = (ctx.sub("upsample_layers"), ctx.sub("top_down_layers"));
    // Both ModuleLists exist before the loop fills them: all upsample layers come first in
    // the state dict, then all top-down layers.
    let upsample_layers = (1..n)
        .rev()
        .enumerate()
        .map(|(j, idx)| {
            let ch = c(outc[idx - 1]);
            ConvTranspose2d::new(&uctx.sub(j), (ch, ch, 2, 2))
        })
        .collect();
    let mut top_down_layers = Vec::with_capacity(n - 1);
    for (j, idx) in (1..n).rev().enumerate() {
        let ch = c(outc[idx - 1]);
        let t = tctx.sub(j);
        let rep_ctx = if idx == 2 { t.sub(0) } else { t.clone() };
        let rep = RepStageBlock::new(
            &rep_ctx,
            (c(outc[idx - 1] + inc[idx - 1]), ch, blocks),
            block,
            &bpath,
        )?;
        let conv = (idx == 2).then(|| conv1x1(&t.sub(1), ch, c(outc[idx - 2])));
        top_down_layers.push(match conv {
            Some(conv) => Box::new(Sequential(vec![Box::new(rep), Box::new(conv)])),
            None => Box::new(rep) as Box<dyn Layer>,
        });
    }
    let dctx = ctx.sub("downsample_layers");
    let downsample_layers = (0..n - 1)
        .map(|idx| {
            let ch = c(outc[idx]);
            ConvModule::new(
                &dctx.sub(idx),
                ConvSpec::new(ch, ch, 3).stride(2).padding(1),
                norm,
                act,
            )
        })
        .collect();
    let bctx = ctx.sub("bottom_up_layers");
    let bottom_up_layers = (0..n - 1)
        .map(|idx| {
            RepStageBlock::new(
                &bctx.sub(idx),
                (c(outc[idx] * 2.0), c(outc[idx + 1]), blocks),
                block,
                &bpath,
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(YoloNeck {
        name: "YOLOv6RepPAFPN",
        in_channels: inc.iter().map(|&x| c(x)).collect(),
        out_channels: outc[..n].iter().map(|&x| c(x)).collect(),
        reduce_layers,
        upsample_layers: boxed(upsample_layers),
        top_down_layers,
        downsample_layers: boxed(downsample_layers),
        bottom_up_layers: boxed(bottom_up_layers),
        out_layers: identities(n),
    })
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv6RepPAFPN", Neck: |s, c| Ok(Box::new(build(s, c)?)));
