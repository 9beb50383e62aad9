//! What mmdet's `AnchorHead` builds besides its convolutions (`mmdet/models/dense_heads/anchor_head.py`):
//! the `AnchorGenerator` (`mmdet/models/task_modules/prior_generators/anchor_generator.py`) and the
//! `DeltaXYWHBBoxCoder` (`mmdet/models/task_modules/coders/delta_xywh_bbox_coder.py`). Shared by
//! the anchor-based dense heads (RetinaHead now; ATSSHead, RPNHead next).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::prior_generator::StrideCfg;
use crate::spec::parse::{join, parse_section};
use crate::spec::SpecError;

/// `AnchorGenerator.__init__` keywords.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorGeneratorCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    pub strides: Vec<StrideCfg>,
    pub ratios: Vec<f64>,
    #[serde(default)]
    pub scales: Option<Vec<f64>>,
    #[serde(default)]
    pub base_sizes: Option<Vec<i64>>,
    #[serde(default = "yes")]
    pub scale_major: bool,
    #[serde(default)]
    pub octave_base_scale: Option<f64>,
    #[serde(default)]
    pub scales_per_octave: Option<i64>,
    #[serde(default)]
    pub centers: Option<Value>,
    #[serde(default)]
    pub center_offset: f64,
    #[serde(default)]
    pub use_box_type: bool,
}

fn yes() -> bool {
    true
}

impl AnchorGeneratorCfg {
    /// Reads and checks it as `AnchorGenerator.__init__` asserts (`scales` xor octave settings,
    /// one base size per stride, `center_offset` without `centers`).
    pub fn parse(value: &Value, path: &str) -> Result<Self, SpecError> {
        let cfg: AnchorGeneratorCfg = parse_section(value, "mmdet.AnchorGenerator", path)?;
        if cfg.type_name.rsplit('.').next() != Some("AnchorGenerator") {
            return Err(SpecError::Unsupported {
                what: format!("prior generator `{}`", cfg.type_name),
                path: path.to_string(),
                hint: "anchor heads are implemented with mmdet.AnchorGenerator".into(),
            });
        }
        let invalid = |key: &str, message: String| SpecError::Invalid {
            path: join(path, key),
            type_name: "mmdet.AnchorGenerator".into(),
            message,
        };
        let octave = cfg.octave_base_scale.is_some() && cfg.scales_per_octave.is_some();
        if cfg.scales.is_some() == octave {
            return Err(invalid(
                "scales",
                "give either scales or octave_base_scale and scales_per_octave \
                 (`assert scales is not None ^ octave`)"
                    .into(),
            ));
        }
        if let Some(b) = &cfg.base_sizes {
            if b.len() != cfg.strides.len() {
                return Err(invalid(
                    "base_sizes",
                    format!("{} base_sizes for {} strides", b.len(), cfg.strides.len()),
                ));
            }
        }
        if cfg.centers.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(SpecError::Unsupported {
                what: "explicit anchor `centers`".into(),
                path: join(path, "centers"),
                hint: "anchors are centred by center_offset; leave centers=None".into(),
            });
        }
        if cfg.use_box_type {
            return Err(SpecError::Unsupported {
                what: "use_box_type=True".into(),
                path: join(path, "use_box_type"),
                hint: "anchors are plain tensors here; leave it False".into(),
            });
        }
        if cfg.ratios.is_empty() || cfg.ratios.iter().any(|&r| r <= 0.0) || cfg.strides.is_empty() {
            return Err(invalid(
                "ratios",
                "needs at least one positive ratio and one stride".into(),
            ));
        }
        Ok(cfg)
    }

    /// `(w, h)` stride of each level.
    pub fn strides_wh(&self) -> Vec<(f64, f64)> {
        self.strides.iter().map(StrideCfg::wh).collect()
    }

    /// `self.scales` as float64 before `torch.Tensor` makes them float32: the config's `scales`,
    /// or `[2**(i / scales_per_octave) for i in range(scales_per_octave)] * octave_base_scale`.
    pub fn scales_f64(&self) -> Vec<f64> {
        match (&self.scales, self.octave_base_scale, self.scales_per_octave) {
            (Some(s), _, _) => s.clone(),
            (None, Some(base), Some(n)) => (0..n)
                .map(|i| 2f64.powf(i as f64 / n as f64) * base)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `num_base_priors` per level: `len(ratios) * len(scales)`.
    pub fn num_base_priors(&self) -> usize {
        self.ratios.len() * self.scales_f64().len()
    }
}

fn zeros4() -> Vec<f64> {
    vec![0.0; 4]
}
fn ones4() -> Vec<f64> {
    vec![1.0; 4]
}
fn c32() -> f64 {
    32.0
}

/// `DeltaXYWHBBoxCoder.__init__` keywords.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaXywhCoderCfg {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "_scope_")]
    pub scope: Option<String>,
    #[serde(default = "zeros4")]
    pub target_means: Vec<f64>,
    #[serde(default = "ones4")]
    pub target_stds: Vec<f64>,
    #[serde(default = "yes")]
    pub clip_border: bool,
    #[serde(default)]
    pub add_ctr_clamp: bool,
    #[serde(default = "c32")]
    pub ctr_clamp: f64,
    #[serde(default)]
    pub use_box_type: bool,
}

impl DeltaXywhCoderCfg {
    /// `AnchorHead`'s default coder: `DeltaXYWHBBoxCoder(clip_border=True, target_means=(0.,)*4,
    /// target_stds=(1.,)*4)`.
    pub fn anchor_head_default() -> Self {
        DeltaXywhCoderCfg {
            type_name: "DeltaXYWHBBoxCoder".into(),
            scope: None,
            target_means: zeros4(),
            target_stds: ones4(),
            clip_border: true,
            add_ctr_clamp: false,
            ctr_clamp: 32.0,
            use_box_type: false,
        }
    }

    /// Reads it, refusing another coder type (the head's decode implements this one).
    pub fn parse(value: Option<&Value>, owner: &str, path: &str) -> Result<Self, SpecError> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(Self::anchor_head_default());
        };
        super::require_coder(value, "DeltaXYWHBBoxCoder", owner, path)?;
        let path = join(path, "bbox_coder");
        let cfg: DeltaXywhCoderCfg = parse_section(value, "mmdet.DeltaXYWHBBoxCoder", &path)?;
        if cfg.target_means.len() != 4 || cfg.target_stds.len() != 4 {
            return Err(SpecError::Invalid {
                path,
                type_name: "mmdet.DeltaXYWHBBoxCoder".into(),
                message: "target_means and target_stds need 4 values each".into(),
            });
        }
        if cfg.use_box_type {
            return Err(SpecError::Unsupported {
                what: "use_box_type=True".into(),
                path: join(&path, "use_box_type"),
                hint: "boxes are plain tensors here; leave it False".into(),
            });
        }
        Ok(cfg)
    }
}
