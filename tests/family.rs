//! The checks every model family runs against the real stack, parameterised by [`Family`]
//! (tests/yolov5.rs, tests/retinanet.rs, ... keep only what is their own). Per family `<name>`
//! the generator (tests/fixtures/generate/make_<name>_refs.py) wrote:
//! * `models/<name>_sizes.json`: shipped configs' merged `model` dicts and the real models'
//!   `state_dict()` names and shapes — our expected keys must equal them, in order;
//! * `checkpoints/<fixture>.pth` (overlay config `mmcompat/<fixture>.py`, `<name>_nano_mmyolo` for
//!   the mmyolo families) and `inference/<name>/<name>__<image>.json` from `init_detector` +
//!   `inference_detector`: the same network input (a committed PNG, or for mmdet's 1333×800 inputs
//!   its sha256), raw head outputs within `RAW_TOL` of their level's scale at 1 thread, and the
//!   same detections (count, labels, boxes within 0.1 px, scores within 1e-4), through
//!   `Inferencer` and through `mmcompat detect --json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mmcompat::inferencer::{ClassNamesSource, Detection, Inferencer};
use mmcompat::models::{build_detector, ModelError};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tch::Device;

use crate::cli::{mmcompat, ok_stdout};
use crate::inference::{
    assert_same_detections, raw_deviation, raw_deviation_on, roots, source_image, RAW_TOL,
};
use crate::models::{decode_keys, read_json};

/// The mmyolo families' scope (the default of [`MMYOLO`]).
const SCOPE: &str = "mmyolo";

/// The shipped configs are COCO ones.
const SHIPPED_CLASSES: i64 = 80;

/// An extra per-image deviation (in the units of [`raw_deviation`]) a family adds to the raw head
/// outputs: (what, inferencer, image, reference).
pub(crate) type ExtraDeviation = fn(&str, &Inferencer, &str, &Value) -> f64;

pub(crate) struct Family {
    /// `yolov8`: names the fixture files (see the module docs) and prefixes every message.
    pub(crate) name: &'static str,
    /// The fixture photographs the references cover.
    pub(crate) images: &'static [&'static str],
    /// The sizes in `models/<name>_sizes.json` (keys `mmyolo/<size>`).
    pub(crate) sizes: &'static [&'static str],
    /// Classes of the fixture checkpoint (from its `meta.dataset_meta`).
    pub(crate) fixture_classes: usize,
    /// Types `mmcompat registry --scope <scope>` must list, declared in `registry_module*`.
    pub(crate) registry_types: &'static [&'static str],
    /// The registry scope the configs resolve in (`mmyolo`, `mmdet`).
    pub(crate) scope: &'static str,
    /// File stem of the fixture's overlay config and checkpoint; empty: `<name>_nano_mmyolo`.
    pub(crate) fixture: &'static str,
    /// How the reference records the network input.
    pub(crate) input: NetworkInput,
    /// Module prefix declaring `registry_types`; empty: `spec::models::<name>_`.
    pub(crate) registry_module: &'static str,
    /// The config as `<package>::<path>` inside the test config roots (a distillation config);
    /// empty: `<scope>::mmcompat/<fixture>.py`.
    pub(crate) config: &'static str,
    /// The checkpoint, relative to tests/fixtures; empty: `checkpoints/<fixture>.pth`.
    pub(crate) checkpoint: &'static str,
    /// The references' path prefix relative to tests/fixtures (`<prefix><image>.json`, input PNGs
    /// in the same folder); empty: `inference/<name>/<name>__`.
    pub(crate) references: &'static str,
    /// Whether `Inferencer` and `mmcompat detect` get `scope` explicitly; false: the config's own
    /// `default_scope` decides (as for a user running an MMRazor distillation config).
    pub(crate) explicit_scope: bool,
}

/// How a reference records the network input our pipeline must reproduce.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetworkInput {
    /// `input_png`: the uint8 BGR network input, committed next to the reference.
    Png,
    /// `input_sha256` + `input_shape_hwc` + `pipeline.img_shape` (mmdet's 1333×800 inputs would
    /// be too big to commit as PNGs).
    Sha256,
}

/// The defaults of an mmyolo family (`..MMYOLO` after its own fields).
pub(crate) const MMYOLO: Family = Family {
    name: "",
    images: &[],
    sizes: &[],
    fixture_classes: 8,
    registry_types: &[],
    scope: SCOPE,
    fixture: "",
    input: NetworkInput::Png,
    registry_module: "",
    config: "",
    checkpoint: "",
    references: "",
    explicit_scope: true,
};

impl Family {
    /// The overlay config's and checkpoint's file stem.
    pub(crate) fn fixture_stem(&self) -> String {
        if self.fixture.is_empty() {
            format!("{}_nano_mmyolo", self.name)
        } else {
            self.fixture.to_string()
        }
    }

