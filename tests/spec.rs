//! The spec stage seen by a user: config mistakes are reported before the checkpoint is touched
//! (here the checkpoint path does not even exist), naming the key and the closest valid key; and
//! `mmcompat config --spec` prints the resolved model tree of a distillation config's student.

use std::path::{Path, PathBuf};
use std::process::Command;

use mmcompat::inferencer::Inferencer;
use serde_json::Value;

use crate::inference::{model_files, roots};

/// A config next to the fixture config of `model` that inherits it and adds `body`.
fn derived_config(model: &str, name: &str, body: &str) -> PathBuf {
    let (base, _, _) = model_files(model);
    let dir = base.parent().expect("config dir");
    let path = dir.join(format!("{name}_{}.py", std::process::id()));
    let base_name = base.file_name().and_then(|n| n.to_str()).expect("name");
    std::fs::write(&path, format!("_base_ = './{base_name}'\n{body}\n")).expect("write config");
    path
}

const MISSING_CKPT: &str = "/nonexistent/mmcompat/never_read.pth";

fn build_error(config: &Path) -> String {
    let err = Inferencer::builder()
        .config(config)
        .weights(MISSING_CKPT)
        .scope("mmyolo")
        .config_roots(roots())
        .build()
        .expect_err("the config has a typo");
    err.to_string()
}

fn cli_error(config: &Path) -> String {
    let roots = roots();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mmcompat"));
    cmd.args(["detect", "--config"]).arg(config).args([
        "--weights",
        MISSING_CKPT,
        "--scope",
        "mmyolo",
    ]);
    for pkg in ["mmyolo", "mmdet", "mmrazor"] {
        cmd.arg("--config-root")
            .arg(format!("{pkg}={}", roots.dirs(pkg)[0].display()));
    }
    cmd.arg(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/inference/images/astronaut.png"),
    );
    let out = cmd.output().expect("run mmcompat");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn misspelt_test_cfg_key_is_reported_before_the_checkpoint() {
    let cfg = derived_config(
        "mmyolo",
        "typo_test_cfg",
        "model = dict(test_cfg=dict(nms_pree=1000))",
    );
    for msg in [build_error(&cfg), cli_error(&cfg)] {
        assert!(
            msg.contains("model.test_cfg")
                && msg.contains("`nms_pree`")
                && msg.contains("did you mean `nms_pre`?"),
            "{msg}"
        );
        assert!(
            !msg.contains("never_read"),
            "the checkpoint is not opened: {msg}"
        );
    }
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn misspelt_pipeline_key_is_reported_before_the_checkpoint() {
    let cfg = derived_config(
        "mmyolo",
        "typo_pipeline",
        "test_dataloader = dict(dataset=dict(pipeline=[\n\
         dict(type='LoadImageFromFile'),\n\
         dict(type='YOLOv5KeepRatioResize', scale=(640, 640)),\n\
         dict(type='LetterResize', scale=(640, 640), allow_scale_upp=False, pad_val=dict(img=114)),\n\
         dict(type='PackDetInputs')]))",
    );
    for msg in [build_error(&cfg), cli_error(&cfg)] {
        assert!(
            msg.contains("test_dataloader.dataset.pipeline[2]")
                && msg.contains("`allow_scale_upp`")
                && msg.contains("did you mean `allow_scale_up`?"),
            "{msg}"
        );
        assert!(
            !msg.contains("never_read"),
            "the checkpoint is not opened: {msg}"
        );
    }
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn config_spec_prints_the_students_model_tree() {
    let (kd_config, _, _) = model_files("kd_student");
    let (student_config, _, _) = model_files("mmyolo");
    let roots = roots();
    let run = |args: &[&str], file: &Path| -> Value {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mmcompat"));
        cmd.arg("config").arg(file).args(args);
        for pkg in ["mmyolo", "mmdet", "mmrazor"] {
            cmd.arg("--config-root")
                .arg(format!("{pkg}={}", roots.dirs(pkg)[0].display()));
        }
        let out = cmd.output().expect("run mmcompat");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let spec = run(&["--spec", "--json", "--scope", "mmyolo"], &kd_config);
    // The student config as mmengine resolves it (the config corpus test pins this equality).
    let student = run(&["--json"], &student_config);
    assert_eq!(spec["distillation"], "FpnTeacherDistill");
    assert_eq!(spec["scope"], "mmyolo");
    let model = &spec["model"];
    assert_eq!(model["type"], "mmyolo.YOLODetector");
    assert_eq!(model["backbone"]["type"], "mmyolo.CSPNeXt");
    assert_eq!(model["neck"]["type"], "mmyolo.CSPNeXtPAFPN");
    assert_eq!(model["bbox_head"]["type"], "mmyolo.RTMDetHead");
    assert_eq!(
        model["bbox_head"]["head_module"]["type"],
        "mmyolo.RTMDetSepBNHeadModule"
    );
    for key in ["widen_factor", "deepen_factor"] {
        assert_eq!(
            model["backbone"]["args"][key], student["model"]["backbone"][key],
            "{key}"
        );
    }
    assert_eq!(
        spec["test_cfg"]["score_thr"],
        student["model"]["test_cfg"]["score_thr"]
    );
    // Defaults of arguments the config leaves out are filled in as the Python signature has them.
    assert_eq!(model["backbone"]["args"]["arch"], "P5");
}
