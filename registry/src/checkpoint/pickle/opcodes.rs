//! The main loop: one match arm per pickle opcode (CPython `Lib/pickle.py: _Unpickler.dispatch`).

use std::rc::Rc;

use super::calls::{is_forbidden, is_interpreted, Call};
use super::decode::{bytes_or_str, long_from_le, python_string_literal, raw_unicode_escape};
use super::heap::{HDict, Obj, V};
use super::vm::{malformed, unsupported, Vm};
use crate::checkpoint::error::PickleError;

impl Vm<'_> {
    pub(super) fn run(&mut self) -> Result<V, PickleError> {
        loop {
            self.op_pos = self.pos;
            let op = match self.take(1) {
                Ok(b) => b[0],
                Err(_) => return Err(PickleError::NoStop),
            };
            match op {
                0x80 => {
                    // PROTO
                    let p = self.byte()?;
                    if p > 5 {
                        return Err(malformed("PROTO", format!("protocol {p} is newer than 5")));
                    }
                }
                0x95 => {
                    // FRAME: framing is only a read-ahead hint
                    self.u64()?;
                }
                b'.' => {
                    // STOP
                    return self.pop("STOP");
                }
                b'(' => {
                    if self.stack.len() + self.marks.len() >= self.limits.max_stack {
                        return Err(PickleError::Limit {
                            what: "pickle stack size",
                            value: (self.stack.len() + self.marks.len() + 1) as u64,
                            limit: self.limits.max_stack as u64,
                        });
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    // POP: a MARK right on top is popped instead (pickle.py load_pop)
                    let floor = self.marks.last().copied();
                    if floor == Some(self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop("POP")?;
                    }
                }
                b'1' => {
                    self.pop_mark("POP_MARK")?;
                }
                b'2' => {
                    let v = self.top("DUP")?;
                    self.push(v)?;
                }
                // ----- numbers -----
                b'I' => {
                    let l = self.line_str()?;
                    let v = match l.as_str() {
                        "00" => V::Bool(false),
                        "01" => V::Bool(true),
                        s => V::Int(s.trim().parse().map_err(|_| malformed("INT", s.to_string()))?),
                    };
                    self.push(v)?;
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(V::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push(V::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(V::Int(i64::from(v)))?;
                }
                b'L' => {
                    let l = self.line_str()?;
                    let s = l.trim_end_matches('L');
                    let v = s.trim().parse::<i64>().map_err(|_| malformed("LONG", l.clone()))?;
                    self.push(V::Int(v))?;
                }
                0x8a => {
                    let n = self.byte()?;
                    let b = self.take(u64::from(n))?;
                    let v = long_from_le(b);
                    self.push(v)?;
                }
                0x8b => {
                    let n = self.u32()? as i32;
                    if n < 0 {
                        return Err(malformed("LONG4", format!("negative length {n}")));
                    }
                    let b = self.take(n as u64)?;
                    let v = long_from_le(b);
                    self.push(v)?;
                }
                b'F' => {
                    let l = self.line_str()?;
                    let v: f64 = l.trim().parse().map_err(|_| malformed("FLOAT", l.clone()))?;
                    self.push(V::Float(v))?;
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(V::Float(f64::from_be_bytes(a)))?;
                }
                // ----- strings and bytes -----
                b'S' => {
                    let l = self.line()?;
                    let v = python_string_literal(l).ok_or_else(|| {
                        malformed("STRING", String::from_utf8_lossy(l).into_owned())
                    })?;
                    self.push(bytes_or_str(v))?;
                }
                b'T' => {
                    let n = self.u32()? as i32;
                    if n < 0 {
                        return Err(malformed("BINSTRING", format!("negative length {n}")));
                    }
                    let b = self.take(n as u64)?;
                    self.push(bytes_or_str(b.to_vec()))?;
                }
                b'U' => {
                    let n = self.byte()?;
                    let b = self.take(u64::from(n))?;
                    self.push(bytes_or_str(b.to_vec()))?;
                }
                b'B' => {
                    let n = self.u32()?;
                    let b = self.take(u64::from(n))?;
                    self.push(V::Bytes(Rc::from(b)))?;
                }
                b'C' => {
                    let n = self.byte()?;
                    let b = self.take(u64::from(n))?;
                    self.push(V::Bytes(Rc::from(b)))?;
                }
                0x8e | 0x96 => {
                    // BINBYTES8, BYTEARRAY8
                    let n = self.u64()?;
                    let b = self.take(n)?;
                    self.push(V::Bytes(Rc::from(b)))?;
                }
                b'V' => {
                    let l = self.line()?;
                    let s = raw_unicode_escape(l);
                    self.push(V::Str(Rc::from(s.as_str())))?;
                }
                b'X' => {
                    let n = self.u32()?;
                    let b = self.take(u64::from(n))?;
                    self.push(V::Str(Rc::from(String::from_utf8_lossy(b).as_ref())))?;
                }
                0x8c => {
                    let n = self.byte()?;
                    let b = self.take(u64::from(n))?;
                    self.push(V::Str(Rc::from(String::from_utf8_lossy(b).as_ref())))?;
                }
                0x8d => {
                    let n = self.u64()?;
                    let b = self.take(n)?;
                    self.push(V::Str(Rc::from(String::from_utf8_lossy(b).as_ref())))?;
                }
                // ----- constants -----
                b'N' => self.push(V::None)?,
                0x88 => self.push(V::Bool(true))?,
                0x89 => self.push(V::Bool(false))?,
                // ----- containers -----
                b'}' => self.push_obj(Obj::Dict(HDict::default()))?,
                b']' => self.push_obj(Obj::List(Vec::new()))?,
                b')' => self.push_obj(Obj::Tuple(Vec::new()))?,
                0x8f => self.push_obj(Obj::Set(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark("TUPLE")?;
                    self.push_obj(Obj::Tuple(items))?;
                }
                0x85 => {
                    let a = self.pop("TUPLE1")?;
                    self.push_obj(Obj::Tuple(vec![a]))?;
                }
                0x86 => {
                    let b = self.pop("TUPLE2")?;
                    let a = self.pop("TUPLE2")?;
                    self.push_obj(Obj::Tuple(vec![a, b]))?;
                }
                0x87 => {
                    let c = self.pop("TUPLE3")?;
                    let b = self.pop("TUPLE3")?;
                    let a = self.pop("TUPLE3")?;
                    self.push_obj(Obj::Tuple(vec![a, b, c]))?;
                }
                b'l' => {
                    let items = self.pop_mark("LIST")?;
                    self.push_obj(Obj::List(items))?;
                }
                0x91 => {
                    let items = self.pop_mark("FROZENSET")?;
                    self.push_obj(Obj::Set(items))?;
                }
                b'd' => {
                    let items = self.pop_mark("DICT")?;
                    let v = self.new_obj(Obj::Dict(HDict::default()));
                    self.set_items(&v, items, "DICT")?;
                    self.push(v)?;
                }
                b'a' => {
                    let x = self.pop("APPEND")?;
                    let target = self.top("APPEND")?;
                    self.append(&target, vec![x], "APPEND")?;
                }
                b'e' => {
                    let xs = self.pop_mark("APPENDS")?;
                    let target = self.top("APPENDS")?;
                    self.append(&target, xs, "APPENDS")?;
                }
                0x90 => {
                    let xs = self.pop_mark("ADDITEMS")?;
                    let target = self.top("ADDITEMS")?;
                    self.append(&target, xs, "ADDITEMS")?;
                }
                b's' => {
                    let v = self.pop("SETITEM")?;
                    let k = self.pop("SETITEM")?;
                    let target = self.top("SETITEM")?;
                    self.set_items(&target, vec![k, v], "SETITEM")?;
                }
                b'u' => {
                    let kv = self.pop_mark("SETITEMS")?;
                    let target = self.top("SETITEMS")?;
                    self.set_items(&target, kv, "SETITEMS")?;
                }
                // ----- globals and calls -----
                b'c' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop("STACK_GLOBAL")?;
                    let module = self.pop("STACK_GLOBAL")?;
                    match (module, name) {
                        (V::Str(m), V::Str(n)) => self.global(m.to_string(), n.to_string())?,
                        _ => return Err(malformed("STACK_GLOBAL", "module and name must be strings")),
                    }
                }
                b'R' => {
                    let args = self.pop("REDUCE")?;
                    let func = self.pop("REDUCE")?;
                    let args = self.seq(&args).map(<[V]>::to_vec).ok_or_else(|| {
                        malformed("REDUCE", "the argument is not a tuple")
                    })?;
                    let v = self.call(&func, args, Call::Reduce, 0)?;
                    self.push(v)?;
                }
                0x81 => {
                    let args = self.pop("NEWOBJ")?;
                    let cls = self.pop("NEWOBJ")?;
                    let args = self.seq(&args).map(<[V]>::to_vec).ok_or_else(|| {
                        malformed("NEWOBJ", "the argument is not a tuple")
                    })?;
                    let v = self.call(&cls, args, Call::NewObj, 0)?;
                    self.push(v)?;
                }
                0x92 => {
                    let kwargs = self.pop("NEWOBJ_EX")?;
                    let args = self.pop("NEWOBJ_EX")?;
                    let cls = self.pop("NEWOBJ_EX")?;
                    let args = self.seq(&args).map(<[V]>::to_vec).ok_or_else(|| {
                        malformed("NEWOBJ_EX", "the argument is not a tuple")
                    })?;
                    let v = self.call(&cls, args, Call::NewObj, 0)?;
                    if let (V::Obj(i), V::Obj(k)) = (&v, &kwargs) {
                        let kw = match self.heap.get(*k) {
                            Some(Obj::Dict(d)) => d.items.clone(),
                            _ => Vec::new(),
                        };
                        if let Some(Obj::Opaque(o)) = self.heap.get_mut(*i) {
                            o.kwargs = kw;
                        }
                    }
                    self.push(v)?;
                }
                b'i' => {
                    // INST: module\nname\n, arguments since MARK
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let args = self.pop_mark("INST")?;
                    self.global(module, name)?;
                    let cls = self.pop("INST")?;
                    let v = self.call(&cls, args, Call::NewObj, 0)?;
                    self.push(v)?;
                }
                b'o' => {
                    // OBJ: MARK cls args... OBJ
                    let mut items = self.pop_mark("OBJ")?;
                    if items.is_empty() {
                        return Err(PickleError::StackUnderflow { op: "OBJ", needed: 1, found: 0 });
                    }
                    let cls = items.remove(0);
                    let v = self.call(&cls, items, Call::NewObj, 0)?;
                    self.push(v)?;
                }
                b'b' => {
                    let state = self.pop("BUILD")?;
                    let target = self.top("BUILD")?;
                    self.build(&target, state);
                }
                // ----- persistent ids -----
                b'Q' => {
                    let pid = self.pop("BINPERSID")?;
                    let v = self.persistent_load(&pid)?;
                    self.push(v)?;
                }
                b'P' => {
                    let l = self.line_str()?;
                    let pid = V::Str(Rc::from(l.as_str()));
                    let v = self.persistent_load(&pid)?;
                    self.push(v)?;
                }
                // ----- memo -----
                b'p' => {
                    let l = self.line_str()?;
                    let k: u64 = l.trim().parse().map_err(|_| malformed("PUT", l.clone()))?;
                    self.memo_put(k)?;
                }
                b'q' => {
                    let k = self.byte()?;
                    self.memo_put(u64::from(k))?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(u64::from(k))?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'g' => {
                    let l = self.line_str()?;
                    let k: u64 = l.trim().parse().map_err(|_| malformed("GET", l.clone()))?;
                    self.memo_get(k)?;
                }
                b'h' => {
                    let k = self.byte()?;
                    self.memo_get(u64::from(k))?;
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(u64::from(k))?;
                }
                // ----- refused -----
                0x82 => return Err(unsupported("EXT1", "extension registry codes name callables by number (copyreg); no checkpoint uses them")),
                0x83 => return Err(unsupported("EXT2", "extension registry codes name callables by number (copyreg); no checkpoint uses them")),
                0x84 => return Err(unsupported("EXT4", "extension registry codes name callables by number (copyreg); no checkpoint uses them")),
                0x97 => return Err(unsupported("NEXT_BUFFER", "out-of-band buffers (protocol 5) are not part of a file")),
                0x98 => {
                    // READONLY_BUFFER: no-op on our values
                }
                other => return Err(PickleError::UnknownOpcode { byte: other }),
            }
        }
    }

    fn global(&mut self, module: String, name: String) -> Result<(), PickleError> {
        if is_forbidden(&module, &name) {
            return Err(PickleError::ForbiddenCallable { module, name });
        }
        self.globals.insert(format!("{module}.{name}"));
        if !is_interpreted(&module, &name) {
            self.opaque_globals.insert(format!("{module}.{name}"));
        }
        let v = self.new_obj(Obj::Global(
            Rc::from(module.as_str()),
            Rc::from(name.as_str()),
        ));
        self.push(v)
    }
}
