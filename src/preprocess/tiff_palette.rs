//! Palette TIFFs (`PhotometricInterpretation = RGBPalette`, 1/2/4/8-bit indices), which the `tiff`
//! crate (0.11) refuses outright, read the way `cv2.imread` reads them: OpenCV's TIFF decoder
//! (`grfmt_tiff.cpp`) hands 8-bit output to libtiff's RGBA interface, whose palette path
//! (`tif_getimage.c: put{1,2,4,8}bitcmaptile`) looks each index up in the `ColorMap`. libtiff's
//! `checkcmap` decides the map's width: if every entry is < 256 the map is taken as 8-bit
//! (a common writer bug it tolerates), otherwise each 16-bit entry becomes `v >> 8` (`cvtcmap`).
//!
//! The indices themselves are decoded by the `tiff` crate (every compression it supports) from a
//! copy of the file whose PhotometricInterpretation is rewritten to BlackIsZero: the strips then
//! come back as plain 1..8-bit gray samples, which are exactly the palette indices. Only the first
//! IFD is read, as `imread` does.

use std::io::Cursor;

use super::limits::DecodeLimits;
use super::tiff_ifd::Ifd;
use super::PreprocessError;

const TAG_BITS_PER_SAMPLE: u16 = 258;
const TAG_PHOTOMETRIC: u16 = 262;
const TAG_SAMPLES_PER_PIXEL: u16 = 277;
const TAG_COLOR_MAP: u16 = 320;
const PHOTOMETRIC_PALETTE: u16 = 3;
const PHOTOMETRIC_BLACK_IS_ZERO: u16 = 1;

/// Whether `bytes` is a classic TIFF whose first image is palette-coloured.
pub(super) fn is_palette_tiff(bytes: &[u8]) -> bool {
    Ifd::parse(bytes)
        .is_some_and(|ifd| ifd.first_short(TAG_PHOTOMETRIC) == Some(PHOTOMETRIC_PALETTE))
}