    /// `models/<name>_sizes.json`.
    pub(crate) fn sizes_json(&self) -> Value {
        read_json(&format!("models/{}_sizes.json", self.name))
    }

    /// The merged `model` dict of the shipped config `size` (e.g. `yolov8_n`).
    pub(crate) fn model(&self, size: &str) -> Value {
        let sizes = self.sizes_json();
        let model = &sizes[format!("{}/{size}", self.scope)]["model"];
        assert!(model.is_object(), "{}: no size {size}", self.name);
        model.clone()
    }

    /// The reference of `init_detector` + `inference_detector` on `image`.
    pub(crate) fn reference(&self, image: &str) -> Value {
        read_json(&format!("{}{image}.json", self.references_prefix()))
    }

    fn references_prefix(&self) -> String {
        if self.references.is_empty() {
            format!("inference/{0}/{0}__", self.name)
        } else {
            self.references.to_string()
        }
    }

    /// (config, checkpoint) of the fixture, the config inside the test config roots of
    /// tests/inference.rs (shipped trees + the overlay's `mmcompat/` files).
    pub(crate) fn files(&self) -> (PathBuf, PathBuf) {
        let file = self.fixture_stem();
        let config = if self.config.is_empty() {
            roots().dirs(self.scope)[0].join(format!("mmcompat/{file}.py"))
        } else {
            let (pkg, rel) = self.config.split_once("::").expect("<package>::<path>");
            roots().dirs(pkg)[0].join(rel)
        };
        let checkpoint = if self.checkpoint.is_empty() {
            format!("checkpoints/{file}.pth")
        } else {
            self.checkpoint.to_string()
        };
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        (config, fixtures.join(checkpoint))
    }

    pub(crate) fn inferencer(&self) -> Inferencer {
        self.inferencer_with(false)
    }

    /// With `fold_bn` as `mmcompat detect --fold-bn` sets it.
    pub(crate) fn inferencer_with(&self, fold_bn: bool) -> Inferencer {
        let (config, weights) = self.files();
        let mut builder = Inferencer::builder()
            .fold_bn(fold_bn)
            .config(&config)
            .weights(&weights)
            .device("cpu")
            .config_roots(roots());
        if self.explicit_scope {
            builder = builder.scope(self.scope);
        }
        builder
            .build()
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// [`raw_deviation`] of `image` against the family's reference `r`.
    pub(crate) fn raw_deviation(
        &self,
        what: &str,
        inf: &Inferencer,
        image: &str,
        r: &Value,
    ) -> f64 {
        if self.input == NetworkInput::Sha256 {
            return raw_deviation_hashed_input(what, inf, image, r);
        }
        let prefix = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(self.references_prefix());
        let input_dir = prefix.parent().expect("references folder");
        raw_deviation(what, inf, image, r, input_dir)
    }

    /// Every shipped size builds, with exactly the real model's `state_dict()` names and shapes,
    /// in the same order, and COCO's 80 classes.
    pub(crate) fn check_expected_keys(&self) {
        let sizes = self.sizes_json();
        let sizes = sizes.as_object().expect("object");
        assert_eq!(sizes.len(), self.sizes.len(), "{}", self.sizes.join(", "));
        for size in self.sizes {
            let key = format!("{}/{size}", self.scope);
            assert!(sizes.contains_key(&key), "{}: no size {key}", self.name);
        }
        for (name, entry) in sizes {
            let det = build_detector(&entry["model"], self.scope, Device::Cpu)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let theirs = decode_keys(&entry["keys"]);
            let ours = det.expected_keys();
            let (o, t): (BTreeMap<_, _>, BTreeMap<_, _>) = (
                ours.iter().cloned().collect(),
                theirs.iter().cloned().collect(),
            );
            let missing: Vec<_> = t.keys().filter(|k| !o.contains_key(*k)).collect();
            let extra: Vec<_> = o.keys().filter(|k| !t.contains_key(*k)).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{name}: missing {missing:?}, extra {extra:?}"
            );
            for (k, shape) in &t {
                assert_eq!(&o[k], shape, "{name}: shape of {k}");
            }
            assert_eq!(
                ours, theirs,
                "{name}: key order (module registration order)"
            );
            assert_eq!(det.num_classes(), SHIPPED_CLASSES, "{name}");
        }
    }

