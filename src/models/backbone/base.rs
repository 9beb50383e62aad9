//! mmyolo's `BaseBackbone` (`mmyolo/models/backbones/base_backbone.py`), the shape every YOLO
//! backbone shares: a stem, then `stage{i}` Sequentials run in order; `forward` returns the
//! outputs whose layer index (0 = stem) is in `out_indices`, in layer order whatever the order
//! given (`if i in self.out_indices`). A family builds its layers; this runs them.

use tch::{TchError, Tensor};

use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::component::Backbone;
use crate::models::layers::conv_module::Fuse;
pub use crate::models::layers::Layer;

/// A stem and its stages, as built; see the module docs.
#[derive(Debug)]
pub struct StagedBackbone {
    pub stem: Vec<Box<dyn Layer>>,
    pub stages: Vec<Vec<Box<dyn Layer>>>,
    pub out_indices: Vec<i64>,
    /// Channels of each output, in layer order.
    pub out_channels: Vec<i64>,
}

impl StagedBackbone {
    /// `channels[i]`: output channels of layer `i` (0 = stem, then each stage).
    pub fn new(
        stem: Vec<Box<dyn Layer>>,
        stages: Vec<Vec<Box<dyn Layer>>>,
        channels: &[i64],
        out_indices: &[i64],
    ) -> Self {
        let out_channels = channels
            .iter()
            .enumerate()
            .filter(|(i, _)| out_indices.contains(&(*i as i64)))
            .map(|(_, &c)| c)
            .collect();
        StagedBackbone {
            stem,
            stages,
            out_indices: out_indices.to_vec(),
            out_channels,
        }
    }
}

fn run(layers: &[Box<dyn Layer>], x: Tensor) -> Result<Tensor, TchError> {
    layers.iter().try_fold(x, |x, l| l.forward(&x))
}

impl Backbone for StagedBackbone {
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, TchError> {
        let mut outs = Vec::new();
        let mut x = run(&self.stem, x.shallow_clone())?;
        if self.out_indices.contains(&0) {
            outs.push(x.shallow_clone());
        }
        for (i, stage) in self.stages.iter().enumerate() {
            x = run(stage, x)?;
            if self.out_indices.contains(&(i as i64 + 1)) {
                outs.push(x.shallow_clone());
            }
        }
        Ok(outs)
    }
    fn out_channels(&self) -> Vec<i64> {
        self.out_channels.clone()
    }
    /// The stem and every stage halve the resolution.
    fn size_divisor(&self) -> i64 {
        1 << (self.stages.len() + 1)
    }
    fn fuse(&mut self, mode: Fuse) {
        for l in self.stem.iter_mut().chain(self.stages.iter_mut().flatten()) {
            l.fuse(mode);
        }
    }
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>, ExportError> {
        let run = |g: &mut OnnxGraph, layers: &[Box<dyn Layer>], x: ValueId| {
            layers.iter().try_fold(x, |x, l| l.emit_onnx(g, x))
        };
        let mut outs = Vec::new();
        let mut x = run(g, &self.stem, inputs[0])?;
        if self.out_indices.contains(&0) {
            outs.push(x);
        }
        for (i, stage) in self.stages.iter().enumerate() {
            x = run(g, stage, x)?;
            if self.out_indices.contains(&(i as i64 + 1)) {
                outs.push(x);
            }
        }
        Ok(outs)
    }
}

/// `BaseBackbone.__init__`'s argument checks: `assert set(out_indices).issubset(range(len(
/// arch_setting) + 1))` and the ValueError on `frozen_stages` outside `range(-1, stages + 1)`.
pub fn check_indices(
    path: &str,
    out_indices: &[i64],
    frozen_stages: i64,
    n_stages: usize,
) -> Result<(), crate::models::ModelError> {
    use crate::models::cfg::join;
    use crate::models::ModelError;
    let n = n_stages as i64;
    if let Some(bad) = out_indices.iter().find(|&&i| i < 0 || i > n) {
        return Err(ModelError::Invalid {
            path: join(path, "out_indices"),
            message: format!("index {bad} is outside 0..={n} (stem + {n} stages)"),
        });
    }
    if !(-1..=n).contains(&frozen_stages) {
        return Err(ModelError::Invalid {
            path: join(path, "frozen_stages"),
            message: format!("must be in range(-1, {}), got {frozen_stages}", n + 1),
        });
    }
    Ok(())
}

/// `BaseBackbone`'s `plugins` argument (extra modules inserted into stages, `mmyolo/models/
/// backbones/base_backbone.py: make_stage_plugins`): no shipped detection config sets it and
/// mmcompat does not implement it, so a non-empty value is refused naming the key.
pub fn refuse_plugins(
    plugins: &Option<serde_json::Value>,
    type_name: &str,
    path: &str,
) -> Result<(), crate::models::ModelError> {
    if plugins.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(crate::models::ModelError::Unsupported {
            what: format!("{type_name} plugins"),
            path: crate::models::cfg::join(path, "plugins"),
            hint: "remove `plugins` (no shipped detection config uses them)".into(),
        });
    }
    Ok(())
}
