//! `ultralytics.yolov5`: the anchor-based YOLOv5 of the `ultralytics/yolov5` repository (v6.0 to
//! v7.0 layout: SPPF, `Detect` with `m` convs and an `anchors` buffer), pickled whole as
//! `models.yolo.DetectionModel` (or `yolov5.models.yolo.DetectionModel` from the `yolov5` PyPI
//! package) under `model`, read as data by the core.
//!
//! It does exactly what mmyolo 0.6's `tools/model_converters/yolov5_to_mmyolo.py: convert` does,
//! ported in [`convert_key`] and applied key by key: `torch.load(src)['model'].state_dict()`, the
//! `convert_dict_p5` / `convert_dict_p6` prefix tables (the SPPF and Detect layers by
//! `model.N.module`), `anchors` skipped, then `.m.` → `.blocks.` with `.cv` → `.conv`, or the
//! proto convs, or `.cv1/2/3` → `main_conv`/`short_conv`/`final_conv`. The script picks P6 by the
//! file name (`src.endswith('6.pt')`); the key set says the same (the Detect layer at `model.33`
//! instead of `model.24`), so this adapter reads it there. The script keeps fp16; the model runs in
//! fp32, as after `init_detector`'s `load_state_dict`, so the plan widens and says so.

use mmcompat_registry::adapter::{
    class_count_mismatch, plan_by_key, widen_to_f32, AdapterError, AdapterOptions,
    CheckpointAdapter, CheckpointView, Confidence, KeyFate, Plan,
};

/// Adapter name.
pub const NAME: &str = "ultralytics.yolov5";

const SCRIPT: &str = "yolov5_to_mmyolo.py";

/// `yolov5_to_mmyolo.py: convert_dict_p5`.
const CONVERT_DICT_P5: [(&str, &str); 21] = [
    ("model.0", "backbone.stem"),
    ("model.1", "backbone.stage1.0"),
    ("model.2", "backbone.stage1.1"),
    ("model.3", "backbone.stage2.0"),
    ("model.4", "backbone.stage2.1"),
    ("model.5", "backbone.stage3.0"),
    ("model.6", "backbone.stage3.1"),
    ("model.7", "backbone.stage4.0"),
    ("model.8", "backbone.stage4.1"),
    ("model.9.cv1", "backbone.stage4.2.conv1"),
    ("model.9.cv2", "backbone.stage4.2.conv2"),
    ("model.10", "neck.reduce_layers.2"),
    ("model.13", "neck.top_down_layers.0.0"),
    ("model.14", "neck.top_down_layers.0.1"),
    ("model.17", "neck.top_down_layers.1"),
    ("model.18", "neck.downsample_layers.0"),
    ("model.20", "neck.bottom_up_layers.0"),
    ("model.21", "neck.downsample_layers.1"),
    ("model.23", "neck.bottom_up_layers.1"),
    ("model.24.m", "bbox_head.head_module.convs_pred"),
    ("model.24.proto", "bbox_head.head_module.proto_preds"),
];

/// `yolov5_to_mmyolo.py: convert_dict_p6`.
const CONVERT_DICT_P6: [(&str, &str); 27] = [
    ("model.0", "backbone.stem"),
    ("model.1", "backbone.stage1.0"),
    ("model.2", "backbone.stage1.1"),
    ("model.3", "backbone.stage2.0"),
    ("model.4", "backbone.stage2.1"),
    ("model.5", "backbone.stage3.0"),
    ("model.6", "backbone.stage3.1"),
    ("model.7", "backbone.stage4.0"),
    ("model.8", "backbone.stage4.1"),
    ("model.9", "backbone.stage5.0"),
    ("model.10", "backbone.stage5.1"),
    ("model.11.cv1", "backbone.stage5.2.conv1"),
    ("model.11.cv2", "backbone.stage5.2.conv2"),
    ("model.12", "neck.reduce_layers.3"),
    ("model.15", "neck.top_down_layers.0.0"),
    ("model.16", "neck.top_down_layers.0.1"),
    ("model.19", "neck.top_down_layers.1.0"),
    ("model.20", "neck.top_down_layers.1.1"),
    ("model.23", "neck.top_down_layers.2"),
    ("model.24", "neck.downsample_layers.0"),
    ("model.26", "neck.bottom_up_layers.0"),
    ("model.27", "neck.downsample_layers.1"),
    ("model.29", "neck.bottom_up_layers.1"),
    ("model.30", "neck.downsample_layers.2"),
    ("model.32", "neck.bottom_up_layers.2"),
    ("model.33.m", "bbox_head.head_module.convs_pred"),
    ("model.33.proto", "bbox_head.head_module.proto_preds"),
];

const ANCHORS: &str =
    "Detect's anchors buffer (the config's prior_generator holds them); yolov5_to_mmyolo.py skips it";

