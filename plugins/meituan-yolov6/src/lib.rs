//! Checkpoint adapters for Meituan YOLOv6 `.pt` files (see `mmcompat_registry::adapter` for the
//! contract). YOLOv6 pickles whole modules (`yolov6.models.yolo.Model`) under `model` and `ema`
//! (`yolov6/core/engine.py`; released files went through `yolov6/utils/checkpoint.py:
//! strip_optimizer`: `model` = the EMA model in fp16, `ema` = None). The core's safe reader walks
//! them as data (`checkpoint::module_tree`) to their `state_dict()`; nothing of YOLOv6 is imported.
//!
//! `meituan.yolov6` / `meituan.yolov6_v3` do exactly what mmyolo 0.6's
//! `tools/model_converters/yolov6_to_mmyolo.py` / `yolov6_v3_to_mmyolo.py: convert` do, ported
//! line by line into [`convert_key`] and applied key by key through [`plan_by_key`]: the module
//! is `ckpt['ema' if ckpt.get('ema') else 'model'].float()` (so every floating tensor becomes
//! fp32), Detect's `proj`/`proj_conv` and any `anchors`/`anchor_grid` are skipped, the rest renamed
//! by the `ERBlock_*` / `Rep_*` / `Bifusion*` / ... chain. v3 only: when the head has
//! `reg_preds_lrtb` (the n/s models), it becomes `reg_preds` and the DFL `reg_preds` becomes
//! `distill_ns_head`. mmyolo's `YOLOv6HeadModule` has no `distill_ns_head` (it is a training-only
//! branch; `load_checkpoint(strict=False)` drops it with a warning): this adapter drops it with
//! that reason, so the strict load takes the converted file's every other tensor.

use mmcompat_registry::adapter::{
    class_count_mismatch, plan_by_key, widen_to_f32, AdapterError, AdapterOptions,
    CheckpointAdapter, CheckpointView, Confidence, KeyFate, Plan,
};
use mmcompat_registry::register_adapter;

/// Referenced by the facade crate so the linker keeps this crate and its `inventory` submissions.
pub fn link() {}

/// Which of the two scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `yolov6_to_mmyolo.py` (YOLOv6 v2: RepPANNeck with `upsample0`/`upsample1`).
    V2,
    /// `yolov6_v3_to_mmyolo.py` (YOLOv6 v3: RepBiFPANNeck with `Bifusion0`/`Bifusion1`).
    V3,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::V2 => "meituan.yolov6",
            Version::V3 => "meituan.yolov6_v3",
        }
    }

    pub fn script(self) -> &'static str {
        match self {
            Version::V2 => "yolov6_to_mmyolo.py",
            Version::V3 => "yolov6_v3_to_mmyolo.py",
        }
    }

    /// The neck key that tells the versions apart.
    fn neck_marker(self) -> &'static str {
        match self {
            Version::V2 => "neck.upsample0.",
            Version::V3 => "neck.Bifusion0.",
        }
    }
}

/// The section the script loads: `ckpt['ema' if ckpt.get('ema') else 'model']`. The reader forms an
/// `ema` section only from a pickled module holding tensors (None forms none).
pub fn yolov6_section(view: &CheckpointView) -> Option<&'static str> {
    ["ema", "model"]
        .into_iter()
        .find(|s| view.section(s).is_some_and(|t| !t.is_empty()))
}

/// The scripts' `.cv` → `.conv` and `.m.` → `.block.` of a renamed block.
fn block_names(name: String, key: &str) -> String {
    let name = if key.contains(".cv") {
        name.replace(".cv", ".conv")
    } else {
        name
    };
    if key.contains(".m.") {
        name.replace(".m.", ".block.")
    } else {
        name
    }
}

const PROJ: &str = "Detect's proj / proj_conv (the fixed DFL integral; YOLOv6HeadModule computes it); the script skips it";
const DISTILL_NS: &str = "the DFL `reg_preds` of an n/s head, which yolov6_v3_to_mmyolo.py writes as `distill_ns_head` (training only: mmyolo's YOLOv6HeadModule has none and load_checkpoint(strict=False) drops it)";
const ANCHORS: &str = "anchors / anchor_grid (recomputed from the strides); the script skips them";

