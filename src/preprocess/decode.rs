//! Image decoding with the semantics of `cv2.imdecode(buf, cv2.IMREAD_COLOR)`, which mmcv's
//! `LoadImageFromFile` uses (`mmcv/image/io.py: imfrombytes`, backend `cv2`, flag `color`):
//! 3-channel uint8 **BGR**, whatever the file's format and colour mode. It must never approximate
//! where OpenCV's result is reachable, and never allocate a pixel buffer before the declared size
//! has passed the pixel limit ([`DecodeLimits`]).
//!
//! The format is recognised from the file's signature, as `imgcodecs/src/loadsave.cpp:
//! findDecoder` does (never from the extension). Per format (OpenCV 4.11, opencv-python 4.11.0.86):
//!
//! * **JPEG** (`grfmt_jpeg.cpp: JpegDecoder::readData`): libjpeg-turbo through the `mozjpeg` crate
//!   (MozJPEG's decoder is libjpeg-turbo's: ISLOW IDCT, fancy upsampling), so baseline,
//!   progressive, 4:2:0/4:4:4 and gray files give OpenCV's bytes exactly. 4-component files (CMYK,
//!   and YCCK, which libjpeg converts to CMYK) are read as CMYK and converted with OpenCV's own
//!   integer formula (`utils.cpp: icvCvt_CMYK2BGR_8u_C4C3R`). EXIF orientation applied.
//! * **PNG** (`grfmt_png.cpp`, libpng): palette and low-bit gray expanded, gray replicated, alpha
//!   stripped (not blended), 16 bits reduced by keeping the high byte (`png_set_strip_16`); EXIF
//!   orientation (`eXIf`) applied.
//! * **BMP** (`grfmt_bmp.cpp`), **WebP** (`grfmt_webp.cpp`, libwebp), **PPM/PGM/PBM**
//!   (`grfmt_pxm.cpp`; 16-bit by the high byte): alpha dropped, gray replicated, no orientation.
//! * **TIFF** (`grfmt_tiff.cpp`): 8-bit output goes through libtiff's RGBA interface
//!   (`TIFFReadRGBA*`), which premultiplies unassociated alpha (`(c * a + 127) / 255`) and maps 16
//!   bits to 8 by rounding (`(v * 255 + 32767) / 65535`); we do the same on the `image` crate's
//!   samples. No orientation (OpenCV 4.11 fails on a TIFF with Orientation != 1). Palette
//!   (RGBPalette) TIFFs, which the `tiff` crate (0.11) refuses, are read by `tiff_palette.rs`
//!   with libtiff's colormap rules.
//!
//! BMP, WebP, TIFF and PNM decoding is the `image` crate's. Lossy WebP is the `image-webp`
//! decoder, not libwebp: byte-equal to `cv2.imread` on the lossy RGB and RGBA fixtures
//! (tests/image_formats.rs; it follows libwebp's integer reconstruction and upsampling). Other formats OpenCV can read (JPEG 2000,
//! OpenEXR, Radiance HDR, PAM, PFM, Sun raster) are refused with [`PreprocessError::UnsupportedFormat`] or a
//! [`PreprocessError::Decode`] naming the format. Not covered by fixtures (no writer in the
//! generator makes them) and likely to differ: 16-bit 5-5-5/5-6-5 BMPs (OpenCV takes `v << 3`,
//! the crate rescales to 0..255) and PGM/PPM with a maxval other than 255/65535.

use std::io::Cursor;
use std::path::Path;

use image::error::ImageError;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::limits::DecodeLimits;
use super::tiff_ifd::Ifd;
use super::{BgrImage, PreprocessError};

/// The formats [`decode_image_bytes`] reads, as error messages list them.
pub const SUPPORTED_IMAGE_FORMATS: &str = "JPEG, PNG, BMP, WebP, TIFF, PPM/PGM/PBM";

/// An image file format recognised by its signature (what OpenCV's decoders check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Jpeg,
    Png,
    Bmp,
    WebP,
    Tiff,
    Pnm,
    /// Recognised but not decoded here; the name for the error.
    Unsupported(&'static str),
}

impl Sniffed {
    fn name(self) -> &'static str {
        match self {
            Sniffed::Jpeg => "JPEG",
            Sniffed::Png => "PNG",
            Sniffed::Bmp => "BMP",
            Sniffed::WebP => "WebP",
            Sniffed::Tiff => "TIFF",
            Sniffed::Pnm => "PPM/PGM/PBM",
            Sniffed::Unsupported(name) => name,
        }
    }
}

