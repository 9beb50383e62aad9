//! mmyolo's `YOLOv8CSPDarknet` (`mmyolo/models/backbones/csp_darknet.py: YOLOv8CSPDarknet` on
//! `mmyolo/models/backbones/base_backbone.py: BaseBackbone`). Module tree: `stem` (a ConvModule
//! 3×3 stride 2), `stage{i}.0` (ConvModule 3×3 stride 2), `stage{i}.1` (`CSPLayerWithTwoConv`),
//! `stage4.2` (`SPPFBottleneck`, kernel 5: after the CSP layer, unlike CSPNeXt). Channels
//! `make_divisible(c, widen_factor)`, blocks `make_round(n, deepen_factor)`.

use tch::Tensor;

use crate::models::cfg::join;
use crate::models::component::Backbone;
use crate::models::layers::conv_module::{ConvModule, ConvSpec, Fuse};
use crate::models::layers::spp::{Pooling, SppBottleneck};
use crate::models::layers::yolo_bricks::{
    make_divisible, make_round, CspLayerWithTwoConv, CspTwoConvSpec,
};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::ComponentSpec;

pub use mmcompat_registry::spec::models::yolov8_csp_darknet::YoloV8CspDarknetCfg;

/// One row of `arch_settings`: in, out, num_blocks, add_identity, use_spp.
type StageSetting = (f64, f64, f64, bool, bool);

/// `YOLOv8CSPDarknet.arch_settings` with the last stage's `None` set to
/// `last_stage_out_channels` (upstream writes it into the class attribute).
fn arch_settings(
    arch: &str,
    last_stage_out_channels: f64,
    path: &str,
) -> Result<Vec<StageSetting>, ModelError> {
    match arch {
        "P5" => Ok(vec![
            (64.0, 128.0, 3.0, true, false),
            (128.0, 256.0, 6.0, true, false),
            (256.0, 512.0, 6.0, true, false),
            (512.0, last_stage_out_channels, 3.0, true, true),
        ]),
        other => Err(ModelError::Invalid {
            path: join(path, "arch"),
            message: format!(
                "arch `{other}` is not P5 (KeyError in YOLOv8CSPDarknet.arch_settings)"
            ),
        }),
    }
}

/// One `stage{i}` Sequential.
#[derive(Debug)]
pub struct Stage {
    pub conv: ConvModule,
    pub csp: CspLayerWithTwoConv,
    pub spp: Option<SppBottleneck>,
}

#[derive(Debug)]
pub struct YoloV8CspDarknet {
    pub stem: ConvModule,
    pub stages: Vec<Stage>,
    pub out_indices: Vec<i64>,
    /// Channels of each output, in layer order.
    pub out_channels: Vec<i64>,
}

