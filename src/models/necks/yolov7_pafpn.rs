//! mmyolo's `YOLOv7PAFPN` (`mmyolo/models/necks/yolov7_pafpn.py` on
//! `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`). Channels `int(c * widen_factor)`.
//! Weights, in registration order: `reduce_layers.{i}` (1×1 ConvModule; the coarsest level an
//! `SPPFCSPBlock`), `upsample_layers.{j}.0` (1×1 ConvModule before `nn.Upsample(2, 'nearest')`),
//! `top_down_layers.{j}` and `bottom_up_layers.{i}` (the `block_cfg` block: `ELANBlock`,
//! `EELANBlock` or `TinyDownSampleBlock`), `downsample_layers.{i}` (`MaxPoolAndStrideConvBlock`, or
//! a 3×3 stride-2 ConvModule for tiny / `use_maxpool_in_downsample=False`), `out_layers.{i}`
//! (`RepVGGBlock` C→2C, unfused as `inference_detector` runs it; 3×3 ConvModule C→2C without
//! `use_repconv_outs`; `nn.Identity` with four levels). The top-down path concatenates
//! `[lower, upsampled]` (`upsample_feats_cat_first=False`).

use tch::{TchError, Tensor};

use super::base::YoloNeck;
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::cfg::{join, py_int, Act, NormCfg};
use crate::models::component::Neck;
use crate::models::layers::conv_module::Fuse;
use crate::models::layers::rep_vgg::RepVggBlock;
use crate::models::layers::yolov7_bricks::{
    ConvArgs, EElanBlock, ElanBlock, ElanSpec, MaxPoolAndStrideConvBlock, SppfCspBlock,
    TinyDownSampleBlock,
};
use crate::models::layers::{Layer, Sequential};
use crate::models::necks::Upsample;
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::rep_vgg_block::RepVggBlockCfg;
use mmcompat_registry::spec::models::yolov7_pafpn::YoloV7BlockCfg;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov7_pafpn::YoloV7PafpnCfg;

/// A `YoloNeck` run with `upsample_feats_cat_first` as configured.
#[derive(Debug)]
pub struct YoloV7Pafpn {
    pub neck: YoloNeck,
    pub upsample_feats_cat_first: bool,
}

