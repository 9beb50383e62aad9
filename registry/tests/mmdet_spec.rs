//! Every shipped mmdet 3.3.0 config of the GFL, ATSS, FCOS and RepPoints families through the
//! spec stage (no libtorch): the ones whose inference graph is implemented parse completely
//! (model, data preprocessor, test pipeline, test_cfg); the others are refused naming the key and
//! the implemented alternative (DCN in the tower or backbone, grid points, ResNeXt). The reviewed
//! outcome per file is an insta snapshot. The keys and values of the implemented families are
//! checked against the real models in tests/gfl_atss.rs and tests/fcos_reppoints.rs.
//!
//! The configs come from the shipped tree (`.cache/configs/mmdet`, fetched by
//! scripts/fetch-config-trees.sh); the test fails, not skips, without it.

use mmcompat_registry::config::Config;
use mmcompat_registry::spec::InferenceSpec;

use crate::razor_mmdet::roots;

/// `<dir>/<file>: ok <detector type>` or `refused: <error up to its first ';'>` for every config
/// in the folders `dirs` of mmdet's tree, sorted; `must` are among them.
fn outcomes(dirs: &[&str], must: &[&str]) -> String {
    let roots = roots();
    let mut lines = Vec::new();
    for dir in dirs {
        let folder = roots.dirs("mmdet")[0].join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .expect("config folder")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "py"))
            .collect();
        files.sort();
        for path in files {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .to_string();
            let config = Config::from_file(&path, &roots).expect("config loads");
            let outcome = match InferenceSpec::from_config(&config, None, &roots) {
                Ok(spec) => format!("ok {}", spec.model.qualified_name()),
                // Up to the first `;`: the rest (the list of supported families, closest
                // names) grows as families are added.
                Err(e) => format!("refused: {}", e.to_string().split(';').next().unwrap_or("")),
            };
            lines.push(format!("{dir}/{name}: {outcome}"));
        }
    }
    // The configs the fixtures reduce must be among the implemented ones.
    for m in must {
        assert!(lines.iter().any(|l| l == m), "{m}\n{lines:#?}");
    }
    lines.join("\n")
}

#[test]
fn shipped_gfl_and_atss_configs_parse_or_are_refused_by_name() {
    insta::assert_snapshot!(outcomes(
        &["gfl", "atss"],
        &[
            "gfl/gfl_r50_fpn_1x_coco.py: ok mmdet.GFL",
            "atss/atss_r50_fpn_1x_coco.py: ok mmdet.ATSS",
        ]
    ));
}

#[test]
fn shipped_fcos_and_reppoints_configs_parse_or_are_refused_by_name() {
    insta::assert_snapshot!(outcomes(
        &["fcos", "reppoints"],
        &[
            "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py: ok mmdet.FCOS",
            "reppoints/reppoints-moment_r50_fpn-gn_head-gn_2x_coco.py: ok mmdet.RepPointsDetector",
        ]
    ));
}
