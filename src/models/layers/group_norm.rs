//! `nn.GroupNorm` as mmcv's `build_norm_layer` builds it for `norm_cfg=dict(type='GN',
//! num_groups=G)` (`mmcv/cnn/bricks/norm.py`): the layer is named `gn` inside a `ConvModule`
//! (`infer_abbr` of `GroupNorm` → `'gn'`), state-dict keys `<m>.gn.{weight,bias}`, no running
//! statistics, so the same arithmetic in training and inference and nothing to fold into the
//! convolution. The mmdet heads that use it (GFL, ATSS, FCOS, RepPoints) put it after every tower
//! convolution, with 32 groups.

use tch::{Kind, Tensor};

use crate::export::onnx::graph::{attr_i, attr_ints, OnnxGraph, ValueId};
use crate::export::onnx::ExportError;
use crate::models::cfg::NormCfg;
use crate::models::param::Ctx;

/// `nn.GroupNorm(num_groups, channels, eps, affine=True)` (`affine=False` has no parameters:
/// `GroupNorm.reset_parameters` registers none, and the forward skips the affine step).
#[derive(Debug)]
pub struct GroupNorm {
    pub num_groups: i64,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    pub eps: f64,
    /// weight and bias cast to the compute kind.
    fused: Option<(Tensor, Tensor)>,
}

impl GroupNorm {
    /// `cfg.num_groups` is checked by `NormCfg::validate_conv_module` at the spec stage; the
    /// channel count must divide by it, as `nn.GroupNorm.__init__` requires (the spec stage of
    /// each component that allows GN checks it with the real channel counts).
    pub fn new(ctx: &Ctx, channels: i64, cfg: &NormCfg) -> Self {
        let (weight, bias) = if cfg.affine {
            (
                Some(ctx.param("weight", &[channels])),
                Some(ctx.param("bias", &[channels])),
            )
        } else {
            (None, None)
        };
        GroupNorm {
            num_groups: cfg.num_groups.unwrap_or(1),
            weight,
            bias,
            eps: cfg.eps,
            fused: None,
        }
    }

    /// Freezes the parameters for inference in `kind` (a no-op copy for f32).
    pub fn fuse(&mut self, kind: Kind) {
        self.fused = match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => Some((w.to_kind(kind), b.to_kind(kind))),
            _ => None,
        };
    }

    /// `F.group_norm(x, num_groups, weight, bias, eps)`, as `GroupNorm.forward` calls it.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let (w, b) = match &self.fused {
            Some((w, b)) => (Some(w), Some(b)),
            None => (self.weight.as_ref(), self.bias.as_ref()),
        };
        x.f_group_norm(self.num_groups, w, b, self.eps, false)
    }
}

