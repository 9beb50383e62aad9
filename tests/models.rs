//! tch models against the real mmyolo/mmdet models (references made by
//! tests/fixtures/generate/make_model_refs.py with the pinned Python stack):
//! * `sizes.json`: for RTMDet tiny/s/m/l/x of both packages (and mmdet x-P6), the merged `model`
//!   dict and the real `state_dict()` names and shapes — our `expected_keys` must equal them;
//! * `refs.json`: raw head outputs of the fixture checkpoints (plain mmyolo, plain mmdet, the
//!   distilled student) on fixed inputs — ours within 1e-4, weights read from the real `.pth`
//!   files by the core checkpoint reader;
//! * config and load errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mmcompat::models::{build_detector, Flavour, ModelError};
use mmcompat::weights::section_tensors;
use mmcompat_registry::checkpoint::Checkpoint;
use mmcompat_registry::scoped::RegistryError;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub(crate) fn read_json(rel: &str) -> Value {
    let path = fixtures().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes the front-coded key list of sizes.json (`"<n>|<suffix>|<d0>,<d1>"`).
pub(crate) fn decode_keys(entries: &Value) -> Vec<(String, Vec<i64>)> {
    let mut prev = String::new();
    let mut out = Vec::new();
    for e in entries.as_array().expect("keys array") {
        let s = e.as_str().expect("key string");
        let mut parts = s.splitn(3, '|');
        let n: usize = parts
            .next()
            .and_then(|p| p.parse().ok())
            .expect("prefix length");
        let suffix = parts.next().expect("suffix");
        let dims = parts.next().expect("shape");
        let name = format!("{}{}", &prev[..n], suffix);
        let shape = if dims.is_empty() {
            vec![]
        } else {
            dims.split(',').map(|d| d.parse().expect("dim")).collect()
        };
        prev.clone_from(&name);
        out.push((name, shape));
    }
    out
}

#[test]
fn every_size_has_exactly_the_upstream_state_dict() {
    let sizes = read_json("models/sizes.json");
    let sizes = sizes.as_object().expect("object");
    assert_eq!(
        sizes.len(),
        11,
        "tiny/s/m/l/x of both packages + mmdet x_p6"
    );
    for (name, entry) in sizes {
        let scope = name.split('/').next().expect("scope/size");
        let det = build_detector(&entry["model"], scope, Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours: BTreeMap<String, Vec<i64>> = det.expected_keys().into_iter().collect();
        let theirs: BTreeMap<String, Vec<i64>> = decode_keys(&entry["keys"]).into_iter().collect();
        let missing: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
        let extra: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: missing {missing:?}, extra {extra:?}"
        );
        for (k, shape) in &theirs {
            assert_eq!(&ours[k], shape, "{name}: shape of {k}");
        }
        // Same order as upstream's state_dict() too (module registration order).
        assert_eq!(
            det.expected_keys(),
            decode_keys(&entry["keys"]),
            "{name}: key order"
        );
        let flavour = if scope == "mmyolo" {
            Flavour::Mmyolo
        } else {
            Flavour::Mmdet
        };
        assert_eq!(det.flavour(), flavour, "{name}");
        assert_eq!(det.num_classes(), 80, "{name}");
    }
}

/// The generator's deterministic input: a ramp over [-2, 2] plus 0.5·sin(0.01·i), NCHW order.
fn input(h: i64, w: i64) -> Tensor {
    let n = 3 * h * w;
    let opts = (Kind::Float, Device::Cpu);
    let ramp = Tensor::linspace(-2.0, 2.0, n, opts).reshape([1, 3, h, w]);
    let wave = (Tensor::arange(n, opts) * 0.01).sin() * 0.5;
    ramp + wave.reshape([1, 3, h, w])
}

fn shape_of(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_i64().expect("dim"))
        .collect()
}

