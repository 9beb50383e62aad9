//! The image decoder's fuzz entry (`src/preprocess/decode.rs`, the path `detect` takes for every
//! file), shared with the stable replay test tests/fuzz_image_replay.rs through `#[path]`.

use mmcompat::preprocess::{decode_image_bytes_with, DecodeLimits};

/// Decodes the bytes like `cv2.imdecode(buf, IMREAD_COLOR)` under a 16-megapixel limit (the
/// default, OpenCV's 2^30, would let one legitimate input allocate 3 GB and hide real
/// oversized allocations); a decoded image must be exactly `height * width * 3` bytes.
pub fn image_decode(data: &[u8]) {
    let limits = DecodeLimits {
        max_pixels: 1 << 24,
    };
    if let Ok(img) = decode_image_bytes_with(data, "fuzz", &limits) {
        assert_eq!(
            img.data.len(),
            img.height * img.width * 3,
            "BGR buffer size"
        );
        assert!(img.height as u64 * img.width as u64 <= limits.max_pixels);
    }
}
