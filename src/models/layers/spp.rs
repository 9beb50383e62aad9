//! Spatial pyramid pooling of the last CSPNeXt stage: mmyolo's `SPPFBottleneck`
//! (`mmyolo/models/layers/yolo_bricks.py`, `kernel_sizes=5`: one pool applied three times in
//! series) and mmdet's `SPPBottleneck` (`mmdet/models/backbones/csp_darknet.py`, parallel pools
//! 5/9/13). Both: `conv1` 1×1 to `cin/2`, concat with the pooled maps, `conv2` 1×1.

use tch::Tensor;

use crate::models::layers::conv_module::Fuse;

use crate::export::onnx::graph::{attr_i, attr_ints, OnnxGraph, ValueId};
use crate::export::onnx::ExportError;
use crate::models::cfg::{Act, NormCfg};
use crate::models::layers::conv_module::{ConvModule, ConvSpec};
use crate::models::param::Ctx;

/// How the pooled maps are produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pooling {
    /// mmyolo SPPF (`kernel_sizes` an int): pool(x), pool(pool(x)), pool(pool(pool(x))).
    Serial(i64),
    /// Parallel pools of these sizes on x (mmdet SPP, or mmyolo with a list of sizes).
    Parallel(Vec<i64>),
}

#[derive(Debug)]
pub struct SppBottleneck {
    pub conv1: ConvModule,
    pub conv2: ConvModule,
    pub pooling: Pooling,
}

impl SppBottleneck {
    /// `mid = mid_channels(cin)`: `int(cin * 0.5)` in mmyolo, `cin // 2` in mmdet (equal for ints).
    pub fn new(
        ctx: &Ctx,
        cin: i64,
        cout: i64,
        pooling: Pooling,
        norm: Option<&NormCfg>,
        act: Option<Act>,
    ) -> Self {
        let mid = cin / 2;
        let n = match &pooling {
            Pooling::Serial(_) => 4,
            Pooling::Parallel(ks) => ks.len() as i64 + 1,
        };
        SppBottleneck {
            conv1: ConvModule::new(&ctx.sub("conv1"), ConvSpec::new(cin, mid, 1), norm, act),
            conv2: ConvModule::new(
                &ctx.sub("conv2"),
                ConvSpec::new(mid * n, cout, 1),
                norm,
                act,
            ),
            pooling,
        }
    }

    pub fn fuse(&mut self, mode: Fuse) {
        self.conv1.fuse(mode);
        self.conv2.fuse(mode);
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let pool =
            |t: &Tensor, k: i64| t.f_max_pool2d([k, k], [1, 1], [k / 2, k / 2], [1, 1], false);
        let x = self.conv1.forward(x)?;
        let cat = match &self.pooling {
            Pooling::Serial(k) => {
                let y1 = pool(&x, *k)?;
                let y2 = pool(&y1, *k)?;
                let y3 = pool(&y2, *k)?;
                Tensor::f_cat(&[&x, &y1, &y2, &y3], 1)?
            }
            Pooling::Parallel(ks) => {
                let mut parts = vec![x.shallow_clone()];
                for k in ks {
                    parts.push(pool(&x, *k)?);
                }
                Tensor::f_cat(&parts, 1)?
            }
        };
        self.conv2.forward(&cat)
    }

    /// The same as ONNX `MaxPool`s (stride 1, padding k/2: max pooling pads with -inf in both).
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let pool = |g: &mut OnnxGraph, t: ValueId, k: i64| {
            let p = k / 2;
            g.op(
                "MaxPool",
                &[t],
                vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("pads", &[p, p, p, p]),
                    attr_ints("strides", &[1, 1]),
                ],
            )
        };
        let x = self.conv1.emit_onnx(g, x)?;
        let parts = match &self.pooling {
            Pooling::Serial(k) => {
                let y1 = pool(g, x, *k);
                let y2 = pool(g, y1, *k);
                let y3 = pool(g, y2, *k);
                vec![x, y1, y2, y3]
            }
            Pooling::Parallel(ks) => {
                let mut parts = vec![x];
                for k in ks {
                    parts.push(pool(g, x, *k));
                }
                parts
            }
        };
        let cat = g.op("Concat", &parts, vec![attr_i("axis", 1)]);
        self.conv2.emit_onnx(g, cat)
    }
}
