//! Class names and palette: checkpoint meta first, then the config, then COCO.

use serde_json::Value as Json;

use super::ClassNamesSource;

/// Class names: checkpoint meta (`dataset_meta` with lower-cased keys, legacy `CLASSES`), config
/// metainfo, else COCO with a warning (`det_inferencer.py: _load_weights_to_model`).
pub(super) fn class_names(
    meta: &Json,
    config_classes: Option<&[String]>,
    num_classes: i64,
) -> (Vec<String>, ClassNamesSource) {
    let strings = |v: &Json| -> Option<Vec<String>> {
        v.as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let from_meta = meta
        .get("dataset_meta")
        .and_then(Json::as_object)
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.to_lowercase() == "classes")
                .map(|(_, v)| v)
        })
        .or_else(|| meta.get("CLASSES"))
        .and_then(strings);
    if let Some(names) = from_meta {
        return (names, ClassNamesSource::Checkpoint);
    }
    if let Some(names) = config_classes {
        return (names.to_vec(), ClassNamesSource::Config);
    }
    tracing::warn!("no class names in the checkpoint meta or the config: using the COCO classes");
    let names: Vec<String> = COCO_CLASSES.iter().map(|s| s.to_string()).collect();
    if num_classes as usize != names.len() {
        tracing::warn!(
            num_classes,
            "the model does not have 80 classes; COCO names will be wrong"
        );
    }
    (names, ClassNamesSource::CocoFallback)
}

pub(super) fn palette(meta: &Json) -> Option<Vec<[u8; 3]>> {
    let p = meta.get("dataset_meta")?.get("palette")?.as_array()?;
    p.iter()
        .map(|c| {
            let c = c.as_array()?;
            let ch = |i: usize| c.get(i)?.as_u64().map(|v| v.min(255) as u8);
            Some([ch(0)?, ch(1)?, ch(2)?])
        })
        .collect()
}

/// `mmdet.evaluation.functional.class_names.coco_classes()` (what `get_classes('coco')` gives
/// DetInferencer when the checkpoint has no class names).
pub const COCO_CLASSES: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic_light",
    "fire_hydrant",
    "stop_sign",
    "parking_meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports_ball",
    "kite",
    "baseball_bat",
    "baseball_glove",
    "skateboard",
    "surfboard",
    "tennis_racket",
    "bottle",
    "wine_glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot_dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted_plant",
    "bed",
    "dining_table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell_phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy_bear",
    "hair_drier",
    "toothbrush",
];
