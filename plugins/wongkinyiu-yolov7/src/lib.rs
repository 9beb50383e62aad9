//! Checkpoint adapter for WongKinYiu YOLOv7 `.pt` files (see `mmcompat_registry::adapter` for the
//! contract). YOLOv7 pickles the whole `models.yolo.Model` under `model` (train.py's checkpoint,
//! or the deploy file of `tools/reparameterization.ipynb`: `{'model': model.half(), 'optimizer':
//! None, 'training_results': None, 'epoch': -1}`); the core's safe reader walks it as data
//! (`checkpoint::module_tree`) to its `state_dict()`. Nothing of YOLOv7 is imported or run.
//!
//! `wongkinyiu.yolov7` does exactly what mmyolo 0.6's `tools/model_converters/yolov7_to_mmyolo.py:
//! convert` does: `torch.load(src)['model'].float().state_dict()`, `anchors`/`anchor_grid`
//! skipped, each key renamed through the variant's prefix table (`convert_dict_*`, copied as data
//! into `convert_dicts.json` by tests/fixtures/generate/make_foreign_refs.py) at `model.N`,
//! `model.N.module` or `model.N.module.i` depending on the variant's `indexes`, then ImplicitA
//! zeros and ImplicitM ones ADDED per head level (the deploy files fold them into the convs;
//! mmyolo's head has them), through `Op::Constant`.
//!
//! Two places where the script cannot be followed literally, both said in the plan's notes:
//! - The script picks its table by the source's BASENAME (`yolov7-tiny.pt`, `yolov7x.pt`, ...),
//!   which a renamed file breaks. The variant is read from the key set instead: its Detect layer
//!   index (`model.77` tiny, `model.105` l, `model.121` x, `model.118` w6, `model.140` e6,
//!   `model.261` e6e) is the largest layer of the file. The option `yolov7.variant=<file name>`
//!   (e.g. `yolov7-tiny`) overrides it.
//! - The script sizes the added tensors with the released models' constants (`in_channels` of
//!   the full-width variant, `3 * 85` rows: 80 COCO classes), whatever the file holds. Here they
//!   are read from the head convs `model.H.m.i.weight` (input channels, output rows), which are
//!   those constants on the released files, and fit the file's model otherwise.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use mmcompat_registry::adapter::{
    class_count_mismatch, plan_by_key, widen_to_f32, AdapterError, AdapterOptions,
    CheckpointAdapter, CheckpointView, Confidence, KeyFate, Op, Plan, TensorEntry,
};
use mmcompat_registry::{register_adapter, DType};
use serde::Deserialize;

/// Referenced by the facade crate so the linker keeps this crate and its `inventory` submissions.
pub fn link() {}

/// Adapter name.
pub const NAME: &str = "wongkinyiu.yolov7";
/// The `AdapterOptions::extra` key that names the variant (the script's file name, `.pt`
/// optional), for a file whose layers do not say it.
pub const VARIANT_OPTION: &str = "yolov7.variant";
const SCRIPT: &str = "yolov7_to_mmyolo.py";
/// The script reads `ckpt['model']`, never `ema`.
const SECTION: &str = "model";

/// One `convert_dicts` entry of the script, with its `indexes`.
#[derive(Debug, Deserialize)]
pub struct Variant {
    /// The Detect layer (the largest `model.N` of the table).
    pub head: usize,
    /// `indexes`: below `.0` (and not in `.1`) keys map by `model.N`; in `.1` by
    /// `model.N.module`; else by `model.N.module.i`.
    pub indexes: (usize, Vec<usize>),
    /// `convert_dict_*` in the script's order.
    pub table: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
struct Tables {
    variants: BTreeMap<String, Variant>,
}

/// The script's tables (`convert_dicts`), keyed by the file name it expects.
pub fn variants() -> &'static BTreeMap<String, Variant> {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    &TABLES
        .get_or_init(|| {
            serde_json::from_str(include_str!("convert_dicts.json"))
                .expect("convert_dicts.json is generated data checked by this crate's tests")
        })
        .variants
}

