//! Tensor rebuild functions and storage persistent ids (`torch/_utils.py`, `serialization.py`).

use super::heap::{Obj, V};
use super::vm::{malformed, Vm};
use super::PidMode;
use crate::checkpoint::error::PickleError;
use crate::checkpoint::tensor::{StorageInfo, TensorInfo};
use crate::dtype::DType;

impl Vm<'_> {
    fn int_arg(&self, args: &[V], i: usize, what: &'static str) -> Result<usize, PickleError> {
        match args.get(i) {
            Some(V::Int(x)) if *x >= 0 => Ok(*x as usize),
            Some(V::Bool(b)) => Ok(usize::from(*b)),
            other => Err(malformed(
                what,
                format!("argument {i} is {other:?}, expected a non-negative int"),
            )),
        }
    }

    fn int_seq(&self, v: Option<&V>, what: &'static str) -> Result<Vec<usize>, PickleError> {
        let items = v
            .and_then(|v| self.seq(v))
            .ok_or_else(|| malformed(what, "expected a tuple of ints"))?;
        items
            .iter()
            .map(|x| match x {
                V::Int(i) if *i >= 0 => Ok(*i as usize),
                other => Err(malformed(
                    what,
                    format!("{other:?} is not a non-negative int"),
                )),
            })
            .collect()
    }

    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)`,
    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`,
    /// `_rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])`.
    pub(super) fn rebuild_tensor(&self, func: &str, args: &[V]) -> Result<TensorInfo, PickleError> {
        let storage = match args.first() {
            Some(V::Obj(i)) => match self.heap.get(*i) {
                Some(Obj::Storage(s)) => s.clone(),
                _ => {
                    return Err(malformed(
                        "tensor rebuild",
                        format!("{func}: first argument is not a storage"),
                    ))
                }
            },
            _ => {
                return Err(malformed(
                    "tensor rebuild",
                    format!("{func}: first argument is not a storage"),
                ))
            }
        };
        let offset = self.int_arg(args, 1, "tensor storage offset")?;
        let shape = self.int_seq(args.get(2), "tensor size")?;
        let strides = self.int_seq(args.get(3), "tensor stride")?;
        if shape.len() != strides.len() {
            return Err(malformed(
                "tensor rebuild",
                format!("size {shape:?} and stride {strides:?} differ in length"),
            ));
        }
        let dtype = if func == "_rebuild_tensor_v3" {
            let (m, n) = args.get(6).and_then(|d| self.global_of(d)).ok_or_else(|| {
                malformed("_rebuild_tensor_v3", "argument 6 is not a torch dtype")
            })?;
            if &*m != "torch" {
                return Err(PickleError::UnsupportedDType(format!("{m}.{n}")));
            }
            DType::parse(&n).ok_or_else(|| PickleError::UnsupportedDType(format!("torch.{n}")))?
        } else {
            storage.dtype
        };
        // A legacy storage view starts `view_offset` storage elements into its root storage.
        let view_bytes = storage
            .view_offset
            .checked_mul(storage.dtype.size() as u64)
            .ok_or_else(|| malformed("storage view", "offset overflows"))?;
        let offset = u64::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(view_bytes / dtype.size() as u64))
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| malformed("tensor storage offset", "overflows"))?;
        let t = TensorInfo {
            dtype,
            shape,
            strides,
            offset,
            storage,
        };
        let numel = t.numel().ok_or(PickleError::Limit {
            what: "tensor element count (product of the shape overflows)",
            value: u64::MAX,
            limit: usize::MAX as u64,
        })?;
        let (_, end) = t.byte_extent().ok_or(PickleError::Limit {
            what: "tensor byte extent (shape × stride overflows)",
            value: u64::MAX,
            limit: self.limits.max_storage_bytes,
        })?;
        if end > self.limits.max_storage_bytes {
            return Err(PickleError::Limit {
                what: "bytes a tensor needs, vs the file size",
                value: end,
                limit: self.limits.max_storage_bytes,
            });
        }
        let _ = numel;
        Ok(t)
    }

    /// Storage persistent ids: zip `('storage', cls, key, location, numel)`,
    /// legacy `('storage', cls, key, location, numel, view_metadata)`
    /// (`torch/serialization.py: _load.persistent_load`, `_legacy_load.persistent_load`).
    pub(super) fn persistent_load(&mut self, pid: &V) -> Result<V, PickleError> {
        if self.mode == PidMode::Forbidden {
            return Err(malformed("persistent id", "not expected in this pickle"));
        }
        let items = self
            .seq(pid)
            .map(<[V]>::to_vec)
            .ok_or_else(|| malformed("persistent id", "not a tuple"))?;
        match items.first() {
            Some(V::Str(s)) if &**s == "storage" => {}
            other => {
                return Err(malformed(
                    "persistent id",
                    format!("type {other:?} is not 'storage'"),
                ))
            }
        }
        let (cm, cn) = items
            .get(1)
            .and_then(|c| self.global_of(c))
            .ok_or_else(|| malformed("persistent id", "storage type is not a class"))?;
        let class = format!("{cm}.{cn}");
        let dtype = match (&*cm, &*cn) {
            ("torch", "UntypedStorage") => DType::U8,
            ("torch" | "torch.cuda", n) => {
                DType::from_storage_class(n).ok_or(PickleError::UnknownStorageType {
                    class: class.clone(),
                })?
            }
            _ => return Err(PickleError::UnknownStorageType { class }),
        };
        let key = match items.get(2) {
            Some(V::Str(s)) => s.to_string(),
            Some(V::Int(i)) => i.to_string(),
            other => return Err(malformed("persistent id", format!("storage key {other:?}"))),
        };
        let location = match items.get(3) {
            Some(V::Str(s)) => s.to_string(),
            _ => String::from("cpu"),
        };
        let numel = match items.get(4) {
            Some(V::Int(n)) if *n >= 0 => *n as u64,
            other => {
                return Err(malformed(
                    "persistent id",
                    format!("storage size {other:?}"),
                ))
            }
        };
        let declared = numel.saturating_mul(dtype.size() as u64);
        if declared > self.limits.max_storage_bytes {
            return Err(PickleError::Limit {
                what: "declared storage bytes, vs the file size",
                value: declared,
                limit: self.limits.max_storage_bytes,
            });
        }
        let mut info = StorageInfo {
            key,
            dtype,
            numel,
            location,
            view_offset: 0,
        };
        if self.mode == PidMode::Legacy {
            // view_metadata = (view_key, offset, view_size) or None
            if let Some(view) = items.get(5).and_then(|v| self.seq(v)) {
                match view.get(1) {
                    Some(V::Int(o)) if *o >= 0 => info.view_offset = *o as u64,
                    other => {
                        return Err(malformed(
                            "storage view metadata",
                            format!("offset {other:?}"),
                        ))
                    }
                }
            }
        }
        if !self.storage_index.contains_key(&info.key) {
            self.storage_index
                .insert(info.key.clone(), self.storages.len());
            let mut root = info.clone();
            root.view_offset = 0;
            self.storages.push(root);
        }
        Ok(self.new_obj(Obj::Storage(info)))
    }
}
