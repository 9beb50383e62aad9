//! MMRazor's 11 shipped mmdet distillation configs reduced to their student, against what the
//! real MMRazor 1.0.0 + mmdet 3.3.0 build (tests/fixtures/razor_mmdet/students.json, written by
//! tests/fixtures/generate/make_razor_mmdet_refs.py), and the refusal of the pruning / NAS /
//! quantisation algorithms from the config alone.
//!
//! The configs come from the shipped trees the config corpus test uses (`.cache/configs/<pkg>`,
//! fetched by scripts/fetch-config-trees.sh); the test fails, not skips, without them.

use std::path::{Path, PathBuf};

use mmcompat_registry::config::{Config, ConfigError, ConfigRoots};
use mmcompat_registry::spec::student::{resolve_model, PredictsWithArchitecture, RefuseWithHint};
use mmcompat_registry::spec::SpecError;
use serde_json::{json, Value as Json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tree(pkg: &str) -> PathBuf {
    let dir = repo().join(".cache/configs").join(pkg);
    assert!(
        dir.is_dir(),
        "config tree {} is missing: run scripts/fetch-config-trees.sh first (the Makefile test target does)",
        dir.display()
    );
    dir
}

pub(crate) fn roots() -> ConfigRoots {
    let mut roots = ConfigRoots::new();
    for pkg in ["mmdet", "mmyolo", "mmrazor"] {
        roots.add(pkg, tree(pkg));
    }
    roots
}

fn refs() -> Json {
    let path = repo().join("tests/fixtures/razor_mmdet/students.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("students.json")
}

/// The error text with the checkout's path replaced, for snapshots.
fn portable(text: &str) -> String {
    let root = mmcompat_registry::config::roots::normalize(&repo());
    text.replace(&root.to_string_lossy().to_string(), "<repo>")
}

/// The facts of the built student the config-level dict must agree with.
fn check_against_built(rel: &str, model: &Json, built: &Json) {
    assert_eq!(model["type"], built["type"], "{rel}: type");
    assert_eq!(
        model["backbone"]["type"], built["backbone"]["type"],
        "{rel}: backbone"
    );
    assert_eq!(
        model["backbone"]["depth"], built["backbone"]["depth"],
        "{rel}: depth"
    );
    assert_eq!(model["neck"]["type"], built["neck"]["type"], "{rel}: neck");
    assert_eq!(
        model["neck"]["out_channels"], built["neck"]["out_channels"],
        "{rel}: neck"
    );
    if built.get("bbox_head").is_some() {
        assert_eq!(
            model["bbox_head"]["type"], built["bbox_head"]["type"],
            "{rel}: head"
        );
        assert_eq!(
            model["bbox_head"]["num_classes"], built["bbox_head"]["num_classes"],
            "{rel}: num_classes"
        );
    } else {
        let roi = &built["roi_head"];
        assert_eq!(
            model["rpn_head"]["type"], built["rpn_head"]["type"],
            "{rel}"
        );
        assert_eq!(model["roi_head"]["type"], roi["type"], "{rel}");
        assert_eq!(
            model["roi_head"]["bbox_head"]["type"], roi["bbox_head"],
            "{rel}"
        );
        assert_eq!(
            model["roi_head"]["bbox_head"]["num_classes"], roi["num_classes"],
            "{rel}"
        );
    }
    assert_eq!(model["test_cfg"], built["test_cfg"], "{rel}: test_cfg");
    let dp = &model["data_preprocessor"];
    let want = &built["data_preprocessor"];
    assert_eq!(dp["type"], want["type"], "{rel}: data_preprocessor");
    assert_eq!(dp["bgr_to_rgb"], want["bgr_to_rgb"], "{rel}");
    assert_eq!(dp["pad_size_divisor"], want["pad_size_divisor"], "{rel}");
    for k in ["mean", "std"] {
        let ours: Vec<f64> = dp[k]
            .as_array()
            .expect(k)
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        let theirs: Vec<f64> = want[k]
            .as_array()
            .expect(k)
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{rel}: {k}");
        // The built buffers are float32 (recorded rounded to 6 decimals).
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-4, "{rel}: {k} {ours:?} vs {theirs:?}");
        }
    }
}