    /// For the shipped configs of [`Family::check_expected_keys`], in `sizes` order: the real
    /// key counts (`key_counts`), the detector type we build, and that our config loader makes
    /// the recorded `model` dict of the shipped file (its whole `_base_` chain).
    pub(crate) fn check_shipped_configs(&self, type_name: &str, key_counts: &[usize]) {
        let sizes = self.sizes_json();
        assert_eq!(self.sizes.len(), key_counts.len(), "{}", self.name);
        for (size, count) in self.sizes.iter().zip(key_counts) {
            let entry = &sizes[format!("{}/{size}", self.scope)];
            assert_eq!(
                decode_keys(&entry["keys"]).len(),
                *count,
                "{size}: real key count"
            );
            let det = build_detector(&entry["model"], self.scope, Device::Cpu)
                .unwrap_or_else(|e| panic!("{size}: {e}"));
            assert_eq!(det.type_name(), type_name, "{size}");
            let rel = entry["config"].as_str().expect("config");
            // `<pkg>/.mim/configs/<folder>/<file>` relative to site-packages.
            let mut parts = rel.rsplit('/');
            let (file, folder) = (parts.next().expect("file"), parts.next().expect("folder"));
            let path = roots().dirs(self.scope)[0].join(folder).join(file);
            let cfg = mmcompat::Config::from_file(&path, &roots())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(cfg.to_json()["model"], entry["model"], "{size}: {rel}");
        }
    }

    /// Raw head outputs of every image vs the references, in units of each level's scale
    /// (`RAW_TOL`, see tests/inference.rs), under the generator's conditions (1 thread).
    pub(crate) fn check_raw_outputs(&self) {
        self.check_raw_outputs_with(|_, _, _, _| 0.0);
    }

    /// [`Family::check_raw_outputs`], each image's deviation the worse of the class and box
    /// logits' and `extra`'s.
    pub(crate) fn check_raw_outputs_with(&self, extra: ExtraDeviation) {
        let threads = tch::get_num_threads();
        tch::set_num_threads(1);
        let result = std::panic::catch_unwind(|| self.raw_outputs_worst(extra));
        tch::set_num_threads(threads);
        let overall = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
        assert!(
            overall <= RAW_TOL,
            "raw head outputs differ from Python by up to {overall:e} of their level's scale"
        );
    }

    /// The worst deviation over the images, after checking that the fixture checkpoint loads
    /// completely.
    pub(crate) fn raw_outputs_worst(&self, extra: ExtraDeviation) -> f64 {
        let inf = self.inferencer();
        let report = inf.load_report();
        assert!(report.is_complete(), "{report}");
        assert_eq!(report.coverage(), 100.0);
        self.images
            .iter()
            .map(|image| {
                let what = format!("{}/{image}", self.name);
                let r = self.reference(image);
                let head = self.raw_deviation(&what, &inf, image, &r);
                head.max(extra(&what, &inf, image, &r))
            })
            .fold(0f64, f64::max)
    }

    /// Detections of every image through `Inferencer`, class names from the checkpoint.
    pub(crate) fn check_detections(&self) {
        let inf = self.inferencer();
        assert_eq!(inf.class_names_source(), ClassNamesSource::Checkpoint);
        assert_eq!(
            inf.class_names().len(),
            self.fixture_classes,
            "the fixture's {} classes",
            self.fixture_classes
        );
        for image in self.images {
            let r = self.reference(image);
            let dets = inf.infer(&source_image(image)).expect("infer");
            assert_same_detections(&format!("{}/{image}", self.name), &dets, &r["detections"]);
            for d in &dets {
                assert_eq!(d.class_name, inf.class_names()[d.label]);
            }
        }
    }

    /// `mmcompat -v detect --config <config> --weights <ckpt> [--scope <scope>] --json`, as a
    /// user runs it, on every image: one JSON line per image, in sorted path order, each with the
    /// reference's detections. Returns the log (stderr).
    pub(crate) fn check_detect_command(&self) -> String {
        let (config, weights) = self.files();
        self.check_detect_command_on(&config, &weights)
    }

    /// [`Family::check_detect_command`] with another config and checkpoint (e.g. one a test
    /// wrote) that must give the family's references.
    pub(crate) fn check_detect_command_on(
        &self,
        config: &std::path::Path,
        weights: &std::path::Path,
    ) -> String {
        let roots = roots();
        let mut args: Vec<String> = vec![
            "-v".into(),
            "detect".into(),
            "--config".into(),
            config.display().to_string(),
            "--weights".into(),
            weights.display().to_string(),
        ];
        if self.explicit_scope {
            args.extend(["--scope".to_string(), self.scope.to_string()]);
        }
        args.extend(["--device", "cpu", "--json"].map(String::from));
        for pkg in ["mmyolo", "mmdet", "mmrazor"] {
            args.push("--config-root".into());
            args.push(format!("{pkg}={}", roots.dirs(pkg)[0].display()));
        }
        let images =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inference/images");
        for image in self.images {
            // As `source_image` reads it: OpenCV's decode of the EXIF JPEG.
            let file = if *image == "exif_rot6" {
                "exif_rot6.decoded.png".to_string()
            } else {
                format!("{image}.png")
            };
            args.push(images.join(file).display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = mmcompat(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "mmcompat {args:?} failed:\n{stderr}");
        let lines: Vec<Value> = String::from_utf8(out.stdout)
            .expect("utf-8 stdout")
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), self.images.len());
        for (line, image) in lines.iter().zip(self.images) {
            let path = line["image"].as_str().expect("image");
            assert!(path.contains(image), "{path} vs {image} (sorted paths)");
            let dets: Vec<Detection> = line["detections"]
                .as_array()
                .expect("detections")
                .iter()
                .map(json_detection)
                .collect();
            let r = self.reference(image);
            let what = format!("detect {}/{image}", self.name);
            assert_same_detections(&what, &dets, &r["detections"]);
        }
        stderr
    }

