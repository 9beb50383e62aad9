//! `CSPNeXt`, the RTMDet backbone, in both flavours: mmyolo's
//! (`mmyolo/models/backbones/cspnext.py` on `BaseBackbone`) and mmdet's
//! (`mmdet/models/backbones/cspnext.py`). The module tree is the same (`stem.{0,1,2}`,
//! `stage{i}.{0: conv, [1: spp], last: CSPLayer}`); they differ in the SPP block (mmyolo SPPF with
//! `kernel_sizes=5`, mmdet SPP with `spp_kernel_sizes`), in default norm (mmyolo `BN` eps 1e-5,
//! mmdet `BN` momentum 0.03 eps 1e-3) and in accepted arguments.

use tch::Tensor;

use crate::models::layers::conv_module::Fuse;

use super::base::refuse_plugins;
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::cfg::{check_conv_cfg, py_int, py_round, ActCfg, NormCfg};
use crate::models::component::Backbone;
use crate::models::layers::conv_module::{AnyConv, ConvModule, ConvSpec};
use crate::models::layers::csp_layer::{CspArgs, CspLayer, CspLayerSpec};
use crate::models::layers::spp::{Pooling, SppBottleneck};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::cspnext::{
    MmdetCspNextCfg, MmyoloCspNextCfg, StageSetting,
};

fn arch_settings(arch: &str, path: &str) -> Result<Vec<StageSetting>, ModelError> {
    let p5 = vec![
        (64.0, 128.0, 3.0, true, false),
        (128.0, 256.0, 6.0, true, false),
        (256.0, 512.0, 6.0, true, false),
        (512.0, 1024.0, 3.0, false, true),
    ];
    match arch {
        "P5" => Ok(p5),
        "P6" => Ok(vec![
            (64.0, 128.0, 3.0, true, false),
            (128.0, 256.0, 6.0, true, false),
            (256.0, 512.0, 6.0, true, false),
            (512.0, 768.0, 3.0, true, false),
            (768.0, 1024.0, 3.0, false, true),
        ]),
        other => Err(ModelError::Invalid {
            path: path.to_string(),
            message: format!("arch `{other}` is not one of P5, P6 (KeyError in arch_settings)"),
        }),
    }
}

/// One `stage{i}` Sequential.
#[derive(Debug)]
pub struct Stage {
    pub conv: AnyConv,
    pub spp: Option<SppBottleneck>,
    pub csp: CspLayer,
}

/// The built backbone.
#[derive(Debug)]
pub struct CspNext {
    pub stem: Vec<ConvModule>,
    pub stages: Vec<Stage>,
    pub out_indices: Vec<i64>,
    /// Channels of each output, in layer order.
    pub out_channels: Vec<i64>,
}

/// The flavour-independent arguments after parsing.
struct Common<'a> {
    settings: Vec<StageSetting>,
    deepen: f64,
    widen: f64,
    expand_ratio: f64,
    channel_attention: bool,
    use_depthwise: bool,
    norm: &'a NormCfg,
    act: &'a ActCfg,
    out_indices: Vec<i64>,
    pooling: Box<dyn Fn() -> Pooling + 'a>,
}

impl CspNext {
    pub fn build_mmyolo(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &MmyoloCspNextCfg = spec.args()?;
        let path = spec.path.as_str();
        refuse_plugins(&cfg.plugins, spec.type_name, path)?;
        check_conv_cfg(&cfg.conv_cfg, path)?;
        let settings = match &cfg.arch_ovewrite {
            Some(s) if !s.is_empty() => s.clone(),
            _ => arch_settings(&cfg.arch, path)?,
        };
        Self::build(
            ctx,
            Common {
                settings,
                deepen: cfg.deepen_factor,
                widen: cfg.widen_factor,
                expand_ratio: cfg.expand_ratio,
                channel_attention: cfg.channel_attention,
                use_depthwise: cfg.use_depthwise,
                norm: &cfg.norm_cfg,
                act: &cfg.act_cfg,
                out_indices: cfg.out_indices.clone(),
                pooling: Box::new(|| Pooling::Serial(5)),
            },
            path,
        )
    }

    pub fn build_mmdet(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &MmdetCspNextCfg = spec.args()?;
        let path = spec.path.as_str();
        check_conv_cfg(&cfg.conv_cfg, path)?;
        let settings = match &cfg.arch_ovewrite {
            Some(s) if !s.is_empty() => s.clone(),
            _ => arch_settings(&cfg.arch, path)?,
        };
        let ks = cfg.spp_kernel_sizes.clone();
        Self::build(
            ctx,
            Common {
                settings,
                deepen: cfg.deepen_factor,
                widen: cfg.widen_factor,
                expand_ratio: cfg.expand_ratio,
                channel_attention: cfg.channel_attention,
                use_depthwise: cfg.use_depthwise,
                norm: &cfg.norm_cfg,
                act: &cfg.act_cfg,
                out_indices: cfg.out_indices.clone(),
                pooling: Box::new(move || Pooling::Parallel(ks.clone())),
            },
            path,
        )
    }