#[test]
fn all_shipped_mmdet_distillations_resolve_to_the_real_student() {
    let refs = refs();
    let students = refs["students"].as_object().expect("students");
    assert_eq!(students.len(), 11);
    let roots = roots();
    let mut resolved_ok = 0;
    for (rel, want) in students {
        let cfg = Config::from_file(tree("mmrazor").join(rel), &roots)
            .unwrap_or_else(|e| panic!("{rel}: {e}"));
        let got = resolve_model(&cfg, None, &roots);
        if let Some(err) = want.get("error") {
            // mmengine's get_config raises FileNotFoundError: so must we, with a suggestion.
            assert_eq!(err["type"], "FileNotFoundError", "{rel}");
            let e = got.expect_err(rel);
            let SpecError::Config(c) = &e else {
                panic!("{rel}: {e:?}")
            };
            assert_eq!(c.python_kind(), "FileNotFoundError", "{rel}");
            insta::assert_snapshot!("cwd_frcnn_missing_student_path", portable(&e.to_string()));
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(
            got.distillation.as_deref(),
            want["algorithm"].as_str(),
            "{rel}"
        );
        assert_eq!(got.model, want["model"], "{rel}: student model dict");
        assert_eq!(
            got.scope.name(),
            want["scope"].as_str().expect("scope"),
            "{rel}"
        );
        assert!(
            want["algorithm_data_preprocessor"].is_null(),
            "{rel}: the algorithm overrides the data_preprocessor"
        );
        check_against_built(rel, &got.model, &want["built"]);
        resolved_ok += 1;
    }
    assert_eq!(resolved_ok, 10);
}

#[test]
fn inline_student_init_cfg_is_kept_in_the_dict_but_never_fetched() {
    // mgd_fpn_retina_x101_retina_r50_2x_coco.py: the student's neck and head `init_cfg`
    // (`Pretrained` from the teacher's URL) are training-time only; resolving reads no file and
    // opens no connection (nothing in the core can), and the spec stage ignores init_cfg as
    // init_detector does (it never calls init_weights).
    let roots = roots();
    let cfg = Config::from_file(
        tree("mmrazor").join("distill/mmdet/mgd/mgd_fpn_retina_x101_retina_r50_2x_coco.py"),
        &roots,
    )
    .expect("mgd");
    let got = resolve_model(&cfg, None, &roots).expect("resolve");
    assert_eq!(got.model["neck"]["init_cfg"]["type"], "Pretrained");
    assert!(got.model["neck"]["init_cfg"]["checkpoint"]
        .as_str()
        .is_some_and(|u| u.starts_with("https://")));
    assert!(got.student_config.is_none());
}

#[test]
fn the_teacher_path_is_never_loaded() {
    // cwd_fpn_frcnn_r101_frcnn_r50_1x_coco.py names a missing teacher too
    // (`faster_rcnn/faster_rcnn_r101_fpn_2x_coco.py`) and a `teacher_ckpt` that is a bare local
    // file name: with the student path fixed, the config resolves, because upstream's predict
    // never touches the teacher and neither do we. The student equals the real one of the FBKD
    // config, which names the same `faster-rcnn_r50_fpn_1x_coco.py`.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("fixed.py");
    std::fs::write(
        &file,
        "_base_ = 'mmrazor::distill/mmdet/cwd/cwd_fpn_frcnn_r101_frcnn_r50_1x_coco.py'\n\
         model = dict(architecture=dict(cfg_path='mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'))\n",
    )
    .expect("write");
    let roots = roots();
    let cfg = Config::from_file(&file, &roots).expect("config");
    assert_eq!(
        cfg.get("model.teacher.cfg_path").map(|v| v.to_json()),
        Some(json!("mmdet::faster_rcnn/faster_rcnn_r101_fpn_2x_coco.py"))
    );
    let got = resolve_model(&cfg, None, &roots).expect("teacher never loaded");
    let fbkd = &refs()["students"]
        ["distill/mmdet/fbkd/fbkd_fpn_faster-rcnn_r101_faster-rcnn_r50_1x_coco.py"];
    assert_eq!(got.model, fbkd["model"]);
}

#[test]
fn missing_base_path_suggests_the_closest_config() {
    // The same rename through `_base_` (Config.fromfile raises FileNotFoundError there too).
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("old_name.py");
    std::fs::write(
        &file,
        "_base_ = 'mmdet::faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py'\n",
    )
    .expect("write");
    let err = Config::from_file(&file, &roots()).expect_err("missing base");
    let ConfigError::BaseNotFound { did_you_mean, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        did_you_mean.as_deref(),
        Some("mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py")
    );
}

/// The refused and accepted mmrazor model names registered in the core.
fn razor_registrations() -> (Vec<String>, Vec<String>) {
    let regs = mmcompat_registry::spec::model::registries().expect("registries");
    let mut refused = Vec::new();
    let mut accepted = Vec::new();
    for r in regs.entries("model", "mmrazor") {
        if r.payload::<RefuseWithHint>().is_some() {
            refused.push(r.name.to_string());
        } else if r.payload::<PredictsWithArchitecture>().is_some() {
            accepted.push(r.name.to_string());
        }
    }
    refused.sort();
    accepted.sort();
    (refused, accepted)
}

#[test]
fn every_real_mmrazor_algorithm_is_accepted_or_refused() {
    let refs = refs();
    let upstream = refs["mmrazor_algorithms"].as_object().expect("algorithms");
    let (refused, accepted) = razor_registrations();
    for name in refused.iter().chain(&accepted) {
        assert!(
            upstream.contains_key(name),
            "`{name}` is not an mmrazor 1.0.0 name"
        );
    }
    for (name, module) in upstream {
        if name == "BaseAlgorithm" {
            continue;
        }
        assert!(
            refused.contains(name) || accepted.contains(name),
            "mmrazor's `{name}` ({module}) is neither accepted nor refused"
        );
        let is_distill = module.as_str().is_some_and(|m| m.contains(".distill."));
        assert_eq!(accepted.contains(name), is_distill, "{name} ({module})");
    }
}

#[test]
fn non_distillation_algorithms_are_refused_naming_what_would_work() {
    let (refused, _) = razor_registrations();
    assert_eq!(refused.len(), 15, "{refused:?}");
    let roots = roots();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut out = String::new();
    for name in &refused {
        let file = dir.path().join(format!("{name}.py"));
        std::fs::write(
            &file,
            format!(
                "default_scope = 'mmdet'\n\
                 model = dict(_scope_='mmrazor', type='{name}',\n    \
                 architecture=dict(cfg_path='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'))\n"
            ),
        )
        .expect("write");
        let cfg = Config::from_file(&file, &roots).expect("config");
        let err = resolve_model(&cfg, None, &roots).expect_err(name);
        let SpecError::RefusedAlgorithm { algorithm, .. } = &err else {
            panic!("{name}: {err:?}")
        };
        assert_eq!(algorithm, name);
        out.push_str(&format!("{err}\n"));
    }
    insta::assert_snapshot!("refused_algorithms", out);
}

/// Every `.py` under `dir`, sorted.
fn py_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            py_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "py") {
            out.push(p);
        }
    }
}

