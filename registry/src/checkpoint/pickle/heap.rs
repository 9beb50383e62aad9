//! The heap the interpreter builds: stack handles, heap objects, hashable keys and the memo.

use std::collections::HashMap;
use std::rc::Rc;

use crate::checkpoint::tensor::{StorageInfo, TensorInfo};

/// A stack/memo handle: scalars inline, everything else an index into the heap.
#[derive(Debug, Clone)]
pub(super) enum V {
    None,
    Bool(bool),
    Int(i64),
    Big(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Obj(usize),
}

#[derive(Debug)]
pub(super) enum Obj {
    List(Vec<V>),
    Tuple(Vec<V>),
    Set(Vec<V>),
    Dict(HDict),
    Global(Rc<str>, Rc<str>),
    Opaque(HOpaque),
    Storage(StorageInfo),
    Tensor(TensorInfo),
}

#[derive(Debug, Default)]
pub(super) struct HDict {
    pub(super) items: Vec<(V, V)>,
    /// Position of hashable keys, so that a repeated key replaces its value as in Python.
    pub(super) index: HashMap<HKey, usize>,
    pub(super) ordered: bool,
    pub(super) attributes: Option<V>,
}

#[derive(Debug, Default)]
pub(super) struct HOpaque {
    pub(super) module: String,
    pub(super) name: String,
    pub(super) args: Vec<V>,
    pub(super) kwargs: Vec<(V, V)>,
    pub(super) state: Option<V>,
    pub(super) items: Vec<V>,
    pub(super) dict_items: Vec<(V, V)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum HKey {
    None,
    Int(i64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
}

impl HKey {
    pub(super) fn of(v: &V) -> Option<HKey> {
        Some(match v {
            V::None => HKey::None,
            V::Bool(b) => HKey::Int(i64::from(*b)),
            V::Int(i) => HKey::Int(*i),
            V::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => HKey::Int(*f as i64),
            V::Str(s) => HKey::Str(s.clone()),
            V::Bytes(b) => HKey::Bytes(b.clone()),
            _ => return None,
        })
    }
}

/// The memo: pickles number entries densely from 0 (pickle.py `Pickler.memoize`), so a vector
/// serves them; a far-off key (hand-made file) goes to a map instead of growing the vector.
#[derive(Debug, Default)]
pub(super) struct Memo {
    dense: Vec<Option<V>>,
    sparse: HashMap<u64, V>,
    count: usize,
}

impl Memo {
    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn get(&self, key: u64) -> Option<&V> {
        match usize::try_from(key).ok().and_then(|k| self.dense.get(k)) {
            Some(slot) => slot.as_ref(),
            None => self.sparse.get(&key),
        }
    }

    pub(super) fn put(&mut self, key: u64, v: V) {
        let k = usize::try_from(key).unwrap_or(usize::MAX);
        if k < self.dense.len() + 64 && !self.sparse.contains_key(&key) {
            if k >= self.dense.len() {
                self.dense.resize(k + 1, None);
            }
            if let Some(slot) = self.dense.get_mut(k) {
                if slot.is_none() {
                    self.count += 1;
                }
                *slot = Some(v);
            }
        } else if self.sparse.insert(key, v).is_none() {
            self.count += 1;
        }
    }
}
