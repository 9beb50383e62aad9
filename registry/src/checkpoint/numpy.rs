//! Plain pickles of NumPy arrays (PaddlePaddle's `.pdparams`: `paddle.save` pickles a dict of
//! `np.ndarray`s plus a `StructuredToParameterName@@` name table, protocol 4,
//! `python/paddle/framework/io.py: _build_saved_state_dict` + `_pickle_save`), read as DATA.
//!
//! An ndarray pickles as `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')` (numpy 2:
//! `numpy._core.multiarray`) followed by BUILD with `(version, shape, dtype, is_fortran, raw
//! bytes)`, the dtype as `numpy.dtype('f4', False, True)` + BUILD `(3, '<', ...)`
//! (`numpy/core/src/multiarray/methods.c: array_reduce / array_setstate`). The interpreter never
//! calls them: like every class it does not know, they stay inert opaque values holding their
//! arguments and state (the forbidden-callable refusal applies as everywhere). This module then
//! reads those values as what `__setstate__` would have made: a tensor whose bytes are the
//! pickled buffer. Nothing else of NumPy is honoured; an array it cannot read (object arrays,
//! big-endian, unknown type codes) is an error naming the key.

use std::collections::HashMap;
use std::path::Path;

use super::error::CheckpointError;
use super::pickle::{unpickle, Limits, PidMode};
use super::tensor::{StorageInfo, TensorInfo};
use super::value::{Opaque, Value};
use super::{pickle_error, Parsed, Record};
use crate::DType;

/// The modules `_reconstruct` lives in (numpy 1.x / 2.x).
const RECONSTRUCT_MODULES: [&str; 2] = ["numpy.core.multiarray", "numpy._core.multiarray"];

/// Globals read here as data: no longer "opaque" once every array was read.
const NUMPY_GLOBALS: [&str; 4] = [
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
];

/// A whole file that is one plain pickle (no torch magic number, no zip): its arrays become
/// tensors with owned bytes under the storage keys `numpy/<n>`.
pub(super) fn parse_pickle(path: &Path, bytes: &[u8]) -> Result<Parsed, CheckpointError> {
    let limits = Limits::for_input(bytes.len(), bytes.len() as u64);
    let un = unpickle(bytes, 0, PidMode::Forbidden, &limits)
        .map_err(|e| pickle_error(path, "plain pickle", e))?;
    let mut arrays = Arrays {
        path,
        records: HashMap::new(),
    };
    let root = arrays.value(un.value, "")?;
    let mut opaque_globals = un.opaque_globals;
    if !arrays.records.is_empty() {
        opaque_globals.retain(|g| !NUMPY_GLOBALS.contains(&g.as_str()));
    }
    Ok(Parsed {
        root,
        st_meta: None,
        records: arrays.records,
        opaque_globals,
        globals: un.globals,
    })
}

struct Arrays<'p> {
    path: &'p Path,
    records: HashMap<String, Record>,
}

impl Arrays<'_> {
    /// `v` with every ndarray replaced by a tensor; `at` names the place for errors.
    fn value(&mut self, v: Value, at: &str) -> Result<Value, CheckpointError> {
        Ok(match v {
            Value::Opaque(o)
                if o.name == "_reconstruct" && RECONSTRUCT_MODULES.contains(&o.module.as_str()) =>
            {
                Value::Tensor(Box::new(self.array(&o, at)?))
            }
            Value::Dict(mut d) => {
                let items = std::mem::take(&mut d.items);
                for (k, val) in items {
                    let here = format!(
                        "{at}{}{}",
                        if at.is_empty() { "" } else { "." },
                        k.key_string()
                    );
                    let val = self.value(val, &here)?;
                    d.items.push((k, val));
                }
                Value::Dict(d)
            }
            Value::List(items) => Value::List(self.seq(items, at)?),
            Value::Tuple(items) => Value::Tuple(self.seq(items, at)?),
            other => other,
        })
    }

    fn seq(&mut self, items: Vec<Value>, at: &str) -> Result<Vec<Value>, CheckpointError> {
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| self.value(v, &format!("{at}[{i}]")))
            .collect()
    }

    fn array(&mut self, o: &Opaque, at: &str) -> Result<TensorInfo, CheckpointError> {
        let bad = |detail: String| CheckpointError::BadTensor {
            path: self.path.to_path_buf(),
            tensor: at.to_owned(),
            detail: format!("numpy array: {detail}"),
        };
        match o.args.first() {
            Some(Value::Global { module, name }) if module == "numpy" && name == "ndarray" => {}
            other => return Err(bad(format!("_reconstruct of {other:?}, not numpy.ndarray"))),
        }
        // array_setstate: (version, shape, dtype, is_fortran, data) or, before version 1,
        // (shape, dtype, is_fortran, data).
        let state = match &o.state {
            Some(Value::Tuple(s)) => s.as_slice(),
            other => return Err(bad(format!("state {other:?} is not a tuple"))),
        };
        let state = match state {
            [Value::Int(_), rest @ ..] if rest.len() == 4 => rest,
            rest if rest.len() == 4 => rest,
            _ => return Err(bad(format!("state of {} items, expected 5", state.len()))),
        };
        let [shape, dtype, fortran, data] = state else {
            return Err(bad("state of the wrong length".to_owned()));
        };
        let shape: Vec<usize> = match shape {
            Value::Tuple(dims) => dims
                .iter()
                .map(|d| match d {
                    Value::Int(n) => usize::try_from(*n).ok(),
                    _ => None,
                })
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("shape {dims:?} is not a tuple of sizes")))?,
            other => return Err(bad(format!("shape {other:?} is not a tuple"))),
        };
        let dtype = numpy_dtype(dtype).map_err(&bad)?;
        let fortran = match fortran {
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            other => return Err(bad(format!("is_fortran {other:?} is not a bool"))),
        };
        let data = match data {
            Value::Bytes(b) => b,
            Value::List(_) => {
                return Err(bad(
                    "an object array (elements are Python objects, not a buffer)".to_owned(),
                ))
            }
            other => return Err(bad(format!("data {other:?} is not bytes"))),
        };
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        if numel.checked_mul(dtype.size()) != Some(data.len()) {
            return Err(bad(format!(
                "{} bytes for shape {shape:?} of {dtype} ({} expected)",
                data.len(),
                numel.saturating_mul(dtype.size())
            )));
        }
        // C order: the last dim is contiguous; Fortran order: the first.
        let mut strides = vec![1usize; shape.len()];
        if fortran {
            for i in 1..shape.len() {
                strides[i] = strides[i - 1] * shape[i - 1];
            }
        } else {
            for i in (0..shape.len().saturating_sub(1)).rev() {
                strides[i] = strides[i + 1] * shape[i + 1];
            }
        }
        let key = format!("numpy/{}", self.records.len());
        self.records
            .insert(key.clone(), Record::Owned(data.clone()));
        Ok(TensorInfo {
            dtype,
            shape,
            strides,
            offset: 0,
            storage: StorageInfo {
                key,
                dtype,
                numel: numel as u64,
                location: "cpu".to_owned(),
                view_offset: 0,
            },
        })
    }
}

