//! Necks: the two `CSPNeXtPAFPN`s (same idea, different module trees and state-dict names).

pub mod cspnext_pafpn_mmdet;
pub mod cspnext_pafpn_mmyolo;

use serde::Deserialize;
use tch::Tensor;

use crate::models::ModelError;

/// `upsample_cfg` of the PAFPNs: `nn.Upsample(**upsample_cfg)`; only nearest with a scale factor
/// is implemented (every RTMDet config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsampleCfg {
    #[serde(default)]
    pub scale_factor: Option<f64>,
    #[serde(default = "nearest")]
    pub mode: String,
    #[serde(default)]
    pub size: Option<serde_json::Value>,
    #[serde(default)]
    pub align_corners: Option<bool>,
}

fn nearest() -> String {
    "nearest".into()
}

impl Default for UpsampleCfg {
    fn default() -> Self {
        UpsampleCfg {
            scale_factor: Some(2.0),
            mode: nearest(),
            size: None,
            align_corners: None,
        }
    }
}

/// A validated nearest-neighbour upsampling by `scale`.
#[derive(Debug, Clone, Copy)]
pub struct Upsample {
    pub scale: f64,
}

impl Upsample {
    pub fn from_cfg(cfg: &UpsampleCfg, path: &str) -> Result<Self, ModelError> {
        match (cfg.mode.as_str(), cfg.scale_factor, &cfg.size) {
            ("nearest", Some(s), None) if s > 0.0 => Ok(Upsample { scale: s }),
            _ => Err(ModelError::Unsupported {
                what: format!("upsample_cfg {cfg:?}"),
                path: path.to_string(),
                hint: "only mode='nearest' with a scale_factor is implemented".into(),
            }),
        }
    }

    /// `F.interpolate(x, scale_factor=s, mode='nearest')`: output `floor(H*s)`, source index
    /// `floor(dst * (1/s))` (the scale is passed through, as PyTorch does without
    /// `recompute_scale_factor`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let size = x.size();
        let (h, w) = (size[2], size[3]);
        let oh = (h as f64 * self.scale).floor() as i64;
        let ow = (w as f64 * self.scale).floor() as i64;
        x.f_upsample_nearest2d([oh, ow], Some(self.scale), Some(self.scale))
    }
}
