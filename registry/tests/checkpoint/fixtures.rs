//! The fixture generator's checkpoints (real mmengine / mmdet / mmyolo / mmrazor runs).

use std::borrow::Cow;

use mmcompat_registry::checkpoint::inspect::InspectReport;
use mmcompat_registry::checkpoint::{Checkpoint, TensorInfo, Value};
use mmcompat_registry::DType;
use serde_json::{json, Value as J};

use super::{data, fixture, read_json, values_f64};

const FIXTURES: [&str; 4] = [
    "rtmdet_nano_mmyolo",
    "rtmdet_nano_mmdet",
    "rtmdet_nano_mmdet_legacy",
    "kd_nano_rtmdet_neck",
];

#[test]
fn fixture_listing_equals_keys_json() {
    for stem in FIXTURES {
        let listing = read_json(&fixture(&format!("{stem}.keys.json")));
        let ck = Checkpoint::open(fixture(&format!("{stem}.pth")))
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(ck.format().as_str(), listing["format"], "{stem}");
        assert_eq!(
            json!(ck.top_level_keys()),
            listing["top_level_keys"],
            "{stem}"
        );
        assert_eq!(ck.meta_json(), listing["meta"], "{stem}: meta");
        // Sections follow the same rule on both sides (registry/src/checkpoint/mod.rs doc).
        let entries = |leaves: Vec<(String, &TensorInfo)>| -> J {
            J::Array(
                leaves
                    .into_iter()
                    .map(|(n, t)| json!({"name": n, "shape": t.shape, "dtype": t.dtype.torch_name()}))
                    .collect(),
            )
        };
        let mut sections = serde_json::Map::new();
        for s in ck.sections() {
            let got = entries(s.tensors.iter().map(|(k, t)| (k.clone(), t)).collect());
            let want = &listing["sections"][&s.name];
            for (i, (g, w)) in got
                .as_array()
                .unwrap()
                .iter()
                .zip(want.as_array().unwrap())
                .enumerate()
            {
                assert_eq!(g, w, "{stem}: section {} entry {i}", s.name);
            }
            sections.insert(s.name.clone(), got);
        }
        assert_eq!(J::Object(sections), listing["sections"], "{stem}: sections");
        // Tensors outside the sections (optimizer state), walked as the generator walks them.
        let mut other = serde_json::Map::new();
        if let Value::Dict(d) = ck.root() {
            for (k, v) in &d.items {
                let k = k.key_string();
                if k == "meta" || ck.section(&k).is_some() || v.tensor_leaves().is_empty() {
                    continue;
                }
                other.insert(k, entries(v.tensor_leaves()));
            }
        }
        assert_eq!(
            J::Object(other),
            listing["other_tensors"],
            "{stem}: other tensors"
        );
        // Tensors sharing one storage (mmyolo's shared head convs) share one storage key.
        for s in ck.sections() {
            let mut groups: indexmap::IndexMap<&str, Vec<&str>> = Default::default();
            for (k, t) in &s.tensors {
                groups.entry(t.storage.key.as_str()).or_default().push(k);
            }
            let shared: Vec<&Vec<&str>> = groups.values().filter(|g| g.len() > 1).collect();
            assert_eq!(
                json!(shared),
                listing["shared_storage"][&s.name],
                "{stem}: shared storages of {}",
                s.name
            );
        }
        // The generator lists every global outside torch.* and collections.*.
        let globals: Vec<&String> = ck
            .globals()
            .iter()
            .filter(|g| !g.starts_with("torch.") && !g.starts_with("collections."))
            .collect();
        assert_eq!(json!(globals), listing["opaque_globals"], "{stem}: globals");
        for g in ck.opaque_globals() {
            assert!(ck.globals().contains(g));
        }
    }
}

