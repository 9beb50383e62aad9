//! A pickle *interpreter* that never executes anything: it reads the opcode stream of
//! `pickle.load` (protocols 0–5) into plain data.
//!
//! Design (mirrors the shape of CPython `Lib/pickle.py: _Unpickler`, without its `find_class`):
//! * Objects live in a heap and the stack holds cheap handles, so the memo has Python's reference
//!   semantics (an `OrderedDict` memoized empty and filled later is seen filled through BINGET)
//!   and a BINGET costs O(1) whatever the object size.
//! * GLOBAL/STACK_GLOBAL only record `module.name`. A call (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ)
//!   is interpreted for the few callables a checkpoint needs (torch tensor and parameter rebuilds,
//!   `collections.OrderedDict`, sets, `_codecs.encode`, `torch.Size`, `copyreg._reconstructor`);
//!   every other callable yields an inert [`Opaque`] record of the call, which later BUILD,
//!   SETITEM(S), APPEND(S) fill with data. There is no code path that imports or calls anything,
//!   so the reader is safe by construction. Well-known code-execution callables (`os.system`,
//!   `builtins.eval`, `subprocess.Popen`, ...) are additionally refused at GLOBAL time with
//!   [`PickleError::ForbiddenCallable`], because no checkpoint has a reason to name them and the
//!   user should learn that the file is hostile.
//! * Limits are checked before allocating: string and bytes lengths against the remaining input,
//!   stack, mark and memo sizes, declared storage sizes and tensor extents against the file size,
//!   nesting depth, and the size of the final value tree (a memo bomb of shared references is
//!   an error, not an OOM).

use super::error::PickleError;
use super::tensor::{StorageInfo, TensorInfo};
use super::value::{Dict, Opaque, Value};
use crate::dtype::DType;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

/// Explicit resource limits of one unpickling.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest number of memo entries.
    pub max_memo: usize,
    /// Largest stack (values plus marks).
    pub max_stack: usize,
    /// Deepest nesting of containers in the result.
    pub max_depth: usize,
    /// Most values the result tree may expand to (shared references count every time).
    pub max_nodes: usize,
    /// Most string/bytes bytes the result tree may expand to.
    pub max_expanded_bytes: usize,
    /// No storage or tensor may need more bytes than this (the file size).
    pub max_storage_bytes: u64,
}

impl Limits {
    /// Limits for a pickle of `pickle_len` bytes inside a file of `file_len` bytes.
    pub fn for_input(pickle_len: usize, file_len: u64) -> Limits {
        Limits {
            max_memo: 1 << 22,
            max_stack: 1 << 22,
            max_depth: 200,
            max_nodes: 1_000_000usize.saturating_add(pickle_len),
            max_expanded_bytes: (64usize << 20).saturating_add(pickle_len.saturating_mul(2)),
            max_storage_bytes: file_len,
        }
    }
}

/// How BINPERSID ids are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidMode {
    /// Persistent ids are not allowed (plain pickles such as the legacy header).
    Forbidden,
    /// `('storage', cls, key, location, numel)` (torch zip format).
    Zip,
    /// `('storage', cls, key, location, numel, view_metadata)` (legacy format).
    Legacy,
}

/// The outcome of one `pickle.load`.
#[derive(Debug)]
pub struct Unpickled {
    pub value: Value,
    /// Offset just after STOP.
    pub end: usize,
    /// Every storage named by a persistent id, by key, in order of first appearance.
    pub storages: Vec<StorageInfo>,
    /// `module.name` of every global that is not interpreted (kept as opaque data).
    pub opaque_globals: BTreeSet<String>,
    /// `module.name` of every global named by GLOBAL/STACK_GLOBAL/INST.
    pub globals: BTreeSet<String>,
}

/// An error and the byte offset of the opcode that caused it.
pub type Located = (u64, PickleError);