/// The format of `bytes` from its first bytes (signatures as in OpenCV's `*Decoder::checkSignature`).
fn sniff_format(bytes: &[u8]) -> Sniffed {
    let starts = |sig: &[u8]| bytes.starts_with(sig);
    if starts(b"\xFF\xD8\xFF") {
        Sniffed::Jpeg
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        Sniffed::Png
    } else if starts(b"BM") {
        Sniffed::Bmp
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Sniffed::WebP
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Sniffed::Tiff
    } else if starts(b"II+\0") || starts(b"MM\0+") {
        Sniffed::Unsupported("BigTIFF")
    } else if bytes.len() >= 3
        && bytes[0] == b'P'
        && (b'1'..=b'6').contains(&bytes[1])
        && bytes[2].is_ascii_whitespace()
    {
        Sniffed::Pnm
    } else if starts(b"P7") {
        Sniffed::Unsupported("PAM")
    } else if starts(b"PF") || starts(b"Pf") {
        Sniffed::Unsupported("PFM")
    } else if starts(b"\0\0\0\x0CjP  \r\n\x87\n") || starts(b"\xFF\x4F\xFF\x51") {
        Sniffed::Unsupported("JPEG 2000")
    } else if starts(b"\x76\x2F\x31\x01") {
        Sniffed::Unsupported("OpenEXR")
    } else if starts(b"#?RADIANCE") || starts(b"#?RGBE") {
        Sniffed::Unsupported("Radiance HDR")
    } else if starts(b"\x59\xA6\x6A\x95") {
        Sniffed::Unsupported("Sun raster")
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Sniffed::Unsupported("GIF")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        Sniffed::Unsupported("ISO media (HEIF/AVIF/MP4)")
    } else if starts(b"\xFF\x0A") || starts(b"\0\0\0\x0CJXL \r\n\x87\n") {
        Sniffed::Unsupported("JPEG XL")
    } else {
        Sniffed::Unsupported("unknown")
    }
}

/// Reads and decodes an image file like `cv2.imread(path, cv2.IMREAD_COLOR)` (default limits).
pub fn decode_image_file(path: &Path) -> Result<BgrImage, PreprocessError> {
    decode_image_file_with(path, &DecodeLimits::default())
}

