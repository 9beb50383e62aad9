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
