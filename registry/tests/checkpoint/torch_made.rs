//! Small torch-made files: every dtype, views, shared storages, three serializations.

use std::borrow::Cow;

use mmcompat_registry::checkpoint::{Checkpoint, Format, Value};
use serde_json::{json, Value as J};

use super::{data, decode, read_json};

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
