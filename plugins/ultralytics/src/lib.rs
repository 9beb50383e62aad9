//! Checkpoint adapters for Ultralytics `.pt` files (see `mmcompat_registry::adapter` for the
//! contract). An Ultralytics file pickles the whole `DetectionModel`; the core's safe reader keeps
//! it as inert data and walks it to `model.state_dict()` (`checkpoint::module_tree`), which forms
//! the `model` section (or `ema` for a trainer checkpoint whose `model` is `None`). Nothing of
//! Ultralytics is imported or run.
//!
//! `ultralytics.yolov5` (the anchor-based v7.0 layout) is in [`yolov5`]. `ultralytics.yolov8` and
//! `ultralytics.yolov5u` do exactly what mmyolo 0.6's
//! `tools/model_converters/yolov8_to_mmyolo.py` / `yolov5u_to_mmyolo.py: convert` do: the
//! `model.N` → mmyolo prefix table (`convert_dict_s` / `convert_dict_p5`), then the `if/elif` chain
//! of replacements, and the drop of the Detect layer's `dfl.conv.weight`. Ultralytics stores fp16
//! and the scripts keep fp16; the model runs in fp32, as after `init_detector`'s `load_state_dict`
//! into the fp32 model, so the plan widens the floating tensors to fp32 and says so. A key the table does not cover (a newer layout: YOLO11's
//! C2PSA, a Detect at another index) makes the plan fail with the unmatched module paths, where
//! the script would raise `KeyError`.

use std::collections::BTreeMap;

use mmcompat_registry::adapter::{
    AdapterError, AdapterOptions, CheckpointAdapter, CheckpointView, Confidence, Op, Plan,
    RenameRule, ROOT_SECTION,
};
use mmcompat_registry::{register_adapter, DType};

/// Referenced by the facade crate so the linker keeps this crate and its `inventory` submissions.
pub fn link() {}

pub mod yolov5;

/// One Ultralytics architecture that an mmyolo converter script knows.
#[derive(Debug)]
pub struct Layout {
    /// Adapter name.
    pub name: &'static str,
    /// The mmyolo script mirrored (for messages).
    pub script: &'static str,
    /// What each layer index becomes (the script's prefix table) and which Ultralytics block sits
    /// there (the architecture's yaml), which decides the `elif` branch its keys take.
    layers: &'static [(usize, &'static str, Block)],
    /// Index of the `Detect` layer.
    pub detect: usize,
    description: &'static str,
}

#[derive(Debug, Clone, Copy)]
enum Block {
    Conv,
    /// YOLOv8 `C2f`: `cv1`/`cv2` → `main_conv`/`final_conv`.
    C2f,
    /// YOLOv5 `C3`: `cv1`/`cv2`/`cv3` → `main_conv`/`short_conv`/`final_conv`.
    C3,
    Sppf,
    Detect,
}

/// `ultralytics/cfg/models/v8/yolov8.yaml` ↔ `yolov8_to_mmyolo.py: convert_dict_s`.
pub const YOLOV8: Layout = Layout {
    name: "ultralytics.yolov8",
    script: "yolov8_to_mmyolo.py",
    layers: &[
        (0, "backbone.stem", Block::Conv),
        (1, "backbone.stage1.0", Block::Conv),
        (2, "backbone.stage1.1", Block::C2f),
        (3, "backbone.stage2.0", Block::Conv),
        (4, "backbone.stage2.1", Block::C2f),
        (5, "backbone.stage3.0", Block::Conv),
        (6, "backbone.stage3.1", Block::C2f),
        (7, "backbone.stage4.0", Block::Conv),
        (8, "backbone.stage4.1", Block::C2f),
        (9, "backbone.stage4.2", Block::Sppf),
        (12, "neck.top_down_layers.0", Block::C2f),
        (15, "neck.top_down_layers.1", Block::C2f),
        (16, "neck.downsample_layers.0", Block::Conv),
        (18, "neck.bottom_up_layers.0", Block::C2f),
        (19, "neck.downsample_layers.1", Block::Conv),
        (21, "neck.bottom_up_layers.1", Block::C2f),
        (22, "bbox_head.head_module", Block::Detect),
    ],
    detect: 22,
    description: "Ultralytics YOLOv8 .pt (pickled DetectionModel, read as data) → mmyolo keys, as yolov8_to_mmyolo.py; fp16 widened to fp32",
};

