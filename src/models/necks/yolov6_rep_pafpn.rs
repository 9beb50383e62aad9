//! mmyolo's `YOLOv6RepPAFPN` (`mmyolo/models/necks/yolov6_pafpn.py: YOLOv6RepPAFPN` on
//! `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`), the YOLOv6 v2 n/t/s neck, and YOLOv6
//! 3.0's `YOLOv6RepBiPAFPN` (same file), plus the construction their CSP subclasses share
//! (`yolov6_csp_rep_pafpn.rs`). Weights: `reduce_layers.2` (1×1 ConvModule; levels 0 and 1 are
//! `nn.Identity`), `upsample_layers.{j}` (`nn.ConvTranspose2d(k=2, s=2, bias=True)`; Bi:
//! `BiFusion`), `top_down_layers.{j}` (the stage block, and for `j = 0` a `Sequential(block, 1×1
//! ConvModule)`), `downsample_layers.{i}` (3×3 stride-2 ConvModule), `bottom_up_layers.{i}` (the
//! stage block); out layers are `nn.Identity`. The stage block is `RepStageBlock` here,
//! `BepC3StageBlock` in the CSP necks. Channels `int(c * widen_factor)` of the summed upstream
//! widths, as upstream writes them.

use super::base::{identities, YoloNeck};
use super::yolov6_bi_pafpn::BiNeck;
use crate::models::cfg::{join, py_int, ActCfg, NormCfg};
use crate::models::component::Neck;
use crate::models::layers::conv_module::{ConvModule, ConvSpec};
use crate::models::layers::rep_vgg::{ConvTranspose2d, RepStageBlock};
use crate::models::layers::yolo_bricks::make_round;
use crate::models::layers::yolov6_bricks::BiFusion;
use crate::models::layers::{boxed, Layer, Sequential};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::yolov8_pafpn::ChannelsCfg;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov6_rep_pafpn::YoloV6RepPafpnCfg;

/// What the four YOLOv6 necks share (`YOLOv6RepPAFPN.__init__`'s arguments).
pub struct RepPafpnArgs<'a> {
    pub type_name: &'static str,
    pub path: &'a str,
    /// As configured (Bi: the extra, finer level first).
    pub in_channels: &'a [f64],
    pub out_channels: &'a ChannelsCfg,
    pub deepen_factor: f64,
    pub widen_factor: f64,
    pub num_csp_blocks: i64,
    pub norm_cfg: &'a NormCfg,
    pub act_cfg: &'a ActCfg,
    /// `YOLOv6RepBiPAFPN` and its CSP subclass: BiFusion upsampling, 4 inputs.
    pub bi: bool,
}

/// A top-down or bottom-up block: `(ctx, in, out, num_blocks)`.
pub type NeckStageFn<'f> = &'f dyn Fn(&Ctx, i64, i64, i64) -> Result<Box<dyn Layer>, ModelError>;

fn per_level_out(a: &RepPafpnArgs<'_>, n: usize) -> Result<Vec<f64>, ModelError> {
    match a.out_channels {
        ChannelsCfg::PerLevel(v) if v.len() >= n => Ok(v[..n].to_vec()),
        ChannelsCfg::PerLevel(v) => Err(ModelError::Invalid {
            path: join(a.path, "out_channels"),
            message: format!(
                "{} entries for {n} levels (IndexError in {}'s layers)",
                v.len(),
                a.type_name
            ),
        }),
        ChannelsCfg::Single(c) => Err(ModelError::Invalid {
            path: join(a.path, "out_channels"),
            message: format!(
                "a single value ({c}) where {} indexes one per level (TypeError in Python): \
                 give a list of {n}",
                a.type_name
            ),
        }),
    }
}

