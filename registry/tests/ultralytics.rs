//! Ultralytics `.pt` files (a whole pickled `DetectionModel`) read as data: the module tree walk
//! against what the real `ultralytics` package reported for the same file
//! (`tests/fixtures/ultralytics/yolov8_tiny.json`, written by
//! `tests/fixtures/generate/make_ultralytics_refs.py`), and the refusal of code execution.

use mmcompat_registry::checkpoint::module_tree::{self, ModuleTreeError};
use mmcompat_registry::checkpoint::pickle::{unpickle, Limits, PidMode};
use mmcompat_registry::checkpoint::{Checkpoint, PickleError};
use serde_json::Value as J;

fn fixture(name: &str) -> String {
    format!(
        "{}/../tests/fixtures/ultralytics/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn listing() -> J {
    let text = std::fs::read_to_string(fixture("yolov8_tiny.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn walked_state_dict_is_the_real_state_dict_key_for_key() {
    let ck = Checkpoint::open(fixture("yolov8_tiny.pt")).unwrap();
    let want = listing();
    // The released layout: strip_optimizer moved the EMA model to `model`; `ema` is None.
    let sections: Vec<&str> = ck.sections().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(sections, ["model"]);
    let got: Vec<(String, String, Vec<usize>)> = ck.sections()[0]
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.dtype.torch_name().to_owned(), t.shape.clone()))
        .collect();
    let want: Vec<(String, String, Vec<usize>)> = want["state_dict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["dtype"].as_str().unwrap().to_owned(),
                serde_json::from_value(e["shape"].clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    assert!(got.iter().any(|(_, d, _)| d == "float16"));
}

#[test]
fn module_tree_names_every_class_without_importing_it() {
    let ck = Checkpoint::open(fixture("yolov8_tiny.pt")).unwrap();
    let tree = module_tree::walk(ck.root().get("model").unwrap()).unwrap();
    let want = listing();
    let want: Vec<(String, String)> = want["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap().to_owned(),
                m["class"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let got: Vec<(String, String)> = tree
        .modules
        .iter()
        .map(|m| (m.path.clone(), m.class.clone()))
        .collect();
    // named_modules() lists the shared SiLU (Conv.default_act) once; the state dict walk, like
    // state_dict(), visits it at every path. Compare the first occurrence of each path.
    let mut seen = std::collections::BTreeSet::new();
    let want_paths: std::collections::BTreeSet<&str> =
        want.iter().map(|(p, _)| p.as_str()).collect();
    let got: Vec<(String, String)> = got
        .into_iter()
        .filter(|(p, _)| want_paths.contains(p.as_str()) && seen.insert(p.clone()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(tree.class(), "ultralytics.nn.tasks.DetectionModel");
    assert_eq!(tree.class_counts()["ultralytics.nn.modules.block.C2f"], 8);
    assert!(ck
        .opaque_globals()
        .contains("ultralytics.nn.modules.head.Detect"));
}

#[test]
fn a_newer_layout_walks_too_with_its_own_paths() {
    // YOLO11 (C3k2, C2PSA, Detect at model.23): the reader does not need to know the layout;
    // the adapter decides whether it maps (plugins/ultralytics/tests).
    let ck = Checkpoint::open(fixture("yolo11_tiny.pt")).unwrap();
    assert_eq!(
        ck.root().get("ema"),
        Some(&mmcompat_registry::checkpoint::Value::None)
    );
    assert_eq!(ck.sections()[0].name, "model");
    assert!(ck.sections()[0]
        .tensors
        .contains_key("model.23.dfl.conv.weight"));
    assert!(ck
        .opaque_globals()
        .contains("ultralytics.nn.modules.block.C2PSA"));
}

/// `DetectionModel` NEWOBJ + BUILD whose state holds `posix.system('ls')`: the REDUCE is refused
/// by name, wherever it sits in the module tree.
#[test]
fn code_execution_inside_a_module_tree_is_refused_naming_the_global() {
    let mut p = b"\x80\x02cultralytics.nn.tasks\nDetectionModel\nq\x00)\x81}(X\x08\x00\x00\x00_modules}X\x0b\x00\x00\x00_parameters".to_vec();
    p.extend(b"cposix\nsystem\nX\x02\x00\x00\x00ls\x85Ru");
    p.extend(b"b.");
    let (_, e) = unpickle(&p, 0, PidMode::Zip, &Limits::for_input(p.len(), 1 << 20)).unwrap_err();
    assert_eq!(
        e,
        PickleError::ForbiddenCallable {
            module: "posix".into(),
            name: "system".into()
        }
    );
    assert!(e.to_string().contains("posix.system"), "{e}");
}

#[test]
fn a_module_field_of_the_wrong_type_is_a_named_error() {
    // `_parameters` holding a string instead of a dict.
    let p = b"\x80\x02cpkg\nNet\n)\x81}(X\x08\x00\x00\x00_modules}X\x0b\x00\x00\x00_parametersX\x01\x00\x00\x00xub.";
    let v = unpickle(p, 0, PidMode::Zip, &Limits::for_input(p.len(), 1 << 20))
        .unwrap()
        .value;
    let e = module_tree::walk(&v).unwrap_err();
    assert_eq!(
        e,
        ModuleTreeError::BadField {
            path: String::new(),
            class: "pkg.Net".into(),
            field: "_parameters",
            found: "\"x\"".into()
        }
    );
}

#[test]
fn inspect_summarises_the_module_tree() {
    use mmcompat_registry::checkpoint::inspect::InspectReport;
    let ck = Checkpoint::open(fixture("yolov8_tiny.pt")).unwrap();
    let want = listing();
    let report = InspectReport::from_checkpoint(&ck, "yolov8_tiny.pt");
    let [tree] = report.module_trees.as_slice() else {
        panic!("{:?}", report.module_trees)
    };
    assert_eq!(tree.key, "model");
    assert_eq!(tree.class, "ultralytics.nn.tasks.DetectionModel");
    assert_eq!(tree.tensors, want["state_dict"].as_array().unwrap().len());
    assert_eq!(tree.classes["ultralytics.nn.modules.head.Detect"], 1);
    assert_eq!(tree.error, None);
    let text = report.render_human();
    assert!(
        text.contains("module tree model: ultralytics.nn.tasks.DetectionModel ("),
        "{text}"
    );
    let j = report.to_json();
    assert_eq!(
        j["module_trees"][0]["class"],
        "ultralytics.nn.tasks.DetectionModel"
    );
    assert_eq!(j["sections"]["model"]["tensors"], tree.tensors);
    // No adapter detection asked for: no `adapters` entry.
    assert!(j.get("adapters").is_none());
}
