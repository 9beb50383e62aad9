//! mmyolo's `PPYOLOECSPPAFPN` (`mmyolo/models/necks/ppyoloe_csppan.py` on
//! `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`). Channels `int(c * widen_factor)`,
//! blocks `round(num_blocks_per_layer * deepen_factor)`. Layers, each a `Sequential` of
//! `num_csplayer` `CSPResLayer`s without attention (`stride=1`): `reduce_layers.{n-1}` (with
//! the SPP when `use_spp`; the others are `nn.Identity`), `top_down_layers.{j}` and
//! `bottom_up_layers.{i}`; `upsample_layers.{j}` = `Sequential(ConvModule 1×1 to C/2,
//! nn.Upsample(2, nearest))`; `downsample_layers.{i}` a 3×3 stride-2 ConvModule; out layers
//! `nn.Identity`. A `drop_block_cfg` DropBlock is the identity at inference and has no weights.

use super::base::{identities, YoloNeck};
use super::Upsample;
use crate::models::cfg::{join, py_int, py_round};
use crate::models::layers::conv_module::{ConvModule, ConvSpec};
use crate::models::layers::ppyoloe_bricks::{CspResLayer, CspResSpec};
use crate::models::layers::{boxed, Layer, Sequential};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::ppyoloe_csppan::PpyoloeCspPafpnCfg;

/// Builds the neck of `spec` (its layers as `YoloNeck` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<YoloNeck, ModelError> {
    let cfg: &PpyoloeCspPafpnCfg = spec.args()?;
    let path = spec.path.as_str();
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
    let norm = Some(&cfg.norm_cfg);
    let w = cfg.widen_factor;
    let inc: Vec<i64> = cfg.in_channels.iter().map(|&c| py_int(c * w)).collect();
    let outc: Vec<i64> = cfg.out_channels.iter().map(|&c| py_int(c * w)).collect();
    let n = inc.len();
    if n == 0 || outc.len() < n {
        return Err(ModelError::Invalid {
            path: join(path, "out_channels"),
            message: format!(
                "{} out_channels for {n} in_channels (one per level, at least one level: \
                 IndexError in PPYOLOECSPPAFPN's layers)",
                outc.len()
            ),
        });
    }
    let blocks = py_round(cfg.num_blocks_per_layer as f64 * cfg.deepen_factor);
    // `num_csplayer` CSPResLayers, the first from `cin`, the others from `cout`.
    let csp_stack =
        |c: &Ctx, cin: i64, cout: i64, use_spp: bool| -> Result<Sequential, ModelError> {
            let layers = (0..cfg.num_csplayer.max(0))
                .map(|i| {
                    let layer = CspResLayer::new(
                        &c.sub(i),
                        CspResSpec {
                            cin: if i == 0 { cin } else { cout },
                            cout,
                            num_blocks: blocks,
                            stride: 1,
                            use_spp,
                        },
                        (&cfg.block_cfg, None),
                        (&cfg.norm_cfg, &cfg.act_cfg),
                        path,
                    )?;
                    Ok(Box::new(layer) as Box<dyn Layer>)
                })
                .collect::<Result<Vec<_>, ModelError>>()?;
            Ok(Sequential(layers))
        };
    // BaseYOLONeck.__init__: the lists in registration (= state-dict) order.
    let mut reduce_layers = identities(n);
    reduce_layers[n - 1] = Some(Box::new(csp_stack(
        &ctx.sub("reduce_layers").sub(n - 1),
        inc[n - 1],
        outc[n - 1],
        cfg.use_spp,
    )?));
    // Each ModuleList is registered before the loop that fills it, so all upsample layers come
    // before all top-down layers in the state dict (and downsample before bottom-up).
    let uctx = ctx.sub("upsample_layers");
    let upsample_layers: Vec<Box<dyn Layer>> = (1..n)
        .rev()
        .enumerate()
        .map(|(j, idx)| {
            let c = outc[idx];
            let conv = ConvModule::new(&uctx.sub(j).sub(0), ConvSpec::new(c, c / 2, 1), norm, act);
            let up: Vec<Box<dyn Layer>> = vec![Box::new(conv), Box::new(Upsample { scale: 2.0 })];
            Box::new(Sequential(up)) as Box<dyn Layer>
        })
        .collect();
    let tctx = ctx.sub("top_down_layers");
    let mut top_down_layers: Vec<Box<dyn Layer>> = Vec::new();
    for (j, idx) in (1..n).rev().enumerate() {
        let cin = inc[idx - 1] + outc[idx] / 2;
        top_down_layers.push(Box::new(csp_stack(
            &tctx.sub(j),
            cin,
            outc[idx - 1],
            false,
        )?));
    }
    let dctx = ctx.sub("downsample_layers");
    let downsample_layers: Vec<ConvModule> = (0..n - 1)
        .map(|idx| {
            let c = outc[idx];
            ConvModule::new(
                &dctx.sub(idx),
                ConvSpec::new(c, c, 3).stride(2).padding(1),
                norm,
                act,
            )
        })
        .collect();
    let bctx = ctx.sub("bottom_up_layers");
    let mut bottom_up_layers: Vec<Box<dyn Layer>> = Vec::new();
    for idx in 0..n - 1 {
        let cin = outc[idx + 1] + outc[idx];
        bottom_up_layers.push(Box::new(csp_stack(
            &bctx.sub(idx),
            cin,
            outc[idx + 1],
            false,
        )?));
    }
    Ok(YoloNeck {
        name: "PPYOLOECSPPAFPN",
        in_channels: inc,
        out_channels: outc[..n].to_vec(),
        reduce_layers,
        upsample_layers,
        top_down_layers,
        downsample_layers: boxed(downsample_layers),
        bottom_up_layers,
        out_layers: identities(n),
    })
}

crate::register_tch_component!(scope: "mmyolo", name: "PPYOLOECSPPAFPN", Neck: |s, c| Ok(Box::new(build(s, c)?)));