/// `model.N.` → N.
fn layer_of(key: &str) -> Option<usize> {
    key.strip_prefix("model.")?.split('.').next()?.parse().ok()
}

/// The variant (the script's file name) of `entries`: from `options` when given, else the one
/// whose Detect index is the file's largest layer.
pub fn detect_variant(
    entries: &[TensorEntry],
    options: &AdapterOptions,
) -> Result<&'static str, String> {
    let known = variants();
    if let Some(v) = options.extra.get(VARIANT_OPTION) {
        let file = if v.ends_with(".pt") {
            v.clone()
        } else {
            format!("{v}.pt")
        };
        return known
            .get_key_value(&file)
            .map(|(k, _)| k.as_str())
            .ok_or_else(|| {
                format!(
                    "{VARIANT_OPTION}={v} is none of {SCRIPT}'s variants ({})",
                    known.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            });
    }
    let head = entries
        .iter()
        .filter_map(|e| layer_of(&e.key))
        .max()
        .ok_or("no `model.N.` keys")?;
    let heads = || {
        known
            .iter()
            .map(|(k, v)| format!("{k}: model.{}", v.head))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (name, _) = known.iter().find(|(_, v)| v.head == head).ok_or_else(|| {
        format!(
            "its last layer is model.{head}, no Detect index of {SCRIPT}'s tables ({}); \
                 name the variant with {VARIANT_OPTION}=<name> if the layers are renumbered",
            heads()
        )
    })?;
    if !entries
        .iter()
        .any(|e| e.key == format!("model.{head}.m.0.weight"))
    {
        return Err(format!(
            "its last layer model.{head} has no Detect conv `model.{head}.m.0.weight`"
        ));
    }
    Ok(name.as_str())
}

const ANCHORS: &str =
    "anchors / anchor_grid (recomputed from the config's priors); the script skips them";

/// The `for key, weight in blobs.items()` body of the script for one key.
pub fn convert_key(variant: &Variant, key: &str) -> Result<KeyFate, String> {
    if key.contains("anchors") || key.contains("anchor_grid") {
        return Ok(KeyFate::Drop(ANCHORS.to_owned()));
    }
    let parts: Vec<&str> = key.split('.').collect();
    // `num, module = key.split('.')[1:3]`: a ValueError on shorter keys.
    if parts.len() < 3 {
        return Err("fewer than 3 dotted parts (`num, module = key.split('.')[1:3]`)".to_owned());
    }
    let num: usize = parts[1]
        .parse()
        .map_err(|_| format!("`{}` is no layer number", parts[1]))?;
    let (below, listed) = (&variant.indexes.0, &variant.indexes.1);
    let depth = if num < *below && !listed.contains(&num) {
        2
    } else if listed.contains(&num) {
        3
    } else {
        4
    };
    let prefix = parts[..depth.min(parts.len())].join(".");
    let to = variant
        .table
        .iter()
        .find(|(k, _)| *k == prefix)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("no entry `{prefix}` in the table (the script's KeyError)"))?;
    Ok(KeyFate::Rename(key.replace(&prefix, to)))
}

/// The script's `# Add ImplicitA and ImplicitM` loop: per head level, ImplicitA zeros
/// `(1, in, 1, 1)` and ImplicitM ones `(1, rows, 1, 1)`, sized from `model.H.m.i.weight`.
fn implicit_constants(variant: &Variant, entries: &[TensorEntry]) -> Result<Vec<Op>, AdapterError> {
    let h = variant.head;
    let levels = if variant
        .table
        .iter()
        .any(|(k, _)| *k == format!("model.{h}.m.3"))
    {
        4
    } else {
        3
    };
    let mut ops = Vec::new();
    for i in 0..levels {
        let key = format!("model.{h}.m.{i}.weight");
        let conv = entries
            .iter()
            .find(|e| e.key == key)
            .filter(|e| e.shape.len() == 4)
            .ok_or_else(|| AdapterError::NotApplicable {
                adapter: NAME.to_owned(),
                reason: format!(
                    "the head has no 4-d conv `{key}` to size level {i}'s ImplicitA/ImplicitM"
                ),
            })?;
        let (a, m) = if levels == 3 {
            (
                format!("bbox_head.head_module.convs_pred.{i}.0.implicit"),
                format!("bbox_head.head_module.convs_pred.{i}.2.implicit"),
            )
        } else {
            (
                format!("bbox_head.head_module.main_convs_pred.{i}.1.implicit"),
                format!("bbox_head.head_module.main_convs_pred.{i}.3.implicit"),
            )
        };
        for (key, width, fill, what) in [
            (a, conv.shape[1], 0, "ImplicitA (identity: zeros)"),
            (m, conv.shape[0], 1, "ImplicitM (identity: ones)"),
        ] {
            ops.push(Op::Constant {
                key,
                dtype: DType::F32,
                shape: vec![1, width, 1, 1],
                fill,
                reason: format!("{what}, added by {SCRIPT}"),
            });
        }
    }
    Ok(ops)
}

