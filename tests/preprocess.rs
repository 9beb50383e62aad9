//! Pre-processing against the real OpenCV / mmyolo / mmdet outputs recorded by
//! tests/fixtures/generate/make_preprocess_refs.py (files in tests/fixtures/preprocess/).
//!
//! Measured on the committed references (opencv-python-headless 4.11.0):
//! * `cv2.resize` INTER_LINEAR and INTER_AREA, 75 size pairs each (up/down, integer and
//!   fractional ratios, 1-pixel, 4032x3024 -> 640): byte-identical (max diff 0);
//! * the mmyolo and mmdet test pipelines (and variants) on 13 input shapes: network input
//!   byte-identical, `img_shape` / `scale_factor` / `pad_param` equal;
//! * PNG decode (gray, 16-bit, RGBA, palette, BGR): byte-identical to `cv2.imread`;
//! * JPEG decode (libjpeg via `mozjpeg`, vs OpenCV's libjpeg-turbo 3.0.3): byte-identical on
//!   4:2:0, 4:4:4, gray, odd-sized and EXIF-rotated files (the `image` crate's zune-jpeg, used
//!   only as a fallback, differs by up to 4 levels on the same files);
//! * the fixture photographs of tests/fixtures/inference (3 models x 4 images, one an EXIF-rotated
//!   JPEG): decoded file -> network input byte-identical to the real pipeline's, metainfo equal;
//!   and the 120 `cv2.resize` cases of tests/fixtures/inference/resize_refs.json (sha256 equal).

use std::path::{Path, PathBuf};

use mmcompat::preprocess::{
    decode_image_bytes, decode_image_file, resize, BgrImage, Interpolation, PipelineSpec,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn load_json(name: &str) -> Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Mirror of `pattern()` in make_preprocess_refs.py: 16x16 cells alternating a smooth gradient
/// and integer hash noise.
fn procedural_image(h: usize, w: usize, seed: u64) -> BgrImage {
    let mut data = Vec::with_capacity(h * w * 3);
    for y in 0..h as u64 {
        for x in 0..w as u64 {
            for c in 0..3u64 {
                let noise =
                    (x * 31 + y * 17 + c * 71 + ((x * y) >> 3) + (x ^ y) * 5 + seed * 13) & 255;
                let smooth = (x + 2 * y + c * 40 + seed) & 255;
                let cell = ((x >> 4) + (y >> 4)) & 1;
                data.push(if cell == 0 { smooth } else { noise } as u8);
            }
        }
    }
    BgrImage::from_raw(h, w, data).expect("size")
}

/// Mirror of `poly64()` in make_preprocess_refs.py.
fn poly64(bytes: &[u8]) -> String {
    const K: u64 = 0x100000001B3;
    let mut power: u64 = 1;
    let mut h: u64 = 0;
    for &b in bytes {
        power = power.wrapping_mul(K);
        h = h.wrapping_add((u64::from(b) + 1).wrapping_mul(power));
    }
    format!("{h:016x}")
}

fn u(v: &Value, key: &str) -> usize {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}")) as usize
}

/// Where to dump our outputs for a failing case (set MMCOMPAT_DUMP_DIR to compare in Python).
fn dump(name: &str, img: &BgrImage) {
    if let Ok(dir) = std::env::var("MMCOMPAT_DUMP_DIR") {
        let path = Path::new(&dir).join(format!("{name}_{}x{}.bgr", img.width, img.height));
        std::fs::write(path, &img.data).expect("dump");
    }
}

