//! Writers for files Python loads without complaint: `.pth` in torch's zip format that
//! `torch.load(f, weights_only=True)` (the default since torch 2.6) and mmengine's
//! `load_checkpoint` accept, and `.safetensors`.
//!
//! The `.pth` pickle uses protocol 2 and only opcodes and globals that
//! `torch/_weights_only_unpickler.py` implements (no MEMOIZE, FRAME, STACK_GLOBAL, BINBYTES,
//! SHORT_BINUNICODE); the layout is `{"meta": {...}, "state_dict": OrderedDict(name → tensor)}`
//! as mmengine's `save_checkpoint` writes it, one storage per tensor. Zip records are stored
//! (uncompressed) and 64-byte aligned, in the order `torch.save` writes them
//! (`caffe2/serialize/inline_container.cc: PyTorchStreamWriter`).

use super::error::CheckpointError;
use crate::dtype::DType;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

/// A tensor to write: element type, shape and contiguous little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData<'a> {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Cow<'a, [u8]>,
}

impl<'a> TensorData<'a> {
    pub fn new(dtype: DType, shape: Vec<usize>, data: impl Into<Cow<'a, [u8]>>) -> Self {
        TensorData {
            dtype,
            shape,
            data: data.into(),
        }
    }

    pub fn numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    fn check(&self, path: &Path, name: &str) -> Result<usize, CheckpointError> {
        let numel = self.numel().ok_or_else(|| CheckpointError::Write {
            path: path.to_path_buf(),
            detail: format!("tensor `{name}`: shape {:?} overflows", self.shape),
        })?;
        let want = numel.saturating_mul(self.dtype.size());
        if want != self.data.len() {
            return Err(CheckpointError::Write {
                path: path.to_path_buf(),
                detail: format!(
                    "tensor `{name}`: {} {:?} needs {want} bytes, got {}",
                    self.dtype,
                    self.shape,
                    self.data.len()
                ),
            });
        }
        Ok(numel)
    }
}

/// Protocol-2 pickle emitter restricted to the weights-only opcode set.
struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn op(&mut self, b: u8) {
        self.out.push(b);
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
    }

    fn int(&mut self, i: i128) {
        if (0..256).contains(&i) {
            self.out.extend_from_slice(&[b'K', i as u8]);
        } else if (0..65536).contains(&i) {
            self.out.push(b'M');
            self.out.extend_from_slice(&(i as u16).to_le_bytes());
        } else if i32::try_from(i).is_ok() {
            self.out.push(b'J');
            self.out.extend_from_slice(&(i as i32).to_le_bytes());
        } else {
            // LONG1: shortest little-endian two's complement (pickle.py encode_long).
            let full = i.to_le_bytes();
            let mut n = full.len();
            while n > 1 {
                let last = full[n - 1];
                let prev_sign = full[n - 2] & 0x80;
                if (last == 0x00 && prev_sign == 0) || (last == 0xff && prev_sign != 0) {
                    n -= 1;
                } else {
                    break;
                }
            }
            self.out.extend_from_slice(&[0x8a, n as u8]);
            self.out.extend_from_slice(&full[..n]);
        }
    }

    fn float(&mut self, f: f64) {
        self.out.push(b'G');
        self.out.extend_from_slice(&f.to_be_bytes());
    }

    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn tuple_of_ints(&mut self, xs: &[usize]) {
        if xs.is_empty() {
            self.op(b')');
            return;
        }
        self.op(b'(');
        for &x in xs {
            self.int(x as i128);
        }
        self.op(b't');
    }

    fn json(&mut self, v: &serde_json::Value) {
        use serde_json::Value as J;
        match v {
            J::Null => self.op(b'N'),
            J::Bool(true) => self.op(0x88),
            J::Bool(false) => self.op(0x89),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.int(i128::from(i));
                } else if let Some(u) = n.as_u64() {
                    self.int(i128::from(u));
                } else {
                    self.float(n.as_f64().unwrap_or(f64::NAN));
                }
            }
            J::String(s) => self.str(s),
            J::Array(a) => {
                self.op(b']');
                if !a.is_empty() {
                    self.op(b'(');
                    for x in a {
                        self.json(x);
                    }
                    self.op(b'e');
                }
            }
            J::Object(o) => {
                self.op(b'}');
                if !o.is_empty() {
                    self.op(b'(');
                    for (k, x) in o {
                        self.str(k);
                        self.json(x);
                    }
                    self.op(b'u');
                }
            }
        }
    }

    /// `torch._utils._rebuild_tensor_v2(('storage', torch.XStorage, key, 'cpu', numel), 0,
    /// size, stride, False, OrderedDict())` (`torch/_tensor.py: Tensor._reduce_ex_internal`).
    fn tensor(&mut self, t: &TensorData<'_>, key: &str, numel: usize) {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.op(b'(');
        self.op(b'(');
        self.str("storage");
        self.global("torch", t.dtype.storage_class());
        self.str(key);
        self.str("cpu");
        self.int(numel as i128);
        self.op(b't');
        self.op(b'Q');
        self.int(0);
        self.tuple_of_ints(&t.shape);
        self.tuple_of_ints(&super::tensor::TensorInfo::contiguous_strides(&t.shape));
        self.op(0x89);
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
        self.op(b't');
        self.op(b'R');
    }
}

