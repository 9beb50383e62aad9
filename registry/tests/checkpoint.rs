//! Checkpoint reader/writer against what the real torch reads and writes.
//!
//! References (all made by Python, committed next to the scripts that made them):
//! * `tests/fixtures/checkpoints/*.pth` + `*.keys.json` (fixture generator, real mmengine/mmdet/
//!   mmyolo/mmrazor runs) and `data/checkpoints/fixture_sums.json` (torch's per-tensor sums);
//! * `data/checkpoints/torch_*.pth` + `expected.json` (`data/make_test_checkpoints.py`: every
//!   dtype, views, shared storages, legacy and protocol-4 files);
//! * `data/checkpoints/written_by_mmcompat.*` + `*.torch.json` (our writer's output as
//!   `data/verify_written.py` loads it with torch `weights_only=True` and mmengine).

use mmcompat_registry::checkpoint::inspect::InspectReport;
use mmcompat_registry::checkpoint::{
    write_pth, write_safetensors, Checkpoint, CheckpointError, Format, PickleError, TensorData,
    TensorInfo, Value,
};
use mmcompat_registry::DType;
use proptest::prelude::*;
use serde_json::{json, Value as J};
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn data(name: &str) -> PathBuf {
    manifest().join("tests/data/checkpoints").join(name)
}

fn fixture(name: &str) -> PathBuf {
    manifest().join("../tests/fixtures/checkpoints").join(name)
}

