//! mmyolo's `YOLOv8PAFPN` (`mmyolo/models/necks/yolov8_pafpn.py` on
//! `mmyolo/models/necks/yolov5_pafpn.py: YOLOv5PAFPN` and
//! `mmyolo/models/necks/base_yolo_neck.py: BaseYOLONeck`). Only three `ModuleList`s hold weights:
//! `top_down_layers.{j}` and `bottom_up_layers.{i}` (`CSPLayerWithTwoConv`, no identity) and
//! `downsample_layers.{i}` (YOLOv5PAFPN's 3×3 stride-2 ConvModule); the reduce and out layers are
//! `nn.Identity`, the upsampling `nn.Upsample(scale_factor=2, mode='nearest')`.

use super::base::{identities, nearest_x2, YoloNeck};
use crate::models::cfg::join;
use crate::models::layers::boxed;
use crate::models::layers::conv_module::{ConvModule, ConvSpec};
use crate::models::layers::yolo_bricks::{
    make_divisible, make_round, CspLayerWithTwoConv, CspTwoConvSpec,
};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov8_pafpn::{ChannelsCfg, YoloV8PafpnCfg};

/// Builds the neck of `spec` (its layers as `YoloNeck` runs them).
pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<YoloNeck, ModelError> {
    let cfg: &YoloV8PafpnCfg = spec.args()?;
    let path = spec.path.as_str();
    cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
    let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
    let norm = Some(&cfg.norm_cfg);
    let inc = &cfg.in_channels;
    let n = inc.len();
    let outc = match &cfg.out_channels {
        ChannelsCfg::PerLevel(v) if v.len() >= n => v,
        ChannelsCfg::PerLevel(v) => {
            return Err(ModelError::Invalid {
                path: join(path, "out_channels"),
                message: format!(
                    "{} entries for {n} levels (IndexError in YOLOv8PAFPN's layers)",
                    v.len()
                ),
            })
        }
        ChannelsCfg::Single(c) => {
            return Err(ModelError::Invalid {
                path: join(path, "out_channels"),
                message: format!(
                    "a single value ({c}) where YOLOv8PAFPN indexes one per level \
                         (TypeError in Python): give a list of {n}"
                ),
            })
        }
    };
    if n == 0 {
        return Err(ModelError::Invalid {
            path: join(path, "in_channels"),
            message: "needs at least one level".into(),
        });
    }
    let w = cfg.widen_factor;
    let blocks = make_round(cfg.num_csp_blocks as f64, cfg.deepen_factor);
    let csp = |c: &Ctx, cin: f64, cout: f64| {
        CspLayerWithTwoConv::new(
            c,
            CspTwoConvSpec {
                cin: make_divisible(cin, w),
                cout: make_divisible(cout, w),
                expand_ratio: 0.5,
                num_blocks: blocks,
                add_identity: false,
            },
            norm,
            act,
        )
    };
    // BaseYOLONeck.__init__: the lists in registration (= state-dict) order.
    let tctx = ctx.sub("top_down_layers");
    let top_down_layers = (1..n)
        .rev()
        .enumerate()
        .map(|(j, idx)| csp(&tctx.sub(j), inc[idx - 1] + inc[idx], outc[idx - 1]))
        .collect();
    let dctx = ctx.sub("downsample_layers");
    let downsample_layers = (0..n - 1)
        .map(|idx| {
            let c = make_divisible(inc[idx], w);
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
        .map(|idx| csp(&bctx.sub(idx), outc[idx] + outc[idx + 1], outc[idx + 1]))
        .collect();
    Ok(YoloNeck {
        name: "YOLOv8PAFPN",
        in_channels: inc.iter().map(|&c| make_divisible(c, w)).collect(),
        out_channels: outc[..n].iter().map(|&c| make_divisible(c, w)).collect(),
        reduce_layers: identities(n),
        upsample_layers: nearest_x2(n - 1),
        top_down_layers: boxed(top_down_layers),
        downsample_layers: boxed(downsample_layers),
        bottom_up_layers: boxed(bottom_up_layers),
        out_layers: identities(n),
    })
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv8PAFPN", Neck: |s, c| Ok(Box::new(build(s, c)?)));
