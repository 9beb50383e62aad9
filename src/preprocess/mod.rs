//! Image side of the test pipeline: decode like `cv2.imdecode(IMREAD_COLOR)`, resize exactly like
//! `cv2.resize` (uint8, 3 channels) and run the config's `test_pipeline` transforms (mmyolo
//! `YOLOv5KeepRatioResize` + `LetterResize`, mmdet `Resize` + `Pad`) producing the uint8 network
//! input and the metainfo (`img_shape`, `scale_factor`, `pad_param`) the heads need.
//!
//! Pure Rust, no libtorch: normalisation (`data_preprocessor`: mean/std, `bgr_to_rgb`) happens on
//! the tensor side. Nothing here may approximate upstream: every rounding is OpenCV's or Python's
//! (see `../shared/openmmlab/behaviour.md` 4.3, 4.4 and 4.6).

mod decode;
mod pipeline;
mod resize;

use std::path::PathBuf;

pub use decode::{decode_image_bytes, decode_image_file};
pub use pipeline::{
    PipelineSpec, Preprocessed, ResizeTarget, Scale, Transform, SUPPORTED_TRANSFORMS,
};
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
    #[error("cannot decode image {name}: {message} (supported formats: JPEG, PNG)")]
    Decode { name: String, message: String },
    #[error("image {name} has a size OpenCV would refuse: {width}x{height}")]
    BadImageSize {
        name: String,
        width: u64,
        height: u64,
    },
    #[error("the test pipeline must be a list of step dicts (cfg.test_dataloader.dataset.pipeline); found {found}")]
    NotAPipeline { found: String },
    #[error("test pipeline step {index}: {message}")]
    BadStep { index: usize, message: String },
    #[error(
        "test pipeline step {index}: unknown transform type `{type_name}`{}; supported: {}",
        did_you_mean(*suggestion),
        supported.join(", ")
    )]
    UnknownTransform {
        index: usize,
        type_name: String,
        suggestion: Option<&'static str>,
        supported: &'static [&'static str],
    },
    #[error(
        "test pipeline step {index} (`{transform}`): unexpected argument `{key}`{}; accepted: {}",
        did_you_mean(*suggestion),
        accepted.join(", ")
    )]
    UnknownArgument {
        index: usize,
        transform: String,
        key: String,
        suggestion: Option<&'static str>,
        accepted: &'static [&'static str],
    },
    #[error("test pipeline step {index} (`{transform}`): argument `{key}`: {message}")]
    InvalidArgument {
        index: usize,
        transform: String,
        key: &'static str,
        message: String,
    },
    #[error("test pipeline step {index} (`{transform}`) cannot process a {width}x{height} image: {message}")]
    Transform {
        index: usize,
        transform: &'static str,
        width: usize,
        height: usize,
        message: String,
    },
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word_lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (levenshtein(&word_lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        let names = ["LetterResize", "Resize", "Pad"];
        assert_eq!(closest("LeterResize", names), Some("LetterResize"));
        assert_eq!(closest("pad", names), Some("Pad"));
        assert_eq!(closest("RandomFlip", names), None);
    }

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