/// [`decode_image_file`] with explicit [`DecodeLimits`].
pub fn decode_image_file_with(
    path: &Path,
    limits: &DecodeLimits,
) -> Result<BgrImage, PreprocessError> {
    let bytes = std::fs::read(path).map_err(|source| PreprocessError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_image_bytes_with(&bytes, &path.display().to_string(), limits)
}

/// Decodes encoded image bytes like `cv2.imdecode(buf, cv2.IMREAD_COLOR)` (default limits);
/// `name_for_errors` says which image failed.
pub fn decode_image_bytes(
    bytes: &[u8],
    name_for_errors: &str,
) -> Result<BgrImage, PreprocessError> {
    decode_image_bytes_with(bytes, name_for_errors, &DecodeLimits::default())
}

/// [`decode_image_bytes`] with explicit [`DecodeLimits`].
pub fn decode_image_bytes_with(
    bytes: &[u8],
    name_for_errors: &str,
    limits: &DecodeLimits,
) -> Result<BgrImage, PreprocessError> {
    let name = name_for_errors;
    let format = sniff_format(bytes);
    let decode_err = |message: String| PreprocessError::Decode {
        name: name.to_string(),
        format: format.name(),
        message,
    };
    let (width, height, data) = match format {
        Sniffed::Jpeg => decode_jpeg(bytes, name, limits)?,
        Sniffed::Unsupported(what) => {
            return Err(PreprocessError::UnsupportedFormat {
                name: name.to_string(),
                format: what,
            })
        }
        Sniffed::Png => decode_with_image_crate(bytes, ImageFormat::Png, format, name, limits)?,
        Sniffed::Bmp => decode_with_image_crate(bytes, ImageFormat::Bmp, format, name, limits)?,
        Sniffed::WebP => decode_with_image_crate(bytes, ImageFormat::WebP, format, name, limits)?,
        Sniffed::Tiff if super::tiff_palette::is_palette_tiff(bytes) => {
            super::tiff_palette::decode_palette_tiff(bytes, name, limits)?
        }
        Sniffed::Tiff => decode_with_image_crate(bytes, ImageFormat::Tiff, format, name, limits)?,
        Sniffed::Pnm => decode_with_image_crate(bytes, ImageFormat::Pnm, format, name, limits)?,
    };
    if width == 0 || height == 0 {
        return Err(PreprocessError::BadImageSize {
            name: name.to_string(),
            width: width as u64,
            height: height as u64,
        });
    }
    BgrImage::from_raw(height, width, data).ok_or_else(|| decode_err("short pixel buffer".into()))
}

/// `(width, height, BGR bytes)`.
type Decoded = (usize, usize, Vec<u8>);

/// Why the libjpeg closure stopped.
enum JpegStop {
    Io(std::io::Error),
    TooLarge(u64, u64),
}

impl From<std::io::Error> for JpegStop {
    fn from(e: std::io::Error) -> Self {
        JpegStop::Io(e)
    }
}

/// A JPEG through libjpeg-turbo as `JpegDecoder::readData` runs it: 3-component (and gray) files
/// to RGB with libjpeg's defaults (JDCT_ISLOW, fancy upsampling); 4-component files (CMYK, YCCK)
/// to CMYK, then OpenCV's integer CMYK → BGR. EXIF orientation applied as `imread` does.
fn decode_jpeg(
    bytes: &[u8],
    name: &str,
    limits: &DecodeLimits,
) -> Result<Decoded, PreprocessError> {
    let max_pixels = limits.max_pixels;
    // libjpeg's fatal errors arrive as panics from its error_exit hook (mozjpeg-sys `unwinding`).
    let decoded = std::panic::catch_unwind(|| -> Result<Decoded, JpegStop> {
        let header = mozjpeg::Decompress::new_mem(bytes)?;
        let (w, h) = header.size();
        // The header is read; nothing is allocated for the pixels before this check.
        if (w as u64).saturating_mul(h as u64) > max_pixels {
            return Err(JpegStop::TooLarge(w as u64, h as u64));
        }
        let mut bgr = Vec::with_capacity(w * h * 3);
        if header.components().len() == 4 {
            let mut started = header.to_colorspace(mozjpeg::ColorSpace::JCS_CMYK)?;
            let cmyk = started.read_scanlines::<[u8; 4]>()?;
            started.finish()?;
            for p in cmyk {
                bgr.extend_from_slice(&cmyk_to_bgr(p));
            }
        } else {
            let mut started = header.rgb()?;
            let rgb = started.read_scanlines::<[u8; 3]>()?;
            started.finish()?;
            for p in rgb {
                bgr.extend_from_slice(&[p[2], p[1], p[0]]);
            }
        }
        Ok((w, h, bgr))
    });
    let decode_err = |message: String| PreprocessError::Decode {
        name: name.to_string(),
        format: "JPEG",
        message,
    };
    let (w, h, bgr) = match decoded {
        Ok(Ok(d)) => d,
        Ok(Err(JpegStop::TooLarge(w, h))) => return Err(limits.too_many_pixels(name, "JPEG", w, h)),
        Ok(Err(JpegStop::Io(e))) => return Err(decode_err(format!("libjpeg: {e}"))),
        Err(_) => return Err(decode_err("libjpeg reported a fatal error".into())),
    };
    Ok(apply_orientation(w, h, bgr, jpeg_orientation(bytes)))
}

/// OpenCV's CMYK → BGR (`imgcodecs/src/utils.cpp: icvCvt_CMYK2BGR_8u_C4C3R`): libjpeg hands
/// Adobe's inverted CMYK through unchanged, and `x = k - ((255 - x) * k >> 8)` per channel (no
/// division by 255, so it is not the textbook `x * k / 255`).
fn cmyk_to_bgr([c, m, y, k]: [u8; 4]) -> [u8; 3] {
    let f = |x: u8| {
        let (x, k) = (i32::from(x), i32::from(k));
        (k - (((255 - x) * k) >> 8)) as u8
    };
    [f(y), f(m), f(c)]
}

/// The EXIF orientation of a JPEG (headers only), `NoTransforms` when absent or unreadable (a
/// malformed EXIF block is ignored by OpenCV too).
fn jpeg_orientation(bytes: &[u8]) -> Orientation {
    image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes))
        .and_then(|mut d| d.orientation())
        .unwrap_or(Orientation::NoTransforms)
}

/// Rotates/flips interleaved 3-byte pixels (`loadsave.cpp: ApplyExifOrientation`; the channel
/// order does not matter to a rotation).
fn apply_orientation(w: usize, h: usize, bgr: Vec<u8>, orientation: Orientation) -> Decoded {
    if orientation == Orientation::NoTransforms {
        return (w, h, bgr);
    }
    let mut img = DynamicImage::ImageRgb8(
        image::RgbImage::from_raw(w as u32, h as u32, bgr).expect("w * h * 3 bytes"),
    );
    img.apply_orientation(orientation);
    let (w, h) = (img.width() as usize, img.height() as usize);
    (w, h, img.into_rgb8().into_raw())
}

