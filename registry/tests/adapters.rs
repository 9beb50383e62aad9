//! Adapter contract: plan resolution, reports, declarative TOML adapters, on the REAL fixture key
//! listings (`tests/fixtures/checkpoints/*.keys.json`).

use std::path::Path;

use mmcompat_registry::adapter::declarative::TomlAdapter;
use mmcompat_registry::adapter::{
    AdapterError, AdapterOptions, AdapterSet, CheckpointAdapter, CheckpointView, Level, Op, Plan,
    RenameRule, Report, ResolvedMapping, TensorEntry, TensorOp,
};
use mmcompat_registry::DType;

fn fixture(name: &str) -> CheckpointView {
    let path = format!(
        "{}/../tests/fixtures/checkpoints/{name}.keys.json",
        env!("CARGO_MANIFEST_DIR")
    );
    CheckpointView::from_keys_json(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn view(keys: &[(&str, &[usize])]) -> CheckpointView {
    let entries = keys
        .iter()
        .map(|(k, s)| TensorEntry {
            key: (*k).to_owned(),
            dtype: DType::F32,
            shape: s.to_vec(),
        })
        .collect();
    CheckpointView {
        top_level_keys: vec!["meta".into(), "state_dict".into()],
        sections: [("state_dict".to_owned(), entries)].into_iter().collect(),
        meta: serde_json::json!({}),
    }
}

fn plan(ops: Vec<Op>) -> Plan {
    Plan {
        adapter: "test".into(),
        section: "state_dict".into(),
        ops,
        notes: vec![],
    }
}

#[test]
fn fixture_listings_read_as_views() {
    let kd = fixture("kd_nano_rtmdet_neck");
    assert_eq!(
        kd.top_level_keys,
        [
            "meta",
            "state_dict",
            "message_hub",
            "optimizer",
            "param_schedulers",
            "ema_state_dict"
        ]
    );
    assert_eq!(kd.section("state_dict").unwrap().len(), 991);
    assert_eq!(kd.section("ema_state_dict").unwrap().len(), 992);
    assert_eq!(kd.default_section(), Some("state_dict"));
    assert!(kd.meta["dataset_meta"]["classes"].is_array());
    let legacy = fixture("rtmdet_nano_mmdet_legacy");
    assert_eq!(legacy.section("state_dict").unwrap()[0].dtype, DType::F32);
}

#[test]
fn views_from_the_reader_equal_the_fixture_listings() {
    use mmcompat_registry::checkpoint::Checkpoint;
    for name in [
        "kd_nano_rtmdet_neck",
        "rtmdet_nano_mmdet_legacy",
        "rtmdet_nano_mmyolo",
    ] {
        let path = format!(
            "{}/../tests/fixtures/checkpoints/{name}.pth",
            env!("CARGO_MANIFEST_DIR")
        );
        let ours = CheckpointView::from_checkpoint(&Checkpoint::open(&path).unwrap());
        let listing = fixture(name);
        assert_eq!(ours.top_level_keys, listing.top_level_keys, "{name}");
        for (section, entries) in &ours.sections {
            assert_eq!(
                Some(entries.as_slice()),
                listing.section(section),
                "{name} {section}"
            );
        }
        assert_eq!(
            ours.meta["dataset_meta"], listing.meta["dataset_meta"],
            "{name}"
        );
    }
}

#[test]
fn patterns_are_anchored_at_the_start() {
    let v = view(&[
        ("architecture.a.architecture.w", &[1]),
        ("x.architecture.w", &[1]),
    ]);
    let m = plan(vec![Op::Rename {
        pattern: r"architecture\.".into(),
        to: String::new(),
    }])
    .resolve(&v)
    .unwrap();
    assert_eq!(m.keys(), ["a.architecture.w", "x.architecture.w"]);
    let m = plan(vec![Op::StripPrefix {
        prefix: "architecture.".into(),
    }])
    .resolve(&v)
    .unwrap();
    assert_eq!(m.keys(), ["a.architecture.w", "x.architecture.w"]);
    let m = plan(vec![Op::Drop {
        pattern: r"architecture\.".into(),
        reason: "r".into(),
    }])
    .resolve(&v)
    .unwrap();
    assert_eq!(m.keys(), ["x.architecture.w"]);
}

#[test]
fn rename_first_is_an_elif_chain() {
    // Sequential renames would turn a.0 → a.1 → a.2; an elif chain renames once.
    let v = view(&[("a.0.w", &[1]), ("a.1.w", &[1])]);
    let rules = vec![
        RenameRule {
            pattern: r"a\.0\.".into(),
            to: "a.1.".into(),
        },
        RenameRule {
            pattern: r"a\.1\.".into(),
            to: "a.2.".into(),
        },
    ];
    let m = plan(vec![Op::RenameFirst { rules }]).resolve(&v).unwrap();
    assert_eq!(m.keys(), ["a.1.w", "a.2.w"]);
}

#[test]
fn duplicates_unused_rules_and_bad_patterns_are_reported() {
    let v = view(&[("module.w", &[1]), ("w", &[1])]);
    let err = plan(vec![Op::StripPrefix {
        prefix: "module.".into(),
    }])
    .resolve(&v)
    .unwrap_err();
    assert!(
        matches!(&err, AdapterError::DuplicateOutputs { duplicates, .. } if duplicates[0].0 == "w"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("state_dict:module.w and state_dict:w"),
        "{err}"
    );

    let m = plan(vec![Op::Drop {
        pattern: "nothing".into(),
        reason: "r".into(),
    }])
    .resolve(&v)
    .unwrap();
    assert_eq!(m.unused_ops, ["test: op #0 drop ^nothing (r)"]);

    let err = plan(vec![Op::Keep {
        pattern: "(".into(),
        reason: None,
    }])
    .resolve(&v)
    .unwrap_err();
    assert!(
        matches!(err, AdapterError::BadPattern { index: 0, .. }),
        "{err}"
    );

    let err = Plan {
        section: "model".into(),
        ..plan(vec![])
    }
    .resolve(&v)
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no section `model` (sections: state_dict)"),
        "{err}"
    );
}

#[test]
fn tensor_ops_track_shapes_and_dtypes() {
    let v = view(&[("qkv.weight", &[6, 4]), ("proj.weight", &[4, 2])]);
    let m = plan(vec![
        Op::Transpose {
            pattern: r"proj\.".into(),
            perm: vec![1, 0],
        },
        Op::Cast {
            pattern: r"proj\.".into(),
            dtype: DType::F16,
        },
        Op::Split {
            pattern: r"qkv\.".into(),
            dim: 0,
            into: vec!["q.".into(), "k.".into(), "v.".into()],
        },
    ])
    .resolve(&v)
    .unwrap();
    // Split outputs take the place of their source, in order.
    assert_eq!(
        m.keys(),
        ["q.weight", "k.weight", "v.weight", "proj.weight"]
    );
    assert_eq!(m.tensors[3].shape, [2, 4]);
    assert_eq!(m.tensors[3].dtype, DType::F16);
    assert_eq!(
        m.tensors[3].ops,
        [
            TensorOp::Transpose { perm: vec![1, 0] },
            TensorOp::Cast { dtype: DType::F16 }
        ]
    );
    assert_eq!(m.tensors[1].shape, [2, 4]);
    assert_eq!(
        m.tensors[1].ops,
        [TensorOp::Split {
            dim: 0,
            chunks: 3,
            index: 1
        }]
    );
    let err = plan(vec![Op::Transpose {
        pattern: "qkv".into(),
        perm: vec![0, 0],
    }])
    .resolve(&v)
    .unwrap_err();
    assert!(err.to_string().contains("not a permutation"), "{err}");
    let err = plan(vec![Op::Split {
        pattern: "qkv".into(),
        dim: 1,
        into: vec!["a".into(), "b".into(), "c".into()],
    }])
    .resolve(&v)
    .unwrap_err();
    assert!(err.to_string().contains("does not split into 3"), "{err}");
}

#[test]
fn plans_are_json_data() {
    // The dynamic-plugin ABI carries plans as JSON: the shape is part of the contract.
    let p = plan(vec![
        Op::Keep {
            pattern: r"architecture\.".into(),
            reason: None,
        },
        Op::StripPrefix {
            prefix: "architecture.".into(),
        },
        Op::Cast {
            pattern: "x".into(),
            dtype: DType::BF16,
        },
    ]);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(
        json["ops"][0],
        serde_json::json!({"op": "keep", "pattern": "architecture\\.", "reason": null})
    );
    assert_eq!(
        json["ops"][1],
        serde_json::json!({"op": "strip_prefix", "prefix": "architecture."})
    );
    assert_eq!(json["ops"][2]["dtype"], "bf16");
    assert_eq!(serde_json::from_value::<Plan>(json).unwrap(), p);
}

#[test]
fn chains_compose_to_original_sources() {
    let kd = fixture("kd_nano_rtmdet_neck");
    let first = plan(vec![Op::Keep {
        pattern: r"architecture\.".into(),
        reason: None,
    }]);
    let second = plan(vec![Op::StripPrefix {
        prefix: "architecture.".into(),
    }]);
    let m = mmcompat_registry::adapter::resolve_chain(&kd, &[first, second]).unwrap();
    assert_eq!(m.tensors.len(), 476);
    assert_eq!(
        m.tensors[0].source_key,
        "architecture.backbone.stem.0.conv.weight"
    );
    assert_eq!(m.tensors[0].key, "backbone.stem.0.conv.weight");
    assert_eq!(m.dropped.len(), 515);
    assert_eq!(m.adapters, ["test", "test"]);
    let identity = ResolvedMapping::identity(&kd, "state_dict").unwrap();
    assert!(identity.adapters.is_empty() && identity.tensors.len() == 991);
}

fn example_toml() -> TomlAdapter {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/adapters/strip_orig_mod.toml");
    TomlAdapter::from_path(path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn example_toml_adapter_strips_orig_mod() {
    let adapter = example_toml();
    assert_eq!(adapter.name(), "torch.strip_orig_mod");
    let mut v = fixture("rtmdet_nano_mmyolo");
    let original: Vec<String> = v
        .section("state_dict")
        .unwrap()
        .iter()
        .map(|e| e.key.clone())
        .collect();
    assert_eq!(adapter.detect(&v, None).level, Level::None);
    for (i, e) in v
        .sections
        .get_mut("state_dict")
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        // torch.compile under DDP for some keys, plain torch.compile for the others.
        e.key = if i % 2 == 0 {
            format!("_orig_mod.{}", e.key)
        } else {
            format!("module._orig_mod.{}", e.key)
        };
    }
    assert_eq!(adapter.detect(&v, None).level, Level::High);
    let m = adapter
        .plan(&v, &AdapterOptions::default())
        .unwrap()
        .resolve(&v)
        .unwrap();
    assert_eq!(
        m.keys(),
        original.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let report = Report::new(&v, &m)
        .render()
        .replace(env!("CARGO_MANIFEST_DIR"), "<registry>");
    // Named without the module path: this file is compiled into core.rs and, while cargo
    // auto-discovers tests, on its own too; both must find the same snapshot.
    insta::with_settings!({ prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("toml_strip_orig_mod_report", report);
    });
}

#[test]
fn toml_validation_errors_name_the_file_and_op() {
    let p = Path::new("bad.toml");
    let check = |text: &str, needle: &str| {
        let err = TomlAdapter::from_str_at(text, p).unwrap_err().to_string();
        assert!(
            err.starts_with("bad.toml: ") && err.contains(needle),
            "{err}"
        );
    };
    let head = "[adapter]\nname = \"t\"\n";
    check(&format!("{head}[[op]]\nrename = \"a\\\\.\"\nto = \"b.\"\n[[op]]\nrename = \"c\\\\.\"\nto = \"b.\"\n"), "rename target `b.` is already produced by op #1");
    check(&format!("{head}[[op]]\nkeep = \"(\"\n"), "invalid pattern");
    check(
        &format!("{head}[[op]]\nkeep = \"a\"\ndrop = \"b\"\n"),
        "exactly one of",
    );
    check(
        &format!("{head}[[op]]\nkeeep = \"a\"\n"),
        "unknown field `keeep`",
    );
    check(
        &format!("{head}[[op]]\nstrip_prefix = \"a\"\n[[op]]\nselect = \"state_dict\"\n"),
        "`select` must be the first op",
    );
    check("[adapter]\n", "missing field `name`");
}

#[test]
fn adapters_load_from_a_directory_sorted_and_unique() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/adapters/strip_orig_mod.toml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("b.toml"), &example).unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "[adapter]\nname = \"x.keep_all\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("ignored.txt"), "not toml").unwrap();
    let mut set = AdapterSet::empty();
    let loaded = set.load_dir(dir.path()).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(set.names(), ["torch.strip_orig_mod", "x.keep_all"]);
    assert!(set.listing().iter().all(|a| a.source.starts_with("toml (")));
    let err = set
        .load_toml(dir.path().join("b.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`torch.strip_orig_mod` is defined twice"),
        "{err}"
    );
    let err = set.get("torch.strip_orig").err().unwrap().to_string();
    assert!(err.contains("did you mean `torch.strip_orig_mod`"), "{err}");
    // A missing directory is not an error.
    assert!(set.load_dir(&dir.path().join("nope")).unwrap().is_empty());
}

/// What `tests/fixtures/generate/check_convert.py` recorded: our convert of the MMRazor KD
/// checkpoint, loaded by the REAL `mmdet.apis.init_detector(student_cfg, out)`.
#[test]
fn convert_check_recorded_with_the_real_init_detector() {
    let path = format!(
        "{}/../tests/fixtures/convert-check.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        rec["converter_adapters"],
        serde_json::json!(["mmrazor.kd_student"])
    );
    assert_eq!(rec["init_detector"]["missing"], serde_json::json!([]));
    assert_eq!(rec["init_detector"]["unexpected"], serde_json::json!([]));
    assert_eq!(rec["init_detector"]["mismatch_warning_logged"], false);
    assert_eq!(rec["loads_with_weights_only"], true);
    assert_eq!(rec["written_keys"], 476);
    assert_eq!(rec["max_abs_weight_diff_vs_architecture"], 0.0);
    assert_eq!(rec["max_abs_diff"], 0.0);
    assert_eq!(rec["meta"]["dataset_meta_classes"], 80);
    // meta.cfg now builds the student, not the distillation algorithm.
    assert_eq!(rec["meta"]["cfg_model_type"], "YOLODetector");
    for (name, img) in rec["images"].as_object().unwrap() {
        assert!(img["detections"].as_u64().unwrap() > 0, "{name}");
        assert_eq!(img["labels_equal_distill_algorithm"], true, "{name}");
        assert_eq!(img["labels_equal_manual_student"], true, "{name}");
    }
}

/// The library path end to end with a declarative student adapter (the static ones live in the
/// plugin crates, tested there): bytes are copied unchanged, meta is kept.
#[test]
fn convert_writes_a_clean_checkpoint_with_meta() {
    use mmcompat_registry::checkpoint::Checkpoint;
    use mmcompat_registry::convert::{run_with, ConvertOptions};
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("kd.toml");
    std::fs::write(
        &toml,
        "[adapter]\nname = \"t.kd\"\n[[op]]\ndrop = \"teacher\\\\.|distiller\\\\.\"\nreason = \"not student\"\n[[op]]\nstrip_prefix = \"architecture.\"\n",
    )
    .unwrap();
    let mut set = AdapterSet::empty();
    set.load_toml(&toml).unwrap();
    let kd_path = format!(
        "{}/../tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth",
        env!("CARGO_MANIFEST_DIR")
    );
    for out_name in ["student.pth", "student.safetensors"] {
        let out = dir.path().join(out_name);
        let options = ConvertOptions {
            adapters: vec!["t.kd".into()],
            ..Default::default()
        };
        let report = run_with(&kd_path, &out, &options, &set).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.tensors, 476);
        assert!(!report.meta_cfg_rewritten);
        let src = Checkpoint::open(&kd_path).unwrap();
        let written = Checkpoint::open(&out).unwrap();
        let section = written.sections().first().unwrap();
        assert_eq!(section.tensors.len(), 476);
        let src_sd = src.section("state_dict").unwrap();
        for (k, t) in &section.tensors {
            let s = &src_sd.tensors[&format!("architecture.{k}")];
            assert_eq!(
                written.tensor_bytes(t).unwrap(),
                src.tensor_bytes(s).unwrap(),
                "{k}"
            );
        }
        let meta = written.meta_json();
        assert_eq!(
            meta["dataset_meta"]["classes"].as_array().map(Vec::len),
            Some(80),
            "{out_name}"
        );
        assert_eq!(meta["cfg"], src.meta_json()["cfg"]);
    }
}
