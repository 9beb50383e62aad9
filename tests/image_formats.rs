//! Issue 21: every image format and colour mode `cv2.imread(path, IMREAD_COLOR)` reads.
//!
//! References: tests/fixtures/image_formats/ (make_image_format_refs.py: files written by OpenCV
//! 4.11 and Pillow from the fixture photo, what `cv2.imread` decodes them to, the network input of
//! the real mmyolo RTMDet test pipeline and `inference_detector`'s detections). Checked per file:
//! the decoded pixels equal `cv2.imread`'s (sha256 of the HxWx3 bytes, channel sums, samples),
//! the network input equals the real pipeline's (sha256; the `size_*` files take cv2.resize's
//! INTER_LINEAR upscale, INTER_AREA's generic and integer-ratio downscales), and the detections
//! equal `inference_detector`'s with the RTMDet tolerances of tests/inference.rs. Plus the errors:
//! unsupported formats and decompression bombs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use mmcompat::inferencer::{InferError, Inferencer};
use mmcompat::preprocess::{
    decode_image_bytes, decode_image_bytes_with, decode_image_file, BgrImage, DecodeLimits,
    PreprocessError,
};
use serde_json::Value;

use crate::inference::{assert_same_detections, model_files, roots};
use crate::preprocess::sha256_hex;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/image_formats")
}

fn refs() -> Value {
    let text = std::fs::read_to_string(dir().join("refs.json")).expect("refs.json");
    serde_json::from_str(&text).expect("refs.json is JSON")
}

