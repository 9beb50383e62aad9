//! The model's `data_preprocessor` on tch: uint8 HWC BGR images → one normalised N,3,H,W float
//! batch on the target device.
//!
//! Mirrors `mmengine/model/base_model/data_preprocessor.py: ImgDataPreprocessor.forward`
//! (lines 237-308, the `pseudo_collate` branch that `DetDataPreprocessor` (mmdet
//! `data_preprocessor.py:110-149`) and mmyolo's `YOLOv5DetDataPreprocessor` (`:74-86`, inference
//! branch) reach): per image the optional channel swap, `.float()`, `(x - mean) / std` with
//! float32 true division, then `stack_batch` (`mmengine/model/utils.py`) pads bottom/right to the
//! batch maximum rounded up to `pad_size_divisor`, with `pad_value`, after normalisation.
//! The mean/std tensors live on the device once; nothing is rebuilt per call.

use tch::{Device, Kind, Tensor};

use super::{tch_err, PostprocessError};

/// What the forward pass of the data preprocessor needs, taken from the model's parsed
/// `data_preprocessor` section ([`crate::models::DataPreprocessor`], which validates the keys).
#[derive(Debug, Clone, PartialEq)]
pub struct DataPreprocessorCfg {
    /// Per channel (1 or 3 values), in the channel order after the optional swap, as float32
    /// (`torch.tensor(mean)`); None = no normalisation.
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
    /// `bgr_to_rgb or rgb_to_bgr`: reverse the channel order before normalising.
    pub channel_conversion: bool,
    pub pad_size_divisor: i64,
    pub pad_value: f64,
}

impl From<&crate::models::DataPreprocessor> for DataPreprocessorCfg {
    fn from(dp: &crate::models::DataPreprocessor) -> Self {
        let f32s = |v: &Option<Vec<f64>>| v.as_ref().map(|v| v.iter().map(|&x| x as f32).collect());
        DataPreprocessorCfg {
            mean: f32s(&dp.mean),
            std: f32s(&dp.std),
            channel_conversion: dp.swap_channels(),
            pad_size_divisor: dp.pad_size_divisor.max(1),
            pad_value: dp.pad_value,
        }
    }
}

/// One pre-processed image: uint8, HWC, 3 channels, BGR (as the test pipeline leaves it).
#[derive(Debug, Clone, Copy)]
pub struct HwcU8<'a> {
    pub data: &'a [u8],
    pub height: usize,
    pub width: usize,
}

/// The data preprocessor bound to a device, with mean/std already there.
#[derive(Debug)]
pub struct DataPreprocessor {
    cfg: DataPreprocessorCfg,
    device: Device,
    mean: Option<Tensor>,
    std: Option<Tensor>,
}

impl DataPreprocessor {
    pub fn new(cfg: DataPreprocessorCfg, device: Device) -> Result<Self, PostprocessError> {
        let to_dev = |v: &Option<Vec<f32>>| -> Result<Option<Tensor>, PostprocessError> {
            v.as_ref()
                .map(|vals| {
                    Tensor::f_from_slice(vals)
                        .and_then(|t| t.f_view([-1i64, 1, 1]))
                        .and_then(|t| t.f_to_device(device))
                        .map_err(tch_err("moving data_preprocessor mean/std to the device"))
                })
                .transpose()
        };
        Ok(DataPreprocessor {
            mean: to_dev(&cfg.mean)?,
            std: to_dev(&cfg.std)?,
            cfg,
            device,
        })
    }

    pub fn cfg(&self) -> &DataPreprocessorCfg {
        &self.cfg
    }

    /// Normalises and stacks a batch; `kind` is the model's float kind (Float, or Half on CUDA:
    /// the cast happens after normalisation in float32). Returns the batch tensor and its
    /// `batch_input_shape` (H, W).
    pub fn run(
        &self,
        images: &[HwcU8<'_>],
        kind: Kind,
    ) -> Result<(Tensor, [i64; 2]), PostprocessError> {
        if images.is_empty() {
            return Err(PostprocessError::Shape("empty batch".into()));
        }
        let mut normalised = Vec::with_capacity(images.len());
        for img in images {
            let (h, w) = (img.height as i64, img.width as i64);
            if img.data.len() != img.height * img.width * 3 {
                return Err(PostprocessError::Shape(format!(
                    "image of {}x{}x3 has {} bytes",
                    img.height,
                    img.width,
                    img.data.len()
                )));
            }
            let mut x = Tensor::f_from_slice(img.data)
                .and_then(|t| t.f_view([h, w, 3]))
                .and_then(|t| t.f_to_device(self.device))
                // PackDetInputs: HWC → CHW, made contiguous as `permute(2, 0, 1).contiguous()`
                // does (mmdet/datasets/transforms/formatting.py). Without it the batch keeps the
                // HWC strides (channels-last), and the convolutions take other kernels whose
                // rounding moves the head outputs by up to ~2e-4 relative from Python's.
                .and_then(|t| t.f_permute([2i64, 0, 1]))
                .and_then(|t| t.f_contiguous())
                .map_err(tch_err("uploading an image"))?;
            if self.cfg.channel_conversion {
                x = x.f_flip([0i64]).map_err(tch_err("channel conversion"))?;
            }
            x = x
                .f_to_kind(Kind::Float)
                .map_err(tch_err("image to float"))?;
            if let (Some(mean), Some(std)) = (&self.mean, &self.std) {
                x = x
                    .f_sub(mean)
                    .and_then(|t| t.f_div(std))
                    .map_err(tch_err("(x - mean) / std"))?;
            }
            normalised.push(x);
        }
        // stack_batch: pad bottom/right to ceil(max / divisor) * divisor.
        let div = self.cfg.pad_size_divisor.max(1);
        let max_h = images.iter().map(|i| i.height as i64).max().unwrap_or(0);
        let max_w = images.iter().map(|i| i.width as i64).max().unwrap_or(0);
        let (th, tw) = ((max_h + div - 1) / div * div, (max_w + div - 1) / div * div);
        let padded: Vec<Tensor> = normalised
            .into_iter()
            .zip(images)
            .map(|(x, img)| {
                let (ph, pw) = (th - img.height as i64, tw - img.width as i64);
                if ph == 0 && pw == 0 {
                    Ok(x)
                } else {
                    // F.pad(tensor, (0, pw, 0, ph), value=pad_value)
                    x.f_pad([0i64, pw, 0, ph], "constant", self.cfg.pad_value)
                        .map_err(tch_err("padding the batch"))
                }
            })
            .collect::<Result<_, _>>()?;
        let mut batch = Tensor::f_stack(&padded, 0).map_err(tch_err("stacking the batch"))?;
        if kind != Kind::Float {
            batch = batch
                .f_to_kind(kind)
                .map_err(tch_err("casting the batch"))?;
        }
        Ok((batch, [th, tw]))
    }
}