/// `numpy.dtype(code, False, True)` + BUILD `(3, byteorder, ...)` → our element type.
fn numpy_dtype(v: &Value) -> Result<DType, String> {
    let Value::Opaque(o) = v else {
        return Err(format!("dtype {v:?} is not a numpy.dtype"));
    };
    if o.module != "numpy" || o.name != "dtype" {
        return Err(format!("dtype is a {}, not numpy.dtype", o.class()));
    }
    let Some(Value::Str(code)) = o.args.first() else {
        return Err(format!("numpy.dtype arguments {:?} name no type", o.args));
    };
    let order = match &o.state {
        Some(Value::Tuple(s)) => match s.get(1) {
            Some(Value::Str(order)) => order.as_str(),
            _ => "<",
        },
        _ => "<",
    };
    if order == ">" {
        return Err(format!("big-endian dtype `>{code}` (not supported)"));
    }
    Ok(match code.as_str() {
        "f4" => DType::F32,
        "f2" => DType::F16,
        "f8" => DType::F64,
        "i8" => DType::I64,
        "i4" => DType::I32,
        "i2" => DType::I16,
        "i1" => DType::I8,
        "u1" => DType::U8,
        "b1" => DType::Bool,
        other => {
            return Err(format!(
                "dtype `{other}` (supported: f4 f2 f8 i8 i4 i2 i1 u1 b1)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::PickleError;

    /// What `pickle.dumps({'w': np.arange(6, dtype='<f4').reshape(2, 3), ...}, protocol=4)`
    /// writes with numpy 1.26 (checked byte for byte; the FRAME header dropped, as a reader
    /// may), then `extra` items.
    fn pdparams_like(extra: &[u8]) -> Vec<u8> {
        let mut p = b"\x80\x04}\x94(\x8c\x01w\x94".to_vec();
        p.extend(b"\x8c\x15numpy.core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94");
        p.extend(
            b"\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94",
        );
        p.extend(b"(K\x01K\x02K\x03\x86\x94h\x05\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94");
        p.extend(b"(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x18");
        for i in 0..6u8 {
            p.extend(f32::from(i).to_le_bytes());
        }
        p.extend(b"\x94t\x94b");
        p.extend(extra);
        p.extend(b"u.");
        p
    }

    #[test]
    fn an_array_is_read_as_a_tensor_and_nothing_is_called() {
        let p = pdparams_like(b"");
        let parsed = parse_pickle(Path::new("x.pdparams"), &p).unwrap();
        let Value::Tensor(t) = parsed.root.get("w").unwrap() else {
            panic!("{:?}", parsed.root)
        };
        assert_eq!(
            (t.dtype, t.shape.clone(), t.strides.clone()),
            (DType::F32, vec![2, 3], vec![3, 1])
        );
        let Record::Owned(bytes) = &parsed.records[&t.storage.key] else {
            panic!()
        };
        assert_eq!(bytes[20..24], 5.0f32.to_le_bytes());
        assert!(
            parsed.opaque_globals.is_empty(),
            "{:?}",
            parsed.opaque_globals
        );
    }

    /// A pdparams-like dict whose second value is `posix.system('ls')`: refused by name.
    #[test]
    fn a_call_in_a_pdparams_is_refused_naming_the_global() {
        let p = pdparams_like(
            b"\x8c\x01x\x94\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x02ls\x94\x85\x94R\x94",
        );
        let Err(CheckpointError::Pickle { error, .. }) = parse_pickle(Path::new("x.pdparams"), &p)
        else {
            panic!("not refused")
        };
        assert_eq!(
            error,
            PickleError::ForbiddenCallable {
                module: "posix".into(),
                name: "system".into()
            }
        );
    }

    #[test]
    fn a_big_endian_array_fails_naming_the_key() {
        let mut raw = pdparams_like(b"");
        let at = raw.windows(3).position(|w| w == b"\x8c\x01<").unwrap();
        raw[at + 2] = b'>';
        let Err(e) = parse_pickle(Path::new("x.pdparams"), &raw) else {
            panic!("read a big-endian array")
        };
        let e = e.to_string();
        assert!(e.contains("tensor `w`") && e.contains("big-endian"), "{e}");
    }
}
