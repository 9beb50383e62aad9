//! Foreign checkpoints (issue 15) read as data: a Megvii YOLOX `.pth` (a plain state dict under
//! `model`), a PaddleDetection `.pdparams` (a plain pickle of numpy arrays), and Meituan YOLOv6 /
//! WongKinYiu YOLOv7 `.pt` files (whole pickled `yolov6.models.yolo.Model` trees under
//! `model` / `ema`), from tests/fixtures/foreign (tests/fixtures/generate/make_foreign_refs.py);
//! the YOLOv6 class names are only reported, never imported; code execution in such a tree is
//! refused naming the global. The adapters' mappings are tested in plugins/megvii-yolox and
//! plugins/meituan-yolov6 against mmyolo's converter scripts.

use mmcompat_registry::checkpoint::module_tree;
use mmcompat_registry::checkpoint::pickle::{unpickle, Limits, PidMode};
use mmcompat_registry::checkpoint::{Checkpoint, CheckpointError, Format, PickleError, Value};
use mmcompat_registry::DType;

fn open(name: &str) -> Checkpoint {
    let path = format!(
        "{}/../tests/fixtures/foreign/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Checkpoint::open(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Tensors of the converter's listing (`<name>_mmyolo.json`).
fn converted_count(listing: &str) -> usize {
    let path = format!(
        "{}/../tests/fixtures/foreign/{listing}",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["converted"].as_array().unwrap().len()
}

#[test]
fn a_yolox_checkpoint_is_a_plain_state_dict_under_model() {
    let ck = open("yolox_tiny.pth");
    // yolox/core/trainer.py: save_ckpt's dict.
    assert_eq!(
        ck.top_level_keys(),
        ["start_epoch", "model", "optimizer", "best_ap", "curr_ap"]
    );
    let sections: Vec<&str> = ck.sections().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(sections, ["model"]);
    let model = &ck.sections()[0].tensors;
    // yolox_to_mmyolo.py renames every key, one to one.
    assert_eq!(model.len(), converted_count("yolox_tiny_mmyolo.json"));
    assert!(model.contains_key("backbone.backbone.dark2.1.m.0.conv2.conv.weight"));
    assert!(model
        .values()
        .all(|t| t.dtype == DType::F32 || t.dtype == DType::I64));
    // Nothing but torch's own rebuild functions is named.
    assert!(
        ck.opaque_globals().iter().all(|g| g.starts_with("torch.")),
        "{:?}",
        ck.opaque_globals()
    );
}

#[test]
fn a_yolov6_release_file_walks_to_its_model_state_dict() {
    let ck = open("yolov6v2_tiny.pt");
    // strip_optimizer: the EMA moved to `model`; `ema`, `optimizer`, `updates` None.
    assert_eq!(ck.root().get("ema"), Some(&Value::None));
    let sections: Vec<&str> = ck.sections().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(sections, ["model"]);
    let tree = module_tree::walk(ck.root().get("model").unwrap()).unwrap();
    assert_eq!(tree.class(), "yolov6.models.yolo.Model");
    let counts = tree.class_counts();
    assert_eq!(counts["yolov6.models.efficientrep.EfficientRep"], 1);
    assert_eq!(counts["yolov6.models.effidehead.Detect"], 1);
    assert!(counts["yolov6.layers.common.RepVGGBlock"] > 10);
    // The converter keeps every tensor but Detect's proj and proj_conv.weight.
    assert_eq!(
        tree.state_dict.len(),
        converted_count("yolov6v2_tiny_mmyolo.json") + 2
    );
    assert_eq!(
        tree.state_dict.keys().next().unwrap(),
        "backbone.stem.rbr_dense.conv.weight"
    );
    assert!(tree
        .state_dict
        .values()
        .all(|t| t.dtype == DType::F16 || t.dtype == DType::I64));
}

#[test]
fn a_yolov6_v3_file_names_its_bifusion_neck() {
    let ck = open("yolov6v3_tiny.pt");
    let sections: Vec<&str> = ck.sections().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(sections, ["model"]);
    assert!(ck
        .opaque_globals()
        .contains("yolov6.layers.common.BiFusion"));
    assert!(ck.sections()[0]
        .tensors
        .contains_key("detect.reg_preds_lrtb.0.weight"));
}

#[test]
fn a_yolov5_file_of_the_yolov5_package_walks_too() {
    let ck = open("yolov5_tiny.pt");
    // yolov5's strip_optimizer: `ema` None, `model` the fp16 EMA model.
    assert_eq!(ck.root().get("ema"), Some(&Value::None));
    let tree = module_tree::walk(ck.root().get("model").unwrap()).unwrap();
    assert_eq!(tree.class(), "yolov5.models.yolo.DetectionModel");
    assert_eq!(tree.class_counts()["yolov5.models.yolo.Detect"], 1);
    // The converter keeps every tensor but Detect's anchors.
    assert_eq!(
        tree.state_dict.len(),
        converted_count("yolov5_tiny_mmyolo.json") + 1
    );
    assert!(tree.state_dict.contains_key("model.24.anchors"));
}

/// A YOLOv6 `Model` whose BUILD state holds `posix.system('ls')`: refused by name before anything
/// could run, as in any other pickled tree.
#[test]
fn code_execution_inside_a_yolov6_tree_is_refused_naming_the_global() {
    let mut p = b"\x80\x02cyolov6.models.yolo\nModel\nq\x00)\x81}(X\x08\x00\x00\x00_modules}X\x0b\x00\x00\x00_parameters".to_vec();
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
}

/// WongKinYiu YOLOv7-tiny (a stand-in of the repo's reparameterized `models.yolo.Model`, saved as
/// its tools/reparameterization.ipynb saves a deploy model): `model` walks to its state dict;
/// the classes are named, not imported.
#[test]
fn a_yolov7_deploy_file_walks_to_its_model_state_dict() {
    let ck = open("yolov7-tiny.pt");
    assert_eq!(
        ck.top_level_keys(),
        ["model", "optimizer", "training_results", "epoch"]
    );
    assert_eq!(ck.root().get("epoch"), Some(&Value::Int(-1)));
    let tree = module_tree::walk(ck.root().get("model").unwrap()).unwrap();
    assert_eq!(tree.class(), "models.yolo.Model");
    let counts = tree.class_counts();
    assert_eq!(counts["models.yolo.Detect"], 1);
    assert_eq!(counts["models.common.MP"], 3);
    assert!(counts["models.common.Conv"] > 50);
    // The converter keeps every tensor but Detect's anchors and anchor_grid, and adds 6.
    assert_eq!(
        tree.state_dict.len(),
        converted_count("yolov7_tiny_mmyolo.json") + 2 - 6
    );
    assert!(tree.state_dict.contains_key("model.77.anchor_grid"));
}

/// PaddleDetection `.pdparams`: a plain pickle of numpy arrays (`paddle.save`'s layout), read as
/// data into the `<root>` section; the name table stays a plain dict.
#[test]
fn a_pdparams_file_is_a_plain_pickle_of_numpy_arrays() {
    let ck = open("ppyoloe_tiny.pdparams");
    assert_eq!(ck.format(), Format::Pickle);
    let sections: Vec<&str> = ck.sections().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(sections, ["<root>"]);
    let root = &ck.sections()[0].tensors;
    // The converter writes every array (proj_conv included).
    assert_eq!(root.len(), converted_count("ppyoloe_tiny_mmyolo.json"));
    assert!(root.values().all(|t| t.dtype == DType::F32));
    let proj = &root["yolo_head.proj_conv.weight"];
    assert_eq!(proj.shape, [1, 17, 1, 1]);
    // linspace(0, 16, 17): element 16 is 16.0.
    let bytes = ck.tensor_bytes(proj).unwrap();
    assert_eq!(bytes[64..68], 16.0f32.to_le_bytes());
    assert!(matches!(
        ck.root().get("StructuredToParameterName@@"),
        Some(Value::Dict(_))
    ));
}

/// A `.pdparams`-like pickle (a dict of an ndarray, as numpy 1.26 pickles it with protocol 4)
/// whose second value is `os.system('ls')`: refused naming the global, nothing run.
#[test]
fn code_execution_in_a_pdparams_is_refused_naming_the_global() {
    let mut p = b"\x80\x04}\x94(\x8c\x01w\x94".to_vec();
    p.extend(b"\x8c\x15numpy.core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94");
    p.extend(b"\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94");
    p.extend(
        b"(K\x01K\x01\x85\x94h\x05\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94",
    );
    p.extend(b"(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x04\x00\x00\x80?\x94t\x94b");
    p.extend(b"\x8c\x01x\x94\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02ls\x94\x85\x94R\x94u.");
    let e = Checkpoint::from_bytes("evil.pdparams", &p).unwrap_err();
    let CheckpointError::Pickle { error, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(
        error,
        &PickleError::ForbiddenCallable {
            module: "os".into(),
            name: "system".into()
        }
    );
    assert!(e.to_string().contains("`os.system`"), "{e}");
}