/// `ultralytics/cfg/models/v5/yolov5.yaml` (the anchor-free "u" models) ↔
/// `yolov5u_to_mmyolo.py: convert_dict_p5`.
pub const YOLOV5U: Layout = Layout {
    name: "ultralytics.yolov5u",
    script: "yolov5u_to_mmyolo.py",
    layers: &[
        (0, "backbone.stem", Block::Conv),
        (1, "backbone.stage1.0", Block::Conv),
        (2, "backbone.stage1.1", Block::C3),
        (3, "backbone.stage2.0", Block::Conv),
        (4, "backbone.stage2.1", Block::C3),
        (5, "backbone.stage3.0", Block::Conv),
        (6, "backbone.stage3.1", Block::C3),
        (7, "backbone.stage4.0", Block::Conv),
        (8, "backbone.stage4.1", Block::C3),
        (9, "backbone.stage4.2", Block::Sppf),
        (10, "neck.reduce_layers.2", Block::Conv),
        (13, "neck.top_down_layers.0.0", Block::C3),
        (14, "neck.top_down_layers.0.1", Block::Conv),
        (17, "neck.top_down_layers.1", Block::C3),
        (18, "neck.downsample_layers.0", Block::Conv),
        (20, "neck.bottom_up_layers.0", Block::C3),
        (21, "neck.downsample_layers.1", Block::Conv),
        (23, "neck.bottom_up_layers.1", Block::C3),
        (24, "bbox_head.head_module", Block::Detect),
    ],
    detect: 24,
    description: "Ultralytics YOLOv5u .pt (pickled DetectionModel, read as data) → mmyolo keys, as yolov5u_to_mmyolo.py; fp16 widened to fp32",
};

/// Every layout, to tell them apart by their Detect index.
const LAYOUTS: [&Layout; 2] = [&YOLOV8, &YOLOV5U];

impl Layout {
    /// The script's key rewrite as first-match rules (each key is rewritten once, like its
    /// `elif`): `.m.` keys get `.blocks.` and every `.cv` → `.conv`; SPPF (`backbone.stage4.2`)
    /// `.cv` → `.conv`; the head's `.cv2`/`.cv3` → `.reg_preds`/`.cls_preds`; other C2f/C3 keys
    /// `.cvN` → `main_conv`/(`short_conv`)/`final_conv`; plain `Conv` layers only change prefix.
    fn rules(&self) -> Vec<RenameRule> {
        let rule = |pattern: String, to: String| RenameRule { pattern, to };
        let mut rules = Vec::new();
        for &(i, to, block) in self.layers {
            let blocks = || {
                rule(
                    format!(r"model\.{i}\.m\.(\d+)\.cv(\d+)\."),
                    format!("{to}.blocks.${{1}}.conv${{2}}."),
                )
            };
            let cv = |n: usize, name: &str| {
                rule(format!(r"model\.{i}\.cv{n}\."), format!("{to}.{name}."))
            };
            match block {
                Block::Conv => rules.push(rule(
                    format!(r"model\.{i}\.(conv|bn)\."),
                    format!("{to}.${{1}}."),
                )),
                Block::C2f => rules.extend([blocks(), cv(1, "main_conv"), cv(2, "final_conv")]),
                Block::C3 => rules.extend([
                    blocks(),
                    cv(1, "main_conv"),
                    cv(2, "short_conv"),
                    cv(3, "final_conv"),
                ]),
                Block::Sppf => rules.push(rule(
                    format!(r"model\.{i}\.cv(\d+)\."),
                    format!("{to}.conv${{1}}."),
                )),
                Block::Detect => rules.extend([cv(2, "reg_preds"), cv(3, "cls_preds")]),
            }
        }
        rules
    }

    fn dfl_key(&self) -> String {
        format!("model.{}.dfl.conv.weight", self.detect)
    }
}