/// The `for k, v in model.state_dict().items()` body of the script for one key. `is_ns` (v3): the
/// head has `reg_preds_lrtb` (the script's flag, set by the first pass over all keys).
pub fn convert_key(version: Version, key: &str, is_ns: bool) -> Result<KeyFate, String> {
    let k = key;
    let mut name = k.to_owned();
    if k.contains("detect") {
        if k.contains("proj") {
            return Ok(KeyFate::Drop(PROJ.to_owned()));
        }
        name = k.replace("detect", "bbox_head.head_module");
    }
    if k.contains("anchors") || k.contains("anchor_grid") {
        return Ok(KeyFate::Drop(ANCHORS.to_owned()));
    }
    let stage = |from: &str, to: &str| block_names(k.replace(from, to), k);
    if k.contains("ERBlock_2") {
        name = stage("ERBlock_2", "stage1.0");
    } else if k.contains("ERBlock_3") {
        name = stage("ERBlock_3", "stage2.0");
    } else if k.contains("ERBlock_4") {
        name = stage("ERBlock_4", "stage3.0");
    } else if k.contains("ERBlock_5") {
        name = stage("ERBlock_5", "stage4.0");
        if name.contains("stage4.0.2") {
            name = name.replace("stage4.0.2", "stage4.1").replace("cv", "conv");
        }
    } else if k.contains("reduce_layer0") {
        name = k.replace("reduce_layer0", "reduce_layers.2");
    } else if k.contains("Rep_p4") {
        name = stage("Rep_p4", "top_down_layers.0.0");
    } else if k.contains("reduce_layer1") {
        name = stage("reduce_layer1", "top_down_layers.0.1");
    } else if k.contains("Rep_p3") {
        name = stage("Rep_p3", "top_down_layers.1");
    } else if version == Version::V2 && k.contains("upsample0") {
        name = k.replace("upsample0.upsample_transpose", "upsample_layers.0");
    } else if version == Version::V2 && k.contains("upsample1") {
        name = k.replace("upsample1.upsample_transpose", "upsample_layers.1");
    } else if version == Version::V3 && (k.contains("Bifusion0") || k.contains("Bifusion1")) {
        let i = if k.contains("Bifusion0") { '0' } else { '1' };
        name = stage(&format!("Bifusion{i}"), &format!("upsample_layers.{i}"));
        if k.contains(".upsample_transpose.") {
            name = name.replace(".upsample_transpose.", ".");
        }
    } else if k.contains("Rep_n3") {
        name = stage("Rep_n3", "bottom_up_layers.0");
    } else if k.contains("Rep_n4") {
        name = stage("Rep_n4", "bottom_up_layers.1");
    } else if k.contains("downsample2") {
        name = k.replace("downsample2", "downsample_layers.0");
    } else if k.contains("downsample1") {
        name = k.replace("downsample1", "downsample_layers.1");
    }
    if version == Version::V3 && is_ns {
        // The script's second pass over the converted names.
        if name.contains("reg_preds_lrtb") {
            name = name.replace("reg_preds_lrtb", "reg_preds");
        } else if name.contains("reg_preds") {
            return Ok(KeyFate::Drop(DISTILL_NS.to_owned()));
        }
    }
    Ok(KeyFate::Rename(name))
}

/// A Meituan YOLOv6 `.pt` of one [`Version`] → mmyolo `YOLODetector` keys.
#[derive(Debug, Clone, Copy)]
pub struct MeituanYolov6(pub Version);

impl CheckpointAdapter for MeituanYolov6 {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn scope(&self) -> &str {
        "mmyolo"
    }

    fn description(&self) -> &str {
        match self.0 {
            Version::V2 => "Meituan YOLOv6 v2 .pt (pickled Model, read as data) → mmyolo keys, as yolov6_to_mmyolo.py; fp32 as its .float()",
            Version::V3 => "Meituan YOLOv6 v3 .pt (pickled Model, read as data) → mmyolo keys, as yolov6_v3_to_mmyolo.py; fp32 as its .float()",
        }
    }

