//! The interpreter state: input reading, stack, heap and memo handling, container mutation.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use super::heap::{HKey, Memo, Obj, V};
use super::{Limits, PidMode};
use crate::checkpoint::error::PickleError;
use crate::checkpoint::tensor::StorageInfo;

pub(super) struct Vm<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    pub(super) op_pos: usize,
    pub(super) mode: PidMode,
    pub(super) limits: &'a Limits,
    pub(super) stack: Vec<V>,
    pub(super) marks: Vec<usize>,
    pub(super) memo: Memo,
    pub(super) heap: Vec<Obj>,
    pub(super) storages: Vec<StorageInfo>,
    pub(super) storage_index: HashMap<String, usize>,
    pub(super) opaque_globals: BTreeSet<String>,
    pub(super) globals: BTreeSet<String>,
}

pub(super) fn malformed(what: &'static str, detail: impl Into<String>) -> PickleError {
    PickleError::Malformed {
        what,
        detail: detail.into(),
    }
}

pub(super) fn unsupported(name: &'static str, why: &'static str) -> PickleError {
    PickleError::UnsupportedOpcode { name, why }
}

impl<'a> Vm<'a> {
    // ----- input -----

    pub(super) fn take(&mut self, n: u64) -> Result<&'a [u8], PickleError> {
        let remaining = (self.data.len() - self.pos.min(self.data.len())) as u64;
        if n > remaining {
            return Err(PickleError::Truncated {
                needed: n - remaining,
            });
        }
        let n = n as usize;
        let s = self
            .data
            .get(self.pos..self.pos + n)
            .ok_or(PickleError::Truncated { needed: n as u64 })?;
        self.pos += n;
        Ok(s)
    }

    pub(super) fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A `\n`-terminated line (text opcodes), without the newline.
    pub(super) fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated { needed: 1 })?;
        let s = &rest[..n];
        self.pos += n + 1;
        Ok(s)
    }

    pub(super) fn line_str(&mut self) -> Result<String, PickleError> {
        let l = self.line()?;
        Ok(String::from_utf8_lossy(l).into_owned())
    }

    // ----- stack, heap, memo -----

    pub(super) fn push(&mut self, v: V) -> Result<(), PickleError> {
        if self.stack.len() + self.marks.len() >= self.limits.max_stack {
            return Err(PickleError::Limit {
                what: "pickle stack size",
                value: (self.stack.len() + self.marks.len() + 1) as u64,
                limit: self.limits.max_stack as u64,
            });
        }
        self.stack.push(v);
        Ok(())
    }

    pub(super) fn new_obj(&mut self, o: Obj) -> V {
        self.heap.push(o);
        V::Obj(self.heap.len() - 1)
    }

    pub(super) fn push_obj(&mut self, o: Obj) -> Result<(), PickleError> {
        let v = self.new_obj(o);
        self.push(v)
    }

    pub(super) fn pop(&mut self, op: &'static str) -> Result<V, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(PickleError::StackUnderflow {
                op,
                needed: 1,
                found: 0,
            });
        }
        self.stack.pop().ok_or(PickleError::StackUnderflow {
            op,
            needed: 1,
            found: 0,
        })
    }

    pub(super) fn top(&self, op: &'static str) -> Result<V, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(PickleError::StackUnderflow {
                op,
                needed: 1,
                found: 0,
            });
        }
        self.stack
            .last()
            .cloned()
            .ok_or(PickleError::StackUnderflow {
                op,
                needed: 1,
                found: 0,
            })
    }

    pub(super) fn pop_mark(&mut self, op: &'static str) -> Result<Vec<V>, PickleError> {
        let m = self.marks.pop().ok_or(PickleError::MissingMark { op })?;
        if m > self.stack.len() {
            return Err(PickleError::MissingMark { op });
        }
        Ok(self.stack.split_off(m))
    }

    pub(super) fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let v = self.top("PUT")?;
        if self.memo.len() >= self.limits.max_memo && self.memo.get(key).is_none() {
            return Err(PickleError::Limit {
                what: "memo entries",
                value: self.memo.len() as u64 + 1,
                limit: self.limits.max_memo as u64,
            });
        }
        self.memo.put(key, v);
        Ok(())
    }

    pub(super) fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(key)
            .cloned()
            .ok_or(PickleError::MissingMemo(key))?;
        self.push(v)
    }

    pub(super) fn global_of(&self, v: &V) -> Option<(Rc<str>, Rc<str>)> {
        match v {
            V::Obj(i) => match self.heap.get(*i) {
                Some(Obj::Global(m, n)) => Some((m.clone(), n.clone())),
                _ => None,
            },
            _ => None,
        }
    }

    pub(super) fn seq(&self, v: &V) -> Option<&[V]> {
        match v {
            V::Obj(i) => match self.heap.get(*i) {
                Some(Obj::Tuple(t)) | Some(Obj::List(t)) | Some(Obj::Set(t)) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }

    // ----- mutation of containers -----

    pub(super) fn append(
        &mut self,
        target: &V,
        xs: Vec<V>,
        op: &'static str,
    ) -> Result<(), PickleError> {
        let V::Obj(i) = target else {
            return Err(malformed(op, "target is not a container"));
        };
        match self.heap.get_mut(*i) {
            Some(Obj::List(l)) if op != "ADDITEMS" => l.extend(xs),
            Some(Obj::Set(s)) if op == "ADDITEMS" => s.extend(xs),
            Some(Obj::Opaque(o)) => o.items.extend(xs),
            _ => {
                return Err(malformed(
                    op,
                    "target is not a list (or a set for ADDITEMS)",
                ))
            }
        }
        Ok(())
    }

    pub(super) fn set_items(
        &mut self,
        target: &V,
        kv: Vec<V>,
        op: &'static str,
    ) -> Result<(), PickleError> {
        if !kv.len().is_multiple_of(2) {
            return Err(malformed(op, "odd number of keys and values"));
        }
        let V::Obj(i) = target else {
            return Err(malformed(op, "target is not a dict"));
        };
        let mut it = kv.into_iter();
        match self.heap.get_mut(*i) {
            Some(Obj::Dict(d)) => {
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    match HKey::of(&k) {
                        Some(h) => match d.index.get(&h) {
                            Some(&pos) => {
                                if let Some(slot) = d.items.get_mut(pos) {
                                    slot.1 = v;
                                }
                            }
                            None => {
                                d.index.insert(h, d.items.len());
                                d.items.push((k, v));
                            }
                        },
                        None => d.items.push((k, v)),
                    }
                }
            }
            Some(Obj::Opaque(o)) => {
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    o.dict_items.push((k, v));
                }
            }
            _ => return Err(malformed(op, "target is not a dict")),
        }
        Ok(())
    }

    /// BUILD: state goes to `Dict::attributes` (OrderedDict `_metadata`) or `Opaque::state`;
    /// tensors and other values ignore it (torch restores tensor state inside the rebuild call).
    pub(super) fn build(&mut self, target: &V, state: V) {
        let V::Obj(i) = target else { return };
        if matches!(state, V::Obj(s) if s == *i) {
            // addict/ConfigDict pickle themselves as their own state
            return;
        }
        let state_dict_items = match &state {
            V::Obj(s) => match self.heap.get(*s) {
                Some(Obj::Dict(d)) => Some(d.items.clone()),
                _ => None,
            },
            _ => None,
        };
        match self.heap.get_mut(*i) {
            Some(Obj::Dict(d)) => d.attributes = Some(state),
            Some(Obj::Opaque(o)) => {
                // Two BUILDs with dict states merge, as `obj.__dict__.update(state)` would.
                let existing = o.state.clone();
                if let (Some(V::Obj(e)), Some(new_items)) = (existing, state_dict_items) {
                    if let Some(Obj::Dict(ed)) = self.heap.get_mut(e) {
                        ed.items.extend(new_items);
                        return;
                    }
                }
                if let Some(Obj::Opaque(o)) = self.heap.get_mut(*i) {
                    o.state = Some(state);
                }
            }
            _ => {}
        }
    }
}
