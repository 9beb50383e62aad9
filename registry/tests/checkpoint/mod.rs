//! Checkpoint reader/writer against what the real torch reads and writes.
//!
//! References (all made by Python, committed next to the scripts that made them):
//! * `tests/fixtures/checkpoints/*.pth` + `*.keys.json` (fixture generator, real mmengine/mmdet/
//!   mmyolo/mmrazor runs) and `data/checkpoints/fixture_sums.json` (torch's per-tensor sums);
//! * `data/checkpoints/torch_*.pth` + `expected.json` (`data/make_test_checkpoints.py`: every
//!   dtype, views, shared storages, legacy and protocol-4 files);
//! * `data/checkpoints/written_by_mmcompat.*` + `*.torch.json` (our writer's output as
//!   `data/verify_written.py` loads it with torch `weights_only=True` and mmengine).
//!
//! Layout: `torch_made` (the small torch-made files), `fixtures` (the fixture generator's
//! checkpoints, `inspect`), `hostile` (hostile and broken files), `writers` (round trips through
//! the real torch), `fuzz` (never a panic); this file holds the helpers they share.

mod fixtures;
mod fuzz;
mod hostile;
mod torch_made;
mod writers;

use mmcompat_registry::checkpoint::{Checkpoint, TensorInfo};
use mmcompat_registry::DType;
use serde_json::{json, Value as J};
use std::io::Write;
use std::path::{Path, PathBuf};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn data(name: &str) -> PathBuf {
    manifest().join("tests/data/checkpoints").join(name)
}

fn fixture(name: &str) -> PathBuf {
    manifest().join("../tests/fixtures/checkpoints").join(name)
}

fn read_json(p: &Path) -> J {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn venv_python() -> Option<PathBuf> {
    let p = manifest().join("../.venv-fixtures/bin/python");
    if p.exists() {
        Some(p)
    } else {
        println!("note: {} not found; skipping the live torch check (committed torch references still checked)", p.display());
        None
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Little-endian tensor bytes to JSON numbers (floats widened to f64 exactly, as torch's
/// `.double().tolist()`), ints, or bools.
fn decode(dtype: DType, b: &[u8]) -> Vec<J> {
    let chunks = b.chunks_exact(dtype.size());
    chunks
        .map(|c| match dtype {
            DType::F32 => json!(f64::from(f32::from_le_bytes(c.try_into().unwrap()))),
            DType::F64 => json!(f64::from_le_bytes(c.try_into().unwrap())),
            DType::F16 => json!(f16_to_f64(u16::from_le_bytes(c.try_into().unwrap()))),
            DType::BF16 => json!(f64::from(f32::from_bits(
                u32::from(u16::from_le_bytes(c.try_into().unwrap())) << 16
            ))),
            DType::I64 => json!(i64::from_le_bytes(c.try_into().unwrap())),
            DType::I32 => json!(i32::from_le_bytes(c.try_into().unwrap())),
            DType::I16 => json!(i16::from_le_bytes(c.try_into().unwrap())),
            DType::I8 => json!(c[0] as i8),
            DType::U8 => json!(c[0]),
            DType::Bool => json!(c[0] != 0),
        })
        .collect()
}

fn values_f64(ck: &Checkpoint, t: &TensorInfo) -> Vec<f64> {
    decode(t.dtype, &ck.tensor_bytes(t).unwrap())
        .iter()
        .map(|v| {
            v.as_f64()
                .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
                .unwrap()
        })
        .collect()
}

/// A zip checkpoint with the given data.pkl and `archive/data/<key>` records.
fn zip_with(pkl: &[u8], records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", o).unwrap();
        z.write_all(pkl).unwrap();
        for (k, b) in records {
            z.start_file(format!("archive/data/{k}"), o).unwrap();
            z.write_all(b).unwrap();
        }
        z.start_file("archive/version", o).unwrap();
        z.write_all(b"3\n").unwrap();
        z.finish().unwrap();
    }
    buf.into_inner()
}