    /// `mmcompat registry --scope <scope>` lists the family's types as implemented, declared in
    /// the family's spec modules.
    pub(crate) fn check_registry_listing(&self) {
        let text = ok_stdout(&["registry", "--scope", self.scope]);
        let module = if self.registry_module.is_empty() {
            format!("spec::models::{}_", self.name)
        } else {
            self.registry_module.to_string()
        };
        for name in self.registry_types {
            // `    <Type>    <declaring module>`: only implemented types are listed.
            let listed = text
                .lines()
                .any(|l| l.split_whitespace().next() == Some(*name) && l.contains(&module));
            assert!(
                listed,
                "registry --scope {} lacks {name}:\n{text}",
                self.scope
            );
        }
    }
}

/// [`raw_deviation_on`] after checking the network input by its sha256 and shape, and the
/// unpadded `img_shape` (mmdet's keep-ratio Resize without Pad: the decode clamp).
fn raw_deviation_hashed_input(what: &str, inf: &Inferencer, image: &str, r: &Value) -> f64 {
    let pre = inf.preprocess(&source_image(image)).expect("pipeline");
    let digest = format!("{:x}", Sha256::digest(&pre.image.data));
    assert_eq!(
        digest,
        r["input_sha256"].as_str().expect("input_sha256"),
        "{what}: network input differs from the test pipeline's"
    );
    let shape: Vec<usize> = r["input_shape_hwc"]
        .as_array()
        .expect("input_shape_hwc")
        .iter()
        .map(|v| v.as_u64().expect("dim") as usize)
        .collect();
    assert_eq!(
        vec![pre.image.height, pre.image.width, 3],
        shape,
        "{what}: input shape"
    );
    let img_shape = &r["pipeline"]["img_shape"];
    assert_eq!(
        [pre.img_shape.0 as u64, pre.img_shape.1 as u64],
        [
            img_shape[0].as_u64().expect("h"),
            img_shape[1].as_u64().expect("w")
        ],
        "{what}: img_shape"
    );
    raw_deviation_on(what, inf, &pre, r)
}

/// One detection of `mmcompat detect --json`.
fn json_detection(d: &Value) -> Detection {
    let b: Vec<f32> = d["bbox"]
        .as_array()
        .expect("bbox")
        .iter()
        .map(|v| v.as_f64().expect("coord") as f32)
        .collect();
    Detection {
        bbox: [b[0], b[1], b[2], b[3]],
        score: d["score"].as_f64().expect("score") as f32,
        label: d["label"].as_u64().expect("label") as usize,
        class_name: d["class"].as_str().expect("class").to_string(),
    }
}

impl Family {
    /// What building `cfg` in the family's scope fails with (the config mistakes every family's
    /// spec stage must refuse).
    pub(crate) fn build_error(&self, cfg: &Value, what: &str) -> ModelError {
        build_detector(cfg, self.scope, Device::Cpu).expect_err(what)
    }

    /// Building `cfg` fails with `ModelError::UnknownKey` naming (key, type, path).
    pub(crate) fn assert_unknown_key(&self, cfg: &Value, expected: (&str, &str, &str)) {
        match self.build_error(cfg, "unknown key") {
            ModelError::UnknownKey {
                key,
                type_name,
                path,
                ..
            } => {
                assert_eq!((key.as_str(), type_name.as_str(), path.as_str()), expected);
            }
            other => panic!("wrong error {other}"),
        }
    }
}

/// [`Family::build_error`] of an mmyolo family.
pub(crate) fn build_error(cfg: &Value, what: &str) -> ModelError {
    MMYOLO.build_error(cfg, what)
}

/// [`build_error`]'s message.
pub(crate) fn build_error_message(cfg: &Value, what: &str) -> String {
    build_error(cfg, what).to_string()
}

/// [`Family::assert_unknown_key`] of an mmyolo family.
pub(crate) fn assert_unknown_key(cfg: &Value, expected: (&str, &str, &str)) {
    MMYOLO.assert_unknown_key(cfg, expected)
}