/// The `data.pkl` of [`write_pth`]: `{"meta": meta or {}, "state_dict": OrderedDict}` whose
/// tensor `i` uses storage key `"i"`. Public so that tests can disassemble it.
pub fn pth_pickle(
    tensors: &[(String, TensorData<'_>)],
    meta: Option<&serde_json::Value>,
) -> Vec<u8> {
    let mut p = Pickler { out: vec![0x80, 2] };
    p.op(b'}');
    p.op(b'(');
    p.str("meta");
    match meta {
        Some(m) => p.json(m),
        None => p.op(b'}'),
    }
    p.str("state_dict");
    p.global("collections", "OrderedDict");
    p.op(b')');
    p.op(b'R');
    if !tensors.is_empty() {
        p.op(b'(');
        for (i, (name, t)) in tensors.iter().enumerate() {
            p.str(name);
            p.tensor(t, &i.to_string(), t.numel().unwrap_or(0));
        }
        p.op(b'u');
    }
    p.op(b'u');
    p.op(b'.');
    p.out
}

/// Writes a `.pth` (torch zip format) holding `{"meta": meta, "state_dict": tensors}`; `meta`
/// must be JSON-like so that `weights_only=True` loads it (`None` writes `{}`). Tensors are
/// written in the given order.
pub fn write_pth(
    path: impl AsRef<Path>,
    tensors: &[(String, TensorData<'_>)],
    meta: Option<&serde_json::Value>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let mut numels = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        numels.push(t.check(path, name)?);
    }
    let werr = |detail: String| CheckpointError::Write {
        path: path.to_path_buf(),
        detail,
    };
    let file = std::fs::File::create(path).map_err(|e| werr(e.to_string()))?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    let total: u64 = tensors.iter().map(|(_, t)| t.data.len() as u64).sum();
    let opts = |len: usize| {
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(64)
            // Fixed 1980-01-01 timestamp: the same tensors always give the same bytes.
            .last_modified_time(zip::DateTime::default())
            .large_file(len as u64 >= u64::from(u32::MAX) || total >= u64::from(u32::MAX))
    };
    let root = "archive";
    let record = |zip: &mut zip::ZipWriter<BufWriter<std::fs::File>>, name: String, data: &[u8]| {
        zip.start_file(name.clone(), opts(data.len()))
            .map_err(|e| werr(format!("record {name}: {e}")))?;
        zip.write_all(data)
            .map_err(|e| werr(format!("record {name}: {e}")))
    };
    let pkl = pth_pickle(tensors, meta);
    record(&mut zip, format!("{root}/data.pkl"), &pkl)?;
    record(&mut zip, format!("{root}/.format_version"), b"1")?;
    record(&mut zip, format!("{root}/.storage_alignment"), b"64")?;
    record(&mut zip, format!("{root}/byteorder"), b"little")?;
    for (i, (_, t)) in tensors.iter().enumerate() {
        record(&mut zip, format!("{root}/data/{i}"), &t.data)?;
    }
    record(&mut zip, format!("{root}/version"), b"3\n")?;
    let mut w = zip.finish().map_err(|e| werr(e.to_string()))?;
    w.flush().map_err(|e| werr(e.to_string()))?;
    Ok(())
}

fn st_dtype(d: DType) -> safetensors::Dtype {
    use safetensors::Dtype as S;
    match d {
        DType::F32 => S::F32,
        DType::F16 => S::F16,
        DType::BF16 => S::BF16,
        DType::F64 => S::F64,
        DType::I64 => S::I64,
        DType::I32 => S::I32,
        DType::I16 => S::I16,
        DType::I8 => S::I8,
        DType::U8 => S::U8,
        DType::Bool => S::BOOL,
    }
}

impl safetensors::View for &TensorData<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        st_dtype(self.dtype)
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes a `.safetensors` file. `meta` (JSON) goes into `__metadata__` as the one string entry
/// `meta` (without meta: `format: pt`). Note: safetensors orders tensors by dtype alignment then name,
/// so the original key order is not kept.
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(String, TensorData<'_>)],
    meta: Option<&serde_json::Value>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    for (name, t) in tensors {
        t.check(path, name)?;
    }
    // One entry only: the crate serializes the metadata HashMap in random order, and the same
    // tensors must always give the same bytes.
    let mut md = HashMap::new();
    match meta {
        Some(m) => md.insert("meta".to_string(), m.to_string()),
        None => md.insert("format".to_string(), "pt".to_string()),
    };
    let views = tensors.iter().map(|(n, t)| (n.as_str(), t));
    safetensors::serialize_to_file(views, &Some(md), path).map_err(|e| CheckpointError::Write {
        path: path.to_path_buf(),
        detail: format!("{e:?}"),
    })
}
