//! mmdet's `FPN` (`mmdet/models/necks/fpn.py`). Module tree: `lateral_convs.{i}` (1×1
//! `ConvModule`s) then `fpn_convs.{i}` (3×3, followed by the extra stride-2 convs when
//! `add_extra_convs`); both lists are attributes created before the loop that fills them, so all
//! laterals come first in the state dict. No activation and a conv bias by default (`norm_cfg=None`,
//! `act_cfg=None`).

use tch::Tensor;

use crate::export::onnx::graph::{attr_i, attr_ints, attr_s};
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::component::Neck;
use crate::models::layers::conv_module::{ConvModule, ConvSpec, Fuse};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::models::fpn::{ExtraSource, FpnCfg};
use mmcompat_registry::spec::parse::join;
use mmcompat_registry::spec::ComponentSpec;

#[derive(Debug)]
pub struct Fpn {
    in_channels: Vec<i64>,
    out_channels: i64,
    num_outs: usize,
    start_level: usize,
    backbone_end_level: usize,
    lateral_convs: Vec<ConvModule>,
    fpn_convs: Vec<ConvModule>,
    extra_source: Option<ExtraSource>,
    relu_before_extra_convs: bool,
    /// `upsample_cfg.scale_factor`; `None`: interpolate to the lower level's size.
    upsample_scale: Option<f64>,
}

impl Fpn {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &FpnCfg = spec.args()?;
        let path = spec.path.as_str();
        let act = cfg
            .act_cfg
            .as_ref()
            .map(|a| a.to_act(&join(path, "act_cfg")))
            .transpose()?;
        let norm = cfg.norm_cfg.as_ref();
        let lateral_norm = if cfg.no_norm_on_lateral { None } else { norm };
        let start = cfg.start_level as usize;
        let end = cfg.backbone_end_level() as usize;
        let out = cfg.out_channels;
        let (lctx, fctx) = (ctx.sub("lateral_convs"), ctx.sub("fpn_convs"));
        let mut lateral_convs = Vec::new();
        let mut fpn_convs = Vec::new();
        for (k, i) in (start..end).enumerate() {
            lateral_convs.push(ConvModule::new(
                &lctx.sub(k),
                ConvSpec::new(cfg.in_channels[i], out, 1),
                lateral_norm,
                act,
            ));
        }
        for k in 0..(end - start) {
            fpn_convs.push(ConvModule::new(
                &fctx.sub(k),
                ConvSpec::new(out, out, 3).padding(1),
                norm,
                act,
            ));
        }
        let extra_source = cfg.extra_source();
        let extra_levels = cfg.num_outs - end as i64 + start as i64;
        if extra_source.is_some() && extra_levels >= 1 {
            for e in 0..extra_levels as usize {
                let cin = if e == 0 && extra_source == Some(ExtraSource::OnInput) {
                    cfg.in_channels[end - 1]
                } else {
                    out
                };
                fpn_convs.push(ConvModule::new(
                    &fctx.sub(end - start + e),
                    ConvSpec::new(cin, out, 3).stride(2).padding(1),
                    norm,
                    act,
                ));
            }
        }
        Ok(Fpn {
            in_channels: cfg.in_channels.clone(),
            out_channels: out,
            num_outs: cfg.num_outs as usize,
            start_level: start,
            backbone_end_level: end,
            lateral_convs,
            fpn_convs,
            extra_source,
            relu_before_extra_convs: cfg.relu_before_extra_convs,
            upsample_scale: cfg.upsample_cfg.scale_factor,
        })
    }

    /// `F.interpolate(x, size=like.shape[2:], mode='nearest')` or with `scale_factor`.
    fn upsample(&self, x: &Tensor, like: &Tensor) -> Result<Tensor, tch::TchError> {
        let size = x.size();
        match self.upsample_scale {
            Some(s) => {
                let oh = (size[2] as f64 * s).floor() as i64;
                let ow = (size[3] as f64 * s).floor() as i64;
                x.f_upsample_nearest2d([oh, ow], Some(s), Some(s))
            }
            None => {
                let t = like.size();
                x.f_upsample_nearest2d([t[2], t[3]], None, None)
            }
        }
    }

    /// `FPN.forward` (`fpn.py:163-222`).
    pub fn forward(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, tch::TchError> {
        if inputs.len() != self.in_channels.len() {
            return Err(tch::TchError::Shape(format!(
                "FPN: {} inputs for {} in_channels",
                inputs.len(),
                self.in_channels.len()
            )));
        }
        let mut laterals = Vec::with_capacity(self.lateral_convs.len());
        for (k, conv) in self.lateral_convs.iter().enumerate() {
            laterals.push(conv.forward(&inputs[k + self.start_level])?);
        }
        let used = laterals.len();
        for i in (1..used).rev() {
            // `laterals[i - 1] += F.interpolate(laterals[i], size=prev_shape)`: in place upstream,
            // so the updated level feeds the next step down.
            let up = self.upsample(&laterals[i], &laterals[i - 1])?;
            laterals[i - 1] = laterals[i - 1].f_add(&up)?;
        }
        let mut outs = Vec::with_capacity(self.num_outs);
        for (i, lat) in laterals.iter().enumerate() {
            outs.push(self.fpn_convs[i].forward(lat)?);
        }
        if self.num_outs > outs.len() {
            match self.extra_source {
                None => {
                    // `F.max_pool2d(outs[-1], 1, stride=2)` per extra level (Faster R-CNN's P6).
                    while outs.len() < self.num_outs {
                        let last = &outs[outs.len() - 1];
                        let p = last.f_max_pool2d([1, 1], [2, 2], [0, 0], [1, 1], false)?;
                        outs.push(p);
                    }
                }
                Some(source) => {
                    let src = match source {
                        ExtraSource::OnInput => inputs[self.backbone_end_level - 1].shallow_clone(),
                        ExtraSource::OnLateral => laterals[used - 1].shallow_clone(),
                        ExtraSource::OnOutput => outs[used - 1].shallow_clone(),
                    };
                    outs.push(self.fpn_convs[used].forward(&src)?);
                    for i in used + 1..self.num_outs {
                        let last = &outs[outs.len() - 1];
                        let x = if self.relu_before_extra_convs {
                            last.f_relu()?
                        } else {
                            last.shallow_clone()
                        };
                        outs.push(self.fpn_convs[i].forward(&x)?);
                    }
                }
            }
        }
        Ok(outs)
    }
}