impl Neck for YoloV7Pafpn {
    fn forward(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, TchError> {
        self.neck
            .forward_with(inputs, self.upsample_feats_cat_first)
    }
    fn in_channels(&self) -> Vec<i64> {
        self.neck.in_channels.clone()
    }
    fn out_channels(&self) -> Vec<i64> {
        self.neck.out_channels.clone()
    }
    fn fuse(&mut self, mode: Fuse) {
        self.neck.fuse_layers(mode)
    }
    fn emit_onnx(&self, g: &mut OnnxGraph, feats: &[ValueId]) -> Result<Vec<ValueId>, ExportError> {
        self.neck
            .emit_onnx_with(g, feats, self.upsample_feats_cat_first)
    }
}

/// `MODELS.build(block_cfg)` with `in_channels`/`out_channels` set and `norm_cfg`/`act_cfg`
/// defaulting to the neck's (`block_cfg.setdefault`).
fn build_block(
    ctx: &Ctx,
    block: &YoloV7BlockCfg,
    (cin, cout): (i64, i64),
    (norm, act): (&NormCfg, Act),
    path: &str,
) -> Result<Box<dyn Layer>, ModelError> {
    let args = |n: &Option<NormCfg>, a: &Option<mmcompat_registry::spec::layers::ActCfg>| {
        let act = match a {
            Some(a) => a.to_act(&join(path, "act_cfg"))?,
            None => act,
        };
        Ok::<_, ModelError>((n.clone().unwrap_or_else(|| norm.clone()), act))
    };
    Ok(match block {
        YoloV7BlockCfg::Elan(b) => {
            let (n, a) = args(&b.norm_cfg, &b.act_cfg)?;
            let spec = ElanSpec {
                cin,
                cout,
                middle_ratio: b.middle_ratio,
                block_ratio: b.block_ratio,
                num_blocks: b.num_blocks,
                num_convs_in_block: b.num_convs_in_block,
            };
            let ca = ConvArgs {
                norm: Some(&n),
                act: Some(a),
            };
            Box::new(ElanBlock::new(ctx, spec, ca))
        }
        YoloV7BlockCfg::EElan(b) => {
            let (n, a) = args(&b.norm_cfg, &b.act_cfg)?;
            let spec = ElanSpec {
                cin,
                cout,
                middle_ratio: b.middle_ratio,
                block_ratio: b.block_ratio,
                num_blocks: b.num_blocks,
                num_convs_in_block: b.num_convs_in_block,
            };
            let ca = ConvArgs {
                norm: Some(&n),
                act: Some(a),
            };
            Box::new(EElanBlock::new(ctx, b.num_elan_block, spec, ca))
        }
        YoloV7BlockCfg::TinyDownSample(b) => {
            let (n, a) = args(&b.norm_cfg, &b.act_cfg)?;
            let ca = ConvArgs {
                norm: Some(&n),
                act: Some(a),
            };
            let k = b.kernel_sizes;
            Box::new(TinyDownSampleBlock::new(
                ctx,
                (cin, cout),
                b.middle_ratio,
                k,
                ca,
            ))
        }
    })
}

/// Builds the neck of `spec`.
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<YoloV7Pafpn, ModelError> {
    let cfg: &YoloV7PafpnCfg = spec.args()?;
    let path = spec.path.as_str();
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = cfg.act_cfg.to_act(&join(path, "act_cfg"))?;
    let a = ConvArgs {
        norm: Some(&cfg.norm_cfg),
        act: Some(act),
    };
    let block_path = join(path, "block_cfg");
    let block = YoloV7BlockCfg::parse(&cfg.block_cfg, &block_path)?;
    let w = cfg.widen_factor;
    let inc: Vec<i64> = cfg.in_channels.iter().map(|&c| py_int(c * w)).collect();
    let outc: Vec<i64> = cfg.out_channels.iter().map(|&c| py_int(c * w)).collect();
    let n = inc.len();
    if n < 2 || outc.len() < n {
        return Err(ModelError::Invalid {
            path: join(path, "out_channels"),
            message: format!(
                "{n} in_channels and {} out_channels; YOLOv7PAFPN needs at least two levels and \
                 one out_channels entry per level (IndexError)",
                outc.len()
            ),
        });
    }
    let na = (&cfg.norm_cfg, act);
    // BaseYOLONeck.__init__: every list in registration (= state-dict) order.
    let rctx = ctx.sub("reduce_layers");
    let mut reduce_layers: Vec<Option<Box<dyn Layer>>> = Vec::new();
    for idx in 0..n {
        let c = rctx.sub(idx);
        let layer: Box<dyn Layer> = if idx == n - 1 {
            let geometry = (cfg.spp_expand_ratio, 5, cfg.is_tiny_version);
            Box::new(SppfCspBlock::new(&c, (inc[idx], outc[idx]), geometry, a))
        } else {
            Box::new(a.conv(&c, (inc[idx], outc[idx], 1, 1)))
        };
        reduce_layers.push(Some(layer));
    }
    let uctx = ctx.sub("upsample_layers");
    let upsample_layers = (1..n)
        .rev()
        .enumerate()
        .map(|(j, idx)| {
            Box::new(Sequential(vec![
                Box::new(a.conv(&uctx.sub(j).sub(0), (outc[idx], outc[idx - 1], 1, 1))),
                Box::new(Upsample { scale: 2.0 }),
            ])) as Box<dyn Layer>
        })
        .collect();
    let tctx = ctx.sub("top_down_layers");
    let top_down_layers = (1..n)
        .rev()
        .enumerate()
        .map(|(j, idx)| {
            let ch = (outc[idx - 1] * 2, outc[idx - 1]);
            build_block(&tctx.sub(j), &block, ch, na, &block_path)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dctx = ctx.sub("downsample_layers");
    let downsample_layers = (0..n - 1)
        .map(|idx| {
            let (c, ch) = (dctx.sub(idx), (outc[idx], outc[idx + 1]));
            if cfg.use_maxpool_in_downsample && !cfg.is_tiny_version {
                let use_in = cfg.use_in_channels_in_downsample;
                Box::new(MaxPoolAndStrideConvBlock::new(&c, ch, use_in, a)) as Box<dyn Layer>
            } else {
                Box::new(a.conv(&c, (ch.0, ch.1, 3, 2)))
            }
        })
        .collect();
    let bctx = ctx.sub("bottom_up_layers");
    let bottom_up_layers = (0..n - 1)
        .map(|idx| {
            let ch = (outc[idx + 1] * 2, outc[idx + 1]);
            build_block(&bctx.sub(idx), &block, ch, na, &block_path)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let octx = ctx.sub("out_layers");
    let mut out_layers: Vec<Option<Box<dyn Layer>>> = Vec::new();
    let mut out_channels = Vec::new();
    for (idx, &c) in outc.iter().take(n).enumerate() {
        if n == 4 {
            // P6: nn.Identity.
            out_layers.push(None);
            out_channels.push(c);
            continue;
        }
        let layer: Box<dyn Layer> = if cfg.use_repconv_outs {
            // `RepVGGBlock(C, 2C, 3, norm_cfg=..., act_cfg=...)`: the rest its defaults.
            let rep = RepVggBlockCfg {
                norm_cfg: cfg.norm_cfg.clone(),
                act_cfg: cfg.act_cfg.clone(),
                ..Default::default()
            };
            let rpath = join(&join(path, "out_layers"), &idx.to_string());
            Box::new(RepVggBlock::new(
                &octx.sub(idx),
                (c, 2 * c, 1),
                &rep,
                &rpath,
            )?)
        } else {
            Box::new(a.conv(&octx.sub(idx), (c, 2 * c, 3, 1)))
        };
        out_layers.push(Some(layer));
        out_channels.push(2 * c);
    }
    Ok(YoloV7Pafpn {
        neck: YoloNeck {
            name: "YOLOv7PAFPN",
            in_channels: inc,
            out_channels,
            reduce_layers,
            upsample_layers,
            top_down_layers,
            downsample_layers,
            bottom_up_layers,
            out_layers,
        },
        upsample_feats_cat_first: cfg.upsample_feats_cat_first,
    })
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv7PAFPN", Neck: |s, c| Ok(Box::new(build(s, c)?)));