#[test]
fn fixture_checkpoints_match_python_head_outputs() {
    let refs = read_json("models/refs.json");
    let refs = refs.as_object().expect("object");
    assert_eq!(refs.len(), 3, "mmyolo, mmdet, kd_student");
    for (name, entry) in refs {
        let scope = entry["scope"].as_str().expect("scope");
        let mut det = build_detector(&entry["model"], scope, Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ckpt_path = fixtures()
            .join("checkpoints")
            .join(entry["checkpoint"].as_str().expect("checkpoint"));
        let ck = Checkpoint::open(&ckpt_path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let prefix = entry["prefix"].as_str().filter(|p| !p.is_empty());
        let tensors = section_tensors(&ck, entry["section"].as_str().expect("section"), prefix)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = det
            .load(tensors, true)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(report.is_complete(), "{name}: {report}");
        assert_eq!(report.coverage(), 100.0);
        for (iname, (h, w)) in [("sq640", (640, 640)), ("r320x640", (320, 640))] {
            let out = det
                .forward(&input(h, w))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let levels = entry["outputs"][iname].as_array().expect("levels");
            assert_eq!(out.cls_scores.len(), levels.len());
            assert_eq!(out.bbox_preds.len(), levels.len());
            let mut worst = 0f64;
            for (l, lv) in levels.iter().enumerate() {
                for (k, t) in [("cls", &out.cls_scores[l]), ("reg", &out.bbox_preds[l])] {
                    let r = &lv[k];
                    assert_eq!(
                        t.size(),
                        shape_of(&r["shape"]),
                        "{name} {iname} level {l} {k}"
                    );
                    assert_eq!(t.kind(), Kind::Float);
                    let flat = t.flatten(0, -1).to_kind(Kind::Double);
                    let numel = flat.size()[0];
                    let samples = r["samples"].as_array().expect("samples");
                    let count = samples.len() as i64;
                    for (i, s) in samples.iter().enumerate() {
                        let idx = (i as i64 * numel) / count;
                        let d = (flat.double_value(&[idx]) - s.as_f64().expect("f64")).abs();
                        assert!(d <= 1e-4, "{name} {iname} level {l} {k}[{idx}]: |diff| {d}");
                        worst = worst.max(d);
                    }
                    // Sums over ~10^5 values: float32 accumulation-order noise, hence relative.
                    let sum = flat.sum(Kind::Double).double_value(&[]);
                    let abs_sum = r["abs_sum"].as_f64().expect("abs_sum");
                    let ref_sum = r["sum"].as_f64().expect("sum");
                    assert!(
                        (sum - ref_sum).abs() <= 1e-6 * abs_sum + 1e-3,
                        "{name} {iname} level {l} {k}: sum {sum} vs {ref_sum}"
                    );
                }
            }
            eprintln!("{name} {iname}: max |diff| over samples {worst:e}");
        }
    }
}

fn tiny(scope: &str) -> Value {
    let sizes = read_json("models/sizes.json");
    sizes[format!("{scope}/tiny")]["model"].clone()
}

#[test]
fn unknown_config_key_names_key_and_type() {
    let mut cfg = tiny("mmyolo");
    cfg["backbone"]["widen_factr"] = 0.5.into();
    let err = build_detector(&cfg, "mmyolo", Device::Cpu).expect_err("unknown key");
    match &err {
        ModelError::UnknownKey {
            key,
            type_name,
            path,
            ..
        } => {
            assert_eq!(key, "widen_factr");
            assert_eq!(type_name, "mmyolo.CSPNeXt");
            assert_eq!(path, "model.backbone");
        }
        other => panic!("wrong error {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("widen_factr") && msg.contains("CSPNeXt") && msg.contains("widen_factor"),
        "{msg}"
    );

    let mut cfg = tiny("mmdet");
    cfg["bbox_head"]["act_cfg"]["negative_slope"] = 0.1.into();
    let err = build_detector(&cfg, "mmdet", Device::Cpu).expect_err("SiLU takes no negative_slope");
    assert!(
        matches!(&err, ModelError::UnknownKey { key, type_name, path, .. }
            if key == "negative_slope" && type_name == "SiLU" && path == "model.bbox_head.act_cfg"),
        "{err:?}"
    );

    let mut cfg = tiny("mmyolo");
    cfg["bbox_head"]["head_module"]["share_convs"] = true.into();
    let err = build_detector(&cfg, "mmyolo", Device::Cpu).expect_err("unknown head_module key");
    assert!(
        matches!(&err, ModelError::UnknownKey { key, type_name, .. }
            if key == "share_convs" && type_name == "mmyolo.RTMDetSepBNHeadModule"),
        "{err:?}"
    );
}

#[test]
fn type_lookup_follows_scopes() {
    // A bare mmdet name is not visible from the mmyolo scope (sibling registries) ...
    let err =
        build_detector(&tiny("mmdet"), "mmyolo", Device::Cpu).expect_err("RTMDet not in mmyolo");
    let ModelError::Registry { path, source } = &err else {
        panic!("wrong error {err:?}")
    };
    assert_eq!(path, "model");
    let RegistryError::NotFound(nf) = source.as_ref() else {
        panic!("wrong error {source:?}")
    };
    assert_eq!(
        (nf.type_name.as_str(), nf.current_scope.as_str()),
        ("RTMDet", "mmyolo")
    );
    assert_eq!(
        nf.registered_in,
        vec!["mmdet"],
        "the message tells where it is registered"
    );
    // ... but `_scope_` switches the scope for the whole build, and `mmdet.X` names it.
    let mut cfg = tiny("mmdet");
    cfg["_scope_"] = "mmdet".into();
    build_detector(&cfg, "mmyolo", Device::Cpu).expect("_scope_ = mmdet");
    let mut cfg = tiny("mmyolo");
    cfg["backbone"]["type"] = "mmdet.CSPNeXt".into();
    cfg["backbone"]["norm_cfg"] = serde_json::json!({"type": "BN"});
    let det =
        build_detector(&cfg, "mmyolo", Device::Cpu).expect("mmdet.CSPNeXt inside a YOLODetector");
    // mmdet's CSPNeXt uses SPP with 3 parallel pools: conv2 takes 4 × mid channels like SPPF.
    assert!(det
        .expected_keys()
        .iter()
        .any(|(k, _)| k == "backbone.stage4.1.conv2.conv.weight"));
    let mut cfg = tiny("mmyolo");
    cfg["neck"]["type"] = "CSPNeXtPAFPNN".into();
    let err = build_detector(&cfg, "mmyolo", Device::Cpu).expect_err("typo");
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "model.neck: `CSPNeXtPAFPNN` is not a registered model type in scope mmyolo"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("`CSPNeXtPAFPN`"),
        "suggests the closest name: {msg}"
    );
}

fn zeros_for(keys: &[(String, Vec<i64>)]) -> Vec<(String, Tensor)> {
    keys.iter()
        .map(|(k, s)| {
            (
                k.clone(),
                Tensor::zeros(s.as_slice(), (Kind::Float, Device::Cpu)),
            )
        })
        .collect()
}

#[test]
fn strict_load_reports_missing_unexpected_and_mismatched() {
    let mut det = build_detector(&tiny("mmdet"), "mmdet", Device::Cpu).expect("build");
    let keys = det.expected_keys();
    let mut tensors = zeros_for(&keys);
    // Drop two backbone keys, mis-shape one head key, add an unexpected one; num_batches_tracked
    // buffers are ignored like upstream.
    tensors.retain(|(k, _)| {
        k != "backbone.stem.0.conv.weight" && k != "backbone.stem.0.bn.running_var"
    });
    let idx = tensors
        .iter()
        .position(|(k, _)| k == "bbox_head.rtm_cls.0.weight")
        .expect("rtm_cls");
    tensors[idx].1 = Tensor::zeros([81, 96, 1, 1], (Kind::Float, Device::Cpu));
    tensors.push((
        "teacher.backbone.stem.0.conv.weight".into(),
        Tensor::zeros([1], (Kind::Float, Device::Cpu)),
    ));
    tensors.push((
        "backbone.stem.0.bn.num_batches_tracked".into(),
        Tensor::zeros([], (Kind::Int64, Device::Cpu)),
    ));
    let err = det
        .load(
            tensors.iter().map(|(k, t)| (k.clone(), t.shallow_clone())),
            true,
        )
        .expect_err("strict");
    let ModelError::StrictLoad(report) = &err else {
        panic!("wrong error {err:?}")
    };
    assert_eq!(
        report.missing,
        vec![
            "backbone.stem.0.conv.weight",
            "backbone.stem.0.bn.running_var"
        ]
    );
    assert_eq!(
        report.unexpected,
        vec!["teacher.backbone.stem.0.conv.weight"]
    );
    assert_eq!(report.shape_mismatch.len(), 1);
    assert_eq!(report.shape_mismatch[0].name, "bbox_head.rtm_cls.0.weight");
    assert_eq!(report.shape_mismatch[0].found, vec![81, 96, 1, 1]);
    let text = err.to_string();
    assert!(
        text.contains("missing keys: 2") && text.contains("backbone.stem.* (2)"),
        "{text}"
    );
    assert!(
        text.contains("unexpected keys: 1") && text.contains("teacher.backbone.* (1)"),
        "{text}"
    );

    // Non-strict: loads the rest and reports coverage.
    let report = det.load(tensors, false).expect("non-strict");
    assert_eq!(report.expected, keys.len());
    assert_eq!(report.matched, keys.len() - 3);
    assert!((report.coverage() - 100.0 * (keys.len() - 3) as f64 / keys.len() as f64).abs() < 1e-9);
}

#[test]
fn shared_conv_aliases_are_one_tensor() {
    let mut det = build_detector(&tiny("mmyolo"), "mmyolo", Device::Cpu).expect("build");
    let alias = "bbox_head.head_module.cls_convs.2.1.conv.weight";
    let canonical = "bbox_head.head_module.cls_convs.0.1.conv.weight";
    let details = det.expected_key_details();
    let a = details
        .iter()
        .find(|k| k.name == alias)
        .expect("alias listed");
    assert_eq!(a.alias_of.as_deref(), Some(canonical));
    // Differing aliases: an inconsistent checkpoint, refused in strict mode.
    let keys = det.expected_keys();
    let mut tensors = zeros_for(&keys);
    let idx = tensors.iter().position(|(k, _)| k == alias).expect("alias");
    tensors[idx].1 = tensors[idx].1.ones_like();
    let err = det.load(tensors, true).expect_err("aliases differ");
    assert!(
        matches!(&err, ModelError::SharedWeightsDiffer { canonical: c, alias: a, max_abs_diff }
            if c == canonical && a == alias && *max_abs_diff == 1.0),
        "{err:?}"
    );
    // Aliases absent (a converter that dropped them): fine, the tensor is the canonical one.
    let tensors: Vec<_> = zeros_for(&keys)
        .into_iter()
        .filter(|(k, _)| {
            !k.contains("convs.1.") && !k.contains("convs.2.") || !k.ends_with("conv.weight")
        })
        .collect();
    let report = det.load(tensors, true).expect("aliases may be absent");
    assert_eq!(report.aliases_absent, 8);
    assert_eq!(report.coverage(), 100.0);
}

#[test]
fn forward_rejects_bad_inputs() {
    let det = build_detector(&tiny("mmyolo"), "mmyolo", Device::Cpu).expect("build");
    for (shape, what) in [
        (vec![1, 3, 100, 640], "multiples of 32"),
        (vec![1, 4, 64, 64], "N×3×H×W"),
        (vec![3, 64, 64], "N×3×H×W"),
    ] {
        let x = Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu));
        let err = det.forward(&x).expect_err("bad input");
        assert!(err.to_string().contains(what), "{err}");
    }
    let out = det
        .forward(&Tensor::zeros([2, 3, 64, 96], (Kind::Float, Device::Cpu)))
        .expect("batch of 2");
    assert_eq!(out.cls_scores[0].size(), vec![2, 80, 8, 12]);
    assert_eq!(out.bbox_preds[2].size(), vec![2, 4, 2, 3]);
    assert_eq!(det.strides(), &[(8.0, 8.0), (16.0, 16.0), (32.0, 32.0)]);
    assert_eq!(det.prior_offset(), 0.0);
    let dp = det.data_preprocessor();
    assert_eq!(dp.mean.as_deref(), Some(&[103.53, 116.28, 123.675][..]));
    assert_eq!(dp.std.as_deref(), Some(&[57.375, 57.12, 58.395][..]));
    assert!(!dp.swap_channels());
    assert_eq!(det.test_cfg()["nms_pre"], 30000);
}

#[test]
fn detector_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<mmcompat::models::Detector>();
    assert_send::<mmcompat::models::HeadOutputs>();
}

#[test]
fn device_strings() {
    use mmcompat::device::{parse_device, DeviceError};
    assert_eq!(parse_device("cpu").expect("cpu"), Device::Cpu);
    assert!(matches!(parse_device("tpu"), Err(DeviceError::Syntax(_))));
    assert!(matches!(
        parse_device("cuda:x"),
        Err(DeviceError::Syntax(_))
    ));
    if !tch::Cuda::is_available() {
        // No GPU here: the error must say which piece is missing, never panic.
        let err = parse_device("cuda:0").expect_err("no CUDA");
        assert!(!matches!(err, DeviceError::Syntax(_)), "{err}");
    }
}
