//! `export_onnx`: builds the whole graph in memory (an unsupported component fails here, before
//! any file exists), then writes the model and its `<stem>.preprocess.json`.
//!
//! Graph input `input`: float32 `[B, 3, H, W]`, the image after the test pipeline and the data
//! preprocessor's channel swap and normalisation (what `Detector::forward` takes). Outputs without
//! `--end2end`, per level `i` (strides ascending): `cls_score_i [B, A·C, H/s, W/s]` (logits),
//! `bbox_pred_i [B, A·4, H/s, W/s]` (as the head's `predict_by_feat` reads them), and
//! `objectness_i [B, A, H/s, W/s]` for heads that have objectness, `centerness_i [B, A, H/s, W/s]`
//! for heads with centerness (ATSS, FCOS). Two-stage detectors (Faster R-CNN) have their own
//! outputs and per-image inputs in both modes: `two_stage.rs`. `--half`: float16 weights and
//! activations inside; the input and every output stay float32 (a `Cast` after the input and
//! before each output), so callers never handle float16.

use std::path::{Path, PathBuf};

use prost::Message;
use tch::{Kind, Tensor};

use super::end2end::{self, LevelShape};
use super::graph::{Dim, OnnxGraph, ValueId};
use super::preprocess::{input_size, preprocess_json};
use super::proto::data_type;
use super::{ExportError, OnnxOptions, OnnxReport, IR_VERSION};
use crate::Inferencer;

/// One declared graph output.
#[derive(Debug, Clone)]
pub(crate) struct OutputDoc {
    pub name: String,
    pub shape: Vec<Dim>,
    pub elem_type: i32,
    pub doc: String,
}

/// One output group: name prefix, its graph value and raw tch output per level, description.
pub(super) type LevelGroup<'a> = (&'a str, &'a [ValueId], &'a [Tensor], &'a str);

/// The declared outputs `{prefix}_{i}` of each group, level by level: the batch dimension, then
/// the raw output's other dimensions; float32 (a `Cast` after each with `half`). Shared by the
/// one-stage raw outputs and the two-stage RPN outputs (`two_stage.rs`).
pub(super) fn level_outputs(
    g: &mut OnnxGraph,
    groups: &[LevelGroup],
    batch: &Dim,
    strides: &[(f64, f64)],
    half: bool,
) -> Vec<(ValueId, OutputDoc)> {
    let mut outputs = Vec::new();
    for &(prefix, values, shapes, doc) in groups {
        for (i, (&v, t)) in values.iter().zip(shapes.iter()).enumerate() {
            let s = t.size();
            let v = float32(g, v, half);
            outputs.push((
                v,
                OutputDoc {
                    name: format!("{prefix}_{i}"),
                    shape: std::iter::once(batch.clone())
                        .chain(s[1..].iter().map(|&n| Dim::Fixed(n)))
                        .collect(),
                    elem_type: data_type::FLOAT,
                    doc: format!(
                        "{doc}, level {i} (stride {})",
                        strides.get(i).map(|s| s.0).unwrap_or(0.0)
                    ),
                },
            ));
        }
    }
    outputs
}

/// `v` as float32: a `Cast` when the graph computes in float16.
fn float32(g: &mut OnnxGraph, v: ValueId, half: bool) -> ValueId {
    if half {
        g.cast(v, data_type::FLOAT)
    } else {
        v
    }
}

fn dim_json(d: &Dim) -> serde_json::Value {
    match d {
        Dim::Fixed(n) => serde_json::json!(n),
        Dim::Symbolic(s) => serde_json::json!(s),
    }
}

pub(crate) fn shape_json(dims: &[Dim]) -> serde_json::Value {
    serde_json::Value::Array(dims.iter().map(dim_json).collect())
}

