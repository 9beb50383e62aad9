//! Image decoding with the semantics of `cv2.imdecode(buf, cv2.IMREAD_COLOR)`, which mmcv's
//! `LoadImageFromFile` uses (`mmcv/image/io.py: imfrombytes`, backend `cv2`, flag `color`):
//! 3-channel uint8 **BGR**, EXIF orientation applied, alpha dropped (not blended), gray replicated
//! to 3 channels, 16-bit reduced to 8 bits by keeping the high byte (libpng `png_set_strip_16`).
//!
//! PNG decoding (the `image` crate) is lossless and therefore exact. JPEG is decoded by libjpeg
//! (the `mozjpeg` crate: MozJPEG's decoder is libjpeg-turbo's, with the ISLOW integer IDCT and
//! fancy chroma upsampling that OpenCV's bundled libjpeg-turbo uses by default), which gives the
//! same bytes as `cv2.imread` (tests/preprocess.rs). Only when libjpeg refuses a file (e.g. CMYK
//! output to RGB) do we fall back to the `image` crate (zune-jpeg), whose IDCT and upsampling
//! differ from libjpeg-turbo by up to ~4 levels.

use std::io::Cursor;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use super::{BgrImage, PreprocessError};

/// Reads and decodes an image file like `cv2.imread(path, cv2.IMREAD_COLOR)`.
pub fn decode_image_file(path: &Path) -> Result<BgrImage, PreprocessError> {
    let bytes = std::fs::read(path).map_err(|source| PreprocessError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_image_bytes(&bytes, &path.display().to_string())
}

/// Decodes encoded image bytes (JPEG, PNG) like `cv2.imdecode(buf, cv2.IMREAD_COLOR)`;
/// `name_for_errors` says which image failed.
pub fn decode_image_bytes(
    bytes: &[u8],
    name_for_errors: &str,
) -> Result<BgrImage, PreprocessError> {
    let decode_err = |message: String| PreprocessError::Decode {
        name: name_for_errors.to_string(),
        message,
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.to_string()))?;
    let format = reader
        .format()
        .ok_or_else(|| decode_err("unrecognised file format".to_string()))?;
    let img = match decode_jpeg_libjpeg(bytes, format) {
        Some(Ok(rgb)) => {
            let mut img = DynamicImage::ImageRgb8(rgb);
            img.apply_orientation(jpeg_orientation(bytes));
            img
        }
        fallback => {
            if let Some(Err(why)) = fallback {
                tracing::warn!(
                    image = name_for_errors,
                    "libjpeg could not decode this JPEG ({why}); using the image crate, whose \
                     pixels may differ from OpenCV's by a few levels"
                );
            }
            decode_with_image_crate(reader).map_err(decode_err)?
        }
    };
    let (width, height) = (img.width() as usize, img.height() as usize);
    if width == 0 || height == 0 {
        return Err(PreprocessError::BadImageSize {
            name: name_for_errors.to_string(),
            width: width as u64,
            height: height as u64,
        });
    }
    let data = to_bgr(&img);
    Ok(BgrImage {
        height,
        width,
        data,
    })
}

/// Decodes with the `image` crate (PNG: exact; JPEG: zune-jpeg, a few levels off libjpeg), EXIF
/// orientation applied as OpenCV does unless IMREAD_IGNORE_ORIENTATION (imdecode_ ->
/// ApplyExifOrientation; a malformed EXIF block is ignored there too).
fn decode_with_image_crate(reader: ImageReader<Cursor<&[u8]>>) -> Result<DynamicImage, String> {
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Decodes a JPEG to RGB with libjpeg's defaults (JDCT_ISLOW, fancy upsampling), as OpenCV's
/// `JpegDecoder::readData` does. `None` for other formats; `Some(Err)` when libjpeg fails.
fn decode_jpeg_libjpeg(bytes: &[u8], format: ImageFormat) -> Option<Result<RgbImage, String>> {
    if format != ImageFormat::Jpeg {
        return None;
    }
    // libjpeg's fatal errors arrive as panics from its error_exit hook (mozjpeg-sys `unwinding`).
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<(usize, usize, Vec<[u8; 3]>)> {
        let mut started = mozjpeg::Decompress::new_mem(bytes)?.rgb()?;
        let (w, h) = (started.width(), started.height());
        let pixels = started.read_scanlines::<[u8; 3]>()?;
        started.finish()?;
        Ok((w, h, pixels))
    });
    Some(match decoded {
        Ok(Ok((w, h, pixels))) => {
            let raw: Vec<u8> = pixels.into_iter().flatten().collect();
            match (u32::try_from(w), u32::try_from(h)) {
                (Ok(w), Ok(h)) => {
                    RgbImage::from_raw(w, h, raw).ok_or_else(|| "short pixel buffer".to_string())
                }
                _ => Err(format!("size {w}x{h} out of range")),
            }
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("libjpeg reported a fatal error".to_string()),
    })
}

/// The EXIF orientation of a JPEG (headers only), `NoTransforms` when absent or unreadable.
fn jpeg_orientation(bytes: &[u8]) -> Orientation {
    image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes))
        .and_then(|mut d| d.orientation())
        .unwrap_or(Orientation::NoTransforms)
}

