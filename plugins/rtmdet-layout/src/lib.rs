//! Checkpoint adapters between the mmdet and mmyolo RTMDet key layouts (see
//! `mmcompat_registry::adapter` for the contract).
//!
//! The mapping is that of mmyolo's `tools/model_converters/rtmdet_to_mmyolo.py` (an `if/elif`
//! chain, first match wins), with two fixes: patterns are anchored at the start of the key (the
//! script tests `'neck.reduce_layers.0' in key` and then does `key.replace('.0', '.2')` on the
//! whole key), and `meta` is kept (the script writes `blobs.get('meta')` of the state dict, i.e.
//! `None`, which makes `init_detector` crash on `'dataset_meta' in None`). The reverse direction
//! is the inverse table. The expected outputs were recorded by running the real script's logic
//! on the real mmdet fixture (`tests/data/rtmdet_to_mmyolo_keys.json`).

use mmcompat_registry::adapter::{
    select_weights, AdapterError, AdapterOptions, CheckpointAdapter, CheckpointView, Confidence,
    Op, Plan, RenameRule,
};
use mmcompat_registry::register_adapter;

/// Referenced by the facade crate so the linker keeps this crate and its `inventory` submissions.
pub fn link() {}

/// mmdet `CSPNeXtPAFPN` / `RTMDetSepBNHead` prefix → mmyolo `CSPNeXtPAFPN` / `RTMDetHead.head_module`,
/// in the script's elif order.
const MMDET_TO_MMYOLO: &[(&str, &str)] = &[
    (r"neck\.reduce_layers\.0\.", "neck.reduce_layers.2."),
    (r"neck\.reduce_layers\.1\.", "neck.top_down_layers.0.1."),
    (r"neck\.top_down_blocks\.0\.", "neck.top_down_layers.0.0."),
    (r"neck\.top_down_blocks\.1\.", "neck.top_down_layers.1."),
    (r"neck\.downsamples\.", "neck.downsample_layers."),
    (r"neck\.bottom_up_blocks\.", "neck.bottom_up_layers."),
    (r"neck\.out_convs\.", "neck.out_layers."),
    (r"bbox_head\.", "bbox_head.head_module."),
];

/// The inverse table (mmyolo → mmdet).
const MMYOLO_TO_MMDET: &[(&str, &str)] = &[
    (r"neck\.reduce_layers\.2\.", "neck.reduce_layers.0."),
    (r"neck\.top_down_layers\.0\.1\.", "neck.reduce_layers.1."),
    (r"neck\.top_down_layers\.0\.0\.", "neck.top_down_blocks.0."),
    (r"neck\.top_down_layers\.1\.", "neck.top_down_blocks.1."),
    (r"neck\.downsample_layers\.", "neck.downsamples."),
    (r"neck\.bottom_up_layers\.", "neck.bottom_up_blocks."),
    (r"neck\.out_layers\.", "neck.out_convs."),
    (r"bbox_head\.head_module\.", "bbox_head."),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Mmdet,
    Mmyolo,
}

/// Which RTMDet layout a state dict has, from keys only mmdet or only mmyolo produce.
fn flavour(view: &CheckpointView, section: &str) -> Option<Flavour> {
    let keys = view.section(section)?;
    let has = |p: &str| keys.iter().any(|e| e.key.starts_with(p));
    let rtmdet_head = has("bbox_head.rtm_cls.") || has("bbox_head.head_module.rtm_cls.");
    if !rtmdet_head {
        return None;
    }
    if has("neck.top_down_blocks.") || has("neck.out_convs.") || has("bbox_head.rtm_cls.") {
        Some(Flavour::Mmdet)
    } else if has("neck.top_down_layers.") || has("bbox_head.head_module.") {
        Some(Flavour::Mmyolo)
    } else {
        None
    }
}

/// The model type of a resolved config (`model.type`, scope prefix removed), if given.
fn config_model_type(config: Option<&serde_json::Value>) -> Option<String> {
    let t = config?.get("model")?.get("type")?.as_str()?;
    Some(t.rsplit('.').next().unwrap_or(t).to_owned())
}

