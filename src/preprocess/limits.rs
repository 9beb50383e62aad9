//! The pixel limit against decompression bombs, checked on the declared size before any pixel
//! buffer is allocated. Its own module so that the decoders (`decode`, `tiff_palette`) depend on
//! it without depending on each other.

use super::PreprocessError;

/// OpenCV's own default (`CV_IO_MAX_IMAGE_PIXELS`, `imgcodecs/src/loadsave.cpp`): 2^30 pixels.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 1 << 30;

/// Limits checked on the declared image size before any pixel buffer is allocated (a 1×1 file
/// may declare 100000×100000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest `width * height` accepted (default [`DEFAULT_MAX_IMAGE_PIXELS`], as OpenCV).
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}

impl DecodeLimits {
    /// Limits accepting up to `max_pixels` pixels.
    pub fn with_max_pixels(max_pixels: u64) -> Self {
        DecodeLimits { max_pixels }
    }

    pub(super) fn check(
        &self,
        name: &str,
        format: &'static str,
        width: u64,
        height: u64,
    ) -> Result<(), PreprocessError> {
        if width.saturating_mul(height) > self.max_pixels {
            return Err(self.too_many_pixels(name, format, width, height));
        }
        Ok(())
    }

    pub(super) fn too_many_pixels(
        &self,
        name: &str,
        format: &'static str,
        width: u64,
        height: u64,
    ) -> PreprocessError {
        PreprocessError::TooManyPixels {
            name: name.to_string(),
            format,
            width,
            height,
            limit: self.max_pixels,
        }
    }
}