/// The loop body of `convert` for one key; `p6` selects `convert_dict_p6`.
pub fn convert_key(key: &str, p6: bool) -> Result<KeyFate, String> {
    let mut parts = key.split('.').skip(1);
    let (Some(num), Some(module)) = (parts.next(), parts.next()) else {
        return Err("fewer than three dot-separated parts".to_owned());
    };
    let special = if p6 { ["11", "33"] } else { ["9", "24"] };
    let prefix = if special.contains(&num) {
        if module == "anchors" {
            return Ok(KeyFate::Drop(ANCHORS.to_owned()));
        }
        format!("model.{num}.{module}")
    } else {
        format!("model.{num}")
    };
    let table: &[(&str, &str)] = if p6 {
        &CONVERT_DICT_P6
    } else {
        &CONVERT_DICT_P5
    };
    let to = table
        .iter()
        .find(|(from, _)| *from == prefix)
        .map(|(_, to)| *to)
        .ok_or_else(|| format!("`{prefix}` is not in {SCRIPT}'s table (KeyError)"))?;
    let new_key = key.replace(&prefix, to);
    Ok(KeyFate::Rename(if new_key.contains(".m.") {
        new_key.replace(".m.", ".blocks.").replace(".cv", ".conv")
    } else if new_key.contains("bbox_head.head_module.proto_preds.cv") {
        new_key.replace(
            "bbox_head.head_module.proto_preds.cv",
            "bbox_head.head_module.proto_preds.conv",
        )
    } else {
        new_key
            .replace(".cv1", ".main_conv")
            .replace(".cv2", ".short_conv")
            .replace(".cv3", ".final_conv")
    }))
}

/// `Some(p6)` when `model` holds a YOLOv5 Detect with anchors (at `model.24` for P5, `model.33`
/// for P6).
pub fn yolov5_layout(view: &CheckpointView) -> Option<bool> {
    [(false, "model.24.anchors"), (true, "model.33.anchors")]
        .into_iter()
        .find(|(_, k)| {
            view.section("model")
                .is_some_and(|t| t.iter().any(|e| e.key == *k))
        })
        .map(|(p6, _)| p6)
}

/// An Ultralytics YOLOv5 (anchor-based, v6.0 to v7.0) `.pt` → mmyolo `YOLODetector` keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct Yolov5;

impl CheckpointAdapter for Yolov5 {
    fn name(&self) -> &str {
        NAME
    }

    fn scope(&self) -> &str {
        "mmyolo"
    }

    fn description(&self) -> &str {
        "Ultralytics YOLOv5 v7.0 .pt (pickled DetectionModel with anchors, read as data) → mmyolo keys, as yolov5_to_mmyolo.py; fp16 widened to fp32"
    }

    fn detect(&self, view: &CheckpointView, config: Option<&serde_json::Value>) -> Confidence {
        let detect = |p6: bool| if p6 { 33 } else { 24 };
        // Detect's convs have 3 anchors × (4 box + 1 objectness + classes) rows.
        let classes = |rows: usize| {
            rows.is_multiple_of(3)
                .then_some(rows / 3)
                .and_then(|r| r.checked_sub(5))
        };
        if let Some(reason) = yolov5_layout(view).and_then(|p6| {
            let key = format!("model.{}.m.0.weight", detect(p6));
            class_count_mismatch(view, "model", &key, classes, config)
        }) {
            return Confidence::high(reason);
        }
        match yolov5_layout(view) {
            Some(p6) => Confidence::high(format!(
                "model is a YOLOv5 module tree with an anchor-based Detect at model.{} ({})",
                detect(p6),
                if p6 { "P6" } else { "P5" }
            )),
            None => Confidence::none(
                "no YOLOv5 Detect with anchors (`model.24.anchors` / `model.33.anchors`)",
            ),
        }
    }

    fn plan(&self, view: &CheckpointView, _options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let p6 = yolov5_layout(view).ok_or_else(|| AdapterError::NotApplicable {
            adapter: NAME.to_owned(),
            reason: "no YOLOv5 Detect with anchors under `model` (`model.24.anchors` / `model.33.anchors`)".to_owned(),
        })?;
        let entries = view.section("model").unwrap_or_default();
        let mut plan = plan_by_key(NAME, "model", entries, |k| convert_key(k, p6))?;
        plan.notes.push(format!(
            "weights: model (the pickled YOLOv5 model, walked as data; nothing was imported or run); {} table",
            if p6 { "P6 (convert_dict_p6)" } else { "P5 (convert_dict_p5)" }
        ));
        if let Some((cast, n)) = widen_to_f32(entries) {
            plan.ops.insert(0, cast);
            plan.notes.push(format!(
                "{n} fp16 tensors widened to fp32 (YOLOv5 saves fp16 and {SCRIPT} keeps it; init_detector's load_state_dict copies them into the fp32 model); num_batches_tracked stays int64"
            ));
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(key: &str, p6: bool) -> String {
        match convert_key(key, p6).unwrap() {
            KeyFate::Rename(k) => k,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_branch_as_the_script() {
        assert_eq!(
            renamed("model.2.m.0.cv1.conv.weight", false),
            "backbone.stage1.1.blocks.0.conv1.conv.weight"
        );
        assert_eq!(
            renamed("model.2.cv3.bn.bias", false),
            "backbone.stage1.1.final_conv.bn.bias"
        );
        assert_eq!(
            renamed("model.9.cv2.conv.weight", false),
            "backbone.stage4.2.conv2.conv.weight"
        );
        assert_eq!(
            renamed("model.24.m.2.bias", false),
            "bbox_head.head_module.convs_pred.2.bias"
        );
        assert_eq!(
            renamed("model.11.cv1.bn.weight", true),
            "backbone.stage5.2.conv1.bn.weight"
        );
        assert!(matches!(
            convert_key("model.24.anchors", false),
            Ok(KeyFate::Drop(_))
        ));
        // A layer the P5 table lacks: the script's KeyError, named.
        assert!(convert_key("model.25.cv1.conv.weight", false).is_err());
    }
}
