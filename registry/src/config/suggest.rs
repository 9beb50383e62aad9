//! "Did you mean" for a `pkg::dir/file.py` reference that is not in the package's config tree.
//!
//! The common case is a name from an older release: mmdet 3 renamed most config files from
//! `faster_rcnn_r50_fpn_1x_coco.py` to `faster-rcnn_r50_fpn_1x_coco.py` (MMRazor 1.0.0 still ships
//! `distill/mmdet/cwd/cwd_fpn_frcnn_r101_frcnn_r50_1x_coco.py` with the old name). So names are
//! compared after normalising case and `-`/`_` first; failing that, the most similar relative path
//! by normalised Levenshtein distance, if it is close enough to be a likely typo or rename.
//! Only runs on the error path: the walk over the tree costs a few milliseconds.

use std::path::{Path, PathBuf};

/// Bounds on the walk, so that a root pointing at `/` cannot make an error message slow.
const MAX_DEPTH: usize = 8;
const MAX_FILES: usize = 50_000;
/// Below this similarity a suggestion would more likely mislead than help.
const MIN_SIMILARITY: f64 = 0.8;

fn normalise(rel: &str) -> String {
    rel.replace('\\', "/").to_lowercase().replace('-', "_")
}

fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<String>) {
    if depth > MAX_DEPTH || out.len() >= MAX_FILES {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    // Sorted: the suggestion must not depend on the file system's listing order.
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(root, &p, depth + 1, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("py" | "toml" | "json")
        ) {
            if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
            if out.len() >= MAX_FILES {
                return;
            }
        }
    }
}

/// The existing config under `dirs` (a package's roots, searched in order) closest to `rel`, as a
/// path relative to its root.
pub(crate) fn closest_config(dirs: &[PathBuf], rel: &str) -> Option<String> {
    let mut files = Vec::new();
    for d in dirs {
        walk(d, d, 0, &mut files);
    }
    let want = normalise(rel);
    if let Some(f) = files.iter().find(|f| normalise(f) == want) {
        return Some(f.clone());
    }
    files
        .iter()
        .map(|f| (strsim::normalized_levenshtein(&normalise(f), &want), f))
        .filter(|(score, _)| *score >= MIN_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, f)| f.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_and_typo_and_unrelated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("faster_rcnn");
        std::fs::create_dir_all(&d).expect("mkdir");
        for f in [
            "faster-rcnn_r50_fpn_1x_coco.py",
            "faster-rcnn_r101_fpn_2x_coco.py",
        ] {
            std::fs::write(d.join(f), "").expect("write");
        }
        let dirs = [dir.path().to_path_buf()];
        assert_eq!(
            closest_config(&dirs, "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py").as_deref(),
            Some("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py")
        );
        assert_eq!(
            closest_config(&dirs, "faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py").as_deref(),
            Some("faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py")
        );
        assert_eq!(
            closest_config(&dirs, "yolox/yolox_s_8xb8_300e_coco.py"),
            None
        );
    }
}