impl Fpn {
    /// [`Fpn::upsample`] as ONNX `Resize` (nearest, `asymmetric` + `floor`: PyTorch's legacy
    /// `nearest` source index). By size: `sizes` = `x`'s `[N, C]` and `like`'s `[H, W]`, read
    /// from the graph, so any input size and batch work.
    fn emit_upsample(&self, g: &mut OnnxGraph, x: ValueId, like: ValueId) -> ValueId {
        let attrs = || {
            vec![
                attr_s("coordinate_transformation_mode", "asymmetric"),
                attr_s("mode", "nearest"),
                attr_s("nearest_mode", "floor"),
            ]
        };
        match self.upsample_scale {
            Some(s) => {
                let s = s as f32;
                let scales = g.const_f32("upsample_scales", vec![4], &[1.0, 1.0, s, s]);
                g.op_multi("Resize", vec![Some(x), None, Some(scales)], 1, attrs())[0]
            }
            None => {
                let nc = g.op("Shape", &[x], vec![attr_i("start", 0), attr_i("end", 2)]);
                let hw = g.op("Shape", &[like], vec![attr_i("start", 2)]);
                let sizes = g.op("Concat", &[nc, hw], vec![attr_i("axis", 0)]);
                g.op_multi("Resize", vec![Some(x), None, None, Some(sizes)], 1, attrs())[0]
            }
        }
    }

    /// [`Fpn::forward`] as ONNX nodes (extra max-pool levels: `MaxPool` 1×1 stride 2).
    fn emit(&self, g: &mut OnnxGraph, inputs: &[ValueId]) -> Result<Vec<ValueId>, ExportError> {
        if inputs.len() != self.in_channels.len() {
            return Err(ExportError::InvalidOption {
                option: "--format onnx",
                message: format!(
                    "FPN: {} inputs for {} in_channels",
                    inputs.len(),
                    self.in_channels.len()
                ),
            });
        }
        let mut laterals = Vec::with_capacity(self.lateral_convs.len());
        for (k, conv) in self.lateral_convs.iter().enumerate() {
            laterals.push(conv.emit_onnx(g, inputs[k + self.start_level])?);
        }
        let used = laterals.len();
        for i in (1..used).rev() {
            let up = self.emit_upsample(g, laterals[i], laterals[i - 1]);
            laterals[i - 1] = g.op("Add", &[laterals[i - 1], up], vec![]);
        }
        let mut outs = Vec::with_capacity(self.num_outs);
        for (i, &lat) in laterals.iter().enumerate() {
            outs.push(self.fpn_convs[i].emit_onnx(g, lat)?);
        }
        if self.num_outs > outs.len() {
            match self.extra_source {
                None => {
                    while outs.len() < self.num_outs {
                        let last = outs[outs.len() - 1];
                        outs.push(g.op(
                            "MaxPool",
                            &[last],
                            vec![
                                attr_ints("kernel_shape", &[1, 1]),
                                attr_ints("strides", &[2, 2]),
                            ],
                        ));
                    }
                }
                Some(source) => {
                    let src = match source {
                        ExtraSource::OnInput => inputs[self.backbone_end_level - 1],
                        ExtraSource::OnLateral => laterals[used - 1],
                        ExtraSource::OnOutput => outs[used - 1],
                    };
                    outs.push(self.fpn_convs[used].emit_onnx(g, src)?);
                    for i in used + 1..self.num_outs {
                        let last = outs[outs.len() - 1];
                        let x = if self.relu_before_extra_convs {
                            g.op("Relu", &[last], vec![])
                        } else {
                            last
                        };
                        outs.push(self.fpn_convs[i].emit_onnx(g, x)?);
                    }
                }
            }
        }
        Ok(outs)
    }
}

impl Neck for Fpn {
    fn emit_onnx(&self, g: &mut OnnxGraph, feats: &[ValueId]) -> Result<Vec<ValueId>, ExportError> {
        self.emit(g, feats)
    }
    fn forward(&self, feats: &[Tensor]) -> Result<Vec<Tensor>, tch::TchError> {
        Fpn::forward(self, feats)
    }
    fn in_channels(&self) -> Vec<i64> {
        self.in_channels.clone()
    }
    fn out_channels(&self) -> Vec<i64> {
        vec![self.out_channels; self.num_outs]
    }
    fn fuse(&mut self, mode: Fuse) {
        self.lateral_convs.iter_mut().for_each(|m| m.fuse(mode));
        self.fpn_convs.iter_mut().for_each(|m| m.fuse(mode));
    }
}

crate::register_tch_component!(scope: "mmdet", name: "FPN", Neck: |s, c| Ok(Box::new(Fpn::build(s, c)?)));
