//! The data a pickle describes, as plain Rust values: what the safe unpickler produces instead of
//! Python objects. Nothing here can run code; an object of a class we do not know is kept as
//! [`Opaque`] data (class name, constructor arguments, state, items).
//!
//! [`Value::to_json`] gives the JSON-like view used for `meta` and `mmcompat inspect --json`.

use super::tensor::{StorageInfo, TensorInfo};
use serde_json::{json, Map, Number};

/// One unpickled value. Containers keep Python's order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in i64, as little-endian two's complement bytes (pickle LONG1/LONG4).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// `set` / `frozenset` (Python gives no order; we keep the file's).
    Set(Vec<Value>),
    Dict(Box<Dict>),
    Tensor(Box<TensorInfo>),
    Storage(Box<StorageInfo>),
    /// A class or function referenced by name but not called.
    Global {
        module: String,
        name: String,
    },
    /// An object of a class the reader does not interpret (inert data only).
    Opaque(Box<Opaque>),
    /// A reference back to a container that encloses it (a cyclic pickle); cut here.
    Recursion,
}

/// A `dict` or `collections.OrderedDict`. Keys may be any value (ints occur in optimizer state).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dict {
    pub items: Vec<(Value, Value)>,
    /// True for `collections.OrderedDict`.
    pub ordered: bool,
    /// Object attributes set by BUILD, kept apart from the items. A module `state_dict()` carries
    /// `_metadata` (per-module `version`) here, exactly as torch attaches it as an attribute.
    pub attributes: Option<Value>,
}

/// An instance of a class the reader does not honour, e.g.
/// `mmengine.logging.history_buffer.HistoryBuffer`, `numpy.core.multiarray._reconstruct`.
/// It holds what Python would have given the class: constructor `args` (REDUCE/NEWOBJ/INST/OBJ),
/// `kwargs` (NEWOBJ_EX), `state` (BUILD), list `items` (APPEND(S)/ADDITEMS) and `dict_items`
/// (SETITEM(S)).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Opaque {
    pub module: String,
    pub name: String,
    pub args: Vec<Value>,
    pub kwargs: Vec<(Value, Value)>,
    pub state: Option<Value>,
    pub items: Vec<Value>,
    pub dict_items: Vec<(Value, Value)>,
}

impl Opaque {
    /// `module.name`.
    pub fn class(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }

    fn is_numpy(&self, name: &str) -> bool {
        matches!(
            self.module.as_str(),
            "numpy.core.multiarray" | "numpy._core.multiarray" | "numpy"
        ) && self.name == name
    }
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Integer value; a bool counts as 0/1 as in Python; a numpy integer scalar is decoded.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Opaque(o) => match numpy_scalar(o)? {
                Scalar::Int(i) => Some(i),
                Scalar::Bool(b) => Some(i64::from(b)),
                Scalar::Float(_) => None,
            },
            _ => None,
        }
    }

    /// Float value of a float, an int or a simple numpy scalar (`numpy.float64(0.5)` in message_hub).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Opaque(o) => match numpy_scalar(o)? {
                Scalar::Int(i) => Some(i as f64),
                Scalar::Float(f) => Some(f),
                Scalar::Bool(b) => Some(f64::from(u8::from(b))),
            },
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    pub fn as_tensor(&self) -> Option<&TensorInfo> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// Elements of a list, tuple or set.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => Some(v),
            _ => None,
        }
    }

    /// The value under string key `key` of a dict (or of an opaque dict-like object such as
    /// mmengine's `ConfigDict` or `defaultdict`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        let items: &[(Value, Value)] = match self {
            Value::Dict(d) => &d.items,
            Value::Opaque(o) => &o.dict_items,
            _ => return None,
        };
        items
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Every tensor reachable through dicts, lists and tuples (and the dict or list items of
    /// opaque dict/list subclasses such as `defaultdict`), with dotted paths (`str(key)`, list
    /// index), in order. Mirrors the walk of `tests/fixtures/generate/make_checkpoints.py:
    /// tensor_entries`.
    pub fn tensor_leaves(&self) -> Vec<(String, &TensorInfo)> {
        let mut out = Vec::new();
        walk_tensors(self, &mut Vec::new(), &mut out);
        out
    }

    /// The total length of the dotted paths [`Value::tensor_leaves`] would build, computed
    /// without building them (one visit per node; saturating).
    pub fn tensor_path_bytes(&self) -> usize {
        fn walk(v: &Value, prefix: usize, total: &mut usize) {
            // `dotted`: a '.' before every segment but the first.
            let child = |seg: usize| prefix + seg + usize::from(prefix > 0);
            match v {
                Value::Tensor(_) => *total = total.saturating_add(prefix),
                Value::List(xs) | Value::Tuple(xs) => {
                    for (i, x) in xs.iter().enumerate() {
                        walk(x, child(decimal_len(i)), total);
                    }
                }
                Value::Dict(d) => {
                    for (k, x) in &d.items {
                        walk(x, child(k.key_string().len()), total);
                    }
                }
                Value::Opaque(o) => {
                    for (i, x) in o.items.iter().enumerate() {
                        walk(x, child(decimal_len(i)), total);
                    }
                    for (k, x) in &o.dict_items {
                        walk(x, child(k.key_string().len()), total);
                    }
                }
                _ => {}
            }
        }
        let mut total = 0;
        walk(self, 0, &mut total);
        total
    }

    /// A dict key as text: strings as they are, numbers in decimal, anything else in a
    /// Python-like repr. Used for section keys and JSON object keys.
    pub fn key_string(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::BigInt(b) => bigint_to_decimal(b),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::None => "None".into(),
            Value::Float(f) => format!("{f:?}"),
            // A container key (never in a real checkpoint) in the JSON view, unless it is large:
            // its text would be repeated in every path and JSON key below it, and built again
            // for each enclosing key (a 632-byte fuzzing input spent 533 MB and seconds on
            // that, fuzz/regressions/pickle/tensor-path-amplification-533mb).
            other if other.nodes_up_to(MAX_KEY_NODES + 1) <= MAX_KEY_NODES => {
                other.to_json().to_string()
            }
            other => format!("<{} key of over {MAX_KEY_NODES} values>", other.kind_name()),
        }
    }

    /// The number of values in this tree, counting stops at `cap`.
    fn nodes_up_to(&self, cap: usize) -> usize {
        fn walk(v: &Value, n: &mut usize, cap: usize) {
            *n += 1;
            if *n >= cap {
                return;
            }
            let mut each = |x: &Value| {
                if *n < cap {
                    walk(x, n, cap)
                }
            };
            match v {
                Value::List(xs) | Value::Tuple(xs) | Value::Set(xs) => xs.iter().for_each(each),
                Value::Dict(d) => {
                    d.items.iter().for_each(|(k, x)| {
                        each(k);
                        each(x);
                    });
                    if let Some(a) = &d.attributes {
                        each(a);
                    }
                }
                Value::Opaque(o) => {
                    o.args.iter().for_each(&mut each);
                    o.kwargs.iter().for_each(|(k, x)| {
                        each(k);
                        each(x);
                    });
                    o.items.iter().for_each(&mut each);
                    o.dict_items.iter().for_each(|(k, x)| {
                        each(k);
                        each(x);
                    });
                    if let Some(st) = &o.state {
                        each(st);
                    }
                }
                _ => {}
            }
        }
        let mut n = 0;
        walk(self, &mut n, cap);
        n.min(cap)
    }

    /// `list`, `tuple`, ... as Python names the value's type (for messages).
    fn kind_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::Dict(_) => "dict",
            Value::Tensor(_) => "tensor",
            Value::Storage(_) => "storage",
            Value::Global { .. } => "global",
            Value::Opaque(_) => "object",
            Value::Recursion => "recursive",
        }
    }

    /// JSON-like view: tuples and sets become arrays; dicts become objects (non-string keys
    /// written with [`Value::key_string`]); tensors become `{"__tensor__": {"dtype", "shape"}}`;
    /// numpy scalars with a simple dtype become numbers and small numpy arrays
    /// `{"__class__": "numpy.ndarray", "dtype", "shape", "data"}`; any other opaque object becomes
    /// `{"__class__": "module.name", ...}` followed by its state (merged when it is a dict with
    /// string keys, else under `"__state__"`), its dict items (merged), `"__args__"` and
    /// `"__items__"` when not empty. Integers beyond i64 and non-finite floats become strings;
    /// bytes become `{"__bytes__": "<hex>"}` (first 256 bytes, with `"__len__"`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::BigInt(b) => J::String(bigint_to_decimal(b)),
            Value::Float(f) => float_json(*f),
            Value::Str(s) => J::String(s.clone()),
            Value::Bytes(b) => bytes_json(b),
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => {
                J::Array(v.iter().map(Value::to_json).collect())
            }
            Value::Dict(d) => {
                let mut m = Map::new();
                for (k, v) in &d.items {
                    m.insert(k.key_string(), v.to_json());
                }
                J::Object(m)
            }
            Value::Tensor(t) => {
                json!({"__tensor__": {"dtype": t.dtype.torch_name(), "shape": t.shape}})
            }
            Value::Storage(s) => json!({"__storage__": s.key}),
            Value::Global { module, name } => json!({"__global__": format!("{module}.{name}")}),
            Value::Opaque(o) => opaque_json(o),
            Value::Recursion => J::String("<recursion>".into()),
        }
    }
}