/// Writes `out` (and its pre-processing JSON next to it).
pub fn export_onnx(
    inferencer: &Inferencer,
    opts: &OnnxOptions,
    out: &Path,
) -> Result<OnnxReport, ExportError> {
    if !(15..=21).contains(&opts.opset) {
        return Err(ExportError::InvalidOption {
            option: "--opset",
            message: format!(
                "{} is not supported: use 15 to 21 (Shape with `start` needs 15, HardSwish 14, \
                 the Resize/Split forms 13; 17 is the default)",
                opts.opset
            ),
        });
    }
    let det = inferencer.detector();
    let (h, w) = input_size(inferencer, opts.input_size)?;
    let d = det.size_divisor();
    if h <= 0 || w <= 0 || h % d != 0 || w % d != 0 {
        return Err(ExportError::InvalidOption {
            option: "--input-size",
            message: format!(
                "{h},{w} is not a positive multiple of {d} in both sides (the neck concatenates \
                 upsampled maps with the next level); try --input-size {},{}",
                (h.max(1) + d - 1) / d * d,
                (w.max(1) + d - 1) / d * d
            ),
        });
    }
    // Output shapes from one forward pass at the export size (exact, whatever the head).
    let probe = Tensor::zeros([1, 3, h, w], (Kind::Float, det.device()));
    let raw = det
        .forward(&probe)
        .map_err(|e| ExportError::InvalidOption {
            option: "--input-size",
            message: format!("the model does not run at {h}×{w}: {e}"),
        })?;
    let batch = if opts.dynamic_batch {
        Dim::Symbolic("batch".into())
    } else {
        Dim::Fixed(1)
    };
    let half = opts.half;
    let mut g = OnnxGraph::new(half, opts.opset);
    g.set_fold_bn(opts.fold_bn);
    g.set_level_sizes(
        raw.cls_scores
            .iter()
            .map(|t| {
                let s = t.size();
                (s[2], s[3])
            })
            .collect(),
    );
    let input_dims = vec![batch.clone(), Dim::Fixed(3), Dim::Fixed(h), Dim::Fixed(w)];
    let input_doc = "float32 NCHW image batch after the test pipeline and the data preprocessor \
                     (channel order and mean/std: see the .preprocess.json)";
    let input = g.input("input", data_type::FLOAT, input_dims.clone(), input_doc);
    let x = if half {
        g.cast(input, data_type::FLOAT16)
    } else {
        input
    };
    let heads = det.emit_onnx(&mut g, x)?;
    let f32_of = |g: &mut OnnxGraph, v: ValueId| float32(g, v, half);
    let mut outputs: Vec<(ValueId, OutputDoc)> = Vec::new();
    if det.onnx_roi_head().is_some() {
        // Two-stage: proposals, RoIAlign and the box head in the graph (`two_stage.rs`).
        outputs = super::two_stage::emit(&mut g, inferencer, opts, (&heads, &raw), &batch, (h, w))?;
    } else if opts.end2end {
        let levels = LevelShape::of_levels(&raw.cls_scores, det.strides());
        let mut f32_heads = heads.clone();
        for v in f32_heads
            .cls_scores
            .iter_mut()
            .chain(f32_heads.bbox_preds.iter_mut())
            .chain(f32_heads.objectnesses.iter_mut())
            .chain(f32_heads.centernesses.iter_mut())
        {
            *v = f32_of(&mut g, *v);
        }
        let e = end2end::emit(
            &mut g,
            det,
            inferencer.test_cfg(),
            &f32_heads,
            (&levels, &batch),
        )?;
        let n = e.rows.clone();
        outputs.push((
            e.dets,
            OutputDoc {
                name: "dets".into(),
                shape: vec![batch.clone(), n.clone(), Dim::Fixed(5)],
                elem_type: data_type::FLOAT,
                doc: "x1, y1, x2, y2, score by descending score, in original-image pixels when \
                      the per-image inputs (scale_factor, ...) are fed, else in network-input \
                      pixels; rows past the image's detections are zero (mmdeploy's layout)"
                    .into(),
            },
        ));
        outputs.push((
            e.labels,
            OutputDoc {
                name: "labels".into(),
                shape: vec![batch.clone(), n],
                elem_type: data_type::INT64,
                doc: "class index of each row of dets; -1 for padding rows".into(),
            },
        ));
    } else {
        let groups: [LevelGroup; 4] = [
            (
                "cls_score",
                &heads.cls_scores,
                &raw.cls_scores,
                "class logits (before sigmoid)",
            ),
            (
                "bbox_pred",
                &heads.bbox_preds,
                &raw.bbox_preds,
                "box regression as predict_by_feat reads it",
            ),
            (
                "objectness",
                &heads.objectnesses,
                &raw.objectnesses,
                "objectness logits",
            ),
            // ATSS/FCOS: our tch heads carry the centerness in `objectnesses`.
            (
                "centerness",
                &heads.centernesses,
                &raw.objectnesses,
                "centerness logits (before sigmoid)",
            ),
        ];
        outputs = level_outputs(&mut g, &groups, &batch, det.strides(), half);
    }
    let docs: Vec<OutputDoc> = outputs.iter().map(|(_, d)| d.clone()).collect();
    for (v, d) in &outputs {
        g.output(*v, &d.name, d.elem_type, d.shape.clone(), &d.doc);
    }
    let model_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pre = preprocess_json(inferencer, opts, &model_name, (h, w), &input_dims, &docs);
    let pre_text = serde_json::to_string_pretty(&pre).unwrap_or_default();
    let nodes = g.node_count();
    let doc = format!(
        "{} exported by mmcompat {} ({})",
        det.type_name(),
        env!("CARGO_PKG_VERSION"),
        if opts.end2end {
            "end-to-end"
        } else {
            "raw head outputs"
        }
    );
    let model = g.finish(
        IR_VERSION,
        &doc,
        vec![("mmcompat.preprocess".into(), pre_text.clone())],
    );
    let bytes = model.encode_to_vec();

    let preprocess_path = preprocess_path(out);
    let write = |path: &Path, data: &[u8]| {
        std::fs::write(path, data).map_err(|source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    write(out, &bytes)?;
    write(&preprocess_path, format!("{pre_text}\n").as_bytes())?;
    tracing::info!(
        model = %out.display(),
        nodes,
        bytes = bytes.len(),
        "ONNX export written"
    );
    Ok(OnnxReport {
        model: out.to_path_buf(),
        preprocess_json: preprocess_path,
        outputs: docs.into_iter().map(|d| d.name).collect(),
        nodes,
    })
}

/// `<dir>/<stem>.preprocess.json` for `<dir>/<stem>.onnx`.
pub fn preprocess_path(model: &Path) -> PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    model.with_file_name(format!("{stem}.preprocess.json"))
}