    fn build(ctx: &Ctx, c: Common, path: &str) -> Result<Self, ModelError> {
        c.norm.validate(&format!("{path}.norm_cfg"))?;
        let act = Some(c.act.to_act(&format!("{path}.act_cfg"))?);
        let norm = Some(c.norm);
        let n_stages = c.settings.len() as i64;
        if let Some(bad) = c.out_indices.iter().find(|&&i| i < 0 || i > n_stages) {
            return Err(ModelError::Invalid {
                path: format!("{path}.out_indices"),
                message: format!(
                    "index {bad} is outside 0..={n_stages} (stem + {n_stages} stages)"
                ),
            });
        }
        // `int(arch_setting[0][0] * widen_factor // 2)`: float floor division, then int().
        let first = c.settings.first().map(|s| s.0).unwrap_or(64.0);
        let stem_half = py_int((first * c.widen / 2.0).floor());
        let stem_full = py_int(first * c.widen);
        let sctx = ctx.sub("stem");
        let stem = vec![
            ConvModule::new(
                &sctx.sub(0),
                ConvSpec::new(3, stem_half, 3).stride(2).padding(1),
                norm,
                act,
            ),
            ConvModule::new(
                &sctx.sub(1),
                ConvSpec::new(stem_half, stem_half, 3).padding(1),
                norm,
                act,
            ),
            ConvModule::new(
                &sctx.sub(2),
                ConvSpec::new(stem_half, stem_full, 3).padding(1),
                norm,
                act,
            ),
        ];
        let args = CspArgs {
            norm,
            act,
            use_depthwise: c.use_depthwise,
        };
        let mut channels = vec![stem_full];
        let mut stages = Vec::new();
        for (i, &(cin, cout, blocks, add_identity, use_spp)) in c.settings.iter().enumerate() {
            let cin = py_int(cin * c.widen);
            let cout = py_int(cout * c.widen);
            let num_blocks = py_round(blocks * c.deepen).max(1);
            let st = ctx.sub(format!("stage{}", i + 1));
            let conv = AnyConv::new(
                &st.sub(0),
                ConvSpec::new(cin, cout, 3).stride(2).padding(1),
                norm,
                act,
                c.use_depthwise,
            );
            let mut idx = 1;
            let spp = use_spp.then(|| {
                let s = SppBottleneck::new(&st.sub(idx), cout, cout, (c.pooling)(), norm, act);
                idx += 1;
                s
            });
            let csp = CspLayer::new(
                &st.sub(idx),
                CspLayerSpec {
                    cin: cout,
                    cout,
                    expand_ratio: c.expand_ratio,
                    num_blocks,
                    add_identity,
                    channel_attention: c.channel_attention,
                },
                &args,
            );
            stages.push(Stage { conv, spp, csp });
            channels.push(cout);
        }
        // Outputs come in layer order (`if i in self.out_indices`), whatever the order given.
        let out_channels = channels
            .iter()
            .enumerate()
            .filter(|(i, _)| c.out_indices.contains(&(*i as i64)))
            .map(|(_, &ch)| ch)
            .collect();
        Ok(CspNext {
            stem,
            stages,
            out_indices: c.out_indices,
            out_channels,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        for c in &mut self.stem {
            c.fuse(mode);
        }
        for s in &mut self.stages {
            s.conv.fuse(mode);
            if let Some(spp) = &mut s.spp {
                spp.fuse(mode);
            }
            s.csp.fuse(mode);
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, tch::TchError> {
        let mut outs = Vec::new();
        let mut x = x.shallow_clone();
        for c in &self.stem {
            x = c.forward(&x)?;
        }
        if self.out_indices.contains(&0) {
            outs.push(x.shallow_clone());
        }
        for (i, s) in self.stages.iter().enumerate() {
            x = s.conv.forward(&x)?;
            if let Some(spp) = &s.spp {
                x = spp.forward(&x)?;
            }
            x = s.csp.forward(&x)?;
            if self.out_indices.contains(&(i as i64 + 1)) {
                outs.push(x.shallow_clone());
            }
        }
        Ok(outs)
    }
}

impl Backbone for CspNext {
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, tch::TchError> {
        CspNext::forward(self, x)
    }
    fn out_channels(&self) -> Vec<i64> {
        self.out_channels.clone()
    }
    /// The stem and every stage halve the resolution.
    fn size_divisor(&self) -> i64 {
        1 << (self.stages.len() + 1)
    }
    fn fuse(&mut self, mode: Fuse) {
        CspNext::fuse(self, mode)
    }
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>, ExportError> {
        let mut outs = Vec::new();
        let mut x = inputs[0];
        for c in &self.stem {
            x = c.emit_onnx(g, x)?;
        }
        if self.out_indices.contains(&0) {
            outs.push(x);
        }
        for (i, s) in self.stages.iter().enumerate() {
            x = s.conv.emit_onnx(g, x)?;
            if let Some(spp) = &s.spp {
                x = spp.emit_onnx(g, x)?;
            }
            x = s.csp.emit_onnx(g, x)?;
            if self.out_indices.contains(&(i as i64 + 1)) {
                outs.push(x);
            }
        }
        Ok(outs)
    }
}

crate::register_tch_component!(scope: "mmyolo", name: "CSPNeXt", Backbone: |s, c| Ok(Box::new(CspNext::build_mmyolo(s, c)?)));
crate::register_tch_component!(scope: "mmdet", name: "CSPNeXt", Backbone: |s, c| Ok(Box::new(CspNext::build_mmdet(s, c)?)));