#[test]
fn resize_matches_cv2() {
    let refs = load_json("resize_refs.json");
    let cases = refs["cases"].as_array().expect("cases");
    assert!(cases.len() >= 100, "too few resize cases");
    let mut failures = Vec::new();
    // The linear and area cases share their source image; generating it is the slow part in debug.
    let mut images = std::collections::HashMap::new();
    for case in cases {
        let key = (
            u(case, "src_h"),
            u(case, "src_w"),
            case["seed"].as_u64().unwrap(),
        );
        let src = images
            .entry(key)
            .or_insert_with(|| procedural_image(key.0, key.1, key.2));
        let interp = match case["interp"].as_str() {
            Some("linear") => Interpolation::Linear,
            Some("area") => Interpolation::Area,
            other => panic!("interp {other:?}"),
        };
        let out = resize(src, u(case, "dst_w"), u(case, "dst_h"), interp);
        assert_eq!(
            (out.height, out.width),
            (u(case, "dst_h"), u(case, "dst_w"))
        );
        if poly64(&out.data) != case["poly64"].as_str().unwrap() {
            let sum: u64 = out.data.iter().map(|&b| u64::from(b)).sum();
            failures.push(format!(
                "{}x{} -> {}x{} {:?}: sum {} vs cv2 {}",
                src.width, src.height, out.width, out.height, interp, sum, case["sum"]
            ));
            dump(
                &format!("resize_{}x{}_{:?}", src.width, src.height, interp),
                &out,
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ from cv2.resize:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn pair(v: &Value) -> (f64, f64) {
    (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
}

#[test]
fn pipelines_match_mmyolo_and_mmdet() {
    let refs = load_json("pipeline_refs.json");
    let mut failures = Vec::new();
    let cases = refs["cases"].as_array().expect("cases");
    let mut images = std::collections::HashMap::new();
    for case in cases {
        let name = case["pipeline"].as_str().unwrap();
        let spec = PipelineSpec::from_config(&refs["pipelines"][name]["steps"])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (h, w) = (u(case, "src_h"), u(case, "src_w"));
        let seed = case["seed"].as_u64().unwrap();
        let img = images
            .entry((h, w, seed))
            .or_insert_with(|| procedural_image(h, w, seed));
        let out = spec
            .run(img)
            .unwrap_or_else(|e| panic!("{name} {h}x{w}: {e}"));
        let label = format!("{name} on {h}x{w}");
        let (ih, iw) = pair(&case["img_shape"]);
        assert_eq!(
            out.img_shape,
            (ih as usize, iw as usize),
            "{label}: img_shape"
        );
        assert_eq!(out.ori_shape, (h, w), "{label}: ori_shape");
        // Exact: the same float64 operations as Python.
        assert_eq!(
            out.scale_factor,
            pair(&case["scale_factor"]),
            "{label}: scale_factor"
        );
        match case.get("pad_param") {
            Some(p) => {
                let want: Vec<f32> = p
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect();
                assert_eq!(
                    out.pad_param.map(|p| p.to_vec()),
                    Some(want),
                    "{label}: pad_param"
                );
            }
            None => assert_eq!(out.pad_param, None, "{label}: pad_param"),
        }
        let shape = case["input_shape"].as_array().unwrap();
        assert_eq!(
            (out.image.height, out.image.width),
            (
                shape[0].as_u64().unwrap() as usize,
                shape[1].as_u64().unwrap() as usize
            ),
            "{label}: input shape"
        );
        if poly64(&out.image.data) != case["poly64"].as_str().unwrap() {
            failures.push(label.clone());
            dump(&format!("pipeline_{name}_{h}x{w}"), &out.image);
        }
    }
    assert!(cases.len() >= 80, "too few pipeline cases");
    assert!(
        failures.is_empty(),
        "network input differs from the real pipeline:\n{}",
        failures.join("\n")
    );
}

fn max_abs_diff(a: &BgrImage, b: &BgrImage) -> u8 {
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

#[test]
fn decode_matches_cv2_imread() {
    let refs = load_json("decode_refs.json");
    let refs = refs.as_object().expect("dict");
    assert!(refs.len() >= 10);
    for (name, r) in refs {
        let ours = decode_image_file(&fixtures().join(name)).unwrap_or_else(|e| panic!("{e}"));
        // The cv2 result is stored losslessly as PNG (written by cv2.imwrite from the BGR array),
        // so decoding it must reproduce the recorded array exactly: this checks PNG decoding.
        let reference =
            decode_image_file(&fixtures().join(r["reference_png"].as_str().unwrap())).unwrap();
        assert_eq!(
            poly64(&reference.data),
            r["poly64"].as_str().unwrap(),
            "{name}: reference PNG decode"
        );
        assert_eq!(
            (ours.height, ours.width),
            (u(r, "height"), u(r, "width")),
            "{name}: shape"
        );
        // PNG and JPEG alike: byte-identical to cv2.imread.
        assert!(
            ours == reference,
            "{name}: decode differs from cv2.imread (max diff {})",
            max_abs_diff(&ours, &reference)
        );
    }
}

#[test]
fn exif_orientation_rotates_like_opencv() {
    // Stored 64x40 (w x h); orientation 6 means "rotate 90 clockwise to display".
    let img = decode_image_file(&fixtures().join("exif_orientation6.jpg")).unwrap();
    assert_eq!(img.shape(), (64, 40));
    let img = decode_image_file(&fixtures().join("exif_orientation3.jpg")).unwrap();
    assert_eq!(img.shape(), (40, 64));
}

#[test]
fn decode_bytes_equals_decode_file() {
    let path = fixtures().join("chelsea_420.jpg");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        decode_image_bytes(&bytes, "chelsea").unwrap(),
        decode_image_file(&path).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// The photographs of tests/fixtures/inference/ (make_inference_refs.py: real `init_detector` +
// `inference_detector`), whose network inputs were saved as `<model>__<image>.input.png`.

fn inference_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inference")
}

/// SHA-256 (FIPS 180-4), for the fixture files that record `sha256` of decoded/resized arrays.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[test]
fn sha256_matches_the_standard_vectors() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn fixture_photos_decode_like_cv2() {
    let images = load_json_at(&inference_fixtures().join("images.json"));
    for (name, r) in images.as_object().expect("dict") {
        let file = inference_fixtures().join(r["file"].as_str().unwrap());
        let ours = decode_image_file(&file).unwrap_or_else(|e| panic!("{e}"));
        let shape = r["imread_shape"].as_array().unwrap();
        assert_eq!(
            (ours.height, ours.width),
            (
                shape[0].as_u64().unwrap() as usize,
                shape[1].as_u64().unwrap() as usize
            ),
            "{name}: decoded shape (EXIF orientation applied)"
        );
        // sha256 of cv2.imread's array, for PNG and JPEG alike.
        assert_eq!(
            sha256_hex(&ours.data),
            r["sha256"].as_str().unwrap(),
            "{name}: decode differs from cv2.imread"
        );
        if file.extension().is_some_and(|e| e == "jpg") {
            // cv2's decode is also saved losslessly next to the JPEG: equal too.
            let exact = decode_image_file(&file.with_extension("decoded.png")).unwrap();
            assert!(ours == exact, "{name}: decoded.png");
        }
    }
}

fn load_json_at(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn fixture_photos_give_the_real_network_input() {
    let pipelines = load_json("pipeline_refs.json");
    let mut checked = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(inference_fixtures())
        .expect("tests/fixtures/inference")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("__") && n.ends_with(".json"))
        })
        .collect();
    entries.sort();
    for path in entries {
        let r = load_json_at(&path);
        let model = r["model"].as_str().unwrap();
        let steps = &pipelines["config_pipelines"][model];
        let spec = PipelineSpec::from_config(steps).unwrap_or_else(|e| panic!("{model}: {e}"));
        let image_file = inference_fixtures().join(r["image_file"].as_str().unwrap());
        // End to end from the file: decode (incl. the EXIF-rotated JPEG) + pipeline.
        let decoded = decode_image_file(&image_file).unwrap_or_else(|e| panic!("{e}"));
        let out = spec
            .run(&decoded)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let label = path.file_name().unwrap().to_string_lossy().to_string();
        let meta = &r["pipeline"];
        let ori = pair(&meta["ori_shape"]);
        assert_eq!(
            out.ori_shape,
            (ori.0 as usize, ori.1 as usize),
            "{label}: ori_shape"
        );
        let ish = pair(&meta["img_shape"]);
        assert_eq!(
            out.img_shape,
            (ish.0 as usize, ish.1 as usize),
            "{label}: img_shape"
        );
        assert_eq!(
            out.scale_factor,
            pair(&meta["scale_factor"]),
            "{label}: scale_factor"
        );
        match meta.get("pad_param") {
            Some(p) => {
                let want: Vec<f32> = p["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect();
                assert_eq!(
                    out.pad_param.map(|p| p.to_vec()),
                    Some(want),
                    "{label}: pad_param"
                );
            }
            None => assert_eq!(out.pad_param, None, "{label}: pad_param"),
        }
        let want = decode_image_file(&inference_fixtures().join(r["input_png"].as_str().unwrap()))
            .unwrap();
        assert_eq!(
            sha256_hex(&want.data),
            r["input_sha256"].as_str().unwrap(),
            "{label}: input PNG"
        );
        assert!(
            out.image == want,
            "{label}: network input differs from the real pipeline (max diff {})",
            max_abs_diff(&out.image, &want)
        );
        checked += 1;
    }
    assert!(
        checked >= 9,
        "expected the fixture photos of three models, found {checked}"
    );
}

#[test]
fn fixture_resize_refs_match() {
    let refs = load_json_at(&inference_fixtures().join("resize_refs.json"));
    let cases = refs["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for case in cases {
        let src = decode_image_file(&inference_fixtures().join(case["source"].as_str().unwrap()))
            .unwrap();
        let interp = match case["interpolation"].as_str() {
            Some("INTER_LINEAR") => Interpolation::Linear,
            Some("INTER_AREA") => Interpolation::Area,
            other => panic!("{other:?}"),
        };
        let (w, h) = pair(&case["dsize_wh"]);
        let out = resize(&src, w as usize, h as usize, interp);
        assert_eq!(
            sha256_hex(&out.data),
            case["sha256"].as_str().unwrap(),
            "{} -> {w}x{h} {interp:?}",
            case["source"]
        );
    }
}