/// Collects the tensors under `v` with their dotted paths. The path is kept as segments and
/// joined only at a tensor: building a string per node made a deep, wide (shared-reference)
/// pickle cost depth x nodes bytes (a fuzzing finding, fuzz/regressions/pickle).
fn walk_tensors<'a>(v: &'a Value, path: &mut Vec<String>, out: &mut Vec<(String, &'a TensorInfo)>) {
    let mut descend = |segment: String, x: &'a Value, path: &mut Vec<String>| {
        path.push(segment);
        walk_tensors(x, path, out);
        path.pop();
    };
    match v {
        Value::Tensor(t) => out.push((dotted(path), t)),
        Value::List(xs) | Value::Tuple(xs) => {
            for (i, x) in xs.iter().enumerate() {
                descend(i.to_string(), x, path);
            }
        }
        Value::Dict(d) => {
            for (k, x) in &d.items {
                descend(k.key_string(), x, path);
            }
        }
        Value::Opaque(o) => {
            for (i, x) in o.items.iter().enumerate() {
                descend(i.to_string(), x, path);
            }
            for (k, x) in &o.dict_items {
                descend(k.key_string(), x, path);
            }
        }
        _ => {}
    }
}

/// Container dict keys with more values than this are written as a placeholder by
/// [`Value::key_string`].
const MAX_KEY_NODES: usize = 64;

/// Digits of `i` in decimal (`i.to_string().len()`).
fn decimal_len(i: usize) -> usize {
    i.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// `a.b.c`, with no separator after an empty leading part (as joining step by step did).
fn dotted(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(p);
    }
    s
}

fn float_json(f: f64) -> serde_json::Value {
    match Number::from_f64(f) {
        Some(n) => serde_json::Value::Number(n),
        None => serde_json::Value::String(format!("{f}")),
    }
}

fn bytes_json(b: &[u8]) -> serde_json::Value {
    let shown = b.get(..256).unwrap_or(b);
    let hex: String = shown.iter().map(|x| format!("{x:02x}")).collect();
    if shown.len() == b.len() {
        json!({"__bytes__": hex})
    } else {
        json!({"__bytes__": hex, "__len__": b.len()})
    }
}

