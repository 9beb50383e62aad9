//! mmdet's `CSPNeXtPAFPN` (`mmdet/models/necks/cspnext_pafpn.py`). Module tree: `reduce_layers.{j}`
//! (1×1 `ConvModule`s, top-down order), `top_down_blocks.{j}`, `downsamples.{i}`,
//! `bottom_up_blocks.{i}`, `out_convs.{i}`. No widen/deepen factors: the config gives the final
//! channel counts and `num_csp_blocks`.

use serde::Deserialize;
use serde_json::Value;
use tch::Tensor;

use crate::models::layers::conv_module::Fuse;

use super::{BottomUpNames, BottomUpPath, Upsample, UpsampleCfg};
use crate::models::cfg::{check_conv_cfg, parse_section, ActCfg, NormCfg};
use crate::models::layers::conv_module::{ConvModule, ConvSpec};
use crate::models::layers::csp_layer::{CspArgs, CspLayer, CspLayerSpec};
use crate::models::param::Ctx;
use crate::models::ModelError;

fn half() -> f64 {
    0.5
}
fn three() -> i64 {
    3
}
fn yolo_bn() -> NormCfg {
    NormCfg::bn(1e-3, 0.03)
}
fn swish() -> ActCfg {
    ActCfg::named("Swish")
}

/// Arguments of mmdet's `CSPNeXtPAFPN.__init__`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmdetPafpnCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub in_channels: Vec<i64>,
    pub out_channels: i64,
    #[serde(default = "three")]
    pub num_csp_blocks: i64,
    #[serde(default)]
    pub use_depthwise: bool,
    #[serde(default = "half")]
    pub expand_ratio: f64,
    #[serde(default)]
    pub upsample_cfg: UpsampleCfg,
    #[serde(default)]
    pub conv_cfg: Option<Value>,
    #[serde(default = "yolo_bn")]
    pub norm_cfg: NormCfg,
    #[serde(default = "swish")]
    pub act_cfg: ActCfg,
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

#[derive(Debug)]
pub struct MmdetPafpn {
    pub in_channels: Vec<i64>,
    pub upsample: Upsample,
    pub reduce_layers: Vec<ConvModule>,
    pub top_down_blocks: Vec<CspLayer>,
    /// `downsamples`, `bottom_up_blocks`, `out_convs`.
    pub bottom_up: BottomUpPath,
    pub out_channels: i64,
}

impl MmdetPafpn {
    pub fn build(ctx: &Ctx, value: &Value, path: &str) -> Result<Self, ModelError> {
        let cfg: MmdetPafpnCfg = parse_section(value, "mmdet.CSPNeXtPAFPN", path)?;
        check_conv_cfg(&cfg.conv_cfg, path)?;
        cfg.norm_cfg.validate(&format!("{path}.norm_cfg"))?;
        let act = Some(cfg.act_cfg.to_act(&format!("{path}.act_cfg"))?);
        let norm = Some(&cfg.norm_cfg);
        let upsample = Upsample::from_cfg(&cfg.upsample_cfg, &format!("{path}.upsample_cfg"))?;
        let inc = cfg.in_channels.clone();
        let n = inc.len();
        if n < 2 {
            return Err(ModelError::Invalid {
                path: format!("{path}.in_channels"),
                message: "needs at least 2 levels".into(),
            });
        }
        let dw = cfg.use_depthwise;
        let args = CspArgs {
            norm,
            act,
            use_depthwise: dw,
        };
        let csp = |c: &Ctx, cin: i64, cout: i64| {
            CspLayer::new(
                c,
                CspLayerSpec {
                    cin,
                    cout,
                    expand_ratio: cfg.expand_ratio,
                    num_blocks: cfg.num_csp_blocks,
                    add_identity: false,
                    channel_attention: false,
                },
                &args,
            )
        };
        let (rctx, tctx) = (ctx.sub("reduce_layers"), ctx.sub("top_down_blocks"));
        let mut reduce_layers = Vec::new();
        let mut top_down_blocks = Vec::new();
        // Built list by list so that names are registered in state-dict order (each ModuleList
        // is an attribute created before the loop that fills both).
        for (j, idx) in (1..n).rev().enumerate() {
            reduce_layers.push(ConvModule::new(
                &rctx.sub(j),
                ConvSpec::new(inc[idx], inc[idx - 1], 1),
                norm,
                act,
            ));
        }
        for (j, idx) in (1..n).rev().enumerate() {
            top_down_blocks.push(csp(&tctx.sub(j), inc[idx - 1] * 2, inc[idx - 1]));
        }
        let bottom_up = BottomUpPath::new(
            ctx,
            BottomUpNames {
                downsamples: "downsamples",
                blocks: "bottom_up_blocks",
                out_convs: "out_convs",
            },
            &inc,
            cfg.out_channels,
            csp,
            &args,
        );
        Ok(MmdetPafpn {
            in_channels: inc,
            upsample,
            reduce_layers,
            top_down_blocks,
            bottom_up,
            out_channels: cfg.out_channels,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.reduce_layers.iter_mut().for_each(|m| m.fuse(mode));
        self.top_down_blocks.iter_mut().for_each(|m| m.fuse(mode));
        self.bottom_up.fuse(mode);
    }

    /// `CSPNeXtPAFPN.forward`: the reduced high-level feature replaces `inner_outs[0]` before
    /// upsampling, so the bottom-up path sees reduced features.
    pub fn forward(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, tch::TchError> {
        let n = self.in_channels.len();
        let mut inner_outs = vec![inputs[n - 1].shallow_clone()];
        for idx in (1..n).rev() {
            let j = n - 1 - idx;
            let high = self.reduce_layers[j].forward(&inner_outs[0])?;
            let up = self.upsample.forward(&high)?;
            inner_outs[0] = high;
            let cat = Tensor::f_cat(&[&up, &inputs[idx - 1]], 1)?;
            inner_outs.insert(0, self.top_down_blocks[j].forward(&cat)?);
        }
        self.bottom_up.forward(&inner_outs)
    }
}
