//! The checks every MMRazor distillation fixture runs, on top of the family harness
//! (tests/family.rs): a [`Family`] whose `config` is the distillation config and whose
//! `checkpoint` is what mmengine's Runner wrote (student under `architecture.`, teacher under
//! `teacher.`, connectors, EMA, optimizer state). Run as users run it, ours must resolve the
//! student, unwrap the checkpoint through the mmrazor adapter, never build the teacher, and give
//! what the real stack gives for the student (the family checks: network input, raw head outputs,
//! detections through `Inferencer` and `mmcompat detect`).

use std::path::PathBuf;

use mmcompat::inferencer::ClassNamesSource;
use mmcompat::registry::checkpoint::Checkpoint;

use crate::family::Family;

/// The adapter that unwraps an MMRazor distillation checkpoint (plugins/mmrazor).
pub(crate) const KD_ADAPTER: &str = "mmrazor.kd_student";

/// The inferencer resolved the distillation `algorithm` in `scope` and loaded the whole student
/// through [`KD_ADAPTER`], class names from the checkpoint.
pub(crate) fn check_resolves_to_the_student(kd: &Family, algorithm: &str) {
    let inf = kd.inferencer();
    assert_eq!(inf.distillation(), Some(algorithm));
    assert_eq!(inf.scope(), kd.scope);
    assert_eq!(inf.adapters(), [KD_ADAPTER]);
    let report = inf.load_report();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.coverage(), 100.0);
    assert_eq!(inf.class_names_source(), ClassNamesSource::Checkpoint);
    assert_eq!(inf.class_names().len(), kd.fixture_classes);
}

/// The teacher is never built: the distillation config names `teacher_config` (which exists in
/// the fixture overlay) but the test config roots do not hold it, so nothing could have resolved
/// `teacher.cfg_path`; and the model built has exactly the student's names and shapes
/// (`architecture.*` of the checkpoint), which the teacher's (`teacher.*`, other widths) do not
/// match.
pub(crate) fn check_never_builds_the_teacher(kd: &Family, teacher_config: &str) {
    let (config, weights) = kd.files();
    let (pkg, rel) = kd.config.split_once("::").expect("<package>::<path>");
    let overlay = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/configs/overlay")
        .join(pkg)
        .join(rel);
    let overlay_dir = overlay.parent().expect("overlay folder");
    let kd_text = std::fs::read_to_string(&overlay).expect("read the distillation config");
    let teacher_rel = format!(
        "{}/{teacher_config}",
        rel.rsplit_once('/').map_or("", |(d, _)| d)
    );
    assert!(
        kd_text.contains(&teacher_rel) && overlay_dir.join(teacher_config).exists(),
        "the distillation config names a teacher config ({teacher_rel}) that exists in the fixtures"
    );
    assert!(
        !config.with_file_name(teacher_config).exists(),
        "the test tree must not contain the teacher config"
    );

    let ours = kd.inferencer().detector().expected_keys();
    let ck = Checkpoint::open(&weights).expect("open the distillation checkpoint");
    let state = ck.section("state_dict").expect("state_dict");
    let part = |prefix: &str| -> Vec<(String, Vec<i64>)> {
        state
            .tensors
            .iter()
            .filter_map(|(k, t)| {
                let name = k.strip_prefix(prefix)?;
                // BN's step counter: a training-only buffer our modules do not hold.
                if name.ends_with(".num_batches_tracked") {
                    return None;
                }
                Some((
                    name.to_string(),
                    t.shape.iter().map(|&d| d as i64).collect(),
                ))
            })
            .collect()
    };
    let (student, teacher) = (part("architecture."), part("teacher."));
    assert_eq!(ours, student, "the model built is the student");
    assert!(!teacher.is_empty(), "the checkpoint holds a teacher");
    assert_ne!(
        ours, teacher,
        "the teacher's shapes differ from the student's"
    );
}

/// `mmcompat -v detect` on the distillation config and checkpoint gives the reference
/// detections, and its log names the distillation and the mmrazor adapter chain.
pub(crate) fn check_detect_command(kd: &Family, algorithm: &str) {
    let stderr = kd.check_detect_command();
    assert!(
        stderr.contains("building the student only") && stderr.contains(algorithm),
        "{stderr}"
    );
    let chain = stderr
        .lines()
        .find(|l| l.contains("checkpoint adapters applied"))
        .unwrap_or_else(|| panic!("no adapter chain logged:\n{stderr}"));
    assert!(chain.contains(KD_ADAPTER), "{chain}");
}

/// MMRazor 1.0's shipped mmdet distillations (tests/fixtures/razor_mmdet/students.json, written
/// from what the real MMRazor + mmdet built): every student resolved from its distillation config
/// (`cfg_path`, or the student written inline) builds here as the same detector type with the
/// real student's parameter count (`sum(p.numel() for p in module.parameters())`: buffers — BN
/// statistics, GFL's `integral.project` — left out). `init_cfg`s pointing at the teacher's URL
/// are ignored, as `init_detector` never calls `init_weights`: nothing is fetched. The one config
/// without a student (an mmdet 2.x file name) is registry/tests/razor_mmdet.rs's.
#[test]
fn shipped_mmdet_distillations_build_their_students() {
    let refs = crate::models::read_json("razor_mmdet/students.json");
    let roots = crate::inference::roots();
    let mut built = std::collections::BTreeMap::<String, usize>::new();
    for (rel, want) in refs["students"].as_object().expect("students") {
        let Some(kind) = want["built"]["type"].as_str() else {
            continue;
        };
        let path = roots.dirs("mmrazor")[0].join(rel);
        let cfg =
            mmcompat::Config::from_file(&path, &roots).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let resolved = mmcompat::registry::spec::student::resolve_model(&cfg, None, &roots)
            .unwrap_or_else(|e| panic!("{rel}: {e}"));
        let det = mmcompat::models::build_detector(
            &resolved.model,
            resolved.scope.name(),
            tch::Device::Cpu,
        )
        .unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(det.type_name(), format!("mmdet.{kind}"), "{rel}");
        let buffer = |k: &str| {
            k.ends_with(".running_mean") || k.ends_with(".running_var") || k.ends_with(".project")
        };
        let params: i64 = det
            .expected_keys()
            .iter()
            .filter(|(k, _)| !buffer(k))
            .map(|(_, s)| s.iter().product::<i64>())
            .sum();
        assert_eq!(
            params,
            want["built"]["num_params"].as_i64().expect("num_params"),
            "{rel}"
        );
        *built.entry(kind.to_string()).or_default() += 1;
    }
    let expected: std::collections::BTreeMap<String, usize> = [
        ("FasterRCNN", 2),
        ("GFL", 1),
        ("RepPointsDetector", 1),
        ("RetinaNet", 6),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(built, expected);
}