fn detect_direction(
    view: &CheckpointView,
    config: Option<&serde_json::Value>,
    from: Flavour,
    target_model_type: &str,
    target: &str,
) -> Confidence {
    let Some(section) = view.default_section() else {
        return Confidence::none("no state dict");
    };
    match flavour(view, section) {
        Some(f) if f == from => match config_model_type(config) {
            Some(t) if t == target_model_type => Confidence::high(format!(
                "{section} has the {from:?} RTMDet layout and the config builds a {target} {t}"
            )),
            Some(t) => Confidence::none(format!(
                "the config builds {t}, not the {target} {target_model_type}"
            )),
            None => Confidence::low(format!(
                "{section} has the {from:?} RTMDet layout (no config to say which model)"
            )),
        },
        Some(f) => Confidence::none(format!("{section} already has the {f:?} RTMDet layout")),
        None => Confidence::none(format!("{section} is not an RTMDet state dict")),
    }
}

fn rename_plan(
    adapter: &str,
    view: &CheckpointView,
    options: &AdapterOptions,
    table: &[(&str, &str)],
    from: Flavour,
) -> Result<Plan, AdapterError> {
    let (section, mut ops, mut notes) = select_weights(view, options, adapter)?;
    let normalised = if ops.is_empty() {
        view.clone()
    } else {
        // Look at the keys as they will be after the EMA normalisation.
        Plan {
            adapter: adapter.to_owned(),
            section: section.clone(),
            ops: ops.clone(),
            notes: Vec::new(),
        }
        .resolve(view)?
        .as_view(view)
    };
    match flavour(&normalised, &section) {
        Some(f) if f == from => {}
        other => {
            return Err(AdapterError::NotApplicable {
                adapter: adapter.to_owned(),
                reason: format!(
                    "{section} does not have the {from:?} RTMDet layout (found {other:?})"
                ),
            })
        }
    }
    // mmyolo's script drops data_preprocessor keys; only say so when there are some.
    if normalised.any_key_starts_with(&section, "data_preprocessor.") {
        ops.push(Op::Drop {
            pattern: r"data_preprocessor\.".to_owned(),
            reason: "data preprocessor buffers (rebuilt from the config)".to_owned(),
        });
    }
    ops.push(Op::RenameFirst {
        rules: table
            .iter()
            .map(|(p, t)| RenameRule {
                pattern: (*p).to_owned(),
                to: (*t).to_owned(),
            })
            .collect(),
    });
    notes.push("meta kept (mmyolo's rtmdet_to_mmyolo.py writes meta=None)".to_owned());
    Ok(Plan {
        adapter: adapter.to_owned(),
        section,
        ops,
        notes,
    })
}

/// mmdet RTMDet checkpoint → mmyolo `YOLODetector` with `RTMDetHead`.
#[derive(Debug, Default, Clone, Copy)]
pub struct MmdetToMmyolo;

impl CheckpointAdapter for MmdetToMmyolo {
    fn name(&self) -> &str {
        "mmdet_to_mmyolo.rtmdet"
    }

    fn scope(&self) -> &str {
        "mmyolo"
    }

    fn description(&self) -> &str {
        "mmdet RTMDet keys → mmyolo RTMDet keys (rtmdet_to_mmyolo.py mapping, anchored, meta kept)"
    }

    fn detect(&self, view: &CheckpointView, config: Option<&serde_json::Value>) -> Confidence {
        detect_direction(view, config, Flavour::Mmdet, "YOLODetector", "mmyolo")
    }

    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError> {
        rename_plan(self.name(), view, options, MMDET_TO_MMYOLO, Flavour::Mmdet)
    }
}

/// mmyolo RTMDet checkpoint → mmdet `RTMDet` with `RTMDetSepBNHead`.
#[derive(Debug, Default, Clone, Copy)]
pub struct MmyoloToMmdet;

impl CheckpointAdapter for MmyoloToMmdet {
    fn name(&self) -> &str {
        "mmyolo_to_mmdet.rtmdet"
    }

    fn scope(&self) -> &str {
        "mmdet"
    }

    fn description(&self) -> &str {
        "mmyolo RTMDet keys → mmdet RTMDet keys (inverse of rtmdet_to_mmyolo.py, anchored, meta kept)"
    }

    fn detect(&self, view: &CheckpointView, config: Option<&serde_json::Value>) -> Confidence {
        detect_direction(view, config, Flavour::Mmyolo, "RTMDet", "mmdet")
    }

    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError> {
        rename_plan(self.name(), view, options, MMYOLO_TO_MMDET, Flavour::Mmyolo)
    }
}

register_adapter!(name: "mmdet_to_mmyolo.rtmdet", scope: "mmyolo", make: || Box::new(MmdetToMmyolo));
register_adapter!(name: "mmyolo_to_mmdet.rtmdet", scope: "mmdet", make: || Box::new(MmyoloToMmdet));