impl YoloV8CspDarknet {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &YoloV8CspDarknetCfg = spec.args()?;
        let path = spec.path.as_str();
        if cfg.plugins.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(ModelError::Unsupported {
                what: "YOLOv8CSPDarknet plugins".into(),
                path: join(path, "plugins"),
                hint: "remove `plugins` (no shipped YOLOv8 config uses them)".into(),
            });
        }
        cfg.norm_cfg.validate(&join(path, "norm_cfg"))?;
        let act = Some(cfg.act_cfg.to_act(&join(path, "act_cfg"))?);
        let norm = Some(&cfg.norm_cfg);
        let settings = arch_settings(&cfg.arch, cfg.last_stage_out_channels, path)?;
        let n_stages = settings.len() as i64;
        // BaseBackbone.__init__: `assert set(out_indices).issubset(range(len(arch_setting) + 1))`
        // and the ValueError on frozen_stages.
        if let Some(bad) = cfg.out_indices.iter().find(|&&i| i < 0 || i > n_stages) {
            return Err(ModelError::Invalid {
                path: join(path, "out_indices"),
                message: format!(
                    "index {bad} is outside 0..={n_stages} (stem + {n_stages} stages)"
                ),
            });
        }
        if !(-1..=n_stages).contains(&cfg.frozen_stages) {
            return Err(ModelError::Invalid {
                path: join(path, "frozen_stages"),
                message: format!(
                    "must be in range(-1, {}), got {}",
                    n_stages + 1,
                    cfg.frozen_stages
                ),
            });
        }
        let (w, d) = (cfg.widen_factor, cfg.deepen_factor);
        let stem_out = make_divisible(settings[0].0, w);
        let stem = ConvModule::new(
            &ctx.sub("stem"),
            ConvSpec::new(cfg.input_channels, stem_out, 3)
                .stride(2)
                .padding(1),
            norm,
            act,
        );
        let mut channels = vec![stem_out];
        let mut stages = Vec::with_capacity(settings.len());
        // YOLOv8CSPDarknet.build_stage_layer: conv, CSPLayerWithTwoConv, then SPPF.
        for (i, &(cin, cout, blocks, add_identity, use_spp)) in settings.iter().enumerate() {
            let (cin, cout) = (make_divisible(cin, w), make_divisible(cout, w));
            let st = ctx.sub(format!("stage{}", i + 1));
            let conv = ConvModule::new(
                &st.sub(0),
                ConvSpec::new(cin, cout, 3).stride(2).padding(1),
                norm,
                act,
            );
            let csp = CspLayerWithTwoConv::new(
                &st.sub(1),
                CspTwoConvSpec {
                    cin: cout,
                    cout,
                    expand_ratio: 0.5,
                    num_blocks: make_round(blocks, d),
                    add_identity,
                },
                norm,
                act,
            );
            let spp = use_spp
                .then(|| SppBottleneck::new(&st.sub(2), cout, cout, Pooling::Serial(5), norm, act));
            stages.push(Stage { conv, csp, spp });
            channels.push(cout);
        }
        // BaseBackbone.forward: outputs in layer order (`if i in self.out_indices`).
        let out_channels = channels
            .iter()
            .enumerate()
            .filter(|(i, _)| cfg.out_indices.contains(&(*i as i64)))
            .map(|(_, &c)| c)
            .collect();
        Ok(YoloV8CspDarknet {
            stem,
            stages,
            out_indices: cfg.out_indices.clone(),
            out_channels,
        })
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.stem.fuse(mode);
        for s in &mut self.stages {
            s.conv.fuse(mode);
            s.csp.fuse(mode);
            if let Some(spp) = &mut s.spp {
                spp.fuse(mode);
            }
        }
    }

    /// `BaseBackbone.forward`.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, tch::TchError> {
        let mut outs = Vec::new();
        let mut x = self.stem.forward(x)?;
        if self.out_indices.contains(&0) {
            outs.push(x.shallow_clone());
        }
        for (i, s) in self.stages.iter().enumerate() {
            x = s.csp.forward(&s.conv.forward(&x)?)?;
            if let Some(spp) = &s.spp {
                x = spp.forward(&x)?;
            }
            if self.out_indices.contains(&(i as i64 + 1)) {
                outs.push(x.shallow_clone());
            }
        }
        Ok(outs)
    }
}

impl Backbone for YoloV8CspDarknet {
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, tch::TchError> {
        YoloV8CspDarknet::forward(self, x)
    }
    fn out_channels(&self) -> Vec<i64> {
        self.out_channels.clone()
    }
    /// The stem and every stage halve the resolution.
    fn size_divisor(&self) -> i64 {
        1 << (self.stages.len() + 1)
    }
    fn fuse(&mut self, mode: Fuse) {
        YoloV8CspDarknet::fuse(self, mode)
    }
}

crate::register_tch_component!(scope: "mmyolo", name: "YOLOv8CSPDarknet", Backbone: |s, c| Ok(Box::new(YoloV8CspDarknet::build(s, c)?)));
