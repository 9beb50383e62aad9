//! Calls (REDUCE, NEWOBJ, ...): the callables the interpreter gives meaning to, the forbidden ones.

use std::rc::Rc;

use super::heap::{HDict, HOpaque, Obj, V};
use super::vm::{malformed, Vm};
use crate::checkpoint::error::PickleError;
use crate::dtype::DType;

/// What kind of call built an object (only for messages).
#[derive(Clone, Copy)]
pub(super) enum Call {
    Reduce,
    NewObj,
}

impl Vm<'_> {
    pub(super) fn call(
        &mut self,
        func: &V,
        args: Vec<V>,
        kind: Call,
        depth: usize,
    ) -> Result<V, PickleError> {
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
}

/// Globals the interpreter gives meaning to (everything else is recorded as opaque).
pub(super) fn is_interpreted(module: &str, name: &str) -> bool {
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