/// The section holding the walked Ultralytics model: `model` as the script loads
/// (`torch.load(src)['model']`), else the trainer's `ema` (a `last.pt` whose `model` is `None`),
/// else a bare `model.state_dict()` saved on its own (same keys, no pickled module).
fn ultralytics_section(view: &CheckpointView) -> Option<&str> {
    ["model", "ema", ROOT_SECTION].into_iter().find(|s| {
        view.section(s).is_some_and(|t| {
            !t.is_empty()
                && t.iter().all(|e| {
                    e.key
                        .strip_prefix("model.")
                        .and_then(|r| r.split('.').next())
                        .is_some_and(|n| n.parse::<usize>().is_ok())
                })
        })
    })
}

/// Number of classes of an Ultralytics Detect head: rows of the last `cv3` conv.
fn checkpoint_classes(
    view: &CheckpointView,
    section: &str,
    detect: usize,
) -> Option<(usize, String)> {
    let key = format!("model.{detect}.cv3.0.2.weight");
    let e = view.section(section)?.iter().find(|e| e.key == key)?;
    Some((*e.shape.first()?, key))
}

/// `model.bbox_head.head_module.num_classes` of the resolved config, if given.
fn config_classes(config: Option<&serde_json::Value>) -> Option<usize> {
    let n = config?
        .pointer("/model/bbox_head/head_module/num_classes")?
        .as_u64()?;
    usize::try_from(n).ok()
}

/// The class-count check between an Ultralytics checkpoint and a config: `Err` names both numbers
/// and the option that would make them agree (a silent mismatch loads nothing useful).
pub fn check_class_count(
    layout: &Layout,
    view: &CheckpointView,
    config: Option<&serde_json::Value>,
) -> Result<(), AdapterError> {
    let Some(section) = ultralytics_section(view) else {
        return Ok(());
    };
    match (
        checkpoint_classes(view, section, layout.detect),
        config_classes(config),
    ) {
        (Some((ck, key)), Some(cfg)) if ck != cfg => Err(AdapterError::NotApplicable {
            adapter: layout.name.to_owned(),
            reason: format!(
                "the checkpoint has {ck} classes ({section}:{key} has {ck} rows) but the config has {cfg} \
                 (model.bbox_head.head_module.num_classes); use a config for {ck} classes or \
                 --cfg-options model.bbox_head.head_module.num_classes={ck}"
            ),
        }),
        _ => Ok(()),
    }
}

