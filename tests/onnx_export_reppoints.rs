//! ONNX export of mmdet RepPoints (issue 16): the deformable convolution as standard ops
//! (src/export/onnx/deform_conv.rs) against our tch `deform_conv2d` (mmcv's sampling rules,
//! itself checked against the real kernels in tests/ops.rs) at the map borders, and the
//! `transform_method` variants' exports that check_onnx.py runs in onnxruntime
//! (`reppoints_{minmax,partial_minmax}_chelsea[_end2end]`, compared there with the real stack's
//! `inference/reppoints/<variant>__chelsea.json`). The family's own rows (moment transform, three
//! photographs, tract) are `REPPOINTS` in tests/onnx_export_mmdet.rs.

use std::path::Path;

use mmcompat::export::onnx::deform_conv::{DeformSampling, DeformWeight};
use mmcompat::export::onnx::proto::data_type;
use mmcompat::export::onnx::{Dim, OnnxGraph, OnnxOptions, IR_VERSION};
use mmcompat::inferencer::Inferencer;
use mmcompat::ops::{deform_conv2d, DeformGeometry};
use prost::Message;
use sha2::{Digest, Sha256};
use tch::{Device, Kind};
use tract_onnx::prelude::*;

use crate::inference::{roots, source_image};
use crate::onnx_export::{export, fixtures, hex, runnable, values};

/// A batch of two 5×6 maps, 3×3 kernel (padding 1), offsets on a 0.5 grid in [−3, 3] (so samples
/// land exactly on `y = −1`, `y = H − 1`, `y = H`, … where mmcv's strict and inclusive bounds
/// differ) plus a few ±1e6 (read nothing): the graph equals `deform_conv2d` within float32
/// rounding of the GEMM (its sums run in another order).
#[test]
fn deform_conv_graph_matches_tch_at_the_borders() {
    tch::manual_seed(16);
    let opts = (Kind::Float, Device::Cpu);
    let (b, c, h, w, cout) = (2i64, 3i64, 5i64, 6i64, 4i64);
    let x = tch::Tensor::randn([b, c, h, w], opts);
    let off = (tch::Tensor::rand([b, 18, h, w], opts) * 12.0 - 6.0).round() / 2.0;
    let flat = off.view([-1]);
    for (i, v) in [(0, 1e6), (7, -1e6), (100, 1e6), (333, -1e6)] {
        let _ = flat.get(i).fill_(v);
    }
    let weight = tch::Tensor::randn([cout, c, 3, 3], opts);
    let geometry = DeformGeometry {
        padding: [1, 1],
        ..DeformGeometry::default()
    };
    let expected = deform_conv2d(&x, &off, &weight, None, &geometry, None).expect("tch");

    let mut g = OnnxGraph::new(false, 17);
    let fixed = |d: &[i64]| d.iter().map(|&n| Dim::Fixed(n)).collect::<Vec<_>>();
    let xi = g.input("x", data_type::FLOAT, fixed(&[b, c, h, w]), "");
    let oi = g.input("offset", data_type::FLOAT, fixed(&[b, 18, h, w]), "");
    let sampling =
        DeformSampling::emit(&mut g, (xi, (h, w)), oi, (3, 3), &geometry).expect("sampling");
    let wi = DeformWeight::emit(&mut g, &weight, "weight").expect("weight");
    let y = sampling.conv(&mut g, xi, &wi).expect("conv");
    g.output(y, "y", data_type::FLOAT, fixed(&[b, cout, h, w]), "");
    let bytes = g.finish(IR_VERSION, "", vec![]).encode_to_vec();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dcn.onnx");
    std::fs::write(&path, bytes).expect("write");

    let host = |t: &tch::Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).expect("f32");
    let arr = |t: &tch::Tensor, shape: &[i64]| {
        let s: Vec<usize> = shape.iter().map(|&n| n as usize).collect();
        tract_ndarray::ArrayD::from_shape_vec(s, host(t))
            .expect("shape")
            .into_tensor()
    };
    let model = runnable(&path);
    let outs = model
        .run(tvec!(
            arr(&x, &[b, c, h, w]).into(),
            arr(&off, &[b, 18, h, w]).into()
        ))
        .expect("tract runs it");
    let (got, want) = (values(&outs[0]), host(&expected));
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("deform conv graph vs tch: max |Δ| {worst:e}");
    assert!(worst <= 1e-5, "max |Δ| {worst:e}");
    // Not vacuous: the borders and the huge offsets zero some samples but not all.
    assert!(want.iter().any(|v| v.abs() > 0.1), "{want:?}");
}

/// The `transform_method` variants referenced on chelsea (tests/fcos_reppoints.rs), built from
/// the reference's own `config_text` like `init_detector` (non-strict: the min-max models leave
/// the checkpoint's `moment_transfer` unused).
fn variant(name: &str) -> Inferencer {
    use mmcompat::registry::config::Limits;
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            fixtures().join(format!("inference/reppoints/{name}__chelsea.json")),
        )
        .expect("reference"),
    )
    .expect("json");
    let config = roots().dirs("mmdet")[0].join(format!("mmcompat/{name}.py"));
    let text = r["config_text"].as_str().expect("config_text");
    let cfg = mmcompat::Config::from_text(&config, text, &roots(), &Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Inferencer::builder()
        .loaded_config(cfg)
        .weights(fixtures().join("checkpoints/reppoints_tiny_mmdet.pth"))
        .strict(false)
        .scope("mmdet")
        .device("cpu")
        .config_roots(roots())
        .build()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `reppoints_{minmax,partial_minmax}_chelsea[_end2end]` for check_onnx.py, with the network
/// input as `<variant>__chelsea.input.bin` (as `MmdetFamily::export_checked`).
pub(crate) fn export_variants(dir: &Path, write_inputs: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in ["reppoints_minmax", "reppoints_partial_minmax"] {
        let inf = variant(name);
        let p = inf.preprocess(&source_image("chelsea")).expect("pipeline");
        let up = |v: usize| (v as i64 + 31) / 32 * 32;
        for (suffix, end2end) in [("", false), ("_end2end", true)] {
            let opts = OnnxOptions {
                input_size: Some((up(p.image.height), up(p.image.width))),
                end2end,
                ..OnnxOptions::default()
            };
            let file = format!("{name}_chelsea{suffix}");
            let (path, _) = export(&inf, &opts, dir, &file);
            let hash = hex(&Sha256::digest(std::fs::read(&path).expect("read back")));
            out.push((file, hash));
        }
        if write_inputs {
            let stem = format!("{name}__chelsea.input");
            std::fs::write(dir.join(format!("{stem}.bin")), &p.image.data).expect("write input");
        }
    }
    out
}
