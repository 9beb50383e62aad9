//! The per-level towers shared by both RTMDet "SepBN" heads (mmyolo
//! `RTMDetSepBNHeadModule._init_layers`, mmdet `RTMDetSepBNHead._init_layers`): for every level `n`,
//! `cls_convs.{n}.{i}` and `reg_convs.{n}.{i}` (`stacked_convs` 3×3 ConvModules), `rtm_cls.{n}`,
//! `rtm_reg.{n}` (and mmdet's optional `rtm_obj.{n}`) prediction convs. With `share_conv` the
//! *convolutions* of every level are level 0's (one tensor, several state-dict names); the batch
//! norms stay per level ("separate BN").

use tch::Tensor;

use crate::models::layers::conv_module::Fuse;

use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::cfg::{Act, NormCfg};
use crate::models::layers::conv_module::{AnyConv, Conv2d, ConvModule, ConvSpec};
use crate::models::param::Ctx;
use crate::models::ModelError;

/// Geometry of the towers.
#[derive(Debug, Clone, Copy)]
pub struct TowerSpec {
    pub levels: usize,
    pub in_channels: i64,
    pub feat_channels: i64,
    pub stacked_convs: i64,
    pub cls_out: i64,
    pub reg_out: i64,
    pub pred_kernel: i64,
    pub share_conv: bool,
    pub use_depthwise: bool,
    pub with_objectness: bool,
}

#[derive(Debug)]
pub struct SepBnTowers {
    pub cls_convs: Vec<Vec<AnyConv>>,
    pub reg_convs: Vec<Vec<AnyConv>>,
    pub rtm_cls: Vec<Conv2d>,
    pub rtm_reg: Vec<Conv2d>,
    pub rtm_obj: Vec<Conv2d>,
}

/// Raw per-level outputs before any head-specific transformation.
pub struct TowerOut {
    pub cls: Tensor,
    pub reg: Tensor,
    pub obj: Option<Tensor>,
}

impl SepBnTowers {
    pub fn new(
        ctx: &Ctx,
        s: TowerSpec,
        norm: Option<&NormCfg>,
        act: Option<Act>,
        path: &str,
    ) -> Result<Self, ModelError> {
        if s.share_conv && s.use_depthwise {
            return Err(ModelError::Unsupported {
                what: "share_conv together with use_depthwise".into(),
                path: path.to_string(),
                hint:
                    "upstream attaches a stray `conv` attribute to depthwise modules in this case; \
                       set share_conv=False or use_depthwise=False"
                        .into(),
            });
        }
        // One list after the other, as upstream registers them (cls_convs, reg_convs, rtm_cls,
        // rtm_reg, rtm_obj), so the names come out in state-dict order.
        let tower = |tctx: Ctx| {
            let mut levels: Vec<Vec<AnyConv>> = Vec::new();
            for n in 0..s.levels {
                let mut level = Vec::new();
                for i in 0..s.stacked_convs {
                    let chn = if i == 0 {
                        s.in_channels
                    } else {
                        s.feat_channels
                    };
                    let spec = ConvSpec::new(chn, s.feat_channels, 3).padding(1);
                    let c = tctx.sub(n).sub(i);
                    let shared = match levels.first().and_then(|l| l.get(i as usize)) {
                        Some(AnyConv::Plain(m)) if s.share_conv => Some(&m.conv),
                        _ => None,
                    };
                    level.push(match shared {
                        Some(conv) => AnyConv::Plain(Box::new(ConvModule::with_shared_conv(
                            &c, conv, norm, act,
                        ))),
                        None => AnyConv::new(&c, spec, norm, act, s.use_depthwise),
                    });
                }
                levels.push(level);
            }
            levels
        };
        let cls_convs = tower(ctx.sub("cls_convs"));
        let reg_convs = tower(ctx.sub("reg_convs"));
        let pk = s.pred_kernel;
        let preds = |pctx: Ctx, out: i64| -> Vec<Conv2d> {
            (0..s.levels)
                .map(|n| {
                    let spec = ConvSpec::new(s.feat_channels, out, pk).padding(pk / 2);
                    Conv2d::new(&pctx.sub(n), spec, true)
                })
                .collect()
        };
        let rtm_cls = preds(ctx.sub("rtm_cls"), s.cls_out);
        let rtm_reg = preds(ctx.sub("rtm_reg"), s.reg_out);
        let rtm_obj = if s.with_objectness {
            preds(ctx.sub("rtm_obj"), 1)
        } else {
            Vec::new()
        };
        Ok(SepBnTowers {
            cls_convs,
            reg_convs,
            rtm_cls,
            rtm_reg,
            rtm_obj,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        for level in self.cls_convs.iter_mut().chain(self.reg_convs.iter_mut()) {
            for m in level {
                m.fuse(mode);
            }
        }
        for c in self
            .rtm_cls
            .iter_mut()
            .chain(&mut self.rtm_reg)
            .chain(&mut self.rtm_obj)
        {
            c.fuse(mode);
        }
    }

    pub fn forward_level(&self, idx: usize, x: &Tensor) -> Result<TowerOut, tch::TchError> {
        let mut cls_feat = x.shallow_clone();
        for m in &self.cls_convs[idx] {
            cls_feat = m.forward(&cls_feat)?;
        }
        let cls = self.rtm_cls[idx].forward(&cls_feat)?;
        let mut reg_feat = x.shallow_clone();
        for m in &self.reg_convs[idx] {
            reg_feat = m.forward(&reg_feat)?;
        }
        let obj = match self.rtm_obj.get(idx) {
            Some(o) => Some(o.forward(&reg_feat)?),
            None => None,
        };
        let reg = self.rtm_reg[idx].forward(&reg_feat)?;
        Ok(TowerOut { cls, reg, obj })
    }

    /// [`SepBnTowers::forward_level`] as ONNX nodes: `(cls, reg, obj)`. With `share_conv` each
    /// level still gets its own folded weights (the batch norms are per level).
    pub fn emit_level(
        &self,
        g: &mut OnnxGraph,
        idx: usize,
        x: ValueId,
    ) -> Result<(ValueId, ValueId, Option<ValueId>), ExportError> {
        let mut cls_feat = x;
        for m in &self.cls_convs[idx] {
            cls_feat = m.emit_onnx(g, cls_feat)?;
        }
        let cls = self.rtm_cls[idx].emit_onnx(g, cls_feat)?;
        let mut reg_feat = x;
        for m in &self.reg_convs[idx] {
            reg_feat = m.emit_onnx(g, reg_feat)?;
        }
        let obj = match self.rtm_obj.get(idx) {
            Some(o) => Some(o.emit_onnx(g, reg_feat)?),
            None => None,
        };
        let reg = self.rtm_reg[idx].emit_onnx(g, reg_feat)?;
        Ok((cls, reg, obj))
    }
}

pub use mmcompat_registry::spec::models::prior_generator::{PointGeneratorCfg, StrideCfg};