/// A WongKinYiu YOLOv7 `.pt` → mmyolo `YOLODetector` keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct WongKinYiuYolov7;

impl CheckpointAdapter for WongKinYiuYolov7 {
    fn name(&self) -> &str {
        NAME
    }

    fn scope(&self) -> &str {
        "mmyolo"
    }

    fn description(&self) -> &str {
        "WongKinYiu YOLOv7 .pt (pickled Model, read as data) → mmyolo keys, as yolov7_to_mmyolo.py (variant from the key set); fp32 as its .float()"
    }

    fn detect(&self, view: &CheckpointView, config: Option<&serde_json::Value>) -> Confidence {
        let Some(entries) = view.section(SECTION).filter(|t| !t.is_empty()) else {
            return Confidence::none("no pickled model under `model`");
        };
        let variant = match detect_variant(entries, &AdapterOptions::default()) {
            Ok(v) => v,
            Err(why) => return Confidence::none(format!("not a YOLOv7 layout: {why}")),
        };
        let head = variants()[variant].head;
        if let Some(reason) = class_count_mismatch(
            view,
            SECTION,
            &format!("model.{head}.m.0.weight"),
            |rows| (rows % 3 == 0 && rows / 3 > 5).then(|| rows / 3 - 5),
            config,
        ) {
            return Confidence::high(reason);
        }
        Confidence::high(format!(
            "model is a YOLOv7 module tree with its Detect at model.{head} ({variant}'s layout)"
        ))
    }

    fn option_keys(&self) -> &[&'static str] {
        &[VARIANT_OPTION]
    }

    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let entries = view
            .section(SECTION)
            .ok_or_else(|| AdapterError::MissingSection {
                adapter: NAME.to_owned(),
                section: SECTION.to_owned(),
                available: view.section_names(),
                hint: "not a YOLOv7 .pt: no pickled model under `model`".to_owned(),
            })?;
        let name =
            detect_variant(entries, options).map_err(|reason| AdapterError::NotApplicable {
                adapter: NAME.to_owned(),
                reason,
            })?;
        let variant = &variants()[name];
        let mut plan = plan_by_key(NAME, SECTION, entries, |k| convert_key(variant, k))?;
        plan.ops.extend(implicit_constants(variant, entries)?);
        let how = if options.extra.contains_key(VARIANT_OPTION) {
            format!("named by {VARIANT_OPTION}")
        } else {
            format!(
                "its Detect is model.{}; the script would need the file named so",
                variant.head
            )
        };
        plan.notes.push(format!(
            "weights: model (the pickled YOLOv7 model, walked as data; nothing was imported or run); \
             {SCRIPT}'s table for {name} ({how})"
        ));
        plan.notes.push(format!(
            "ImplicitA zeros / ImplicitM ones added per level, sized from model.{}.m.i.weight \
             (the script's constants assume the released 80-class full-width model)",
            variant.head
        ));
        if let Some((cast, n)) = widen_to_f32(entries) {
            plan.ops.insert(0, cast);
            plan.notes.push(format!(
                "{n} fp16 tensors widened to fp32 ({SCRIPT}: `.float()`); num_batches_tracked stays int64"
            ));
        }
        Ok(plan)
    }
}

