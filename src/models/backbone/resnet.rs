//! mmdet's `ResNet` (`mmdet/models/backbones/resnet.py`): the stem (`conv1` 7×7 s2, `bn1`, ReLU,
//! max-pool 3×3 s2), then `layer1..layerN` of `BasicBlock`s or `Bottleneck`s built by `ResLayer`
//! (`mmdet/models/layers/res_layer.py`). Module tree and names as upstream: `conv1`, `bn1`,
//! `layer{i}.{j}.conv{k}`, `.bn{k}`, `.downsample.{0,1}`. Batch norms run unfolded (conv → BN as
//! PyTorch), whatever `fold_bn` says: the backbone's plain `nn.Conv2d` + `bn{k}` pairs are not
//! `ConvModule`s. The ONNX export folds them as it folds `ConvModule`s (`OnnxOptions::fold_bn`).

use tch::Tensor;

use crate::export::onnx::graph::{attr_i, attr_ints};
use crate::export::onnx::{ExportError, OnnxGraph, ValueId};
use crate::models::component::Backbone;
use crate::models::layers::conv_module::{fold_batch_norm, BatchNorm2d, Conv2d, ConvSpec, Fuse};
use crate::models::param::Ctx;
use crate::models::ModelError;
use mmcompat_registry::spec::layers::NormCfg;
use mmcompat_registry::spec::models::resnet::{ResNetBlock, ResNetCfg};
use mmcompat_registry::spec::ComponentSpec;

/// `nn.Conv2d(bias=False)` + its batch norm, named `conv{k}` / `bn{k}` (or `downsample.0/1`).
#[derive(Debug)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
    /// State-dict prefix of `bn` (ONNX initializer names when not folded).
    bn_name: String,
}

impl ConvBn {
    fn new(conv_ctx: &Ctx, bn_ctx: &Ctx, spec: ConvSpec, dilation: i64, norm: &NormCfg) -> Self {
        let mut conv = Conv2d::new(conv_ctx, spec, false);
        conv.dilation = dilation;
        let bn = BatchNorm2d::new(bn_ctx, spec.cout, norm);
        let bn_name = bn_ctx
            .name("weight")
            .trim_end_matches(".weight")
            .to_string();
        ConvBn { conv, bn, bn_name }
    }

    /// `Conv` with the batch norm folded in (`OnnxGraph::fold_bn`, the float64 fold of
    /// `ConvModule`), or `Conv` → `BatchNormalization` as PyTorch runs it.
    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        if g.fold_bn() {
            let (w, b) = fold_batch_norm(&self.conv, &self.bn);
            self.conv.emit_weights(g, x, &w, Some(&b))
        } else {
            let y = self.conv.emit_onnx(g, x)?;
            self.bn.emit_onnx(g, y, &self.bn_name)
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        self.bn.forward(&self.conv.forward(x)?)
    }

    fn fuse(&mut self, mode: Fuse) {
        self.conv.fuse(Fuse::exact(mode.kind));
        self.bn.fuse(mode.kind);
    }
}

/// One `BasicBlock` or `Bottleneck`: `relu(convs(x) + downsample(x))`.
#[derive(Debug)]
struct ResBlock {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl ResBlock {
    /// `BasicBlock.forward` / `Bottleneck.forward` (`resnet.py:80-102, 265-300`): ReLU after
    /// every conv but the last, then the residual sum and a ReLU.
    fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let mut out = x.shallow_clone();
        let last = self.convs.len() - 1;
        for (k, c) in self.convs.iter().enumerate() {
            out = c.forward(&out)?;
            if k < last {
                out = out.f_relu()?;
            }
        }
        let identity = match &self.downsample {
            Some(d) => d.forward(x)?,
            None => x.shallow_clone(),
        };
        out.f_add(&identity)?.f_relu()
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, x: ValueId) -> Result<ValueId, ExportError> {
        let mut out = x;
        let last = self.convs.len() - 1;
        for (k, c) in self.convs.iter().enumerate() {
            out = c.emit_onnx(g, out)?;
            if k < last {
                out = g.op("Relu", &[out], vec![]);
            }
        }
        let identity = match &self.downsample {
            Some(d) => d.emit_onnx(g, x)?,
            None => x,
        };
        let sum = g.op("Add", &[out, identity], vec![]);
        Ok(g.op("Relu", &[sum], vec![]))
    }

    fn fuse(&mut self, mode: Fuse) {
        self.convs.iter_mut().for_each(|c| c.fuse(mode));
        if let Some(d) = &mut self.downsample {
            d.fuse(mode);
        }
    }
}

/// Geometry of one block (`ResLayer` arguments for block `j` of a stage).
struct BlockArgs {
    inplanes: i64,
    planes: i64,
    stride: i64,
    dilation: i64,
    caffe: bool,
}

