//! The checks every mmyolo model family runs against the real stack, parameterised by [`Family`]
//! (tests/yolov5.rs, tests/yolov6.rs, tests/yolov8.rs keep only what is their own). Per family
//! `<name>` the generator (tests/fixtures/generate/make_<name>_refs.py) wrote:
//! * `models/<name>_sizes.json`: shipped configs' merged `model` dicts and the real models'
//!   `state_dict()` names and shapes — our expected keys must equal them, in order;
//! * `checkpoints/<name>_nano_mmyolo.pth` (overlay config `mmcompat/<name>_nano_mmyolo.py`) and
//!   `inference/<name>/<name>__<image>.json` from `init_detector` + `inference_detector`: the same
//!   network input, raw head outputs within `RAW_TOL` of their level's scale at 1 thread, and the
//!   same detections (count, labels, boxes within 0.1 px, scores within 1e-4), through
//!   `Inferencer` and through `mmcompat detect --json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mmcompat::inferencer::{ClassNamesSource, Detection, Inferencer};
use mmcompat::models::{build_detector, ModelError};
use serde_json::Value;
use tch::Device;

use crate::cli::ok_stdout;
use crate::inference::{assert_same_detections, raw_deviation, roots, source_image, RAW_TOL};
use crate::models::{decode_keys, read_json};

/// Every family here is an mmyolo one.
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
    /// Types `mmcompat registry --scope mmyolo` must list, declared in `spec::models::<name>_*`.
    pub(crate) registry_types: &'static [&'static str],
}

impl Family {
    /// `models/<name>_sizes.json`.
    pub(crate) fn sizes_json(&self) -> Value {
        read_json(&format!("models/{}_sizes.json", self.name))
    }

    /// The merged `model` dict of the shipped config `size` (e.g. `yolov8_n`).
    pub(crate) fn model(&self, size: &str) -> Value {
        let sizes = self.sizes_json();
        let model = &sizes[format!("{SCOPE}/{size}")]["model"];
        assert!(model.is_object(), "{}: no size {size}", self.name);
        model.clone()
    }

    /// The reference of `init_detector` + `inference_detector` on `image`.
    pub(crate) fn reference(&self, image: &str) -> Value {
        read_json(&format!("inference/{0}/{0}__{image}.json", self.name))
    }

    /// (config, checkpoint) of the fixture, the config inside the test config roots of
    /// tests/inference.rs (shipped trees + the overlay's `mmcompat/` files).
    pub(crate) fn files(&self) -> (PathBuf, PathBuf) {
        let file = format!("{}_nano_mmyolo", self.name);
        let config = roots().dirs(SCOPE)[0].join(format!("mmcompat/{file}.py"));
        let checkpoint = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/checkpoints/{file}.pth"));
        (config, checkpoint)
    }

    pub(crate) fn inferencer(&self) -> Inferencer {
        self.inferencer_with(false)
    }

    /// With `fold_bn` as `mmcompat detect --fold-bn` sets it.
    pub(crate) fn inferencer_with(&self, fold_bn: bool) -> Inferencer {
        let (config, weights) = self.files();
        Inferencer::builder()
            .fold_bn(fold_bn)
            .config(&config)
            .weights(&weights)
            .scope(SCOPE)
            .device("cpu")
            .config_roots(roots())
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
        let input_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/inference")
            .join(self.name);
        raw_deviation(what, inf, image, r, &input_dir)
    }

    /// Every shipped size builds, with exactly the real model's `state_dict()` names and shapes,
    /// in the same order, and COCO's 80 classes.
    pub(crate) fn check_expected_keys(&self) {
        let sizes = self.sizes_json();
        let sizes = sizes.as_object().expect("object");
        assert_eq!(sizes.len(), self.sizes.len(), "{}", self.sizes.join(", "));
        for size in self.sizes {
            let key = format!("{SCOPE}/{size}");
            assert!(sizes.contains_key(&key), "{}: no size {key}", self.name);
        }
        for (name, entry) in sizes {
            let det = build_detector(&entry["model"], SCOPE, Device::Cpu)
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

    /// `mmcompat detect --config <config> --weights <ckpt> --scope mmyolo --json`, as a user runs
    /// it, on every image: one JSON line per image, in sorted path order, each with the
    /// reference's detections.
    pub(crate) fn check_detect_command(&self) {
        let (config, weights) = self.files();
        let roots = roots();
        let mut args: Vec<String> = vec![
            "detect".into(),
            "--config".into(),
            config.display().to_string(),
            "--weights".into(),
            weights.display().to_string(),
        ];
        args.extend(
            ["--scope", SCOPE, "--device", "cpu", "--json"]
                .iter()
                .map(|s| s.to_string()),
        );
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
        let lines: Vec<Value> = ok_stdout(&args)
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
    }

    /// `mmcompat registry --scope mmyolo` lists the family's types as implemented, declared in the
    /// family's spec modules.
    pub(crate) fn check_registry_listing(&self) {
        let text = ok_stdout(&["registry", "--scope", SCOPE]);
        let module = format!("spec::models::{}_", self.name);
        for name in self.registry_types {
            // `    <Type>    <declaring module>`: only implemented types are listed.
            let listed = text
                .lines()
                .any(|l| l.split_whitespace().next() == Some(*name) && l.contains(&module));
            assert!(listed, "registry --scope mmyolo lacks {name}:\n{text}");
        }
    }
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

/// What building `cfg` fails with (the config mistakes every family's spec stage must refuse).
pub(crate) fn build_error(cfg: &Value, what: &str) -> ModelError {
    build_detector(cfg, SCOPE, Device::Cpu).expect_err(what)
}

/// [`build_error`]'s message.
pub(crate) fn build_error_message(cfg: &Value, what: &str) -> String {
    build_error(cfg, what).to_string()
}

/// Building `cfg` fails with `ModelError::UnknownKey` naming (key, type, path).
pub(crate) fn assert_unknown_key(cfg: &Value, expected: (&str, &str, &str)) {
    match build_error(cfg, "unknown key") {
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