/// An Ultralytics `.pt` of one [`Layout`] → mmyolo `YOLODetector` keys.
#[derive(Debug, Clone, Copy)]
pub struct Ultralytics(pub &'static Layout);

impl CheckpointAdapter for Ultralytics {
    fn name(&self) -> &str {
        self.0.name
    }

    fn scope(&self) -> &str {
        "mmyolo"
    }

    fn description(&self) -> &str {
        self.0.description
    }

    fn detect(&self, view: &CheckpointView, config: Option<&serde_json::Value>) -> Confidence {
        let Some(section) = ultralytics_section(view) else {
            return Confidence::none("no pickled Ultralytics model (`model.<N>.` keys)");
        };
        let dfl = self.0.dfl_key();
        if !view.any_key_starts_with(section, &dfl) {
            if let Some(other) = LAYOUTS
                .iter()
                .find(|l| view.any_key_starts_with(section, &l.dfl_key()))
            {
                return Confidence::none(format!(
                    "{section} has the {} layout (Detect at model.{})",
                    other.name, other.detect
                ));
            }
            if yolov5::yolov5_layout(view).is_some() {
                return Confidence::none(format!(
                    "{section} has the {} layout (an anchor-based Detect)",
                    yolov5::NAME
                ));
            }
            return Confidence::low(format!(
                "{section} is an Ultralytics module tree without `{dfl}` (no known layout; the plan names what does not map)"
            ));
        }
        // Still the right adapter when the class counts differ: the chain is tried, and the strict
        // check then reports the cls_preds shapes; the reason carries the explanation and the fix.
        if let Err(AdapterError::NotApplicable { reason, .. }) =
            check_class_count(self.0, view, config)
        {
            return Confidence::high(reason);
        }
        Confidence::high(format!(
            "{section} is an Ultralytics module tree with {}'s Detect at model.{}",
            self.0.name, self.0.detect
        ))
    }

    fn plan(&self, view: &CheckpointView, _options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let section = ultralytics_section(view).ok_or_else(|| AdapterError::MissingSection {
            adapter: self.0.name.to_owned(),
            section: "model".to_owned(),
            available: view.section_names(),
            hint: "not an Ultralytics .pt: no pickled model with `model.<N>.` keys".to_owned(),
        })?;
        let mut notes = vec![format!(
            "weights: {section} (the pickled Ultralytics model, walked as data; nothing was imported or run)"
        )];
        if section == "ema" {
            notes.push("`model` is None (a trainer checkpoint): the EMA model is used, as strip_optimizer would".to_owned());
        }
        let mut ops = vec![
            Op::Drop {
                pattern: format!(r"model\.{}\.dfl\.conv\.weight$", self.0.detect),
                reason: format!(
                    "DFL's fixed arange conv; YOLOv8HeadModule computes it ({} drops it)",
                    self.0.script
                ),
            },
            Op::RenameFirst {
                rules: self.0.rules(),
            },
        ];
        // Keys no rule rewrote still start with `model.`: a layout the script does not know.
        let mapping = Plan {
            adapter: self.0.name.to_owned(),
            section: section.to_owned(),
            ops: ops.clone(),
            notes: Vec::new(),
        }
        .resolve(view)?;
        // Grouped by layer (`model.10`), numerically, with a count and the first module path.
        let mut unmatched: BTreeMap<usize, (usize, String)> = BTreeMap::new();
        for t in mapping
            .tensors
            .iter()
            .filter(|t| t.key.starts_with("model."))
        {
            let layer = t
                .key
                .split('.')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            unmatched
                .entry(layer)
                .or_insert_with(|| (0, module_path(&t.key)))
                .0 += 1;
        }
        if !unmatched.is_empty() {
            let total: usize = unmatched.values().map(|(n, _)| n).sum();
            let layers: Vec<String> = unmatched
                .iter()
                .map(|(i, (n, example))| format!("model.{i} ({n} keys, e.g. {example})"))
                .collect();
            return Err(AdapterError::NotApplicable {
                adapter: self.0.name.to_owned(),
                reason: format!(
                    "{total} keys of this Ultralytics model are not in {}'s layout ({}'s table); \
                     unmatched module paths: {}; a newer Ultralytics architecture (YOLO11, P6, seg/pose heads) \
                     has no mmyolo equivalent here",
                    self.0.name,
                    self.0.script,
                    layers.join(", ")
                ),
            });
        }
        let widened = mapping
            .tensors
            .iter()
            .filter(|t| t.dtype == DType::F16)
            .count();
        if widened > 0 {
            ops.push(Op::Cast {
                pattern: r".*\.(weight|bias|running_mean|running_var)$".to_owned(),
                dtype: DType::F32,
            });
            notes.push(format!(
                "{widened} fp16 tensors widened to fp32 (Ultralytics saves fp16; init_detector's load_state_dict copies them into the fp32 model); \
                 num_batches_tracked stays int64"
            ));
        }
        Ok(Plan {
            adapter: self.0.name.to_owned(),
            section: section.to_owned(),
            ops,
            notes,
        })
    }
}

/// `model.10.m.0.attn.qkv.conv.weight` → `model.10.m.0.attn.qkv.conv`.
fn module_path(key: &str) -> String {
    key.rsplit_once('.').map_or(key, |(m, _)| m).to_owned()
}

register_adapter!(name: "ultralytics.yolov8", scope: "mmyolo", make: || Box::new(Ultralytics(&YOLOV8)));
register_adapter!(name: "ultralytics.yolov5u", scope: "mmyolo", make: || Box::new(Ultralytics(&YOLOV5U)));
register_adapter!(name: "ultralytics.yolov5", scope: "mmyolo", make: || Box::new(yolov5::Yolov5));