fn read_json(p: &Path) -> J {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn venv_python() -> Option<PathBuf> {
    let p = manifest().join("../.venv-fixtures/bin/python");
    if p.exists() {
        Some(p)
    } else {
        println!("note: {} not found; skipping the live torch check (committed torch references still checked)", p.display());
        None
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Little-endian tensor bytes to JSON numbers (floats widened to f64 exactly, as torch's
/// `.double().tolist()`), ints, or bools.
fn decode(dtype: DType, b: &[u8]) -> Vec<J> {
    let chunks = b.chunks_exact(dtype.size());
    chunks
        .map(|c| match dtype {
            DType::F32 => json!(f64::from(f32::from_le_bytes(c.try_into().unwrap()))),
            DType::F64 => json!(f64::from_le_bytes(c.try_into().unwrap())),
            DType::F16 => json!(f16_to_f64(u16::from_le_bytes(c.try_into().unwrap()))),
            DType::BF16 => json!(f64::from(f32::from_bits(
                u32::from(u16::from_le_bytes(c.try_into().unwrap())) << 16
            ))),
            DType::I64 => json!(i64::from_le_bytes(c.try_into().unwrap())),
            DType::I32 => json!(i32::from_le_bytes(c.try_into().unwrap())),
            DType::I16 => json!(i16::from_le_bytes(c.try_into().unwrap())),
            DType::I8 => json!(c[0] as i8),
            DType::U8 => json!(c[0]),
            DType::Bool => json!(c[0] != 0),
        })
        .collect()
}

fn values_f64(ck: &Checkpoint, t: &TensorInfo) -> Vec<f64> {
    decode(t.dtype, &ck.tensor_bytes(t).unwrap())
        .iter()
        .map(|v| {
            v.as_f64()
                .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
                .unwrap()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Small torch-made files: every dtype, views, shared storages, three serializations.

#[test]
fn torch_made_files_read_exactly_as_torch_reads_them() {
    let expected = read_json(&data("expected.json"));
    let files = expected["files"].as_object().unwrap();
    assert_eq!(files.len(), 3);
    for (name, exp) in files {
        let ck = Checkpoint::open(data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want_format = if name.contains("legacy") {
            Format::TorchLegacy
        } else {
            Format::TorchZip
        };
        assert_eq!(ck.format(), want_format, "{name}");
        assert_eq!(json!(ck.top_level_keys()), exp["top_level_keys"], "{name}");
        assert_eq!(ck.meta_json(), exp["meta"], "{name}: meta");

        let all = ck.all_tensors();
        let want = exp["tensors"].as_array().unwrap();
        assert_eq!(all.len(), want.len(), "{name}");
        let mut group_key: std::collections::HashMap<String, String> = Default::default();
        for ((path, t), w) in all.iter().zip(want) {
            assert_eq!(path, w["name"].as_str().unwrap(), "{name}");
            assert_eq!(t.dtype.torch_name(), w["dtype"], "{name}: {path}");
            assert_eq!(json!(t.shape), w["shape"], "{name}: {path}");
            assert_eq!(json!(t.strides), w["stride"], "{name}: {path}");
            assert_eq!(json!(t.offset), w["storage_offset"], "{name}: {path}");
            let bytes = ck.tensor_bytes(t).unwrap();
            assert_eq!(
                J::Array(decode(t.dtype, &bytes)),
                w["values"],
                "{name}: {path}"
            );
            // Same storage key exactly when torch shares the storage.
            let group = w["storage_group"].as_str().unwrap().to_string();
            let key = group_key
                .entry(group.clone())
                .or_insert_with(|| t.storage.key.clone());
            assert_eq!(
                *key, t.storage.key,
                "{name}: {path} should share storage with {group}"
            );
            assert_eq!(
                ck.storage_bytes(&t.storage.key).unwrap().len() as u64,
                w["storage_nbytes"].as_u64().unwrap(),
                "{name}: {path}"
            );
        }
        let keys: std::collections::HashSet<_> = group_key.values().collect();
        assert_eq!(
            keys.len(),
            group_key.len(),
            "{name}: distinct torch storages must have distinct keys"
        );

        // Sections: state_dict and ema_state_dict; the optimizer is not a state dict.
        let names: Vec<&str> = ck.sections().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["state_dict", "ema_state_dict"], "{name}");
        let sd = ck.section("state_dict").unwrap();
        assert_eq!(
            json!(sd.tensors.keys().collect::<Vec<_>>()),
            exp["state_dict_keys"],
            "{name}"
        );
        // `_metadata` is kept aside as an attribute, not among the keys.
        let attrs = ck
            .root()
            .get("state_dict")
            .and_then(Value::as_dict)
            .and_then(|d| d.attributes.as_ref())
            .unwrap();
        assert_eq!(
            attrs.get("_metadata").unwrap().to_json(),
            exp["state_dict_metadata"],
            "{name}"
        );
        // defaultdict: an opaque value with its dict items; int keys kept.
        let extras = ck.root().get("extras").unwrap();
        let dd = extras.get("dd").unwrap();
        assert!(
            matches!(dd, Value::Opaque(o) if o.class() == "collections.defaultdict"),
            "{name}: {dd:?}"
        );
        assert_eq!(
            dd.get("x").unwrap().to_json(),
            exp["extras"]["dd_items"]["x"],
            "{name}"
        );
        assert_eq!(
            extras.get("int_keys").unwrap().to_json(),
            exp["extras"]["int_keys"],
            "{name}"
        );
        // numpy scalars decode to numbers through the Value API too.
        let meta = ck.meta().unwrap();
        assert_eq!(meta.get("np_f64").and_then(Value::as_f64), Some(0.5));
        assert_eq!(meta.get("np_i64").and_then(Value::as_i64), Some(-7));
        // A contiguous tensor is borrowed from the map; a transposed view is gathered.
        assert!(matches!(
            ck.tensor_bytes(&sd.tensors["views.base"]).unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            ck.tensor_bytes(&sd.tensors["views.transposed"]).unwrap(),
            Cow::Owned(_)
        ));
    }
}

#[test]
fn opaque_globals_are_recorded_and_inert() {
    let ck = Checkpoint::open(data("torch_zip.pth")).unwrap();
    let og: Vec<&str> = ck.opaque_globals().iter().map(String::as_str).collect();
    for g in [
        "collections.defaultdict",
        "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy.dtype",
    ] {
        assert!(og.contains(&g), "{g} missing from {og:?}");
    }
    assert!(
        !og.iter()
            .any(|g| g.starts_with("torch.") || *g == "collections.OrderedDict"),
        "{og:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The fixture generator's checkpoints (real mmengine / mmdet / mmyolo / mmrazor runs).

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

// ---------------------------------------------------------------------------------------------
// Hostile and broken files.

/// A zip checkpoint with the given data.pkl and `archive/data/<key>` records.
fn zip_with(pkl: &[u8], records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", o).unwrap();
        z.write_all(pkl).unwrap();
        for (k, b) in records {
            z.start_file(format!("archive/data/{k}"), o).unwrap();
            z.write_all(b).unwrap();
        }
        z.start_file("archive/version", o).unwrap();
        z.write_all(b"3\n").unwrap();
        z.finish().unwrap();
    }
    buf.into_inner()
}

fn pickle_error(r: Result<Checkpoint, CheckpointError>) -> (u64, PickleError) {
    match r {
        Err(CheckpointError::Pickle { offset, error, .. }) => (offset, error),
        other => panic!("expected a pickle error, got {other:?}"),
    }
}

#[test]
fn malicious_os_system_reduce_is_refused_and_never_runs() {
    let marker = std::env::temp_dir().join(format!("mmcompat-pwned-{}", std::process::id()));
    let cmd = format!("touch {}", marker.display());
    // PROTO 2; GLOBAL 'os system'; BINUNICODE cmd; TUPLE1; REDUCE; STOP — what
    // `pickle.dumps(X())` gives for `X.__reduce__ = lambda self: (os.system, (cmd,))`.
    let mut p = b"\x80\x02cos\nsystem\nX".to_vec();
    p.extend((cmd.len() as u32).to_le_bytes());
    p.extend(cmd.as_bytes());
    p.extend(b"\x85R.");
    let (offset, e) = pickle_error(Checkpoint::from_bytes("evil.pth", &zip_with(&p, &[])));
    assert_eq!(offset, 2, "the GLOBAL opcode");
    assert_eq!(
        e,
        PickleError::ForbiddenCallable {
            module: "os".into(),
            name: "system".into()
        }
    );
    assert!(e.to_string().contains("os.system"));
    // The same through STACK_GLOBAL (protocol 4) and `posix.system`, and builtins.eval.
    let mut p4 = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94\x93".to_vec();
    p4.extend(b"\x8c\x02id\x85R.");
    let (_, e) = pickle_error(Checkpoint::from_bytes("evil4.pth", &zip_with(&p4, &[])));
    assert_eq!(
        e,
        PickleError::ForbiddenCallable {
            module: "posix".into(),
            name: "system".into()
        }
    );
    let pe = b"\x80\x02c__builtin__\neval\nX\x04\x00\x00\x001+1s\x85R.";
    let (_, e) = pickle_error(Checkpoint::from_bytes("eval.pth", &zip_with(pe, &[])));
    assert!(matches!(e, PickleError::ForbiddenCallable { ref name, .. } if name == "eval"));
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn unknown_callable_becomes_inert_opaque_data() {
    // {'x': evil.Payload('rm -rf /')}: any other global is only recorded, never imported.
    let p = b"\x80\x02}X\x01\x00\x00\x00xcevil\nPayload\nX\x08\x00\x00\x00rm -rf /\x85Rs.";
    let ck = Checkpoint::from_bytes("inert.pth", &zip_with(p, &[])).unwrap();
    let Some(Value::Opaque(o)) = ck.root().get("x") else {
        panic!("{:?}", ck.root())
    };
    assert_eq!(o.class(), "evil.Payload");
    assert_eq!(o.args, vec![Value::Str("rm -rf /".into())]);
    assert!(ck.opaque_globals().contains("evil.Payload"));
    assert_eq!(
        ck.root().to_json(),
        json!({"x": {"__class__": "evil.Payload", "__args__": ["rm -rf /"]}})
    );
}

/// `{'w': _rebuild_tensor_v2(('storage', torch.<cls>, '0', 'cpu', numel), 0, (n,), (1,), False, OrderedDict())}`
fn tensor_pickle(cls: &str, numel: u32, n: u32) -> Vec<u8> {
    let mut p = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n".to_vec();
    p.extend(cls.as_bytes());
    p.extend(b"\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ");
    p.extend(numel.to_le_bytes());
    p.extend(b"tQK\x00J");
    p.extend(n.to_le_bytes());
    p.extend(b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.");
    p
}

#[test]
fn broken_files_give_located_errors() {
    // Sanity: the hand-made tensor pickle reads.
    let ok = Checkpoint::from_bytes(
        "ok.pth",
        &zip_with(&tensor_pickle("FloatStorage", 2, 2), &[("0", &[0u8; 8])]),
    )
    .unwrap();
    assert_eq!(ok.section("<root>").unwrap().tensors["w"].shape, vec![2]);

    // Truncated zip.
    let full = std::fs::read(data("torch_zip.pth")).unwrap();
    let r = Checkpoint::from_bytes("cut.pth", &full[..full.len() / 2]);
    assert!(matches!(r, Err(CheckpointError::Zip { .. })), "{r:?}");

    // Missing data/N record.
    let r = Checkpoint::from_bytes(
        "missing.pth",
        &zip_with(&tensor_pickle("FloatStorage", 2, 2), &[]),
    );
    match r {
        Err(CheckpointError::MissingStorage { key, record, .. }) => {
            assert_eq!(key, "0");
            assert_eq!(record, "archive/data/0");
        }
        other => panic!("{other:?}"),
    }

    // Unsupported opcode, named, with its offset.
    let (offset, e) = pickle_error(Checkpoint::from_bytes(
        "ext.pth",
        &zip_with(b"\x80\x02\x82\x07.", &[]),
    ));
    assert_eq!(offset, 2);
    assert!(
        matches!(e, PickleError::UnsupportedOpcode { name: "EXT1", .. }),
        "{e}"
    );

    // Unknown storage type.
    let (_, e) = pickle_error(Checkpoint::from_bytes(
        "cplx.pth",
        &zip_with(
            &tensor_pickle("ComplexFloatStorage", 2, 2),
            &[("0", &[0u8; 16])],
        ),
    ));
    assert_eq!(
        e,
        PickleError::UnknownStorageType {
            class: "torch.ComplexFloatStorage".into()
        }
    );

    // Tensor bytes out of range: a 10-element view of a 2-element storage.
    let r = Checkpoint::from_bytes(
        "range.pth",
        &zip_with(&tensor_pickle("FloatStorage", 2, 10), &[("0", &[0u8; 8])]),
    );
    match r {
        Err(CheckpointError::TensorOutOfRange {
            tensor,
            key,
            end,
            available,
            ..
        }) => {
            assert_eq!(
                (tensor.as_str(), key.as_str(), end, available),
                ("w", "0", 40, 8)
            );
        }
        other => panic!("{other:?}"),
    }

    // A storage that declares more than the whole file: refused before anything is allocated.
    let (_, e) = pickle_error(Checkpoint::from_bytes(
        "huge.pth",
        &zip_with(&tensor_pickle("DoubleStorage", i32::MAX as u32, 1), &[]),
    ));
    assert!(matches!(e, PickleError::Limit { .. }), "{e}");
}

#[test]
fn memo_bomb_and_huge_shape_are_limit_errors() {
    // l0 = ['x' * 1000]; l(i+1) = [l(i), l(i)]: 2^40 strings once expanded.
    let mut p = b"\x80\x02]q\x00X\xe8\x03\x00\x00".to_vec();
    p.extend(std::iter::repeat_n(b'x', 1000));
    p.push(b'a');
    for i in 0..40u8 {
        p.extend([b'(', b'h', i, b'h', i, b'l', b'q', i + 1]);
    }
    p.push(b'.');
    let (_, e) = pickle_error(Checkpoint::from_bytes("bomb.pth", &zip_with(&p, &[])));
    assert!(matches!(e, PickleError::Limit { .. }), "{e}");

    // Shape (2^31-1)^3: numel overflows the byte range of any file.
    let mut t = tensor_pickle("FloatStorage", 2, 2);
    let at = t.windows(5).position(|w| w == b"K\x00J\x02\x00").unwrap() + 2;
    t.splice(
        at..at + 6,
        *b"J\xff\xff\xff\x7fJ\xff\xff\xff\x7fJ\xff\xff\xff\x7f\x87",
    );
    let stride = t.windows(3).position(|w| w == b"K\x01\x85").unwrap();
    t.splice(stride..stride + 3, *b"K\x01K\x01K\x01\x87");
    let (_, e) = pickle_error(Checkpoint::from_bytes(
        "shape.pth",
        &zip_with(&t, &[("0", &[0u8; 8])]),
    ));
    assert!(matches!(e, PickleError::Limit { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Writers: round trip through the real torch.

fn f16_bits(x: f32) -> u16 {
    // exact for the values used below (normal halves)
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let frac = ((b >> 13) & 0x3ff) as u16;
    sign | ((exp as u16) << 10) | frac
}

/// Deterministic tensors of every dtype, and the meta written with them.
fn written_tensors() -> (Vec<(String, TensorData<'static>)>, J) {
    let le = |v: Vec<Vec<u8>>| v.concat();
    let t = |name: &str, dtype: DType, shape: &[usize], data: Vec<u8>| {
        (
            name.to_string(),
            TensorData::new(dtype, shape.to_vec(), data),
        )
    };
    let tensors = vec![
        t(
            "backbone.conv.weight",
            DType::F32,
            &[2, 3],
            le((0..6)
                .map(|i| (i as f32 * 0.25 - 1.0).to_le_bytes().to_vec())
                .collect()),
        ),
        t(
            "backbone.conv.bias",
            DType::F16,
            &[3],
            le([0.5f32, -1.0, 2.0]
                .iter()
                .map(|&x| f16_bits(x).to_le_bytes().to_vec())
                .collect()),
        ),
        t(
            "backbone.bn.weight",
            DType::BF16,
            &[2],
            le([1.0f32, -2.5]
                .iter()
                .map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes().to_vec())
                .collect()),
        ),
        t(
            "neck.f64",
            DType::F64,
            &[2],
            le([1e-3f64, -2.5]
                .iter()
                .map(|x| x.to_le_bytes().to_vec())
                .collect()),
        ),
        t(
            "neck.num_batches_tracked",
            DType::I64,
            &[],
            12_345_678_901i64.to_le_bytes().to_vec(),
        ),
        t(
            "neck.i32",
            DType::I32,
            &[2],
            le([-7i32, 9]
                .iter()
                .map(|x| x.to_le_bytes().to_vec())
                .collect()),
        ),
        t(
            "neck.i16",
            DType::I16,
            &[2],
            le([-300i16, 300]
                .iter()
                .map(|x| x.to_le_bytes().to_vec())
                .collect()),
        ),
        t("neck.i8", DType::I8, &[2], vec![0x80, 0x7f]),
        t("head.u8", DType::U8, &[3], vec![0, 128, 255]),
        t("head.mask", DType::Bool, &[2], vec![1, 0]),
        t("head.empty", DType::F32, &[0, 3], Vec::new()),
    ];
    let meta = json!({
        "epoch": 12,
        "dataset_meta": {"classes": ["person", "car"]},
        "mmcompat": {"converted_from": "kd_nano_rtmdet_neck.pth", "dropped": ["teacher.x"]},
        "lr": 0.01,
        "flag": true,
        "none": null,
        "big": 1_099_511_627_776u64,
        "negative": -5
    });
    (tensors, meta)
}

/// Our reading of a written file equals the data we wrote.
fn assert_reads_back(ck: &Checkpoint, tensors: &[(String, TensorData<'_>)], section: &str) {
    let s = ck.section(section).unwrap();
    assert_eq!(s.tensors.len(), tensors.len());
    for (name, td) in tensors {
        let t = &s.tensors[name];
        assert_eq!((t.dtype, &t.shape), (td.dtype, &td.shape), "{name}");
        assert_eq!(
            ck.tensor_bytes(t).unwrap().as_ref(),
            td.data.as_ref(),
            "{name}"
        );
    }
}

/// What torch reported (verify_written.py output) equals our data.
fn assert_torch_view(torch: &J, tensors: &[(String, TensorData<'_>)]) {
    let tt = torch["tensors"].as_object().unwrap();
    assert_eq!(tt.len(), tensors.len());
    for (name, td) in tensors {
        let w = &tt[name];
        assert_eq!(w["dtype"], td.dtype.torch_name(), "{name}");
        assert_eq!(w["shape"], json!(td.shape), "{name}");
        assert_eq!(w["values"], J::Array(decode(td.dtype, &td.data)), "{name}");
    }
}

fn run_verify(py: &Path, file: &Path) -> J {
    let out = std::process::Command::new(py)
        .arg(manifest().join("tests/data/verify_written.py"))
        .arg(file)
        .env_remove("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "torch refused {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn writer_output_is_the_committed_torch_verified_file() {
    let (tensors, meta) = written_tensors();
    let dir = tempfile::tempdir().unwrap();
    let pth = dir.path().join("w.pth");
    let st = dir.path().join("w.safetensors");
    write_pth(&pth, &tensors, Some(&meta)).unwrap();
    write_safetensors(&st, &tensors, Some(&meta)).unwrap();
    if std::env::var_os("MMCOMPAT_BLESS_WRITTEN").is_some() {
        std::fs::copy(&pth, data("written_by_mmcompat.pth")).unwrap();
        std::fs::copy(&st, data("written_by_mmcompat.safetensors")).unwrap();
        if let Some(py) = venv_python() {
            for f in ["written_by_mmcompat.pth", "written_by_mmcompat.safetensors"] {
                let j = run_verify(&py, &data(f));
                std::fs::write(
                    data(&format!("{f}.torch.json")),
                    serde_json::to_string_pretty(&j).unwrap() + "\n",
                )
                .unwrap();
            }
        }
    }
    // Same bytes as the committed files, so torch's committed verdict applies to this writer.
    assert!(
        std::fs::read(&pth).unwrap() == std::fs::read(data("written_by_mmcompat.pth")).unwrap(),
        "pth bytes changed: re-bless"
    );
    assert!(
        std::fs::read(&st).unwrap()
            == std::fs::read(data("written_by_mmcompat.safetensors")).unwrap(),
        "safetensors bytes changed: re-bless"
    );

    let torch_pth = read_json(&data("written_by_mmcompat.pth.torch.json"));
    assert_torch_view(&torch_pth, &tensors);
    assert_eq!(torch_pth["meta"], meta);
    assert_eq!(torch_pth["top_level_keys"], json!(["meta", "state_dict"]));
    assert_eq!(torch_pth["state_dict_type"], "OrderedDict");
    assert_eq!(torch_pth["mmengine_load_checkpoint_equal"], true);
    let torch_st = read_json(&data("written_by_mmcompat.safetensors.torch.json"));
    assert_torch_view(&torch_st, &tensors);
    assert_eq!(
        torch_st["metadata"]["meta"]
            .as_str()
            .map(|s| serde_json::from_str::<J>(s).unwrap()),
        Some(meta.clone())
    );

    // And our reader reads back what we wrote.
    let ck = Checkpoint::open(&pth).unwrap();
    assert_eq!(ck.format(), Format::TorchZip);
    assert_eq!(ck.meta_json(), meta);
    assert!(ck.opaque_globals().is_empty());
    assert_reads_back(&ck, &tensors, "state_dict");
    let ck = Checkpoint::open(&st).unwrap();
    assert_eq!(ck.format(), Format::Safetensors);
    assert_eq!(ck.meta_json(), meta);
    assert_reads_back(&ck, &tensors, "<root>");
}

#[test]
fn written_files_load_in_real_torch() {
    let Some(py) = venv_python() else { return };
    let (tensors, meta) = written_tensors();
    let dir = tempfile::tempdir().unwrap();
    let pth = dir.path().join("live.pth");
    write_pth(&pth, &tensors, Some(&meta)).unwrap();
    let j = run_verify(&py, &pth);
    assert_torch_view(&j, &tensors);
    assert_eq!(j["meta"], meta);
    assert_eq!(j["mmengine_load_checkpoint_equal"], true);
    let st = dir.path().join("live.safetensors");
    write_safetensors(&st, &tensors, Some(&meta)).unwrap();
    assert_torch_view(&run_verify(&py, &st), &tensors);
}

#[test]
fn writer_rejects_inconsistent_tensor_data() {
    let dir = tempfile::tempdir().unwrap();
    let bad = vec![(
        "x".to_string(),
        TensorData::new(DType::F32, vec![3], vec![0u8; 8]),
    )];
    let e = write_pth(dir.path().join("bad.pth"), &bad, None).unwrap_err();
    assert!(e.to_string().contains("needs 12 bytes, got 8"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Never a panic: mutated real files.

fn exercise(name: &str, bytes: &[u8]) {
    if let Ok(ck) = Checkpoint::from_bytes(name, bytes) {
        let _ = ck.meta_json();
        let _ = InspectReport::from_checkpoint(&ck, name).render_human();
        for (_, t) in ck.all_tensors() {
            let _ = ck.tensor_bytes(t);
        }
    }
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "torch_zip.pth",
            std::fs::read(data("torch_zip.pth")).unwrap(),
        ),
        (
            "torch_legacy.pth",
            std::fs::read(data("torch_legacy.pth")).unwrap(),
        ),
        (
            "torch_zip_proto4.pth",
            std::fs::read(data("torch_zip_proto4.pth")).unwrap(),
        ),
        (
            "rtmdet_nano_mmdet_legacy.pth",
            std::fs::read(fixture("rtmdet_nano_mmdet_legacy.pth")).unwrap(),
        ),
        (
            "written_by_mmcompat.safetensors",
            std::fs::read(data("written_by_mmcompat.safetensors")).unwrap(),
        ),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Set(usize, u8),
    Splice(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, v)| Mutation::Splice(i, v)),
    ]
}

/// Mutations land mostly in the pickle (where the interpreter works), sometimes anywhere.
fn apply(bytes: &mut Vec<u8>, m: &Mutation, focus: usize) {
    let len = bytes.len().max(1);
    let pos = |i: usize| {
        if i.is_multiple_of(4) {
            i % len
        } else {
            i % focus.clamp(1, len)
        }
    };
    match m {
        Mutation::Truncate(i) => bytes.truncate(i % len),
        Mutation::Flip(i, b) => {
            let p = pos(*i);
            if let Some(x) = bytes.get_mut(p) {
                *x ^= b;
            }
        }
        Mutation::Set(i, b) => {
            let p = pos(*i);
            if let Some(x) = bytes.get_mut(p) {
                *x = *b;
            }
        }
        Mutation::Splice(i, v) => {
            let p = pos(*i).min(bytes.len());
            bytes.splice(p..p, v.iter().copied());
        }
    }
}

proptest! {
    // PROPTEST_CASES=N runs a longer campaign (see the report in BENCHMARKS.md).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_checkpoints_never_panic(seed in 0usize..5, muts in proptest::collection::vec(mutation(), 1..6)) {
        let seeds = seeds();
        let (name, original) = &seeds[seed];
        // Legacy files and zips keep their pickle in the first part of the file.
        let focus = original.len().min(64 * 1024);
        let mut bytes = original.clone();
        for m in &muts {
            apply(&mut bytes, m, focus);
        }
        exercise(name, &bytes);
    }

    #[test]
    fn random_pickles_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut p = b"\x80\x02".to_vec();
        p.extend(body);
        exercise("random.pth", &zip_with(&p, &[("0", &[0u8; 64])]));
    }
}