/// PNG, BMP, WebP, TIFF and PNM through the `image` crate, converted to BGR the way OpenCV's
/// decoder for that format does.
fn decode_with_image_crate(
    bytes: &[u8],
    image_format: ImageFormat,
    format: Sniffed,
    name: &str,
    limits: &DecodeLimits,
) -> Result<Decoded, PreprocessError> {
    let decode_err = |e: ImageError| PreprocessError::Decode {
        name: name.to_string(),
        format: format.name(),
        message: e.to_string(),
    };
    // Some decoders refuse a huge size with their own error before reporting it; the formats
    // whose header holds the size at a fixed place are checked first, so the limit speaks.
    if let Some((w, h)) = declared_size(bytes, format) {
        limits.check(name, format.name(), w, h)?;
    }
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(image_format);
    // Our pixel limit replaces the crate's default 512 MiB allocation cap; max_alloc still
    // bounds what a decoder may allocate (8 bytes: RGBA16, the widest layout decoded here).
    let mut crate_limits = Limits::no_limits();
    crate_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(1 << 26));
    reader.limits(crate_limits);
    // Headers only: the decoders read the declared size before any pixel buffer exists.
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let (w, h) = decoder.dimensions();
    limits.check(name, format.name(), u64::from(w), u64::from(h))?;
    // Only OpenCV's JPEG and PNG decoders read EXIF (WebP's EXIF chunk is ignored by imread).
    let orientation = if format == Sniffed::Png {
        decoder.orientation().unwrap_or(Orientation::NoTransforms)
    } else {
        Orientation::NoTransforms
    };
    let img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let bgr = if format == Sniffed::Tiff {
        let unassociated_alpha = tiff_has_unassociated_alpha(bytes);
        to_bgr_like_libtiff_rgba(&img, unassociated_alpha)
    } else {
        to_bgr(&img)
    };
    Ok(apply_orientation(w, h, bgr, orientation))
}

/// The size a PNG (IHDR) or BMP (info header) declares, read from its fixed place.
fn declared_size(bytes: &[u8], format: Sniffed) -> Option<(u64, u64)> {
    let u32_be = |o: usize| Some(u32::from_be_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
    let u32_le = |o: usize| Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
    let u16_le = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
    match format {
        Sniffed::Png => Some((u64::from(u32_be(16)?), u64::from(u32_be(20)?))),
        // BITMAPCOREHEADER (12 bytes): 16-bit sizes; later headers: signed 32-bit (negative
        // height = top-down rows).
        Sniffed::Bmp if u32_le(14)? == 12 => Some((u64::from(u16_le(18)?), u64::from(u16_le(20)?))),
        Sniffed::Bmp => Some((
            u64::from((u32_le(18)? as i32).unsigned_abs()),
            u64::from((u32_le(22)? as i32).unsigned_abs()),
        )),
        _ => None,
    }
}

/// Interleaved BGR bytes of any decoded colour layout, as OpenCV's libpng/BMP/WebP/PxM paths
/// convert them for IMREAD_COLOR: gray replicated, alpha dropped, 16 bits by the high byte.
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
        // 16-bit: libpng's `png_set_strip_16` and PxM keep the high byte; they do not rescale by
        // 255/65535 as `image`'s conversions do.
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
            // Float layouts (32-bit float TIFF): the crate's conversion (not compared with OpenCV).
            for p in other.to_rgb8().as_raw().chunks_exact(3) {
                out.extend_from_slice(&[p[2], p[1], p[0]]);
            }
        }
    }
    out
}