fn opaque_json(o: &Opaque) -> serde_json::Value {
    if let Some(s) = numpy_scalar(o) {
        return match s {
            Scalar::Int(i) => serde_json::Value::from(i),
            Scalar::Float(f) => float_json(f),
            Scalar::Bool(b) => serde_json::Value::Bool(b),
        };
    }
    if let Some(j) = numpy_array_json(o) {
        return j;
    }
    if o.is_numpy("dtype") || (o.module == "numpy" && o.name == "dtype") {
        if let Some(d) = numpy_dtype(o) {
            return json!({"__class__": "numpy.dtype", "dtype": d.name});
        }
    }
    let mut m = Map::new();
    m.insert("__class__".into(), serde_json::Value::String(o.class()));
    if !o.args.is_empty() {
        m.insert(
            "__args__".into(),
            serde_json::Value::Array(o.args.iter().map(Value::to_json).collect()),
        );
    }
    if !o.kwargs.is_empty() {
        let kw: Map<_, _> = o
            .kwargs
            .iter()
            .map(|(k, v)| (k.key_string(), v.to_json()))
            .collect();
        m.insert("__kwargs__".into(), serde_json::Value::Object(kw));
    }
    match &o.state {
        None => {}
        Some(Value::Dict(d)) if d.items.iter().all(|(k, _)| matches!(k, Value::Str(_))) => {
            for (k, v) in &d.items {
                m.insert(k.key_string(), v.to_json());
            }
        }
        Some(other) => {
            m.insert("__state__".into(), other.to_json());
        }
    }
    for (k, v) in &o.dict_items {
        m.insert(k.key_string(), v.to_json());
    }
    if !o.items.is_empty() {
        m.insert(
            "__items__".into(),
            serde_json::Value::Array(o.items.iter().map(Value::to_json).collect()),
        );
    }
    serde_json::Value::Object(m)
}

/// Decimal text of a little-endian two's complement integer of any length.
pub fn bigint_to_decimal(le: &[u8]) -> String {
    if le.is_empty() {
        return "0".into();
    }
    let negative = le.last().is_some_and(|b| b & 0x80 != 0);
    // Magnitude, little-endian: negate two's complement when negative.
    let mut mag: Vec<u8> = le.to_vec();
    if negative {
        let mut carry = 1u16;
        for b in mag.iter_mut() {
            let v = u16::from(!*b) + carry;
            *b = (v & 0xff) as u8;
            carry = v >> 8;
        }
    }
    // Repeated division by 10^9 over big-endian base-256 digits.
    let mut be: Vec<u32> = mag.iter().rev().map(|&b| u32::from(b)).collect();
    let mut chunks = Vec::new();
    while be.iter().any(|&d| d != 0) {
        let mut rem: u64 = 0;
        for d in be.iter_mut() {
            let cur = (rem << 8) | u64::from(*d);
            *d = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem);
        while be.first() == Some(&0) {
            be.remove(0);
        }
    }
    let mut s = String::new();
    if negative {
        s.push('-');
    }
    match chunks.split_last() {
        None => s.push('0'),
        Some((first, rest)) => {
            s.push_str(&first.to_string());
            for c in rest.iter().rev() {
                s.push_str(&format!("{c:09}"));
            }
        }
    }
    s
}

/// A numpy scalar decoded to a Rust number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// A numpy dtype we can decode: kind (`f`, `i`, `u`, `b`), item size, byte order.
struct NpDType {
    kind: u8,
    size: usize,
    big_endian: bool,
    name: String,
}

/// `numpy.dtype('f8', False, True)` with BUILD state `(3, '<', ...)`
/// (numpy/core/_methods / `dtype.__reduce__`).
fn numpy_dtype(o: &Opaque) -> Option<NpDType> {
    let code = o.args.first()?.as_str()?;
    let (kind, size) = match code {
        "f8" => (b'f', 8),
        "f4" => (b'f', 4),
        "f2" => (b'f', 2),
        "i8" => (b'i', 8),
        "i4" => (b'i', 4),
        "i2" => (b'i', 2),
        "i1" => (b'i', 1),
        "u8" => (b'u', 8),
        "u4" => (b'u', 4),
        "u2" => (b'u', 2),
        "u1" => (b'u', 1),
        "b1" => (b'b', 1),
        _ => return None,
    };
    let order = match &o.state {
        Some(Value::Tuple(t)) => t.get(1).and_then(Value::as_str).unwrap_or("<"),
        _ => "<",
    };
    let name = match (kind, size) {
        (b'f', s) => format!("float{}", s * 8),
        (b'i', s) => format!("int{}", s * 8),
        (b'u', s) => format!("uint{}", s * 8),
        _ => "bool".to_string(),
    };
    Some(NpDType {
        kind,
        size,
        big_endian: order == ">",
        name,
    })
}

