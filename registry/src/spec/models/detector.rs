//! Detectors: mmyolo's `YOLODetector` (`mmyolo/models/detectors/yolo_detector.py`) and every mmdet
//! `SingleStageDetector` (`mmdet/models/detectors/single_stage.py`): backbone → neck → bbox head.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::register_component;
use crate::spec::model::{ComponentCtx, ComponentKind, Parsed};
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

/// Keyword arguments of `SingleStageDetector.__init__` (+ `YOLODetector`'s `use_syncbn`). The
/// nested `backbone`, `neck` and `bbox_head` become child components.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SingleStageDetectorCfg {
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(skip_serializing)]
    pub backbone: Value,
    #[serde(default, skip_serializing)]
    pub neck: Option<Value>,
    #[serde(skip_serializing)]
    pub bbox_head: Value,
    #[serde(default)]
    pub train_cfg: Option<Value>,
    #[serde(default)]
    pub test_cfg: Option<Value>,
    #[serde(default)]
    pub data_preprocessor: Option<Value>,
    /// Multi-GPU training only.
    #[serde(default)]
    pub use_syncbn: Option<bool>,
    /// Training from scratch only.
    #[serde(default)]
    pub init_cfg: Option<Value>,
}

/// Children in module order: `backbone`, `neck` (optional), `bbox_head` with the detector's
/// `train_cfg`/`test_cfg` merged in (`bbox_head.update(train_cfg=..., test_cfg=...)`).
pub fn parse_single_stage(
    ctx: &ComponentCtx<'_>,
    value: &Value,
    path: &str,
) -> Result<Parsed, SpecError> {
    let cfg: SingleStageDetectorCfg = parse_section(value, ctx.type_name, path)?;
    let mut children = vec![(
        "backbone".to_string(),
        ctx.child(
            &cfg.backbone,
            &join(path, "backbone"),
            ComponentKind::Backbone,
        )?,
    )];
    if let Some(neck) = cfg.neck.as_ref().filter(|v| !v.is_null()) {
        children.push((
            "neck".to_string(),
            ctx.child(neck, &join(path, "neck"), ComponentKind::Neck)?,
        ));
    }
    let mut head = cfg.bbox_head.clone();
    if let Some(obj) = head.as_object_mut() {
        obj.insert(
            "train_cfg".into(),
            cfg.train_cfg.clone().unwrap_or(Value::Null),
        );
        obj.insert(
            "test_cfg".into(),
            cfg.test_cfg.clone().unwrap_or(Value::Null),
        );
    }
    children.push((
        "bbox_head".to_string(),
        ctx.child(&head, &join(path, "bbox_head"), ComponentKind::DenseHead)?,
    ));
    Ok((Box::new(cfg), children))
}

register_component!(scope: "mmyolo", name: "YOLODetector", kind: Detector, parse: parse_single_stage);
register_component!(scope: "mmdet", name: "RTMDet", kind: Detector, parse: parse_single_stage);