#[test]
fn shipped_pruning_nas_and_quantisation_configs_are_refused() {
    // Every mmrazor pruning / NAS / quantisation config that loads offline (many name `mmcls::`
    // bases, a package not among the fetched trees: those fail at load, which is fine) and
    // whose `model.type` is an algorithm: refused from the config, before any checkpoint.
    let roots = roots();
    let mut files = Vec::new();
    for sub in ["pruning", "nas", "quantization"] {
        py_files(&tree("mmrazor").join(sub), &mut files);
    }
    let base = tree("mmrazor");
    let mut report = String::new();
    for f in &files {
        let Ok(cfg) = Config::from_file(f, &roots) else {
            continue;
        };
        let Some(ty) = cfg.get("model.type").map(|v| v.to_json()) else {
            continue;
        };
        let rel = f.strip_prefix(&base).expect("under the tree").display();
        match resolve_model(&cfg, None, &roots) {
            Err(SpecError::RefusedAlgorithm {
                algorithm, kind, ..
            }) => {
                report.push_str(&format!("{rel}: refused {algorithm} ({kind})\n"));
            }
            Err(e) => report.push_str(&format!("{rel}: {ty} error: {e}\n")),
            Ok(r) => report.push_str(&format!(
                "{rel}: {ty} runs as {}\n",
                r.model["type"].as_str().unwrap_or("?")
            )),
        }
    }
    insta::assert_snapshot!("shipped_compression_configs", portable(&report));
}