fn build_block(ctx: &Ctx, kind: ResNetBlock, a: &BlockArgs, norm: &NormCfg) -> ResBlock {
    let conv = |k: usize, spec: ConvSpec, dil: i64| {
        ConvBn::new(
            &ctx.sub(format!("conv{k}")),
            &ctx.sub(format!("bn{k}")),
            spec,
            dil,
            norm,
        )
    };
    let out = a.planes * kind.expansion();
    let convs = match kind {
        // BasicBlock: conv1 3×3 (stride, padding=dilation, dilation), conv2 3×3 (padding 1).
        ResNetBlock::Basic => vec![
            conv(
                1,
                ConvSpec::new(a.inplanes, a.planes, 3)
                    .stride(a.stride)
                    .padding(a.dilation),
                a.dilation,
            ),
            conv(2, ConvSpec::new(a.planes, a.planes, 3).padding(1), 1),
        ],
        // Bottleneck: the stride sits on conv2 (pytorch) or conv1 (caffe) (`resnet.py:151-156`).
        ResNetBlock::Bottleneck => {
            let (s1, s2) = if a.caffe {
                (a.stride, 1)
            } else {
                (1, a.stride)
            };
            vec![
                conv(1, ConvSpec::new(a.inplanes, a.planes, 1).stride(s1), 1),
                conv(
                    2,
                    ConvSpec::new(a.planes, a.planes, 3)
                        .stride(s2)
                        .padding(a.dilation),
                    a.dilation,
                ),
                conv(3, ConvSpec::new(a.planes, out, 1), 1),
            ]
        }
    };
    // ResLayer: a 1×1 strided conv + norm when the shape changes (avg_down=False).
    let downsample = (a.stride != 1 || a.inplanes != out).then(|| {
        let d = ctx.sub("downsample");
        ConvBn::new(
            &d.sub(0),
            &d.sub(1),
            ConvSpec::new(a.inplanes, out, 1).stride(a.stride),
            1,
            norm,
        )
    });
    ResBlock { convs, downsample }
}

#[derive(Debug)]
pub struct ResNet {
    stem: ConvBn,
    stages: Vec<Vec<ResBlock>>,
    out_indices: Vec<usize>,
    out_channels: Vec<i64>,
}

impl ResNet {
    pub fn build(spec: &ComponentSpec, ctx: &Ctx) -> Result<Self, ModelError> {
        let cfg: &ResNetCfg = spec.args()?;
        let norm = &cfg.norm_cfg;
        let stem_channels = cfg.stem_channels();
        let stem = ConvBn::new(
            &ctx.sub("conv1"),
            &ctx.sub("bn1"),
            ConvSpec::new(cfg.in_channels, stem_channels, 7)
                .stride(2)
                .padding(3),
            1,
            norm,
        );
        let (kind, blocks) = cfg.stages();
        let mut inplanes = stem_channels;
        let mut stages = Vec::with_capacity(blocks.len());
        for (i, &n) in blocks.iter().enumerate() {
            let planes = cfg.base_channels * (1 << i);
            let lctx = ctx.sub(format!("layer{}", i + 1));
            let mut layer = Vec::with_capacity(n as usize);
            for j in 0..n {
                let args = BlockArgs {
                    inplanes,
                    planes,
                    stride: if j == 0 { cfg.strides[i] } else { 1 },
                    dilation: cfg.dilations[i],
                    caffe: cfg.is_caffe(),
                };
                layer.push(build_block(&lctx.sub(j), kind, &args, norm));
                inplanes = planes * kind.expansion();
            }
            stages.push(layer);
        }
        Ok(ResNet {
            stem,
            stages,
            out_indices: cfg.out_indices.iter().map(|&i| i as usize).collect(),
            out_channels: cfg.out_channels(),
        })
    }
}

impl Backbone for ResNet {
    /// `ResNet.forward` (`resnet.py:629-642`).
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, tch::TchError> {
        let mut x = self.stem.forward(x)?.f_relu()?;
        x = x.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        let mut outs = Vec::with_capacity(self.out_indices.len());
        for (i, stage) in self.stages.iter().enumerate() {
            for block in stage {
                x = block.forward(&x)?;
            }
            if self.out_indices.contains(&i) {
                outs.push(x.shallow_clone());
            }
        }
        Ok(outs)
    }
    fn out_channels(&self) -> Vec<i64> {
        self.out_channels.clone()
    }
    /// FPN interpolates each upper level to the lower one's size, so any input size runs;
    /// `DetDataPreprocessor(pad_size_divisor=32)` pads to 32 anyway.
    fn size_divisor(&self) -> i64 {
        1
    }
    /// `forward` as ONNX nodes: `MaxPool` 3×3 s2 p1 (floor mode) as `nn.MaxPool2d` in the stem.
    fn emit_onnx(
        &self,
        g: &mut OnnxGraph,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>, ExportError> {
        let stem = self.stem.emit_onnx(g, inputs[0])?;
        let stem = g.op("Relu", &[stem], vec![]);
        let mut x = g.op(
            "MaxPool",
            &[stem],
            vec![
                attr_i("ceil_mode", 0),
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_ints("strides", &[2, 2]),
            ],
        );
        let mut outs = Vec::with_capacity(self.out_indices.len());
        for (i, stage) in self.stages.iter().enumerate() {
            for block in stage {
                x = block.emit_onnx(g, x)?;
            }
            if self.out_indices.contains(&i) {
                outs.push(x);
            }
        }
        Ok(outs)
    }
    fn fuse(&mut self, mode: Fuse) {
        self.stem.fuse(mode);
        for stage in &mut self.stages {
            stage.iter_mut().for_each(|b| b.fuse(mode));
        }
    }
}

crate::register_tch_component!(scope: "mmdet", name: "ResNet", Backbone: |s, c| Ok(Box::new(ResNet::build(s, c)?)));
