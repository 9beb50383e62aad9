//! Post-processing against the real heads' `predict_by_feat`
//! (tests/fixtures/postprocess/generate_postprocess.py): synthetic raw outputs generated here
//! exactly as the generator does, final detections compared with the stored ones.

use std::path::PathBuf;

use serde_json::Value;
use tch::Tensor;

use super::*;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/postprocess")
}

/// The generator's splitmix64 finaliser (wrapping arithmetic).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator's `uniform(seed, stream, n)`: exactly representable values in [0, 1).
fn uniform(seed: u64, stream: u64, n: usize) -> impl Iterator<Item = f64> {
    (0..n as u64).map(move |i| {
        let key = (seed << 48) ^ (stream << 32) ^ i;
        (splitmix64(key) >> 40) as f64 / (1u64 << 24) as f64
    })
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("fixture key {key}"))
}

struct Case {
    flavour: HeadFlavour,
    cls: Vec<Tensor>,
    reg: Vec<Tensor>,
    strides: Vec<(f64, f64)>,
    metas: Vec<ImageMeta>,
    cfg: TestCfg,
}

fn load_case(case: &Value) -> Case {
    let flavour = match case["flavour"].as_str() {
        Some("mmyolo") => HeadFlavour::Mmyolo,
        Some("mmdet") => HeadFlavour::Mmdet,
        other => panic!("flavour {other:?}"),
    };
    let (seed, n, c) = (
        num(case, "seed") as u64,
        num(case, "batch") as i64,
        num(case, "num_classes") as i64,
    );
    let (lo, span) = (num(case, "logit_lo"), num(case, "logit_span"));
    let strides: Vec<(f64, f64)> = case["strides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s.as_f64().unwrap(), s.as_f64().unwrap()))
        .collect();
    let mut cls = vec![];
    let mut reg = vec![];
    for (level, size) in case["featmap_sizes"].as_array().unwrap().iter().enumerate() {
        let (h, w) = (size[0].as_i64().unwrap(), size[1].as_i64().unwrap());
        let logits: Vec<f32> = uniform(seed, 2 * level as u64, (n * c * h * w) as usize)
            .map(|u| (lo + span * u * u * u) as f32)
            .collect();
        cls.push(Tensor::from_slice(&logits).view([n, c, h, w]));
        let stride = strides[level].0;
        let dist: Vec<f32> = uniform(seed, 2 * level as u64 + 1, (n * 4 * h * w) as usize)
            .map(|u| {
                let d = 0.5 + 4.0 * u;
                (if flavour == HeadFlavour::Mmdet {
                    d * stride
                } else {
                    d
                }) as f32
            })
            .collect();
        reg.push(Tensor::from_slice(&dist).view([n, 4, h, w]));
    }
    let metas = case["metas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ImageMeta {
            ori_shape: [
                m["ori_shape"][0].as_u64().unwrap() as usize,
                m["ori_shape"][1].as_u64().unwrap() as usize,
            ],
            img_shape: [
                m["img_shape"][0].as_u64().unwrap() as usize,
                m["img_shape"][1].as_u64().unwrap() as usize,
            ],
            scale_factor: [
                m["scale_factor"][0].as_f64().unwrap(),
                m["scale_factor"][1].as_f64().unwrap(),
            ],
            pad_param: m.get("pad_param").and_then(|p| p.as_array()).map(|p| {
                let f = |i: usize| p[i].as_f64().unwrap() as f32;
                [f(0), f(1), f(2), f(3)]
            }),
        })
        .collect();
    Case {
        flavour,
        cls,
        reg,
        strides,
        metas,
        cfg: TestCfg::parse(&case["test_cfg"], "test_cfg").unwrap(),
    }
}

/// Count, labels, boxes and scores must agree as matched sets (near-equal scores may swap ranks).
fn assert_matches(
    name: &str,
    ours: &RawDetections,
    expected: &Value,
    box_tol: f32,
    score_tol: f32,
) {
    let exp_scores: Vec<f32> = expected["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let exp_labels: Vec<usize> = expected["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let exp_boxes: Vec<[f32; 4]> = expected["bboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let f = |i: usize| b[i].as_f64().unwrap() as f32;
            [f(0), f(1), f(2), f(3)]
        })
        .collect();
    assert_eq!(ours.len(), exp_scores.len(), "{name}: detection count");
    let mut used = vec![false; ours.len()];
    let mut exact = 0;
    for k in 0..exp_scores.len() {
        let found = (0..ours.len()).find(|&i| {
            !used[i]
                && ours.labels[i] == exp_labels[k]
                && (ours.scores[i] - exp_scores[k]).abs() <= score_tol
                && (0..4).all(|j| (ours.bboxes[i][j] - exp_boxes[k][j]).abs() <= box_tol)
        });
        match found {
            Some(i) => {
                used[i] = true;
                if i == k && ours.bboxes[i] == exp_boxes[k] && ours.scores[i] == exp_scores[k] {
                    exact += 1;
                }
            }
            None => panic!(
                "{name}: expected detection #{k} (label {}, score {}, box {:?}) not found; ours #{k}: label {:?} score {:?} box {:?}",
                exp_labels[k],
                exp_scores[k],
                exp_boxes[k],
                ours.labels.get(k),
                ours.scores.get(k),
                ours.bboxes.get(k)
            ),
        }
    }
    // Same inputs, same float32 operations: almost everything is bit-identical and in place.
    assert!(
        exact * 100 >= ours.len() * 95,
        "{name}: only {exact}/{} bit-identical in place",
        ours.len()
    );
}

#[test]
fn predict_by_feat_matches_upstream_heads() {
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 5,
        "fixtures missing in {}",
        fixture_dir().display()
    );
    for path in names {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let case = load_case(&fixture["case"]);
        let host = head_outputs_to_host(&case.cls, &case.reg, &case.strides, 0.0).unwrap();
        let results = predict_by_feat(case.flavour, &host, &case.metas, &case.cfg).unwrap();
        let expected = fixture["results"].as_array().unwrap();
        assert_eq!(results.len(), expected.len(), "{name}: batch size");
        for (i, (ours, exp)) in results.iter().zip(expected).enumerate() {
            assert_matches(&format!("{name}[{i}]"), ours, exp, 1e-4, 1e-6);
        }
    }
}
