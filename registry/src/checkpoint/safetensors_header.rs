//! The safetensors format: the JSON header and `__metadata__` (through the `safetensors` crate).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::error::CheckpointError;
use super::tensor::{StorageInfo, TensorInfo};
use super::value::{Dict, Value};
use super::{Parsed, Record};
use crate::dtype::DType;

fn st_dtype(d: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    Some(match d {
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::F64 => DType::F64,
        S::I64 => DType::I64,
        S::I32 => DType::I32,
        S::I16 => DType::I16,
        S::I8 => DType::I8,
        S::U8 => DType::U8,
        S::BOOL => DType::Bool,
        _ => return None,
    })
}

pub(super) fn parse_safetensors(path: &Path, bytes: &[u8]) -> Result<Parsed, CheckpointError> {
    let sterr = |detail: String| CheckpointError::Safetensors {
        path: path.to_path_buf(),
        detail,
    };
    let (n, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| sterr(format!("{e:?}")))?;
    let base = n + 8;
    let mut infos: Vec<(String, safetensors::tensor::TensorInfo)> = meta
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.clone()))
        .collect();
    // Stored order: by data offset (the header is a JSON object whose key order the crate drops).
    infos.sort_by(|a, b| {
        a.1.data_offsets
            .cmp(&b.1.data_offsets)
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut items = Vec::with_capacity(infos.len());
    let mut records = HashMap::new();
    for (name, info) in infos {
        let dtype = st_dtype(info.dtype).ok_or_else(|| {
            sterr(format!(
                "tensor `{name}` has unsupported dtype {:?}",
                info.dtype
            ))
        })?;
        let (s, e) = info.data_offsets;
        let numel = info
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| sterr(format!("tensor `{name}`: shape overflows")))?;
        let t = TensorInfo {
            dtype,
            strides: TensorInfo::contiguous_strides(&info.shape),
            shape: info.shape,
            offset: 0,
            storage: StorageInfo {
                key: name.clone(),
                dtype,
                numel: numel as u64,
                location: "cpu".into(),
                view_offset: 0,
            },
        };
        records.insert(
            name.clone(),
            Record::Mapped {
                start: base + s,
                len: e.saturating_sub(s),
            },
        );
        items.push((Value::Str(name), Value::Tensor(Box::new(t))));
    }
    let st_meta = meta.metadata().as_ref().map(|m| {
        if let Some(j) = m
            .get("meta")
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        {
            return json_to_value(&j);
        }
        let mut kv: Vec<(&String, &String)> = m.iter().collect();
        kv.sort();
        Value::Dict(Box::new(Dict {
            items: kv
                .into_iter()
                .map(|(k, v)| (Value::Str(k.clone()), Value::Str(v.clone())))
                .collect(),
            ordered: false,
            attributes: None,
        }))
    });
    let root = Value::Dict(Box::new(Dict {
        items,
        ordered: true,
        attributes: None,
    }));
    Ok(Parsed {
        root,
        st_meta,
        records,
        opaque_globals: BTreeSet::new(),
        globals: BTreeSet::new(),
    })
}

/// JSON to [`Value`] (objects keep their order).
pub fn json_to_value(j: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::None,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Str(s.clone()),
        J::Array(a) => Value::List(a.iter().map(json_to_value).collect()),
        J::Object(o) => Value::Dict(Box::new(Dict {
            items: o
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), json_to_value(v)))
                .collect(),
            ordered: false,
            attributes: None,
        })),
    }
}