register_adapter!(name: "wongkinyiu.yolov7", scope: "mmyolo", make: || Box::new(WongKinYiuYolov7));

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, shape: &[usize]) -> TensorEntry {
        TensorEntry {
            key: key.to_owned(),
            dtype: DType::F16,
            shape: shape.to_vec(),
        }
    }

    fn renamed(variant: &str, key: &str) -> String {
        match convert_key(&variants()[variant], key).unwrap() {
            KeyFate::Rename(k) => k,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_tables_are_the_scripts_six() {
        let v = variants();
        let heads: Vec<(&str, usize)> = v.iter().map(|(k, v)| (k.as_str(), v.head)).collect();
        assert_eq!(
            heads,
            [
                ("yolov7-e6.pt", 140),
                ("yolov7-e6e.pt", 261),
                ("yolov7-tiny.pt", 77),
                ("yolov7-w6.pt", 118),
                ("yolov7.pt", 105),
                ("yolov7x.pt", 121)
            ]
        );
    }

    #[test]
    fn each_index_rule_as_the_script() {
        // Below indexes[0]: by `model.N`.
        assert_eq!(
            renamed("yolov7-tiny.pt", "model.30.conv.weight"),
            "neck.reduce_layers.2.main_layers.conv.weight"
        );
        // At or above: by `model.N.module.i`.
        assert_eq!(
            renamed("yolov7-tiny.pt", "model.77.m.2.bias"),
            "bbox_head.head_module.convs_pred.2.1.bias"
        );
        // In indexes[1]: by `model.N.module` (yolov7.pt's SPPCSPC at 51).
        assert_eq!(
            renamed("yolov7.pt", "model.51.cv1.bn.weight"),
            "neck.reduce_layers.2.main_layers.0.bn.weight"
        );
        // A training IDetect's implicit layers: the script's KeyError.
        let e = convert_key(&variants()["yolov7-tiny.pt"], "model.77.ia.0.implicit").unwrap_err();
        assert!(e.contains("model.77.ia.0"), "{e}");
    }

    #[test]
    fn the_variant_comes_from_the_last_layer_or_the_option() {
        let entries = [
            entry("model.0.conv.weight", &[32, 3, 3, 3]),
            entry("model.105.m.0.weight", &[255, 256, 1, 1]),
        ];
        let none = AdapterOptions::default();
        assert_eq!(detect_variant(&entries, &none), Ok("yolov7.pt"));
        let mut named = AdapterOptions::default();
        named
            .extra
            .insert(VARIANT_OPTION.to_owned(), "yolov7x".to_owned());
        assert_eq!(detect_variant(&entries, &named), Ok("yolov7x.pt"));
        let d6 = [entry("model.166.m.0.weight", &[255, 320, 1, 1])];
        let e = detect_variant(&d6, &none).unwrap_err();
        assert!(e.contains("model.166") && e.contains(VARIANT_OPTION), "{e}");
    }

    /// On the released yolov7-tiny shapes (80 classes, full width) the added tensors have the
    /// script's constant shapes: in_channels [128, 256, 512], 3 * 85 rows.
    #[test]
    fn implicit_shapes_equal_the_scripts_constants_on_the_released_tiny() {
        let entries: Vec<TensorEntry> = [128, 256, 512]
            .iter()
            .enumerate()
            .map(|(i, &c)| entry(&format!("model.77.m.{i}.weight"), &[255, c, 1, 1]))
            .collect();
        let ops = implicit_constants(&variants()["yolov7-tiny.pt"], &entries).unwrap();
        let shapes: Vec<(String, Vec<usize>, i32)> = ops
            .into_iter()
            .map(|op| match op {
                Op::Constant {
                    key, shape, fill, ..
                } => (key, shape, fill),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            shapes[..2],
            [
                (
                    "bbox_head.head_module.convs_pred.0.0.implicit".to_owned(),
                    vec![1, 128, 1, 1],
                    0
                ),
                (
                    "bbox_head.head_module.convs_pred.0.2.implicit".to_owned(),
                    vec![1, 255, 1, 1],
                    1
                )
            ]
        );
        assert_eq!(shapes[4].1, [1, 512, 1, 1]);
    }
}
