//! Checks one image's detections against COCO ground truth, for the demo's per-image verdict
//! ("7/7 objects found, 0 false").
//!
//! The rule is the one a person applies to the drawn PNG: an object is *found* when a detection
//! above the drawing threshold has the same class and IoU ≥ 0.5 with it; a detection above the
//! threshold that finds no object is *false*. Matching is greedy in descending score order, each
//! object matched at most once, like pycocotools' `COCOeval.evaluateImg` at one IoU threshold
//! (so a duplicate box on an already found object counts as false, as it does for mAP).
//! Classes are compared by name (the COCO `categories[].name` against the checkpoint's
//! `dataset_meta.classes`), because COCO category ids are 1-based and model labels 0-based.
//!
//! Boxes: COCO `bbox` is `[x, y, width, height]`; detections are `[x1, y1, x2, y2]`. IoU is the
//! continuous area ratio without mmdet's legacy `+1` (mmdet 3 `bbox_overlaps`, pycocotools
//! `maskUtils.iou` for boxes).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Detection;
use crate::registry::spec::parse::closest_key;

/// The IoU at or above which a detection finds an object.
pub const MATCH_IOU: f32 = 0.5;

/// What can be wrong with a ground-truth file or a lookup in it.
#[derive(Debug, thiserror::Error)]
pub enum GroundTruthError {
    #[error("ground truth {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "ground truth {}: not COCO detection JSON: {source} (expected `images`, `annotations` \
         and `categories` lists as pycocotools' COCO() reads them)",
        path.display()
    )]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "ground truth {}: annotation {annotation} has category_id {category_id}, which is not in \
         `categories` (ids: {known:?})",
        path.display()
    )]
    UnknownCategory {
        path: PathBuf,
        annotation: u64,
        category_id: u64,
        known: Vec<u64>,
    },
    #[error(
        "ground truth {}: annotation {annotation} has image_id {image_id}, which is not in `images`",
        path.display()
    )]
    UnknownImage {
        path: PathBuf,
        annotation: u64,
        image_id: u64,
    },
    #[error(
        "ground truth {}: annotation {annotation} has bbox {bbox:?}; COCO boxes are [x, y, width, \
         height] with finite values and width, height >= 0",
        path.display()
    )]
    BadBox {
        path: PathBuf,
        annotation: u64,
        bbox: Vec<f64>,
    },
    #[error(
        "ground truth {}: no image with file_name {name:?}{hint}",
        path.display(),
        hint = did_you_mean(.suggestion.as_deref())
    )]
    NoSuchImage {
        path: PathBuf,
        name: String,
        suggestion: Option<String>,
    },
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean {s:?}?"),
        None => "; the file lists the images by `images[].file_name`".to_string(),
    }
}

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    id: u64,
    image_id: u64,
    category_id: u64,
    bbox: Vec<f64>,
    #[serde(default)]
    iscrowd: u8,
}

#[derive(Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
}

/// One ground-truth object.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruthObject {
    /// `[x1, y1, x2, y2]`, converted from COCO's `[x, y, w, h]`.
    pub bbox: [f32; 4],
    pub class_name: String,
    /// The COCO annotation id.
    pub annotation_id: u64,
}

/// A COCO ground-truth file, indexed by image file name.
#[derive(Debug, Clone)]
pub struct GroundTruth {
    path: PathBuf,
    by_file: HashMap<String, Vec<GroundTruthObject>>,
}