/// `BaseYOLONeck.__init__` with the YOLOv6 `build_*_layer`s; `stage` builds the top-down and
/// bottom-up blocks.
pub fn build_rep_pafpn(
    a: &RepPafpnArgs<'_>,
    ctx: &Ctx,
    stage: NeckStageFn<'_>,
) -> Result<Box<dyn Neck>, ModelError> {
    a.norm_cfg.validate(&join(a.path, "norm_cfg"))?;
    let act_fn = a.act_cfg.to_act(&join(a.path, "act_cfg"))?;
    let act = Some(act_fn);
    let norm = Some(a.norm_cfg);
    // YOLOv6RepBiPAFPN.__init__: `extra_in_channel = in_channels[0]`, the rest are the levels.
    let (extra, inc) = match (a.bi, a.in_channels.split_first()) {
        (true, Some((first, rest))) => (Some(*first), rest),
        _ => (None, a.in_channels),
    };
    let n = inc.len();
    // build_top_down_layer returns a layer for idx 1 and 2 only (None otherwise, which fails
    // in forward): two or three levels build.
    if !(2..=3).contains(&n) {
        return Err(ModelError::Invalid {
            path: join(a.path, "in_channels"),
            message: format!(
                "{} entries; {} builds top-down layers for 2 or 3 levels only{}",
                a.in_channels.len(),
                a.type_name,
                if a.bi {
                    " (after the extra first one)"
                } else {
                    ""
                }
            ),
        });
    }
    let outc = per_level_out(a, n)?;
    let w = a.widen_factor;
    let c = |x: f64| py_int(x * w);
    let blocks = make_round(a.num_csp_blocks as f64, a.deepen_factor);
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
    let bi_upsample: Option<Vec<BiFusion>> = extra.map(|extra| {
        // YOLOv6RepBiPAFPN.build_upsample_layer: BiFusion(in[idx-1], in[idx-2] or the extra
        // input's, out[idx-1]).
        (1..n)
            .rev()
            .enumerate()
            .map(|(j, idx)| {
                let low = if idx > 1 { inc[idx - 2] } else { extra };
                let chans = (c(inc[idx - 1]), c(low), c(outc[idx - 1]));
                BiFusion::new(&uctx.sub(j), chans, a.norm_cfg, act_fn)
            })
            .collect()
    });
    let upsample_layers: Vec<ConvTranspose2d> = if a.bi {
        Vec::new()
    } else {
        (1..n)
            .rev()
            .enumerate()
            .map(|(j, idx)| {
                let ch = c(outc[idx - 1]);
                ConvTranspose2d::new(&uctx.sub(j), (ch, ch, 2, 2))
            })
            .collect()
    };
    let mut top_down_layers: Vec<Box<dyn Layer>> = Vec::with_capacity(n - 1);
    for (j, idx) in (1..n).rev().enumerate() {
        let ch = c(outc[idx - 1]);
        let t = tctx.sub(j);
        let block_ctx = if idx == 2 { t.sub(0) } else { t.clone() };
        // The Bi necks' top-down block takes the BiFusion output (out channels) alone.
        let cin = if a.bi {
            ch
        } else {
            c(outc[idx - 1] + inc[idx - 1])
        };
        let block = stage(&block_ctx, cin, ch, blocks)?;
        let conv = (idx == 2).then(|| conv1x1(&t.sub(1), ch, c(outc[idx - 2])));
        top_down_layers.push(match conv {
            Some(conv) => Box::new(Sequential(vec![block, Box::new(conv) as Box<dyn Layer>])),
            None => block,
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
        .map(|idx| stage(&bctx.sub(idx), c(outc[idx] * 2.0), c(outc[idx + 1]), blocks))
        .collect::<Result<_, _>>()?;
    let out_channels = outc.iter().map(|&x| c(x)).collect();
    if let Some(upsample_layers) = bi_upsample {
        return Ok(Box::new(BiNeck {
            name: a.type_name,
            in_channels: a.in_channels.iter().map(|&x| c(x)).collect(),
            out_channels,
            reduce_layers,
            upsample_layers,
            top_down_layers,
            downsample_layers: boxed(downsample_layers),
            bottom_up_layers,
        }));
    }
    Ok(Box::new(YoloNeck {
        name: a.type_name,
        in_channels: inc.iter().map(|&x| c(x)).collect(),
        out_channels,
        reduce_layers,
        upsample_layers: boxed(upsample_layers),
        top_down_layers,
        downsample_layers: boxed(downsample_layers),
        bottom_up_layers,
        out_layers: identities(n),
    }))
}

/// Builds the neck of `spec`: `YOLOv6RepPAFPN` or `YOLOv6RepBiPAFPN`, with `RepStageBlock`s.
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Box<dyn Neck>, ModelError> {
    let cfg: &YoloV6RepPafpnCfg = spec.args()?;
    let path = spec.path.as_str();
    let args = RepPafpnArgs {
        type_name: spec.type_name,
        path,
        in_channels: &cfg.in_channels,
        out_channels: &cfg.out_channels,
        deepen_factor: cfg.deepen_factor,
        widen_factor: cfg.widen_factor,
        num_csp_blocks: cfg.num_csp_blocks,
        norm_cfg: &cfg.norm_cfg,
        act_cfg: &cfg.act_cfg,
        bi: spec.type_name == "YOLOv6RepBiPAFPN",
    };
    let bpath = join(path, "block_cfg");
    let stage = |c: &Ctx, cin: i64, cout: i64, n: i64| -> Result<_, ModelError> {
        let rep = RepStageBlock::new(c, (cin, cout, n), &cfg.block, &bpath)?;
        Ok(Box::new(rep) as Box<dyn Layer>)
    };
    build_rep_pafpn(&args, ctx, &stage)
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv6RepPAFPN", Neck: build);
crate::register_tch_component!(scope: "mmyolo", name: "YOLOv6RepBiPAFPN", Neck: build);
