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

use mmcompat_registry::spec::DataPreprocessorSpec;
use tch::{Device, Kind, Tensor};

use super::PreprocessError;

fn tch_err(what: &'static str) -> impl FnOnce(tch::TchError) -> PreprocessError {
    move |source| PreprocessError::Tch {
        what,
        source: Box::new(source),
    }
}

/// What the forward pass of the data preprocessor needs, taken from the model's parsed
/// `data_preprocessor` section ([`DataPreprocessorSpec`], which validates the keys).
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

impl From<&DataPreprocessorSpec> for DataPreprocessorCfg {
    fn from(dp: &DataPreprocessorSpec) -> Self {
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
    pub fn new(cfg: DataPreprocessorCfg, device: Device) -> Result<Self, PreprocessError> {
        let to_dev = |v: &Option<Vec<f32>>| -> Result<Option<Tensor>, PreprocessError> {
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
    ) -> Result<(Tensor, [i64; 2]), PreprocessError> {
        if images.is_empty() {
            return Err(PreprocessError::Batch("empty batch".into()));
        }
        let mut normalised = Vec::with_capacity(images.len());
        for img in images {
            let (h, w) = (img.height as i64, img.width as i64);
            if img.data.len() != img.height * img.width * 3 {
                return Err(PreprocessError::Batch(format!(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_preprocessor_normalises_and_pads_like_stack_batch() {
        // Two images 2x3 and 3x2, BGR; pad_size_divisor 4 → batch 4x4, pad value 0 after
        // normalisation; channel swap reverses the planes.
        let a: Vec<u8> = (0..18).map(|v| v as u8 * 10).collect();
        let b: Vec<u8> = (0..18).map(|v| 255 - v as u8).collect();
        let cfg = DataPreprocessorCfg {
            mean: Some(vec![1.0, 2.0, 3.0]),
            std: Some(vec![2.0, 4.0, 8.0]),
            channel_conversion: true,
            pad_size_divisor: 4,
            pad_value: 0.0,
        };
        let dp = DataPreprocessor::new(cfg, tch::Device::Cpu).unwrap();
        let imgs = [
            HwcU8 {
                data: &a,
                height: 2,
                width: 3,
            },
            HwcU8 {
                data: &b,
                height: 3,
                width: 2,
            },
        ];
        let (batch, shape) = dp.run(&imgs, Kind::Float).unwrap();
        assert_eq!(shape, [4, 4]);
        assert_eq!(batch.size(), vec![2, 3, 4, 4]);
        // image a, output channel 0 = input channel 2 (R), pixel (1, 2): a[(1*3+2)*3+2] = 170.
        let v = batch.double_value(&[0, 0, 1, 2]);
        assert_eq!(v as f32, (170.0f32 - 1.0) / 2.0);
        assert_eq!(batch.double_value(&[0, 2, 3, 3]), 0.0);
        assert_eq!(
            batch.double_value(&[1, 1, 2, 1]) as f32,
            (b[(2 * 2 + 1) * 3 + 1] as f32 - 2.0) / 4.0
        );
    }

    #[test]
    fn cfg_from_spec_takes_float32_values_and_the_swap() {
        let spec = DataPreprocessorSpec {
            mean: Some(vec![103.53, 116.28, 123.675]),
            std: Some(vec![57.375, 57.12, 58.395]),
            rgb_to_bgr: true,
            pad_size_divisor: 0,
            pad_value: 114.0,
            ..DataPreprocessorSpec::default()
        };
        let cfg = DataPreprocessorCfg::from(&spec);
        assert_eq!(cfg.mean, Some(vec![103.53f32, 116.28, 123.675]));
        assert!(cfg.channel_conversion);
        assert_eq!((cfg.pad_size_divisor, cfg.pad_value), (1, 114.0));
    }
}