impl GroundTruth {
    /// Reads a COCO detection JSON file (`images`, `annotations`, `categories`).
    pub fn load(path: &Path) -> Result<Self, GroundTruthError> {
        let text = std::fs::read_to_string(path).map_err(|source| GroundTruthError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses COCO JSON text; `path` only names the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, GroundTruthError> {
        let file: CocoFile =
            serde_json::from_str(text).map_err(|source| GroundTruthError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let names: HashMap<u64, &str> = file
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect();
        let files: HashMap<u64, &str> = file
            .images
            .iter()
            .map(|i| (i.id, i.file_name.as_str()))
            .collect();
        let mut by_file: HashMap<String, Vec<GroundTruthObject>> = file
            .images
            .iter()
            .map(|i| (i.file_name.clone(), Vec::new()))
            .collect();
        for a in &file.annotations {
            let Some(class) = names.get(&a.category_id) else {
                let mut known: Vec<u64> = names.keys().copied().collect();
                known.sort_unstable();
                return Err(GroundTruthError::UnknownCategory {
                    path: path.to_path_buf(),
                    annotation: a.id,
                    category_id: a.category_id,
                    known,
                });
            };
            let Some(file_name) = files.get(&a.image_id) else {
                return Err(GroundTruthError::UnknownImage {
                    path: path.to_path_buf(),
                    annotation: a.id,
                    image_id: a.image_id,
                });
            };
            let ok = a.bbox.len() == 4
                && a.bbox.iter().all(|v| v.is_finite())
                && a.bbox[2] >= 0.0
                && a.bbox[3] >= 0.0;
            if !ok {
                return Err(GroundTruthError::BadBox {
                    path: path.to_path_buf(),
                    annotation: a.id,
                    bbox: a.bbox.clone(),
                });
            }
            // Crowd regions are "ignore" areas in COCO evaluation, never objects to find.
            if a.iscrowd != 0 {
                continue;
            }
            let [x, y, w, h] = [a.bbox[0], a.bbox[1], a.bbox[2], a.bbox[3]].map(|v| v as f32);
            by_file
                .entry((*file_name).to_string())
                .or_default()
                .push(GroundTruthObject {
                    bbox: [x, y, x + w, y + h],
                    class_name: (*class).to_string(),
                    annotation_id: a.id,
                });
        }
        Ok(GroundTruth {
            path: path.to_path_buf(),
            by_file,
        })
    }

    /// The objects of the image whose `file_name` equals `image`'s file name (directories are
    /// ignored, so `out/x/scene_0001.png` finds `scene_0001.png`), or its whole relative path.
    pub fn objects_of(&self, image: &Path) -> Result<&[GroundTruthObject], GroundTruthError> {
        let full = image.to_string_lossy();
        if let Some(objs) = self.by_file.get(full.as_ref()) {
            return Ok(objs);
        }
        let name = image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(objs) = self.by_file.get(&name) {
            return Ok(objs);
        }
        let suggestion = closest_key(&name, self.by_file.keys().map(String::as_str));
        Err(GroundTruthError::NoSuchImage {
            path: self.path.clone(),
            name,
            suggestion,
        })
    }

    /// The number of images listed.
    pub fn image_count(&self) -> usize {
        self.by_file.len()
    }
}

/// The verdict for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchSummary {
    /// Ground-truth objects in the image.
    pub objects: usize,
    /// Objects found by a detection above the threshold (same class, IoU ≥ [`MATCH_IOU`]).
    pub found: usize,
    /// Objects no detection found.
    pub missed: Vec<GroundTruthObject>,
    /// Detections above the threshold that found no object.
    pub false_detections: Vec<Detection>,
}

impl MatchSummary {
    /// Every object found and nothing false.
    pub fn is_perfect(&self) -> bool {
        self.found == self.objects && self.false_detections.is_empty()
    }
}

impl fmt::Display for MatchSummary {
    /// `7/7 objects found, 0 false`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} objects found, {} false",
            self.found,
            self.objects,
            self.false_detections.len()
        )
    }
}

