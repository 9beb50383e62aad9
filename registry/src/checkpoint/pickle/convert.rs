//! Conversion of heap handles into an owned [`Value`] tree, within the limits.

use super::heap::{Obj, V};
use super::vm::malformed;
use super::Limits;
use crate::checkpoint::error::PickleError;
use crate::checkpoint::value::{Dict, Opaque, Value};

/// Turns heap handles into an owned [`Value`] tree, within the depth and expansion limits.
pub(super) struct Converter<'h> {
    pub(super) heap: &'h [Obj],
    pub(super) on_path: Vec<bool>,
    pub(super) nodes: usize,
    pub(super) bytes: usize,
    pub(super) limits: &'h Limits,
}

impl Converter<'_> {
    fn count(&mut self, bytes: usize) -> Result<(), PickleError> {
        self.nodes += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        if self.nodes > self.limits.max_nodes {
            return Err(PickleError::Limit {
                what: "values after expanding shared references",
                value: self.nodes as u64,
                limit: self.limits.max_nodes as u64,
            });
        }
        if self.bytes > self.limits.max_expanded_bytes {
            return Err(PickleError::Limit {
                what: "string bytes after expanding shared references",
                value: self.bytes as u64,
                limit: self.limits.max_expanded_bytes as u64,
            });
        }
        Ok(())
    }

    pub(super) fn seq(&mut self, v: &[V], depth: usize) -> Result<Vec<Value>, PickleError> {
        v.iter().map(|x| self.value(x, depth + 1)).collect()
    }

    fn pairs(&mut self, v: &[(V, V)], depth: usize) -> Result<Vec<(Value, Value)>, PickleError> {
        v.iter()
            .map(|(k, x)| Ok((self.value(k, depth + 1)?, self.value(x, depth + 1)?)))
            .collect()
    }

    pub(super) fn value(&mut self, v: &V, depth: usize) -> Result<Value, PickleError> {
        if depth > self.limits.max_depth {
            return Err(PickleError::Limit {
                what: "nesting depth",
                value: depth as u64,
                limit: self.limits.max_depth as u64,
            });
        }
        Ok(match v {
            V::None => {
                self.count(0)?;
                Value::None
            }
            V::Bool(b) => {
                self.count(0)?;
                Value::Bool(*b)
            }
            V::Int(i) => {
                self.count(0)?;
                Value::Int(*i)
            }
            V::Float(f) => {
                self.count(0)?;
                Value::Float(*f)
            }
            V::Big(b) => {
                self.count(b.len())?;
                Value::BigInt(b.to_vec())
            }
            V::Str(s) => {
                self.count(s.len())?;
                Value::Str(s.to_string())
            }
            V::Bytes(b) => {
                self.count(b.len())?;
                Value::Bytes(b.to_vec())
            }
            V::Obj(i) => {
                let i = *i;
                self.count(0)?;
                if self.on_path.get(i).copied().unwrap_or(false) {
                    return Ok(Value::Recursion);
                }
                if let Some(flag) = self.on_path.get_mut(i) {
                    *flag = true;
                }
                let heap = self.heap;
                let out = match heap.get(i) {
                    None => Err(malformed("heap reference", format!("{i}"))),
                    Some(obj) => self.object(obj, depth),
                };
                if let Some(flag) = self.on_path.get_mut(i) {
                    *flag = false;
                }
                out?
            }
        })
    }

    fn object(&mut self, obj: &Obj, depth: usize) -> Result<Value, PickleError> {
        Ok(match obj {
            Obj::List(v) => Value::List(self.seq(v, depth)?),
            Obj::Tuple(v) => Value::Tuple(self.seq(v, depth)?),
            Obj::Set(v) => Value::Set(self.seq(v, depth)?),
            Obj::Dict(d) => {
                let items = self.pairs(&d.items, depth)?;
                let attributes = match &d.attributes {
                    Some(a) => Some(self.value(a, depth + 1)?),
                    None => None,
                };
                Value::Dict(Box::new(Dict {
                    items,
                    ordered: d.ordered,
                    attributes,
                }))
            }
            Obj::Global(m, n) => Value::Global {
                module: m.to_string(),
                name: n.to_string(),
            },
            Obj::Storage(s) => Value::Storage(Box::new(s.clone())),
            Obj::Tensor(t) => Value::Tensor(Box::new(t.clone())),
            Obj::Opaque(o) => {
                let state = match &o.state {
                    Some(s) => Some(self.value(s, depth + 1)?),
                    None => None,
                };
                Value::Opaque(Box::new(Opaque {
                    module: o.module.clone(),
                    name: o.name.clone(),
                    args: self.seq(&o.args, depth)?,
                    kwargs: self.pairs(&o.kwargs, depth)?,
                    state,
                    items: self.seq(&o.items, depth)?,
                    dict_items: self.pairs(&o.dict_items, depth)?,
                }))
            }
        })
    }
}