impl GroupNorm {
    /// ONNX nodes of [`GroupNorm::forward`] (`name`: the module's state-dict prefix). Opset 17 has
    /// no `GroupNormalization` (opset 18's takes per-group affine parameters and was redefined in
    /// 21), so: `Reshape` to `[N, G, -1]`, then per sample and group `d = x - mean`,
    /// `d / sqrt(mean(d²) + eps)` (the biased variance `F.group_norm` uses), `Reshape` back to the
    /// input's shape and the per-channel affine `x · γ + β` (`Mul` + `Add` on `[C, 1, 1]`).
    /// Spelled out rather than `InstanceNormalization` on the grouped tensor: tract 0.22's
    /// `InstanceNormalization` also averages over the batch axis (wrong for a batch of two),
    /// and these ops mean the same in every runtime.
    pub fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        x: ValueId,
        name: &str,
    ) -> Result<ValueId, ExportError> {
        let groups = self.num_groups.max(1);
        let grouped = g.const_i64("group_norm_shape", vec![3], &[0, groups, -1]);
        let r = g.op("Reshape", &[x, grouped], vec![]);
        let mean = |g: &mut OnnxGraph, v: ValueId| {
            if g.opset() >= 18 {
                let axes = g.const_i64("group_norm_axes", vec![1], &[2]);
                g.op("ReduceMean", &[v, axes], vec![attr_i("keepdims", 1)])
            } else {
                g.op(
                    "ReduceMean",
                    &[v],
                    vec![attr_ints("axes", &[2]), attr_i("keepdims", 1)],
                )
            }
        };
        let m = mean(g, r);
        let d = g.op("Sub", &[r, m], vec![]);
        let sq = g.op("Mul", &[d, d], vec![]);
        let var = mean(g, sq);
        let eps = g.scalar(self.eps as f32);
        let var = g.op("Add", &[var, eps], vec![]);
        let std = g.op("Sqrt", &[var], vec![]);
        let n = g.op("Div", &[d, std], vec![]);
        let shape = g.op("Shape", &[x], vec![]);
        let y = g.op("Reshape", &[n, shape], vec![]);
        match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => {
                let c = w.size()[0];
                let w = w.reshape([c, 1, 1]);
                let b = b.reshape([c, 1, 1]);
                let w = g.weight_tensor(&format!("{name}.weight"), &w)?;
                let b = g.weight_tensor(&format!("{name}.bias"), &b)?;
                let y = g.op("Mul", &[y, w], vec![]);
                Ok(g.op("Add", &[y, b], vec![]))
            }
            _ => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// The libtorch kernel against the definition (per sample and group: (x - mean) /
    /// sqrt(biased var + eps), then the per-channel affine), so a wrong argument order or group
    /// count would show.
    #[test]
    fn group_norm_normalises_each_group() {
        let x = Tensor::randn([2, 8, 3, 5], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([8], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([8], (Kind::Float, Device::Cpu));
        let gn = GroupNorm {
            num_groups: 4,
            weight: Some(w.shallow_clone()),
            bias: Some(b.shallow_clone()),
            eps: 1e-5,
            fused: None,
        };
        let y = gn.forward(&x).unwrap();
        let g = x.reshape([2, 4, -1]).to_kind(Kind::Double);
        let mean = g.mean_dim(&[2i64][..], true, Kind::Double);
        let var = (&g - &mean)
            .square()
            .mean_dim(&[2i64][..], true, Kind::Double);
        let expected = ((&g - &mean) / (var + 1e-5).sqrt()).reshape([2, 8, 3, 5])
            * w.to_kind(Kind::Double).reshape([1, 8, 1, 1])
            + b.to_kind(Kind::Double).reshape([1, 8, 1, 1]);
        let diff = (y.to_kind(Kind::Double) - expected)
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-5, "group norm off by {diff}");
    }

    /// The ONNX emission run by tract against libtorch's `group_norm` on a batch of two: 32
    /// groups of 64 channels as the mmdet GN heads; |Δ| measured 1.4e-6 on outputs of magnitude
    /// ~3 (float32 rounding of the same formula; onnxruntime 1.31: 9.5e-7).
    #[test]
    fn group_norm_onnx_matches_libtorch_in_tract() {
        use crate::export::onnx::graph::{Dim, OnnxGraph};
        use crate::export::onnx::proto::data_type;
        use prost::Message;
        use tract_onnx::prelude::*;

        tch::manual_seed(0);
        let (c, h, w) = (64i64, 7i64, 9i64);
        let x = tch::Tensor::randn([2, c, h, w], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
        let gn = GroupNorm {
            num_groups: 32,
            weight: Some(tch::Tensor::randn([c], (Kind::Float, Device::Cpu))),
            bias: Some(tch::Tensor::randn([c], (Kind::Float, Device::Cpu))),
            eps: 1e-5,
            fused: None,
        };
        let expected = Vec::<f32>::try_from(gn.forward(&x).unwrap().flatten(0, -1)).unwrap();
        let mut g = OnnxGraph::new(false, 17);
        let dims = || [2, c, h, w].map(Dim::Fixed).to_vec();
        let input = g.input("input", data_type::FLOAT, dims(), "");
        let y = gn.emit_onnx(&mut g, input, "gn").unwrap();
        g.output(y, "y", data_type::FLOAT, dims(), "");
        let bytes = g.finish(8, "", vec![]).encode_to_vec();
        let model = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let data = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
        let input =
            tract_ndarray::Array4::from_shape_vec((2, c as usize, h as usize, w as usize), data)
                .unwrap()
                .into_tensor();
        let out = model.run(tvec!(input.into())).unwrap();
        let got: Vec<f32> = out[0]
            .to_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let diff = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("GroupNorm ONNX (tract) vs libtorch: max |Δ| {diff:e}");
        assert!(diff < 1e-5, "GroupNorm ONNX off by {diff}");
    }
}