fn reference_detections() -> BTreeMap<String, Value> {
    let gz = std::fs::read(dir().join("detections.json.gz")).expect("detections.json.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_string(&mut text)
        .expect("gunzip");
    serde_json::from_str(&text).expect("detections are JSON")
}

/// The reference records of every file OpenCV reads (palette TIFF included).
fn images(refs: &Value) -> Vec<(&String, &Value)> {
    let images: Vec<_> = refs["images"].as_object().expect("images").iter().collect();
    assert!(images.len() >= 40, "{} images", images.len());
    images
}

fn channel_sums(img: &BgrImage) -> [u64; 3] {
    let mut sums = [0u64; 3];
    for p in img.data.chunks_exact(3) {
        for c in 0..3 {
            sums[c] += u64::from(p[c]);
        }
    }
    sums
}

/// Where `ours` differs from `cv2.imread`'s record `r`: shape, hash, sums, samples.
fn imread_mismatch(ours: &BgrImage, r: &Value) -> Option<String> {
    let shape: Vec<usize> = r["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|v| v.as_u64().expect("dim") as usize)
        .collect();
    if (ours.height, ours.width, 3) != (shape[0], shape[1], shape[2]) {
        return Some(format!("shape {:?} != cv2's {shape:?}", ours.shape()));
    }
    if sha256_hex(&ours.data) == r["sha256"].as_str().expect("sha256") {
        return None;
    }
    let mut worst = 0u8;
    for s in r["samples"].as_array().expect("samples") {
        let (y, x) = (
            s[0].as_u64().unwrap() as usize,
            s[1].as_u64().unwrap() as usize,
        );
        let ours = ours.pixel(y, x).expect("sample inside");
        for c in 0..3 {
            worst = worst.max(ours[c].abs_diff(s[2][c].as_u64().unwrap() as u8));
        }
    }
    Some(format!(
        "pixels differ: channel sums {:?} vs cv2's {}, worst sampled |Δ| {worst}",
        channel_sums(ours),
        r["channel_sums"]
    ))
}

/// Decoded pixels equal `cv2.imread(path, IMREAD_COLOR)` on every fixture file, bit for bit.
#[test]
fn decoded_pixels_equal_cv2_imread() {
    let refs = refs();
    let mut failures = Vec::new();
    for (name, r) in images(&refs) {
        let ours = decode_image_file(&dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(why) = imread_mismatch(&ours, &r["imread"]) {
            failures.push(format!("{name} ({}): {why}", r["writer"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} files decode differently from cv2.imread:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn mmyolo_inferencer(max_image_pixels: Option<u64>) -> Inferencer {
    let (config, weights, scope) = model_files("mmyolo");
    let mut b = Inferencer::builder()
        .config(&config)
        .weights(&weights)
        .scope(scope)
        .device("cpu")
        .config_roots(roots());
    if let Some(n) = max_image_pixels {
        b = b.max_image_pixels(n);
    }
    b.build().unwrap_or_else(|e| panic!("mmyolo: {e}"))
}

/// The network input equals the real test pipeline's, and the detections of the image *file*
/// equal `inference_detector`'s (same count, labels, boxes within 0.1 px, scores within 1e-4; the
/// references are rounded to 0.01 px and 1e-6).
#[test]
fn network_input_and_detections_equal_inference_detector() {
    // The generator runs torch.set_num_threads(1): near-tied low scores on these small images
    // make NMS sensitive to the float32 rounding of other thread counts (see tests/inference.rs
    // `raw_head_outputs_within_1e_4` for why and how this is restored).
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let result = std::panic::catch_unwind(network_inputs_and_detections);
    tch::set_num_threads(threads);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn network_inputs_and_detections() {
    let refs = refs();
    let mut failures = Vec::new();
    let dets = reference_detections();
    let inf = mmyolo_inferencer(None);
    for (name, r) in images(&refs) {
        let path = dir().join(name);
        let decoded = decode_image_file(&path).expect("decode");
        let pre = inf.preprocess(&decoded).expect("pipeline");
        let want = &r["network_input"];
        let shape: Vec<u64> = want["shape_hwc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(
            (pre.image.height as u64, pre.image.width as u64, 3),
            (shape[0], shape[1], shape[2]),
            "{name}: network input shape"
        );
        assert_eq!(
            sha256_hex(&pre.image.data),
            want["sha256"].as_str().unwrap(),
            "{name}: network input differs from the real test pipeline's"
        );
        let ours = inf.infer(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let key = r["detections"].as_str().expect("detections key");
        let same = std::panic::catch_unwind(|| assert_same_detections(name, &ours, &dets[key]));
        if same.is_err() {
            failures.push(name.clone());
        }
    }
    assert!(failures.is_empty(), "detections differ on {failures:?}");
}

/// The `size_*` files run cv2.resize's paths explicitly: INTER_LINEAR upscale (24x24 → 640x640,
/// x26.7), INTER_AREA's generic downscales (2000x150 → 640x48, 150x1200 → 80x640) and its
/// integer-ratio path (1280x320 → 640x160, x1/2).
#[test]
fn resize_paths_are_exercised_by_the_size_fixtures() {
    let inf = mmyolo_inferencer(None);
    for (name, (h, w), resized) in [
        ("size_24x24.png", (24, 24), (640, 640)),
        ("size_2000x150.jpg", (150, 2000), (48, 640)),
        ("size_150x1200.jpg", (1200, 150), (640, 80)),
        ("size_1280x320.jpg", (320, 1280), (160, 640)),
    ] {
        let img = decode_image_file(&dir().join(name)).expect("decode");
        assert_eq!(img.shape(), (h, w), "{name}");
        let pre = inf.preprocess(&img).expect("pipeline");
        let (sx, sy) = pre.scale_factor;
        assert_eq!(
            (
                (h as f64 * sy).round() as usize,
                (w as f64 * sx).round() as usize
            ),
            resized,
            "{name}: keep-ratio size"
        );
    }
}

#[test]
fn unsupported_formats_name_the_file_the_format_and_the_supported_list() {
    let refs = refs();
    for (file, format) in [
        ("unsupported_gif.gif", "GIF"),
        ("unsupported_jp2.jp2", "JPEG 2000"),
    ] {
        let err = decode_image_file(&dir().join(file)).unwrap_err();
        assert!(
            matches!(&err, PreprocessError::UnsupportedFormat { format: f, .. } if *f == format),
            "{file}: {err:?}"
        );
        let msg = err.to_string();
        for needle in [
            file,
            &format!("detected format {format} is not supported"),
            "supported formats: JPEG, PNG, BMP, WebP, TIFF, PPM/PGM/PBM",
        ] {
            assert!(msg.contains(needle), "{file}: {msg:?} lacks {needle:?}");
        }
    }
    // This OpenCV build reads no GIF; it does read JPEG 2000 (we refuse it: see decode.rs).
    assert_eq!(
        refs["unsupported"]["unsupported_gif.gif"]["cv2_imread"],
        Value::Null
    );
    assert!(refs["unsupported"]["unsupported_jp2.jp2"]["cv2_imread"].is_object());
    let err = decode_image_bytes(b"just some text", "notes.txt").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot decode image notes.txt: detected format unknown is not supported (supported \
         formats: JPEG, PNG, BMP, WebP, TIFF, PPM/PGM/PBM); convert it, e.g. to PNG"
    );
}

/// A 1x1 PNG whose IHDR declares `width` x `height` (CRC fixed, so only the size is a lie).
pub(crate) fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::new(1, 1))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    assert_eq!(&bytes[12..16], b"IHDR");
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    bytes
}

/// `file`'s bytes with the first SOF0/SOF2 frame header declaring `width` x `height`.
fn jpeg_declaring(file: &str, width: u16, height: u16) -> Vec<u8> {
    let mut bytes = std::fs::read(dir().join(file)).unwrap();
    let sof = (0..bytes.len() - 1)
        .find(|&i| bytes[i] == 0xFF && (bytes[i + 1] == 0xC0 || bytes[i + 1] == 0xC2))
        .expect("SOF marker");
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

/// `file`'s bytes (a BMP) with the info header declaring `width` x `height`.
fn bmp_declaring(file: &str, width: i32, height: i32) -> Vec<u8> {
    let mut bytes = std::fs::read(dir().join(file)).unwrap();
    bytes[18..22].copy_from_slice(&width.to_le_bytes());
    bytes[22..26].copy_from_slice(&height.to_le_bytes());
    bytes
}

#[test]
fn decompression_bombs_are_refused_before_allocating() {
    let bombs = [
        (
            "bomb.png",
            png_declaring(100_000, 100_000),
            "PNG",
            (100_000, 100_000),
        ),
        (
            "bomb.jpg",
            jpeg_declaring("jpeg_q95.jpg", 65_000, 65_000),
            "JPEG",
            (65_000, 65_000),
        ),
        (
            "bomb.bmp",
            bmp_declaring("bmp_24.bmp", 100_000, 100_000),
            "BMP",
            (100_000, 100_000),
        ),
        (
            "bomb.ppm",
            b"P6\n100000 100000\n255\n\x01\x02\x03".to_vec(),
            "PPM/PGM/PBM",
            (100_000, 100_000),
        ),
    ];
    for (name, bytes, format, (w, h)) in bombs {
        // Were the buffer allocated first, this would abort (10^10 pixels x 3 bytes) or take
        // seconds; the refusal comes from the header alone.
        let err = decode_image_bytes(&bytes, name).unwrap_err();
        assert!(
            matches!(&err, PreprocessError::TooManyPixels { format: f, width, height, limit, .. }
                if *f == format && (*width, *height) == (w, h) && *limit == 1 << 30),
            "{name}: {err:?}"
        );
        let msg = err.to_string();
        for needle in [
            name.to_string(),
            format!("declares {w}x{h} pixels, more than the limit of 1073741824"),
            "--max-image-pixels".to_string(),
            "max_image_pixels".to_string(),
        ] {
            assert!(msg.contains(&needle), "{name}: {msg:?} lacks {needle:?}");
        }
    }
}

#[test]
fn the_pixel_limit_can_be_lowered_and_raised() {
    let bytes = std::fs::read(dir().join("png_rgb.png")).unwrap(); // 80x80 = 6400 pixels
    let at = |n| decode_image_bytes_with(&bytes, "png_rgb.png", &DecodeLimits::with_max_pixels(n));
    assert!(matches!(
        at(6399),
        Err(PreprocessError::TooManyPixels {
            width: 80,
            height: 80,
            ..
        })
    ));
    assert_eq!(at(6400).unwrap().shape(), (80, 80));
    // A genuine image over the default limit reads once the limit is raised: its header passes
    // and the decoder then fails on the missing data instead (not on the limit).
    let big = png_declaring(40_000, 40_000);
    let err = decode_image_bytes_with(&big, "big.png", &DecodeLimits::with_max_pixels(1 << 31))
        .unwrap_err();
    assert!(
        matches!(err, PreprocessError::Decode { format: "PNG", .. }),
        "{err:?}"
    );

    // The Inferencer builder option reaches the decoder.
    let inf = mmyolo_inferencer(Some(6000));
    let err = inf.infer(&dir().join("png_rgb.png")).unwrap_err();
    match &err {
        InferError::Preprocess { source, .. } => {
            assert!(
                matches!(**source, PreprocessError::TooManyPixels { limit: 6000, .. }),
                "{err}"
            )
        }
        other => panic!("{other}"),
    }
}

#[test]
fn detect_flag_sets_the_pixel_limit() {
    use crate::cli::{detect_args, err_stderr, ok_stdout};
    let file = "tests/fixtures/image_formats/webp_lossy.webp"; // 80x80
    let args = detect_args("mmyolo", &["--max-image-pixels", "6399", file]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = err_stderr(&args);
    for needle in [
        "webp_lossy.webp (WebP) declares 80x80 pixels, more than the limit of 6399",
        "--max-image-pixels",
    ] {
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
    let args = detect_args("mmyolo", &["--max-image-pixels", "6400", "--json", file]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let line: Value = serde_json::from_str(ok_stdout(&args).trim()).expect("one JSON line");
    assert_eq!(
        (&line["width"], &line["height"]),
        (&Value::from(80), &Value::from(80))
    );
}