/// Decodes a palette TIFF to `(width, height, BGR bytes)` as `cv2.imread(..., IMREAD_COLOR)` does.
pub(super) fn decode_palette_tiff(
    bytes: &[u8],
    name: &str,
    limits: &DecodeLimits,
) -> Result<(usize, usize, Vec<u8>), PreprocessError> {
    let err = |message: String| PreprocessError::Decode {
        name: name.to_string(),
        format: "TIFF",
        message,
    };
    let ifd = Ifd::parse(bytes).ok_or_else(|| err("truncated TIFF directory".into()))?;
    let bits = ifd.first_short(TAG_BITS_PER_SAMPLE).unwrap_or(1);
    if !matches!(bits, 1 | 2 | 4 | 8) {
        // libtiff's RGBA interface refuses these too ("Sorry, can not handle image").
        return Err(err(format!(
            "RGBPalette with {bits} bits per sample (libtiff reads 1, 2, 4 or 8)"
        )));
    }
    let samples = ifd.first_short(TAG_SAMPLES_PER_PIXEL).unwrap_or(1);
    if samples != 1 {
        return Err(err(format!(
            "RGBPalette with {samples} samples per pixel (a palette image has 1)"
        )));
    }
    let entries = 1usize << bits;
    let map = ifd
        .shorts(TAG_COLOR_MAP)
        .filter(|m| m.len() >= 3 * entries)
        .ok_or_else(|| {
            err(format!(
                "RGBPalette without a ColorMap of 3 x {entries} SHORT values (tag 320)"
            ))
        })?;
    // tif_getimage.c: checkcmap / cvtcmap.
    let sixteen_bit = map[..3 * entries].iter().any(|&v| v >= 256);
    let to8 = |v: u16| if sixteen_bit { (v >> 8) as u8 } else { v as u8 };
    let (r, g, b) = (
        &map[..entries],
        &map[entries..2 * entries],
        &map[2 * entries..3 * entries],
    );

    // Rewrite PhotometricInterpretation (a SHORT held in the entry's value field) to BlackIsZero.
    let photometric = ifd
        .entry(TAG_PHOTOMETRIC)
        .expect("checked by is_palette_tiff");
    let mut patched = bytes.to_vec();
    let value = if ifd.big_endian {
        PHOTOMETRIC_BLACK_IS_ZERO.to_be_bytes()
    } else {
        PHOTOMETRIC_BLACK_IS_ZERO.to_le_bytes()
    };
    patched[photometric.at + 8..photometric.at + 10].copy_from_slice(&value);

    let tiff_err = |e: tiff::TiffError| err(e.to_string());
    let mut decoder = tiff::decoder::Decoder::new(Cursor::new(patched)).map_err(tiff_err)?;
    let (w, h) = decoder.dimensions().map_err(tiff_err)?;
    limits.check(name, "TIFF", u64::from(w), u64::from(h))?;
    let indices = match decoder.read_image().map_err(tiff_err)? {
        tiff::decoder::DecodingResult::U8(v) => v,
        _ => return Err(err("palette indices are not 8-bit samples".into())),
    };
    let (w, h) = (w as usize, h as usize);
    // Sub-byte rows are padded to whole bytes, most significant bits first.
    let row_bytes = (w * usize::from(bits)).div_ceil(8);
    if indices.len() < row_bytes * h {
        return Err(err(format!(
            "short pixel data: {} bytes for {w}x{h} at {bits} bits",
            indices.len()
        )));
    }
    let per_byte = 8 / usize::from(bits);
    let mask = (1u16 << bits) - 1;
    let mut out = Vec::with_capacity(w * h * 3);
    for row in indices.chunks_exact(row_bytes).take(h) {
        for x in 0..w {
            let byte = row[x / per_byte];
            let shift = 8 - usize::from(bits) * (x % per_byte + 1);
            let i = usize::from((u16::from(byte) >> shift) & mask);
            out.extend_from_slice(&[to8(b[i]), to8(g[i]), to8(r[i])]);
        }
    }
    Ok((w, h, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian, uncompressed 3x1 TIFF with a 1-bit palette: IFD at 8, strip after it.
    fn one_bit_palette(photometric: u16, map: [u16; 6]) -> Vec<u8> {
        let mut f = b"II*\0".to_vec();
        f.extend_from_slice(&8u32.to_le_bytes());
        let entries: [(u16, u16, u32, u32); 9] = [
            (256, 3, 1, 3),                  // ImageWidth
            (257, 3, 1, 1),                  // ImageLength
            (258, 3, 1, 1),                  // BitsPerSample
            (259, 3, 1, 1),                  // Compression: none
            (262, 3, 1, photometric.into()), // PhotometricInterpretation
            (273, 4, 1, 0),                  // StripOffsets (patched below)
            (278, 3, 1, 1),                  // RowsPerStrip
            (279, 4, 1, 1),                  // StripByteCounts
            (320, 3, 6, 0),                  // ColorMap (offset patched below)
        ];
        f.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        let ifd_end = 8 + 2 + 12 * entries.len() + 4;
        let map_at = ifd_end as u32;
        let strip_at = map_at + 12;
        for (tag, typ, count, value) in entries {
            f.extend_from_slice(&tag.to_le_bytes());
            f.extend_from_slice(&typ.to_le_bytes());
            f.extend_from_slice(&count.to_le_bytes());
            let value = match tag {
                273 => strip_at,
                320 => map_at,
                _ => value,
            };
            if typ == 3 {
                f.extend_from_slice(&(value as u16).to_le_bytes());
                f.extend_from_slice(&[0, 0]);
            } else {
                f.extend_from_slice(&value.to_le_bytes());
            }
        }
        f.extend_from_slice(&0u32.to_le_bytes());
        for v in map {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.push(0b1010_0000); // pixels 1, 0, 1
        f
    }

    #[test]
    fn sixteen_bit_map_is_shifted_and_indices_unpacked_msb_first() {
        // r = [0x1234, 0xff00], g = [0x0000, 0x8000], b = [0xabcd, 0x0100]
        let file = one_bit_palette(3, [0x1234, 0xff00, 0x0000, 0x8000, 0xabcd, 0x0100]);
        assert!(is_palette_tiff(&file));
        let (w, h, bgr) = decode_palette_tiff(&file, "t.tif", &DecodeLimits::default()).unwrap();
        assert_eq!((w, h), (3, 1));
        assert_eq!(
            bgr,
            vec![0x01, 0x80, 0xff, 0xab, 0x00, 0x12, 0x01, 0x80, 0xff]
        );
    }

    #[test]
    fn a_map_below_256_is_taken_as_eight_bit_like_libtiff() {
        let file = one_bit_palette(3, [10, 200, 20, 210, 30, 220]);
        let (_, _, bgr) = decode_palette_tiff(&file, "t.tif", &DecodeLimits::default()).unwrap();
        assert_eq!(bgr, vec![220, 210, 200, 30, 20, 10, 220, 210, 200]);
    }

    #[test]
    fn not_palette_and_limits() {
        assert!(!is_palette_tiff(&one_bit_palette(1, [0; 6])));
        assert!(!is_palette_tiff(b"II*\0\xff\xff\xff\xff"));
        let file = one_bit_palette(3, [0; 6]);
        let err = decode_palette_tiff(&file, "t.tif", &DecodeLimits::with_max_pixels(2));
        assert!(
            matches!(err, Err(PreprocessError::TooManyPixels { .. })),
            "{err:?}"
        );
    }
}