/// Unpickles one pickle starting at `start` of `data`.
pub fn unpickle(
    data: &[u8],
    start: usize,
    mode: PidMode,
    limits: &Limits,
) -> Result<Unpickled, Located> {
    let mut vm = Vm {
        data,
        pos: start,
        op_pos: start,
        mode,
        limits,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Memo::default(),
        heap: Vec::new(),
        storages: Vec::new(),
        storage_index: HashMap::new(),
        opaque_globals: BTreeSet::new(),
        globals: BTreeSet::new(),
    };
    let root = vm.run().map_err(|e| (vm.op_pos as u64, e))?;
    let end = vm.pos;
    let mut conv = Converter {
        heap: &vm.heap,
        on_path: vec![false; vm.heap.len()],
        nodes: 0,
        bytes: 0,
        limits,
    };
    let value = conv.value(&root, 0).map_err(|e| (end as u64, e))?;
    Ok(Unpickled {
        value,
        end,
        storages: vm.storages,
        opaque_globals: vm.opaque_globals,
        globals: vm.globals,
    })
}

/// A stack/memo handle: scalars inline, everything else an index into the heap.
#[derive(Debug, Clone)]
enum V {
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
enum Obj {
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
struct HDict {
    items: Vec<(V, V)>,
    /// Position of hashable keys, so that a repeated key replaces its value as in Python.
    index: HashMap<HKey, usize>,
    ordered: bool,
    attributes: Option<V>,
}

#[derive(Debug, Default)]
struct HOpaque {
    module: String,
    name: String,
    args: Vec<V>,
    kwargs: Vec<(V, V)>,
    state: Option<V>,
    items: Vec<V>,
    dict_items: Vec<(V, V)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HKey {
    None,
    Int(i64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
}

impl HKey {
    fn of(v: &V) -> Option<HKey> {
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
struct Memo {
    dense: Vec<Option<V>>,
    sparse: HashMap<u64, V>,
    count: usize,
}

impl Memo {
    fn len(&self) -> usize {
        self.count
    }

    fn get(&self, key: u64) -> Option<&V> {
        match usize::try_from(key).ok().and_then(|k| self.dense.get(k)) {
            Some(slot) => slot.as_ref(),
            None => self.sparse.get(&key),
        }
    }

    fn put(&mut self, key: u64, v: V) {
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

/// What kind of call built an object (only for messages).
#[derive(Clone, Copy)]
enum Call {
    Reduce,
    NewObj,
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    mode: PidMode,
    limits: &'a Limits,
    stack: Vec<V>,
    marks: Vec<usize>,
    memo: Memo,
    heap: Vec<Obj>,
    storages: Vec<StorageInfo>,
    storage_index: HashMap<String, usize>,
    opaque_globals: BTreeSet<String>,
    globals: BTreeSet<String>,
}

fn malformed(what: &'static str, detail: impl Into<String>) -> PickleError {
    PickleError::Malformed {
        what,
        detail: detail.into(),
    }
}

fn unsupported(name: &'static str, why: &'static str) -> PickleError {
    PickleError::UnsupportedOpcode { name, why }
}

impl<'a> Vm<'a> {
    // ----- input -----

    fn take(&mut self, n: u64) -> Result<&'a [u8], PickleError> {
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

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A `\n`-terminated line (text opcodes), without the newline.
    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated { needed: 1 })?;
        let s = &rest[..n];
        self.pos += n + 1;
        Ok(s)
    }

    fn line_str(&mut self) -> Result<String, PickleError> {
        let l = self.line()?;
        Ok(String::from_utf8_lossy(l).into_owned())
    }

    // ----- stack, heap, memo -----

    fn push(&mut self, v: V) -> Result<(), PickleError> {
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

    fn new_obj(&mut self, o: Obj) -> V {
        self.heap.push(o);
        V::Obj(self.heap.len() - 1)
    }

    fn push_obj(&mut self, o: Obj) -> Result<(), PickleError> {
        let v = self.new_obj(o);
        self.push(v)
    }

    fn pop(&mut self, op: &'static str) -> Result<V, PickleError> {
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

    fn top(&self, op: &'static str) -> Result<V, PickleError> {
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

    fn pop_mark(&mut self, op: &'static str) -> Result<Vec<V>, PickleError> {
        let m = self.marks.pop().ok_or(PickleError::MissingMark { op })?;
        if m > self.stack.len() {
            return Err(PickleError::MissingMark { op });
        }
        Ok(self.stack.split_off(m))
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
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

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(key)
            .cloned()
            .ok_or(PickleError::MissingMemo(key))?;
        self.push(v)
    }

    fn global_of(&self, v: &V) -> Option<(Rc<str>, Rc<str>)> {
        match v {
            V::Obj(i) => match self.heap.get(*i) {
                Some(Obj::Global(m, n)) => Some((m.clone(), n.clone())),
                _ => None,
            },
            _ => None,
        }
    }

    fn seq(&self, v: &V) -> Option<&[V]> {
        match v {
            V::Obj(i) => match self.heap.get(*i) {
                Some(Obj::Tuple(t)) | Some(Obj::List(t)) | Some(Obj::Set(t)) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }

    // ----- the main loop -----

    fn run(&mut self) -> Result<V, PickleError> {
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

    // ----- mutation of containers -----

    fn append(&mut self, target: &V, xs: Vec<V>, op: &'static str) -> Result<(), PickleError> {
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

    fn set_items(&mut self, target: &V, kv: Vec<V>, op: &'static str) -> Result<(), PickleError> {
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
    fn build(&mut self, target: &V, state: V) {
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

    // ----- calls -----

    fn call(&mut self, func: &V, args: Vec<V>, kind: Call, depth: usize) -> Result<V, PickleError> {
        let Some((module, name)) = self.global_of(func) else {
            let what = match kind {
                Call::Reduce => "REDUCE",
                Call::NewObj => "NEWOBJ",
            };
            return Err(malformed(
                what,
                "the callable is not a global (class or function name)",
            ));
        };
        if depth > 8 {
            return Err(PickleError::Limit {
                what: "nested tensor rebuild calls",
                value: depth as u64,
                limit: 8,
            });
        }
        let m: &str = &module;
        let n: &str = &name;
        match (m, n) {
            ("collections", "OrderedDict") | ("builtins" | "__builtin__", "dict") => {
                let v = self.new_obj(Obj::Dict(HDict {
                    ordered: n == "OrderedDict",
                    ..HDict::default()
                }));
                if let Some(init) = args.first() {
                    let pairs: Vec<V> = self.seq(init).map(<[V]>::to_vec).unwrap_or_default();
                    let mut kv = Vec::new();
                    for p in pairs {
                        if let Some([k, val]) = self.seq(&p).map(<[V]>::to_vec).as_deref() {
                            kv.push(k.clone());
                            kv.push(val.clone());
                        }
                    }
                    self.set_items(&v, kv, "REDUCE")?;
                }
                Ok(v)
            }
            ("builtins" | "__builtin__", "set" | "frozenset") => {
                let items = args
                    .first()
                    .and_then(|a| self.seq(a))
                    .map(<[V]>::to_vec)
                    .unwrap_or_default();
                Ok(self.new_obj(Obj::Set(items)))
            }
            ("builtins" | "__builtin__", "list") => {
                let items = args
                    .first()
                    .and_then(|a| self.seq(a))
                    .map(<[V]>::to_vec)
                    .unwrap_or_default();
                Ok(self.new_obj(Obj::List(items)))
            }
            ("builtins" | "__builtin__", "tuple") | ("torch", "Size") => {
                let items = args
                    .first()
                    .and_then(|a| self.seq(a))
                    .map(<[V]>::to_vec)
                    .unwrap_or_default();
                Ok(self.new_obj(Obj::Tuple(items)))
            }
            ("_codecs", "encode") => codecs_encode(&args),
            ("builtins" | "__builtin__", "getattr") => {
                // Protocol 2 pickles a method as getattr(cls, 'name') (mmengine's HistoryBuffer
                // keeps `_statistics_methods = {'min': HistoryBuffer.min, ...}`). We only record
                // the qualified name; nothing is looked up.
                match (args.first().and_then(|c| self.global_of(c)), args.get(1)) {
                    (Some((cm, cn)), Some(V::Str(attr))) if args.len() == 2 => Ok(
                        self.new_obj(Obj::Global(cm, Rc::from(format!("{cn}.{attr}").as_str())))
                    ),
                    _ => Ok(self.opaque(m, n, args)),
                }
            }
            ("builtins" | "__builtin__", "bytearray" | "bytes") => match args.first() {
                Some(V::Bytes(b)) => Ok(V::Bytes(b.clone())),
                None => Ok(V::Bytes(Rc::from(&[][..]))),
                Some(_) => codecs_encode(&args),
            },
            ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2" | "_rebuild_tensor_v3") => {
                let t = self.rebuild_tensor(n, &args)?;
                Ok(self.new_obj(Obj::Tensor(t)))
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                let data = args
                    .first()
                    .cloned()
                    .ok_or_else(|| malformed("_rebuild_parameter", "no arguments"))?;
                Ok(data)
            }
            ("torch._tensor", "_rebuild_from_type_v2") => {
                // (func, new_type, args, state): the tensor is func(*args); the subclass is dropped.
                let inner = args
                    .first()
                    .cloned()
                    .ok_or_else(|| malformed("_rebuild_from_type_v2", "no arguments"))?;
                let inner_args = args
                    .get(2)
                    .and_then(|a| self.seq(a))
                    .map(<[V]>::to_vec)
                    .ok_or_else(|| {
                        malformed("_rebuild_from_type_v2", "arguments are not a tuple")
                    })?;
                self.call(&inner, inner_args, Call::Reduce, depth + 1)
            }
            ("copyreg" | "copy_reg", "_reconstructor") => {
                // (cls, base, state): protocol 0/1 form of `cls.__new__`; keep cls's name.
                let (cm, cn) = args
                    .first()
                    .and_then(|c| self.global_of(c))
                    .ok_or_else(|| {
                        malformed("copyreg._reconstructor", "first argument is not a class")
                    })?;
                let rest: Vec<V> = args
                    .get(2)
                    .filter(|s| !matches!(s, V::None))
                    .cloned()
                    .into_iter()
                    .collect();
                Ok(self.opaque(&cm, &cn, rest))
            }
            ("copyreg" | "copy_reg", "__newobj__") => {
                let mut it = args.into_iter();
                let cls = it
                    .next()
                    .ok_or_else(|| malformed("copyreg.__newobj__", "no class"))?;
                self.call(&cls, it.collect(), Call::NewObj, depth + 1)
            }
            _ => Ok(self.opaque(m, n, args)),
        }
    }

    fn opaque(&mut self, module: &str, name: &str, args: Vec<V>) -> V {
        self.new_obj(Obj::Opaque(HOpaque {
            module: module.to_string(),
            name: name.to_string(),
            args,
            ..HOpaque::default()
        }))
    }

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
    fn rebuild_tensor(&self, func: &str, args: &[V]) -> Result<TensorInfo, PickleError> {
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
    fn persistent_load(&mut self, pid: &V) -> Result<V, PickleError> {
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

/// Globals the interpreter gives meaning to (everything else is recorded as opaque).
fn is_interpreted(module: &str, name: &str) -> bool {
    match module {
        "collections" => name == "OrderedDict",
        "torch._utils" => matches!(
            name,
            "_rebuild_tensor"
                | "_rebuild_tensor_v2"
                | "_rebuild_tensor_v3"
                | "_rebuild_parameter"
                | "_rebuild_parameter_with_state"
        ),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch" => {
            name == "Size"
                || name == "Tensor"
                || name == "UntypedStorage"
                || DType::from_storage_class(name).is_some()
                || DType::parse(name).is_some()
        }
        "torch.cuda" => DType::from_storage_class(name).is_some(),
        "torch.nn.parameter" => name == "Parameter",
        "_codecs" => name == "encode",
        "builtins" | "__builtin__" => matches!(
            name,
            "set" | "frozenset" | "dict" | "list" | "tuple" | "bytearray" | "bytes" | "getattr"
        ),
        "copyreg" | "copy_reg" => matches!(name, "_reconstructor" | "__newobj__"),
        _ => false,
    }
}

/// Callables whose only use in a pickle is running code. Refused by name (see the module doc).
pub fn is_forbidden(module: &str, name: &str) -> bool {
    let top = module.split('.').next().unwrap_or(module);
    match top {
        "os" | "posix" | "nt" | "subprocess" | "pty" | "commands" | "runpy" | "shutil"
        | "socket" | "webbrowser" | "importlib" | "ctypes" | "code" | "codeop" | "pdb" | "sys"
        | "multiprocessing" | "asyncio" | "pickle" | "_pickle" | "marshal" | "platform"
        | "signal" | "tempfile" => true,
        "builtins" | "__builtin__" => matches!(
            name,
            "eval"
                | "exec"
                | "execfile"
                | "compile"
                | "open"
                | "__import__"
                | "setattr"
                | "delattr"
                | "globals"
                | "locals"
                | "vars"
                | "input"
                | "breakpoint"
                | "apply"
                | "file"
                | "reload"
                | "exit"
                | "quit"
        ),
        "operator" => matches!(name, "attrgetter" | "methodcaller"),
        "functools" => name == "partial",
        "torch" => matches!(name, "load" | "save"),
        _ => false,
    }
}

/// `_codecs.encode(text, encoding)`: how protocol 2 stores `bytes` (pickle.py `save_bytes`).
fn codecs_encode(args: &[V]) -> Result<V, PickleError> {
    let text = match args.first() {
        Some(V::Str(s)) => s.clone(),
        Some(V::Bytes(b)) => return Ok(V::Bytes(b.clone())),
        other => {
            return Err(malformed(
                "_codecs.encode",
                format!("argument {other:?} is not a string"),
            ))
        }
    };
    let encoding = match args.get(1) {
        Some(V::Str(e)) => e.to_ascii_lowercase().replace('_', "-"),
        _ => "utf-8".to_string(),
    };
    let bytes: Vec<u8> = match encoding.as_str() {
        "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" => {
            let mut out = Vec::with_capacity(text.len());
            for c in text.chars() {
                let c = u32::from(c);
                if c > 255 {
                    return Err(malformed(
                        "_codecs.encode",
                        "latin-1 text with a character above U+00FF",
                    ));
                }
                out.push(c as u8);
            }
            out
        }
        _ => text.as_bytes().to_vec(),
    };
    Ok(V::Bytes(Rc::from(bytes)))
}

/// LONG1/LONG4 payload (little-endian two's complement) to an int or big int.
fn long_from_le(b: &[u8]) -> V {
    if b.is_empty() {
        return V::Int(0);
    }
    if b.len() <= 8 {
        let neg = b.last().is_some_and(|x| x & 0x80 != 0);
        let mut a = if neg { [0xffu8; 8] } else { [0u8; 8] };
        a[..b.len()].copy_from_slice(b);
        return V::Int(i64::from_le_bytes(a));
    }
    // Longer encodings may still fit when the extra bytes are sign extension.
    let neg = b.last().is_some_and(|x| x & 0x80 != 0);
    let fill = if neg { 0xff } else { 0x00 };
    let fits = b[8..].iter().all(|&x| x == fill) && ((b[7] & 0x80 != 0) == neg);
    if fits {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        return V::Int(i64::from_le_bytes(a));
    }
    V::Big(Rc::from(b))
}

/// Python 2 `str` payloads: text when it is UTF-8, else raw bytes (torch loads with
/// `encoding='utf-8'` for text; numpy data in old pickles is binary).
fn bytes_or_str(b: Vec<u8>) -> V {
    match String::from_utf8(b) {
        Ok(s) => V::Str(Rc::from(s.as_str())),
        Err(e) => V::Bytes(Rc::from(e.into_bytes())),
    }
}

/// The quoted repr of protocol 0 STRING (`'abc'`, `"a\nb"`), unescaped.
fn python_string_literal(l: &[u8]) -> Option<Vec<u8>> {
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let q = *l.first()?;
    if (q != b'\'' && q != b'"') || l.len() < 2 || *l.last()? != q {
        return None;
    }
    let body = &l[1..l.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'0' => out.push(0),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'x' => {
                let h = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Protocol 0 UNICODE payload: latin-1 with `\uXXXX` / `\UXXXXXXXX` escapes.
fn raw_unicode_escape(l: &[u8]) -> String {
    let mut out = String::with_capacity(l.len());
    let mut i = 0;
    while i < l.len() {
        let c = l[i];
        if c == b'\\' {
            let width = match l.get(i + 1) {
                Some(b'u') => 4,
                Some(b'U') => 8,
                _ => 0,
            };
            if width > 0 {
                if let Some(ch) = l
                    .get(i + 2..i + 2 + width)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32)
                {
                    out.push(ch);
                    i += 2 + width;
                    continue;
                }
            }
        }
        out.push(char::from(c));
        i += 1;
    }
    out
}

/// Turns heap handles into an owned [`Value`] tree, within the depth and expansion limits.
struct Converter<'h> {
    heap: &'h [Obj],
    on_path: Vec<bool>,
    nodes: usize,
    bytes: usize,
    limits: &'h Limits,
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

    fn seq(&mut self, v: &[V], depth: usize) -> Result<Vec<Value>, PickleError> {
        v.iter().map(|x| self.value(x, depth + 1)).collect()
    }

    fn pairs(&mut self, v: &[(V, V)], depth: usize) -> Result<Vec<(Value, Value)>, PickleError> {
        v.iter()
            .map(|(k, x)| Ok((self.value(k, depth + 1)?, self.value(x, depth + 1)?)))
            .collect()
    }

    fn value(&mut self, v: &V, depth: usize) -> Result<Value, PickleError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &[u8]) -> Result<Unpickled, Located> {
        unpickle(p, 0, PidMode::Zip, &Limits::for_input(p.len(), 1 << 20))
    }

    #[test]
    fn memo_keeps_reference_semantics() {
        // d = {}; l = [d, d]; d['a'] = 1 — pickled as: ] q0 ( } q1 h1 e ... built by hand:
        // EMPTY_DICT BINPUT0 EMPTY_LIST MARK BINGET0 BINGET0 APPENDS POP? Simpler:
        // PROTO2 } q0 ] ( h0 h0 e  (list [d, d]) then h0 'a' 1 s (fill d) 0 (pop d) .
        let p = b"\x80\x02}q\x00](h\x00h\x00eh\x00X\x01\x00\x00\x00aK\x01s0.";
        let v = run(p).unwrap().value;
        let Value::List(items) = v else {
            panic!("{v:?}")
        };
        assert_eq!(items.len(), 2);
        for d in items {
            assert_eq!(d.get("a"), Some(&Value::Int(1)));
        }
    }

    #[test]
    fn memo_bomb_is_a_limit_error() {
        // l0 = [ 'x'*1000 ]; each next list holds the previous twice; 40 levels → 2^40 strings.
        let mut p = b"\x80\x02]q\x00X\xe8\x03\x00\x00".to_vec();
        p.extend(std::iter::repeat_n(b'x', 1000));
        p.extend(b"a");
        for i in 0..40u8 {
            p.extend([b'(', b'h', i, b'h', i, b'l', b'q', i + 1]);
        }
        p.push(b'.');
        let (_, e) = run(&p).unwrap_err();
        assert!(matches!(e, PickleError::Limit { .. }), "{e}");
    }

    #[test]
    fn forbidden_callable_is_refused_by_name() {
        let p = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        let (pos, e) = run(p).unwrap_err();
        assert_eq!(pos, 2);
        assert_eq!(
            e,
            PickleError::ForbiddenCallable {
                module: "os".into(),
                name: "system".into()
            }
        );
    }

    #[test]
    fn unknown_global_reduce_is_inert_opaque() {
        let p = b"\x80\x02cmypkg.mod\nThing\nK\x05\x85R}X\x01\x00\x00\x00kK\x07sb.";
        let u = run(p).unwrap();
        let Value::Opaque(o) = u.value else { panic!() };
        assert_eq!(o.class(), "mypkg.mod.Thing");
        assert_eq!(o.args, vec![Value::Int(5)]);
        assert_eq!(
            o.state.as_ref().and_then(|s| s.get("k")),
            Some(&Value::Int(7))
        );
        assert!(u.opaque_globals.contains("mypkg.mod.Thing"));
    }

    #[test]
    fn ext_opcode_is_named() {
        let (pos, e) = run(b"\x80\x02\x82\x01.").unwrap_err();
        assert_eq!(pos, 2);
        assert!(matches!(
            e,
            PickleError::UnsupportedOpcode { name: "EXT1", .. }
        ));
    }
}