/// TIFF as OpenCV reads it into 8 bits: through libtiff's `TIFFReadRGBA*` (`tif_getimage.c`),
/// where 16-bit samples become `(v * 255 + 32767) / 65535` (`Bitdepth16To8`) and unassociated
/// alpha is premultiplied (`UaToAa`: `(c * a + 127) / 255`), then the alpha is dropped.
fn to_bgr_like_libtiff_rgba(img: &DynamicImage, unassociated_alpha: bool) -> Vec<u8> {
    let to8 = |v: u16| ((u32::from(v) * 255 + 32767) / 65535) as u8;
    let premultiply = |c: u8, a: u8| {
        if unassociated_alpha {
            ((u32::from(c) * u32::from(a) + 127) / 255) as u8
        } else {
            c
        }
    };
    let n = img.width() as usize * img.height() as usize;
    let mut out = Vec::with_capacity(n * 3);
    match img {
        DynamicImage::ImageRgba8(b) => {
            for p in b.as_raw().chunks_exact(4) {
                let a = p[3];
                out.extend_from_slice(&[
                    premultiply(p[2], a),
                    premultiply(p[1], a),
                    premultiply(p[0], a),
                ]);
            }
        }
        DynamicImage::ImageLuma16(b) => {
            for &g in b.as_raw() {
                let g = to8(g);
                out.extend_from_slice(&[g, g, g]);
            }
        }
        DynamicImage::ImageLumaA16(b) => {
            for p in b.as_raw().chunks_exact(2) {
                let g = to8(p[0]);
                out.extend_from_slice(&[g, g, g]);
            }
        }
        DynamicImage::ImageRgb16(b) => {
            for p in b.as_raw().chunks_exact(3) {
                out.extend_from_slice(&[to8(p[2]), to8(p[1]), to8(p[0])]);
            }
        }
        DynamicImage::ImageRgba16(b) => {
            for p in b.as_raw().chunks_exact(4) {
                let a = to8(p[3]);
                out.extend_from_slice(&[
                    premultiply(to8(p[2]), a),
                    premultiply(to8(p[1]), a),
                    premultiply(to8(p[0]), a),
                ]);
            }
        }
        other => return to_bgr(other),
    }
    out
}

/// Whether the first IFD's ExtraSamples (tag 338) declares unassociated alpha (2), the case
/// where libtiff's RGBA interface premultiplies. Reads the IFD entries only.
fn tiff_has_unassociated_alpha(bytes: &[u8]) -> bool {
    // ExtraSamples (338): the first value describes the alpha sample; 2 = unassociated.
    Ifd::parse(bytes)
        .and_then(|ifd| ifd.shorts(338))
        .and_then(|v| v.first().copied())
        == Some(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_unsupported_format_error_naming_the_image() {
        let err = decode_image_bytes(b"not an image at all", "photo.jpg").unwrap_err();
        assert!(
            matches!(
                err,
                PreprocessError::UnsupportedFormat {
                    format: "unknown",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("photo.jpg"), "{err}");
        let err = decode_image_file(Path::new("/nonexistent/dir/x.png")).unwrap_err();
        assert!(matches!(err, PreprocessError::Io { .. }), "{err}");
        // A recognised format with a broken body is a decode error naming the format.
        let err = decode_image_bytes(b"\x89PNG\r\n\x1a\nbroken", "broken.png").unwrap_err();
        assert!(
            matches!(err, PreprocessError::Decode { format: "PNG", .. }),
            "{err}"
        );
    }

    #[test]
    fn signatures_are_recognised_like_opencv() {
        assert_eq!(sniff_format(b"\xFF\xD8\xFF\xE0"), Sniffed::Jpeg);
        assert_eq!(sniff_format(b"BM...."), Sniffed::Bmp);
        assert_eq!(sniff_format(b"RIFF\0\0\0\0WEBPVP8 "), Sniffed::WebP);
        assert_eq!(sniff_format(b"MM\0*\0\0\0\x08"), Sniffed::Tiff);
        assert_eq!(sniff_format(b"P6\n1 1\n255\n"), Sniffed::Pnm);
        assert_eq!(sniff_format(b"P7\nWIDTH 1\n"), Sniffed::Unsupported("PAM"));
        assert_eq!(
            sniff_format(b"#?RADIANCE\n"),
            Sniffed::Unsupported("Radiance HDR")
        );
        assert_eq!(
            sniff_format(b"\x76\x2F\x31\x01\x02"),
            Sniffed::Unsupported("OpenEXR")
        );
        assert_eq!(sniff_format(b"GIF89a"), Sniffed::Unsupported("GIF"));
    }

    #[test]
    fn cmyk_conversion_is_opencvs_integer_formula() {
        // k = 255: 255 - ((255 - c) * 255 >> 8), one level above c (x * k / 255 would give c).
        assert_eq!(cmyk_to_bgr([10, 20, 30, 255]), [31, 21, 11]);
        assert_eq!(cmyk_to_bgr([0, 128, 255, 0]), [0, 0, 0]);
        // 200 - ((255 - 100) * 200 >> 8) = 200 - 121 = 79 (x * k / 255 would give 78).
        assert_eq!(cmyk_to_bgr([100, 100, 100, 200]), [79, 79, 79]);
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
        let err = decode_image_bytes_with(&bytes, "mem.png", &DecodeLimits::with_max_pixels(5))
            .unwrap_err();
        assert!(
            matches!(
                err,
                PreprocessError::TooManyPixels {
                    width: 3,
                    height: 2,
                    ..
                }
            ),
            "{err}"
        );
    }
}