    fn detect(&self, view: &CheckpointView, config: Option<&serde_json::Value>) -> Confidence {
        let Some(section) = yolov6_section(view) else {
            return Confidence::none("no YOLOv6 model (`ema`/`model` with ERBlock keys)");
        };
        let has = |p: &str| view.any_key_starts_with(section, p);
        if !has("backbone.ERBlock_2.") || !has("detect.") {
            return Confidence::none(format!(
                "{section} has no YOLOv6 EfficientRep (`backbone.ERBlock_2.`) and Detect (`detect.`) keys"
            ));
        }
        let other = match self.0 {
            Version::V2 => Version::V3,
            Version::V3 => Version::V2,
        };
        if has(other.neck_marker()) {
            return Confidence::none(format!(
                "{section} has the {} neck (`{}`)",
                other.name(),
                other.neck_marker()
            ));
        }
        if !has(self.0.neck_marker()) {
            return Confidence::low(format!(
                "{section} is a YOLOv6 model without `{}` (neither known neck)",
                self.0.neck_marker()
            ));
        }
        if let Some(reason) =
            class_count_mismatch(view, section, "detect.cls_preds.0.weight", Some, config)
        {
            return Confidence::high(reason);
        }
        Confidence::high(format!(
            "{section} is a YOLOv6 module tree with {}'s neck (`{}`)",
            self.0.name(),
            self.0.neck_marker()
        ))
    }

    fn plan(&self, view: &CheckpointView, _options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let section = yolov6_section(view).ok_or_else(|| AdapterError::MissingSection {
            adapter: self.0.name().to_owned(),
            section: "model".to_owned(),
            available: view.section_names(),
            hint: "not a YOLOv6 .pt: no pickled model under `ema` or `model`".to_owned(),
        })?;
        let entries = view.section(section).unwrap_or_default();
        let is_ns = self.0 == Version::V3
            && entries.iter().any(|e| {
                e.key.contains("detect")
                    && !e.key.contains("proj")
                    && e.key.contains("reg_preds_lrtb")
            });
        let mut plan = plan_by_key(self.0.name(), section, entries, |k| {
            convert_key(self.0, k, is_ns)
        })?;
        plan.notes.push(format!(
            "weights: {section} (the pickled YOLOv6 model, walked as data; nothing was imported or run)"
        ));
        if section == "ema" {
            plan.notes.push(format!(
                "`ema` is a model: the EMA weights are used, as {} does",
                self.0.script()
            ));
        }
        if let Some((cast, n)) = widen_to_f32(entries) {
            plan.ops.insert(0, cast);
            plan.notes.push(format!(
                "{n} fp16 tensors widened to fp32 ({}: `.float()`); num_batches_tracked stays int64",
                self.0.script()
            ));
        }
        Ok(plan)
    }
}

register_adapter!(name: "meituan.yolov6", scope: "mmyolo", make: || Box::new(MeituanYolov6(Version::V2)));
register_adapter!(name: "meituan.yolov6_v3", scope: "mmyolo", make: || Box::new(MeituanYolov6(Version::V3)));

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(v: Version, key: &str, is_ns: bool) -> String {
        match convert_key(v, key, is_ns).unwrap() {
            KeyFate::Rename(k) => k,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_branch_as_the_script() {
        use Version::*;
        assert_eq!(
            renamed(V2, "backbone.ERBlock_5.2.cv1.conv.weight", false),
            "backbone.stage4.1.conv1.conv.weight"
        );
        assert_eq!(
            renamed(V3, "backbone.ERBlock_3.1.m.0.conv1.bn.bias", false),
            "backbone.stage2.0.1.block.0.conv1.bn.bias"
        );
        assert_eq!(
            renamed(V2, "neck.upsample1.upsample_transpose.weight", false),
            "neck.upsample_layers.1.weight"
        );
        assert_eq!(
            renamed(V3, "neck.Bifusion1.upsample.upsample_transpose.bias", false),
            "neck.upsample_layers.1.upsample.bias"
        );
        assert_eq!(
            renamed(V3, "neck.Bifusion0.cv3.bn.weight", false),
            "neck.upsample_layers.0.conv3.bn.weight"
        );
        assert_eq!(
            renamed(V3, "detect.reg_preds_lrtb.2.bias", true),
            "bbox_head.head_module.reg_preds.2.bias"
        );
        // Without `reg_preds_lrtb` (v3 m/l), `reg_preds` stays.
        assert_eq!(
            renamed(V3, "detect.reg_preds.2.bias", false),
            "bbox_head.head_module.reg_preds.2.bias"
        );
        assert!(matches!(
            convert_key(V3, "detect.reg_preds.2.bias", true),
            Ok(KeyFate::Drop(r)) if r == DISTILL_NS
        ));
        assert!(matches!(
            convert_key(V2, "detect.proj_conv.weight", false),
            Ok(KeyFate::Drop(_))
        ));
    }
}