/// IoU of two `[x1, y1, x2, y2]` boxes (0 when either is empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Matches `detections` with score ≥ `score_thr` (the drawing threshold: `detect` draws
/// `score >= thr`) against `objects`: greedy by descending score, each detection taking the
/// not yet found object of its class with the highest IoU, if that IoU is ≥ [`MATCH_IOU`].
pub fn match_detections(
    detections: &[Detection],
    objects: &[GroundTruthObject],
    score_thr: f32,
) -> MatchSummary {
    let mut shown: Vec<&Detection> = detections.iter().filter(|d| d.score >= score_thr).collect();
    // stable: equal scores keep the detector's order
    shown.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut taken = vec![false; objects.len()];
    let mut false_detections = Vec::new();
    for d in shown {
        let best = objects
            .iter()
            .enumerate()
            .filter(|(i, o)| !taken[*i] && o.class_name == d.class_name)
            .map(|(i, o)| (i, iou(&d.bbox, &o.bbox)))
            .filter(|(_, v)| *v >= MATCH_IOU)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, _)) => taken[i] = true,
            None => false_detections.push(d.clone()),
        }
    }
    let missed: Vec<GroundTruthObject> = objects
        .iter()
        .zip(&taken)
        .filter(|(_, t)| !**t)
        .map(|(o, _)| o.clone())
        .collect();
    MatchSummary {
        objects: objects.len(),
        found: objects.len() - missed.len(),
        missed,
        false_detections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(bbox: [f32; 4], score: f32, class: &str) -> Detection {
        Detection {
            bbox,
            score,
            label: 0,
            class_name: class.to_string(),
        }
    }

    const GT: &str = r#"{
      "images": [{"id": 1, "file_name": "scene_0000.png", "height": 160, "width": 160},
                 {"id": 2, "file_name": "scene_0001.png", "height": 160, "width": 160}],
      "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [100, 20, 40, 20], "area": 800, "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [50, 90, 20, 20], "area": 400, "iscrowd": 1}
      ],
      "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    }"#;

    fn gt() -> GroundTruth {
        GroundTruth::from_json(GT, Path::new("gt.json")).unwrap()
    }

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        // 10x10 and a 10x10 shifted by 5: inter 50, union 150
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn coco_boxes_become_corners_and_crowds_are_skipped() {
        let g = gt();
        let objs = g.objects_of(Path::new("some/dir/scene_0000.png")).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].bbox, [10.0, 10.0, 40.0, 40.0]);
        assert_eq!(objs[1].bbox, [100.0, 20.0, 140.0, 40.0]);
        assert_eq!(objs[1].class_name, "square");
        assert!(g
            .objects_of(Path::new("scene_0001.png"))
            .unwrap()
            .is_empty());
        assert_eq!(g.image_count(), 2);
    }

    #[test]
    fn all_found_nothing_false() {
        let g = gt();
        let objs = g.objects_of(Path::new("scene_0000.png")).unwrap();
        let dets = [
            det([11.0, 9.0, 41.0, 40.0], 0.9, "circle"),
            det([101.0, 21.0, 139.0, 41.0], 0.8, "square"),
            // below the drawing threshold: neither found nor false
            det([60.0, 60.0, 90.0, 90.0], 0.29, "circle"),
        ];
        let s = match_detections(&dets, objs, 0.3);
        assert_eq!(s.to_string(), "2/2 objects found, 0 false");
        assert!(s.is_perfect());
    }

    #[test]
    fn wrong_class_low_iou_and_duplicates_are_false() {
        let g = gt();
        let objs = g.objects_of(Path::new("scene_0000.png")).unwrap();
        let dets = [
            det([10.0, 10.0, 40.0, 40.0], 0.9, "square"), // right box, wrong class
            det([100.0, 20.0, 140.0, 40.0], 0.8, "square"),
            det([101.0, 20.0, 140.0, 40.0], 0.7, "square"), // duplicate of a found object
            det([120.0, 20.0, 160.0, 40.0], 0.6, "square"), // IoU 1/3 with the square
        ];
        let s = match_detections(&dets, objs, 0.3);
        assert_eq!(s.to_string(), "1/2 objects found, 3 false");
        assert_eq!(s.missed.len(), 1);
        assert_eq!(s.missed[0].annotation_id, 1);
        assert_eq!(s.false_detections[0].score, 0.9);
        assert!(!s.is_perfect());
    }

    #[test]
    fn higher_score_takes_the_object_first() {
        let objs = [GroundTruthObject {
            bbox: [0.0, 0.0, 10.0, 10.0],
            class_name: "circle".into(),
            annotation_id: 1,
        }];
        // listed low score first: the 0.9 one must be the match, the 0.5 one the false one
        let dets = [
            det([0.0, 0.0, 10.0, 10.0], 0.5, "circle"),
            det([0.0, 0.0, 10.0, 9.0], 0.9, "circle"),
        ];
        let s = match_detections(&dets, &objs, 0.3);
        assert_eq!(s.found, 1);
        assert_eq!(s.false_detections.len(), 1);
        assert_eq!(s.false_detections[0].score, 0.5);
    }

    #[test]
    fn iou_exactly_one_half_matches() {
        let objs = [GroundTruthObject {
            bbox: [0.0, 0.0, 10.0, 10.0],
            class_name: "circle".into(),
            annotation_id: 1,
        }];
        // inside, half the area: IoU = 50 / 100
        let s = match_detections(&[det([0.0, 0.0, 5.0, 10.0], 0.9, "circle")], &objs, 0.3);
        assert_eq!(s.to_string(), "1/1 objects found, 0 false");
    }

    #[test]
    fn unknown_image_suggests_the_closest_name() {
        let err = gt().objects_of(Path::new("scene_000.png")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ground truth gt.json: no image with file_name \"scene_000.png\"; did you mean \
             \"scene_0000.png\"?"
        );
        let err = gt().objects_of(Path::new("astronaut.jpg")).unwrap_err();
        assert!(err
            .to_string()
            .ends_with("the file lists the images by `images[].file_name`"));
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let p = Path::new("gt.json");
        let e = GroundTruth::from_json(r#"{"images": [], "annotations": []}"#, p).unwrap_err();
        assert!(e.to_string().contains("missing field `categories`"), "{e}");
        let e = GroundTruth::from_json(&GT.replace("\"category_id\": 2", "\"category_id\": 7"), p)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ground truth gt.json: annotation 2 has category_id 7, which is not in `categories` \
             (ids: [1, 2])"
        );
        let e = GroundTruth::from_json(
            &GT.replace(
                "\"image_id\": 1, \"category_id\": 1",
                "\"image_id\": 9, \"category_id\": 1",
            ),
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("annotation 1 has image_id 9"), "{e}");
        let e = GroundTruth::from_json(&GT.replace("[10, 10, 30, 30]", "[10, 10, -3, 30]"), p)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("annotation 1 has bbox [10.0, 10.0, -3.0, 30.0]"),
            "{e}"
        );
        let e = GroundTruth::from_json(
            &GT.replace("\"bbox\": [10, 10, 30, 30]", "\"bbox\": \"x\""),
            p,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("invalid type: string \"x\", expected a sequence"),
            "{e}"
        );
        let e = GroundTruth::load(Path::new("/nonexistent/gt.json")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ground truth /nonexistent/gt.json: "),
            "{e}"
        );
    }
}