fn decode_scalar(d: &NpDType, raw: &[u8]) -> Option<Scalar> {
    if raw.len() != d.size {
        return None;
    }
    let mut b = [0u8; 8];
    if d.big_endian {
        for (i, x) in raw.iter().rev().enumerate() {
            *b.get_mut(i)? = *x;
        }
    } else {
        b.get_mut(..d.size)?.copy_from_slice(raw);
    }
    let u = u64::from_le_bytes(b);
    Some(match (d.kind, d.size) {
        (b'f', 8) => Scalar::Float(f64::from_bits(u)),
        (b'f', 4) => Scalar::Float(f64::from(f32::from_bits(u as u32))),
        (b'f', 2) => Scalar::Float(f16_to_f64(u as u16)),
        (b'i', s) => {
            let shift = 64 - 8 * s as u32;
            Scalar::Int(((u << shift) as i64) >> shift)
        }
        (b'u', _) => Scalar::Int(i64::try_from(u).ok()?),
        (b'b', _) => Scalar::Bool(u != 0),
        _ => return None,
    })
}

/// IEEE half to f64 (numpy float16 scalars).
pub fn f16_to_f64(h: u16) -> f64 {
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

/// `numpy.core.multiarray.scalar(dtype, bytes)` (how numpy pickles `np.float64(0.5)`).
pub fn numpy_scalar(o: &Opaque) -> Option<Scalar> {
    if !o.is_numpy("scalar") {
        return None;
    }
    let Value::Opaque(dt) = o.args.first()? else {
        return None;
    };
    let d = numpy_dtype(dt)?;
    let raw = match o.args.get(1)? {
        Value::Bytes(b) => b.as_slice(),
        _ => return None,
    };
    decode_scalar(&d, raw)
}

/// Largest numpy array whose elements go into the JSON view.
const MAX_JSON_ARRAY: usize = 4096;

/// `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` + BUILD
/// `(version, shape, dtype, is_fortran, raw bytes)` (`ndarray.__reduce__`/`__setstate__`).
fn numpy_array_json(o: &Opaque) -> Option<serde_json::Value> {
    if !o.is_numpy("_reconstruct") {
        return None;
    }
    let Some(Value::Tuple(st)) = &o.state else {
        return None;
    };
    let shape: Vec<i64> = st
        .get(1)?
        .as_seq()?
        .iter()
        .map(Value::as_i64)
        .collect::<Option<_>>()?;
    let Value::Opaque(dt) = st.get(2)? else {
        return None;
    };
    let d = numpy_dtype(dt)?;
    let Value::Bytes(raw) = st.get(4)? else {
        return None;
    };
    let mut out = json!({"__class__": "numpy.ndarray", "dtype": d.name, "shape": shape});
    let n = raw.len() / d.size.max(1);
    if n <= MAX_JSON_ARRAY && raw.len() % d.size.max(1) == 0 {
        let data: Option<Vec<serde_json::Value>> = raw
            .chunks(d.size)
            .map(|c| {
                decode_scalar(&d, c).map(|s| match s {
                    Scalar::Int(i) => serde_json::Value::from(i),
                    Scalar::Float(f) => float_json(f),
                    Scalar::Bool(b) => serde_json::Value::Bool(b),
                })
            })
            .collect();
        if let (Some(data), Some(m)) = (data, out.as_object_mut()) {
            m.insert("data".into(), serde_json::Value::Array(data));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigint_decimal_matches_python_int_from_bytes() {
        // int.from_bytes(bytes.fromhex('6cfc9c46f9206aa85019'), 'little', signed=True)
        // == 0x1950a86a20f9469cfc6c == 119547037146038801333356 (torch's legacy magic number)
        let b = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
        assert_eq!(bigint_to_decimal(&b), "119547037146038801333356");
        assert_eq!(bigint_to_decimal(&[0xff]), "-1");
        assert_eq!(bigint_to_decimal(&[0x00, 0x80]), "-32768");
        assert_eq!(bigint_to_decimal(&[]), "0");
    }
}