#[test]
fn fixture_tensor_values_equal_torch() {
    let sums = read_json(&data("fixture_sums.json"));
    for stem in FIXTURES {
        let src = if stem == "rtmdet_nano_mmdet_legacy" {
            "rtmdet_nano_mmdet"
        } else {
            stem
        };
        let want = &sums["files"][format!("{src}.pth")];
        let ck = Checkpoint::open(fixture(&format!("{stem}.pth"))).unwrap();
        let sd = ck.section("state_dict").unwrap();
        let rows = want["state_dict"].as_object().unwrap();
        assert_eq!(sd.tensors.len(), rows.len(), "{stem}");
        for (name, t) in &sd.tensors {
            let v = values_f64(&ck, t);
            let row = rows[name].as_array().unwrap();
            let (sum, abs): (f64, f64) = (v.iter().sum(), v.iter().map(|x| x.abs()).sum());
            let tol = 1e-9 * (1.0 + abs);
            assert!(
                (sum - row[0].as_f64().unwrap()).abs() <= tol,
                "{stem}: {name} sum {sum} vs {}",
                row[0]
            );
            assert!(
                (abs - row[1].as_f64().unwrap()).abs() <= tol,
                "{stem}: {name} abs sum"
            );
            assert_eq!(
                v.first().copied(),
                row[2].as_f64(),
                "{stem}: {name} first element"
            );
        }
        if let Some(tot) = want.get("ema_state_dict_totals") {
            let ema = ck.section("ema_state_dict").unwrap();
            let (mut sum, mut abs) = (0.0f64, 0.0f64);
            for t in ema.tensors.values() {
                let v = values_f64(&ck, t);
                sum += v.iter().sum::<f64>();
                abs += v.iter().map(|x| x.abs()).sum::<f64>();
            }
            assert!(
                (sum - tot[0].as_f64().unwrap()).abs() <= 1e-8 * (1.0 + abs),
                "{stem}: ema sum"
            );
            assert!(
                (abs - tot[1].as_f64().unwrap()).abs() <= 1e-8 * (1.0 + abs),
                "{stem}: ema abs sum"
            );
        }
    }
}

#[test]
fn reading_the_student_does_not_read_the_teacher() {
    // The student's bytes are borrowed slices of the map: nothing else is copied.
    let ck = Checkpoint::open(fixture("kd_nano_rtmdet_neck.pth")).unwrap();
    let sd = ck.section("state_dict").unwrap();
    let mut n = 0;
    for (name, t) in sd
        .tensors
        .iter()
        .filter(|(k, _)| k.starts_with("architecture."))
    {
        assert!(
            matches!(ck.tensor_bytes(t).unwrap(), Cow::Borrowed(_)),
            "{name} was copied"
        );
        n += 1;
    }
    assert!(n > 100);
}

#[test]
fn inspect_report_of_the_distillation_fixture() {
    let path = fixture("kd_nano_rtmdet_neck.pth");
    let listing = read_json(&fixture("kd_nano_rtmdet_neck.keys.json"));
    let ck = Checkpoint::open(&path).unwrap();
    let r = InspectReport::from_checkpoint(&ck, "kd_nano_rtmdet_neck.pth");
    let j = r.to_json();
    let keys: Vec<&String> = j.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "path",
            "format",
            "top_level_keys",
            "sections",
            "dtypes",
            "meta",
            "opaque_globals"
        ]
    );
    assert_eq!(j["format"], "torch-zip");
    assert_eq!(j["top_level_keys"], listing["top_level_keys"]);
    assert_eq!(j["meta"], listing["meta"]);
    // Prefix counts and totals recomputed from torch's listing.
    for sec in ["state_dict", "ema_state_dict"] {
        let mut prefixes = serde_json::Map::new();
        let (mut params, mut bytes) = (0u64, 0u64);
        for e in listing["sections"][sec].as_array().unwrap() {
            let first = e["name"]
                .as_str()
                .unwrap()
                .split('.')
                .next()
                .unwrap()
                .to_string();
            let c = prefixes.entry(first).or_insert(json!(0));
            *c = json!(c.as_u64().unwrap() + 1);
            let numel: u64 = e["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product();
            params += numel;
            bytes += numel * DType::parse(e["dtype"].as_str().unwrap()).unwrap().size() as u64;
        }
        let s = &j["sections"][sec];
        assert_eq!(s["prefixes"], J::Object(prefixes), "{sec}");
        assert_eq!(
            s["tensors"],
            json!(listing["sections"][sec].as_array().unwrap().len())
        );
        assert_eq!(s["parameters"], json!(params));
        assert_eq!(s["bytes"], json!(bytes));
    }
    let og: Vec<&str> = j["opaque_globals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert!(
        og.contains(&"mmengine.logging.history_buffer.HistoryBuffer"),
        "{og:?}"
    );
    let text = r.render_human();
    assert!(text.contains("format: torch-zip"), "{text}");
    assert!(text.contains("prefixes: architecture "), "{text}");
    assert!(
        text.contains("80 classes (person, bicycle, car, motorcycle, airplane, ...)"),
        "{text}"
    );
    assert!(
        text.contains("mmengine.logging.history_buffer.HistoryBuffer"),
        "{text}"
    );
}

#[test]
fn inspect_human_output_snapshot() {
    let ck = Checkpoint::open(fixture("rtmdet_nano_mmdet_legacy.pth")).unwrap();
    let r = InspectReport::from_checkpoint(&ck, "rtmdet_nano_mmdet_legacy.pth");
    insta::assert_snapshot!("inspect_rtmdet_nano_mmdet_legacy", r.render_human());
}
