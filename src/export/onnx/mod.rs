//! ONNX export of a loaded detector (issue 16): the network, or end-to-end with decoding and NMS.
//!
//! INTERFACE AGREED BETWEEN ENGINEERS (the CLI's `export --format onnx` calls `export_onnx`):
//! keep these names and fields; add fields/variants freely.

pub mod deform_conv;
mod end2end;
mod end2end_mmdet;
mod end2end_reppoints;
mod end2end_yolo;
pub mod graph;
mod nms;
mod per_image;
mod preprocess;
pub mod proto;
mod two_stage;
mod write;

use std::fmt;
use std::path::PathBuf;

pub use end2end::OnnxDecoder;
pub use graph::{Dim, OnnxGraph, ValueId};
pub use two_stage::OnnxRoiOutputs;
pub use write::export_onnx;

/// The upstream components whose `emit_onnx` is implemented (listed in the error for the others).
pub const EXPORTABLE: &[&str] = &[
    "mmyolo.CSPNeXt",
    "mmdet.CSPNeXt",
    "mmyolo.CSPNeXtPAFPN",
    "mmdet.CSPNeXtPAFPN",
    "mmyolo.RTMDetHead",
    "mmdet.RTMDetSepBNHead",
    "mmyolo.YOLOv8CSPDarknet",
    "mmyolo.YOLOv8PAFPN",
    "mmyolo.YOLOv8Head",
    "mmyolo.YOLOv5CSPDarknet",
    "mmyolo.YOLOv5PAFPN",
    "mmyolo.YOLOv5Head",
    "mmyolo.YOLOXCSPDarknet",
    "mmyolo.YOLOXPAFPN",
    "mmyolo.YOLOXHead",
    "mmyolo.YOLOv6EfficientRep",
    "mmyolo.YOLOv6CSPBep",
    "mmyolo.YOLOv6RepPAFPN",
    "mmyolo.YOLOv6CSPRepPAFPN",
    "mmyolo.YOLOv6RepBiPAFPN",
    "mmyolo.YOLOv6CSPRepBiPAFPN",
    "mmyolo.YOLOv6Head",
    "mmyolo.YOLOv7Backbone",
    "mmyolo.YOLOv7PAFPN",
    "mmyolo.YOLOv7Head",
    "mmyolo.PPYOLOECSPResNet",
    "mmyolo.PPYOLOECSPPAFPN",
    "mmyolo.PPYOLOEHead",
    "mmdet.ResNet",
    "mmdet.FPN",
    "mmdet.RetinaHead",
    "mmdet.ATSSHead",
    "mmdet.GFLHead",
    "mmdet.FCOSHead",
    "mmdet.RPNHead",
    "mmdet.StandardRoIHead",
    "mmdet.RepPointsHead",
];

/// Components refused on purpose, with why (appended to their `Unsupported` error): their
/// operations have no standard ONNX form that runtimes run without custom plugins.
pub const REFUSED: &[(&str, &str)] = &[(
    "mmdet.SingleRoIExtractor",
    "ONNX RoiAlign's max mode takes the maximum of each sample's weighted corners, not of \
     mmcv's bilinear samples; pool_mode='avg' (mmdet's default) exports",
)];

/// ONNX IR version written: 8 (onnx 1.10+). onnxruntime 1.31 refuses the IR 14 that onnx 1.23
/// writes by default; IR 8 is read by onnxruntime, TensorRT 10 and OpenVINO alike.
pub const IR_VERSION: i64 = 8;

/// What `mmcompat export --format onnx` asks for.
#[derive(Debug, Clone)]
pub struct OnnxOptions {
    /// ONNX opset (default 17).
    pub opset: i64,
    /// A symbolic batch dimension instead of 1.
    pub dynamic_batch: bool,
    /// The network input size (H, W); `None`: the test pipeline's scale.
    pub input_size: Option<(i64, i64)>,
    /// Decoding and NMS inside the graph (`dets [B,N,5]`, `labels [B,N]`).
    pub end2end: bool,
    /// fp16 weights and activations.
    pub half: bool,
    /// Fold each batch norm into its convolution (default, as the issue asks: one node less per
    /// layer). `false` writes `BatchNormalization` nodes, PyTorch's op order: the raw outputs
    /// then stay within 1e-4 of the Python model's, where folding measured up to 1.1e-4 level units
    /// (mmdet fixture, coffee; tests/fixtures/onnx/onnxruntime.json).
    pub fold_bn: bool,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        OnnxOptions {
            opset: 17,
            dynamic_batch: false,
            input_size: None,
            end2end: false,
            half: false,
            fold_bn: true,
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct OnnxReport {
    pub model: PathBuf,
    /// The pre-processing description written next to the model.
    pub preprocess_json: PathBuf,
    pub outputs: Vec<String>,
    pub nodes: usize,
}

impl fmt::Display for OnnxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {} ({} nodes; outputs {}) and {}",
            self.model.display(),
            self.nodes,
            self.outputs.join(", "),
            self.preprocess_json.display()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A component of the loaded model has no ONNX emitter yet.
    #[error(
        "cannot export {component} ({kind}) to ONNX: {}; exportable: {supported}",
        refusal_reason(.component)
    )]
    Unsupported {
        component: String,
        kind: &'static str,
        supported: String,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An export option that cannot work with this model (e.g. an input size the backbone
    /// cannot divide).
    #[error("{option}: {message}")]
    InvalidOption {
        option: &'static str,
        message: String,
    },
    /// A weight could not be read from libtorch.
    #[error("reading {what}: {source}")]
    Tensor {
        what: String,
        #[source]
        source: tch::TchError,
    },
}

/// Why `component` (`scope.Type`, possibly followed by its brick) is not exported.
fn refusal_reason(component: &str) -> &'static str {
    REFUSED
        .iter()
        .find(|(name, _)| {
            component
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
        })
        .map_or("no emitter for it", |(_, why)| why)
}

impl ExportError {
    /// The component `component` (`scope.Type`, or a brick's Rust type) has no emitter.
    pub fn unsupported(component: impl Into<String>, kind: &'static str) -> Self {
        ExportError::Unsupported {
            component: component.into(),
            kind,
            supported: EXPORTABLE.join(", "),
        }
    }

    /// Names the upstream component an unsupported brick belongs to (a component trait's
    /// default emitter leaves the name empty: only the detector knows it).
    pub(crate) fn within(self, owner: &str) -> Self {
        match self {
            ExportError::Unsupported {
                component,
                kind,
                supported,
            } if !component.starts_with(owner) => ExportError::Unsupported {
                component: if component.is_empty() {
                    owner.to_string()
                } else {
                    format!("{owner} (its {component})")
                },
                kind,
                supported,
            },
            other => other,
        }
    }
}

/// The raw head outputs as graph values, one per level (strides ascending), in the layout of
/// `crate::models::HeadOutputs`.
#[derive(Debug, Clone, Default)]
pub struct OnnxHeadOutputs {
    pub cls_scores: Vec<ValueId>,
    pub bbox_preds: Vec<ValueId>,
    pub objectnesses: Vec<ValueId>,
    /// Centerness logits `[B, A, H, W]` (ATSS, FCOS): `--end2end` multiplies their sigmoid into
    /// the scores after the per-level threshold and top-k, as mmdet's score factors.
    pub centernesses: Vec<ValueId>,
    /// The neck's features, for a second stage that pools from them (two-stage heads; see
    /// `two_stage.rs`); empty otherwise.
    pub features: Vec<ValueId>,
}