/// Interleaved BGR bytes of any decoded colour layout, as IMREAD_COLOR converts them.
fn to_bgr(img: &DynamicImage) -> Vec<u8> {
    let n = img.width() as usize * img.height() as usize;
    let mut out = Vec::with_capacity(n * 3);
    match img {
        DynamicImage::ImageLuma8(b) => {
            for &g in b.as_raw() {
                out.extend_from_slice(&[g, g, g]);
            }
        }
        DynamicImage::ImageLumaA8(b) => {
            for p in b.as_raw().chunks_exact(2) {
                out.extend_from_slice(&[p[0], p[0], p[0]]);
            }
        }
        DynamicImage::ImageRgb8(b) => {
            for p in b.as_raw().chunks_exact(3) {
                out.extend_from_slice(&[p[2], p[1], p[0]]);
            }
        }
        DynamicImage::ImageRgba8(b) => {
            for p in b.as_raw().chunks_exact(4) {
                out.extend_from_slice(&[p[2], p[1], p[0]]);
            }
        }
        // 16-bit: OpenCV's PNG decoder asks libpng to strip to 8 bits (high byte), not to
        // rescale by 255/65535 as `image`'s conversions do.
        DynamicImage::ImageLuma16(b) => {
            for &g in b.as_raw() {
                let g = (g >> 8) as u8;
                out.extend_from_slice(&[g, g, g]);
            }
        }
        DynamicImage::ImageLumaA16(b) => {
            for p in b.as_raw().chunks_exact(2) {
                let g = (p[0] >> 8) as u8;
                out.extend_from_slice(&[g, g, g]);
            }
        }
        DynamicImage::ImageRgb16(b) => {
            for p in b.as_raw().chunks_exact(3) {
                out.extend_from_slice(&[(p[2] >> 8) as u8, (p[1] >> 8) as u8, (p[0] >> 8) as u8]);
            }
        }
        DynamicImage::ImageRgba16(b) => {
            for p in b.as_raw().chunks_exact(4) {
                out.extend_from_slice(&[(p[2] >> 8) as u8, (p[1] >> 8) as u8, (p[0] >> 8) as u8]);
            }
        }
        other => {
            // Float layouts (not produced by the JPEG/PNG decoders): the crate's conversion.
            for p in other.to_rgb8().as_raw().chunks_exact(3) {
                out.extend_from_slice(&[p[2], p[1], p[0]]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_decode_error_naming_the_image() {
        let err = decode_image_bytes(b"not an image at all", "photo.jpg").unwrap_err();
        assert!(matches!(err, PreprocessError::Decode { .. }));
        assert!(err.to_string().contains("photo.jpg"), "{err}");
        let err = decode_image_file(Path::new("/nonexistent/dir/x.png")).unwrap_err();
        assert!(matches!(err, PreprocessError::Io { .. }), "{err}");
    }

    #[test]
    fn image_crate_fallback_is_close_to_libjpeg() {
        // The fallback (zune-jpeg) is not bit-exact: on the 4:2:0 reference JPEG it is within 4
        // levels of libjpeg (= cv2.imread), with the same shape and orientation.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess");
        for name in ["chelsea_420.jpg", "exif_orientation6.jpg"] {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            let exact = decode_image_bytes(&bytes, name).unwrap();
            let reader = ImageReader::new(Cursor::new(bytes.as_slice()))
                .with_guessed_format()
                .unwrap();
            let approx = decode_with_image_crate(reader).unwrap();
            assert_eq!(
                (approx.height() as usize, approx.width() as usize),
                exact.shape()
            );
            let approx = to_bgr(&approx);
            let max = approx
                .iter()
                .zip(&exact.data)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(max <= 4, "{name}: {max}");
        }
    }

    #[test]
    fn png_round_trip_is_exact_and_bgr() {
        let mut rgb = image::RgbImage::new(3, 2);
        for (x, y, p) in rgb.enumerate_pixels_mut() {
            *p = image::Rgb([x as u8 * 10, y as u8 * 20, 200]);
        }
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(rgb)
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        let img = decode_image_bytes(&bytes, "mem.png").unwrap();
        assert_eq!(img.shape(), (2, 3));
        assert_eq!(img.pixel(1, 2), Some([200, 20, 20]));
    }
}
