//! Arguments of the prior generators the heads build (`mmdet/models/task_modules/prior_generators`).

use serde::{Deserialize, Serialize};

use super::defaults as d;
use crate::spec::{parse_section, SpecError};

/// A prior generator dict (`MlvlPointGenerator(strides, offset=0.5)`,
/// `mmdet/models/task_modules/prior_generators/point_generator.py`). Only point generators exist
/// on the RTMDet path.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PointGeneratorCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub strides: Vec<StrideCfg>,
    #[serde(default = "d::f_half")]
    pub offset: f64,
}

/// A stride: `8` or `(8, 8)` (w, h).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StrideCfg {
    Square(f64),
    Pair(f64, f64),
}

impl StrideCfg {
    /// `(w, h)` stride.
    pub fn wh(&self) -> (f64, f64) {
        match *self {
            StrideCfg::Square(s) => (s, s),
            StrideCfg::Pair(w, h) => (w, h),
        }
    }
}

impl PointGeneratorCfg {
    /// `(w, h)` stride of each level.
    pub fn strides_wh(&self) -> Vec<(f64, f64)> {
        self.strides.iter().map(StrideCfg::wh).collect()
    }

    pub fn parse(value: &serde_json::Value, path: &str) -> Result<Self, SpecError> {
        let cfg: PointGeneratorCfg = parse_section(value, "mmdet.MlvlPointGenerator", path)?;
        if cfg.type_name.rsplit('.').next() != Some("MlvlPointGenerator") {
            return Err(SpecError::Unsupported {
                what: format!("prior generator `{}`", cfg.type_name),
                path: path.to_string(),
                hint: "RTMDet heads use mmdet.MlvlPointGenerator".into(),
            });
        }
        Ok(cfg)
    }
}

/// `mmdet.YOLOAnchorGenerator(strides, base_sizes, use_box_type=False)`
/// (`mmdet/models/task_modules/prior_generators/anchor_generator.py: YOLOAnchorGenerator`): per
/// level, `base_sizes` `(w, h)` anchors (all levels with the same count) centred at `stride / 2`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YoloAnchorGeneratorCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub strides: Vec<StrideCfg>,
    /// `_pair(base_size)`: an int is a square anchor.
    pub base_sizes: Vec<Vec<StrideCfg>>,
    #[serde(default)]
    pub use_box_type: bool,
}

impl YoloAnchorGeneratorCfg {
    /// `(w, h)` stride of each level.
    pub fn strides_wh(&self) -> Vec<(f64, f64)> {
        self.strides.iter().map(StrideCfg::wh).collect()
    }

    /// `(w, h)` of each anchor, per level.
    pub fn base_sizes_wh(&self) -> Vec<Vec<(f64, f64)>> {
        let wh = |l: &Vec<StrideCfg>| l.iter().map(StrideCfg::wh).collect();
        self.base_sizes.iter().map(wh).collect()
    }

    /// Reads and checks it as `YOLOAnchorGenerator.__init__` does (same anchor count per level,
    /// one stride per level: `grid_priors` asserts `num_levels == len(featmap_sizes)`).
    pub fn parse(value: &serde_json::Value, path: &str) -> Result<Self, SpecError> {
        let cfg: YoloAnchorGeneratorCfg = parse_section(value, "mmdet.YOLOAnchorGenerator", path)?;
        if cfg.type_name.rsplit('.').next() != Some("YOLOAnchorGenerator") {
            return Err(SpecError::Unsupported {
                what: format!("prior generator `{}`", cfg.type_name),
                path: path.to_string(),
                hint: "YOLOv5Head places its anchors with mmdet.YOLOAnchorGenerator".into(),
            });
        }
        let invalid = |message: String| SpecError::Invalid {
            path: path.to_string(),
            type_name: "mmdet.YOLOAnchorGenerator".into(),
            message,
        };
        let per_level = cfg.base_sizes.first().map_or(0, Vec::len);
        if per_level == 0 || cfg.base_sizes.iter().any(|l| l.len() != per_level) {
            return Err(invalid(format!(
                "base_sizes must give the same positive number of anchors on every level, got {:?}",
                cfg.base_sizes.iter().map(Vec::len).collect::<Vec<_>>()
            )));
        }
        if cfg.strides.len() != cfg.base_sizes.len() {
            return Err(invalid(format!(
                "{} strides for {} levels of base_sizes",
                cfg.strides.len(),
                cfg.base_sizes.len()
            )));
        }
        if cfg.use_box_type {
            return Err(SpecError::Unsupported {
                what: "use_box_type=True".into(),
                path: crate::spec::parse::join(path, "use_box_type"),
                hint: "YOLOv5Head decodes plain tensors; leave it False".into(),
            });
        }
        Ok(cfg)
    }
}
