//! Image side of inference, up to the network input: decode like `cv2.imdecode(IMREAD_COLOR)`,
//! resize exactly like `cv2.resize` (uint8, 3 channels), run the config's `test_pipeline`
//! transforms (mmyolo `YOLOv5KeepRatioResize` + `LetterResize`, mmdet `Resize` + `Pad`) producing
//! the uint8 network input and the metainfo (`img_shape`, `scale_factor`, `pad_param`) the heads
//! need, then the model's `data_preprocessor` (mean/std, `bgr_to_rgb`, batch padding) on tch.
//!
//! What the pipeline and the data preprocessor do is described by the core's spec stage
//! (`mmcompat_registry::spec::{pipeline, data_preprocessor}`); this module only applies it. Only
//! [`data_preprocessor`] touches libtorch. Nothing here may approximate upstream: every rounding
//! is OpenCV's or Python's (see `../shared/openmmlab/behaviour.md` 4.3, 4.4 and 4.6).

pub mod data_preprocessor;
mod decode;
mod limits;
mod pipeline;
mod resize;
mod resize_cubic;
mod tiff_ifd;
mod tiff_palette;

use std::path::PathBuf;

use mmcompat_registry::spec::SpecError;

pub use data_preprocessor::{DataPreprocessor, DataPreprocessorCfg, HwcU8};
pub use decode::{
    decode_image_bytes, decode_image_bytes_with, decode_image_file, decode_image_file_with,
    SUPPORTED_IMAGE_FORMATS,
};
pub use limits::{DecodeLimits, DEFAULT_MAX_IMAGE_PIXELS};
pub use mmcompat_registry::spec::pipeline::{
    ResizeTarget, Scale, TestPipeline, Transform, SUPPORTED_TRANSFORMS,
};
pub use pipeline::{PipelineSpec, Preprocessed};
pub use resize::{resize, Interpolation};

/// A decoded image as OpenCV holds it: rows of interleaved B, G, R bytes (HWC, `uint8`).
#[derive(Clone, PartialEq, Eq)]
pub struct BgrImage {
    pub height: usize,
    pub width: usize,
    /// `height * width * 3` bytes, row-major, channel order B, G, R.
    pub data: Vec<u8>,
}

impl BgrImage {
    /// An image filled with one BGR colour.
    pub fn filled(height: usize, width: usize, bgr: [u8; 3]) -> Self {
        let mut data = Vec::with_capacity(height * width * 3);
        for _ in 0..height * width {
            data.extend_from_slice(&bgr);
        }
        Self {
            height,
            width,
            data,
        }
    }

    /// Wraps HWC BGR bytes; `None` when the length is not `height * width * 3`.
    pub fn from_raw(height: usize, width: usize, data: Vec<u8>) -> Option<Self> {
        let expected = height.checked_mul(width)?.checked_mul(3)?;
        (data.len() == expected).then_some(Self {
            height,
            width,
            data,
        })
    }

    /// `(height, width)`, the order of numpy's `img.shape[:2]`.
    pub fn shape(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// The B, G, R bytes of pixel `(y, x)`, `None` outside the image.
    pub fn pixel(&self, y: usize, x: usize) -> Option<[u8; 3]> {
        if y >= self.height || x >= self.width {
            return None;
        }
        let i = (y * self.width + x) * 3;
        let p = self.data.get(i..i + 3)?;
        Some([p[0], p[1], p[2]])
    }
}

impl std::fmt::Debug for BgrImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pixel bytes are never useful in a panic message; the shape is.
        f.debug_struct("BgrImage")
            .field("height", &self.height)
            .field("width", &self.width)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Everything that can go wrong while decoding an image or running the test pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot read image file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file of a supported format that its decoder refused (truncated, corrupt).
    #[error("cannot decode image {name} (detected format: {format}): {message}")]
    Decode {
        name: String,
        format: &'static str,
        message: String,
    },
    /// A format OpenCV may read but mmcompat does not (or not an image at all).
    #[error(
        "cannot decode image {name}: detected format {format} is not supported (supported \
         formats: {supported}); convert it, e.g. to PNG",
        supported = decode::SUPPORTED_IMAGE_FORMATS
    )]
    UnsupportedFormat { name: String, format: &'static str },
    /// The declared size is over the pixel limit (checked before allocating).
    #[error(
        "image {name} ({format}) declares {width}x{height} pixels, more than the limit of {limit} \
         (a guard against decompression bombs); if the file is genuine, raise the limit with \
         `mmcompat detect --max-image-pixels N` or `Inferencer::builder().max_image_pixels(N)`"
    )]
    TooManyPixels {
        name: String,
        format: &'static str,
        width: u64,
        height: u64,
        limit: u64,
    },
    #[error("image {name} has a size OpenCV would refuse: {width}x{height}")]
    BadImageSize {
        name: String,
        width: u64,
        height: u64,
    },
    /// The test pipeline's description is wrong (parsed by the core's spec stage).
    #[error(transparent)]
    Spec(Box<SpecError>),
    #[error("test pipeline step {index} (`{transform}`) cannot process a {width}x{height} image: {message}")]
    Transform {
        index: usize,
        transform: &'static str,
        width: usize,
        height: usize,
        message: String,
    },
    /// The data preprocessor was given images it cannot batch.
    #[error("data_preprocessor: {0}")]
    Batch(String),
    /// libtorch failed inside the data preprocessor.
    #[error("data_preprocessor: {what}: {source}")]
    Tch {
        what: &'static str,
        #[source]
        source: Box<tch::TchError>,
    },
}

impl From<SpecError> for PreprocessError {
    fn from(e: SpecError) -> Self {
        PreprocessError::Spec(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        // Callers embed it in their own error enums next to a path; clippy's result_large_err
        // fires at 128 bytes.
        assert!(
            std::mem::size_of::<PreprocessError>() <= 96,
            "{}",
            std::mem::size_of::<PreprocessError>()
        );
    }

    #[test]
    fn from_raw_checks_length() {
        assert!(BgrImage::from_raw(2, 2, vec![0; 12]).is_some());
        assert!(BgrImage::from_raw(2, 2, vec![0; 11]).is_none());
        assert_eq!(
            BgrImage::filled(1, 2, [1, 2, 3]).data,
            vec![1, 2, 3, 1, 2, 3]
        );
    }
}
