//! Methods of `dict`, `list` and `str` values (`update`, `pop`, `get`, `format`, `join`, ...).

use std::rc::Rc;

use indexmap::IndexMap;
use rustpython_parser::ast::Expr;

use super::format::{python_format, repr};
use super::object::{config_update, new_dict, new_list, py_eq, DictRef, Key, Obj};
use super::{limits, Interp, R};

impl Interp<'_> {
    pub(super) fn call_method(
        &mut self,
        e: &Expr,
        recv: Obj,
        name: &str,
        args: Vec<Obj>,
        kwargs: IndexMap<String, Obj>,
    ) -> R<Obj> {
        match recv {
            Obj::Dict(d) => self.dict_method(e, &d, name, args, kwargs),
            // Methods whose argument may be the list itself (`a.extend(a)`, `a.count(a)`): the
            // argument is read before the list is borrowed for writing (a fuzzing finding: the
            // nested borrow panicked; Python gives `[1, 1]` and `0`).
            Obj::List(l) if matches!(name, "extend" | "remove" | "index" | "count") => {
                self.arity(e, name, &args, &kwargs, 1, 1)?;
                if name == "extend" {
                    let items = self.iterate(e, &args[0])?;
                    let len = (l.borrow().len() + items.len()) as u64;
                    if !limits::allow_len(len, "a list") {
                        return Err(self.limit_error(e));
                    }
                    l.borrow_mut().extend(items);
                    return Ok(Obj::None);
                }
                let items = self.iterate(e, &Obj::List(l.clone()))?;
                if name == "count" {
                    let n = items.iter().filter(|x| py_eq(x, &args[0])).count();
                    return Ok(Obj::Int(n as i64));
                }
                let Some(p) = items.iter().position(|x| py_eq(x, &args[0])) else {
                    return Err(self.err(
                        e,
                        "ValueError",
                        format!("{} is not in list", repr(&args[0])),
                    ));
                };
                if name == "remove" {
                    l.borrow_mut().remove(p);
                    Ok(Obj::None)
                } else {
                    Ok(Obj::Int(p as i64))
                }
            }
            Obj::List(l) => {
                let mut list = l.borrow_mut();
                match name {
                    "append" => {
                        self.arity(e, name, &args, &kwargs, 1, 1)?;
                        list.push(args[0].clone());
                        Ok(Obj::None)
                    }
                    "insert" => {
                        self.arity(e, name, &args, &kwargs, 2, 2)?;
                        let Obj::Int(i) = args[0] else {
                            return Err(self.err(
                                e,
                                "TypeError",
                                "insert index must be an integer",
                            ));
                        };
                        let len = list.len() as i64;
                        let i = if i < 0 { (i + len).max(0) } else { i.min(len) } as usize;
                        list.insert(i, args[1].clone());
                        Ok(Obj::None)
                    }
                    "pop" => {
                        self.arity(e, name, &args, &kwargs, 0, 1)?;
                        if list.is_empty() {
                            return Err(self.err(e, "IndexError", "pop from empty list"));
                        }
                        let i = match args.first() {
                            Some(idx) => self.index(e, idx, list.len())?,
                            None => list.len() - 1,
                        };
                        Ok(list.remove(i))
                    }
                    "copy" => Ok(new_list(list.clone())),
                    "reverse" => {
                        list.reverse();
                        Ok(Obj::None)
                    }
                    _ => Err(self.unsupported(e, format!("list.{name}()"))),
                }
            }
            Obj::Tuple(t) => match name {
                "index" | "count" => {
                    self.arity(e, name, &args, &kwargs, 1, 1)?;
                    if name == "count" {
                        return Ok(Obj::Int(
                            t.iter().filter(|x| py_eq(x, &args[0])).count() as i64
                        ));
                    }
                    t.iter()
                        .position(|x| py_eq(x, &args[0]))
                        .map(|p| Obj::Int(p as i64))
                        .ok_or_else(|| self.err(e, "ValueError", "tuple.index(x): x not in tuple"))
                }
                _ => Err(self.unsupported(e, format!("tuple.{name}()"))),
            },
            Obj::Str(s) => self.str_method(e, &s, name, args, kwargs),
            other => Err(self.unsupported(e, format!("{}.{name}()", other.type_name()))),
        }
    }

    /// The entries of `dict(x, **kw)` / `d.update(x, **kw)`: `x` is a mapping or an iterable of
    /// key/value pairs, then the keyword arguments (Python's `dict.__init__`/`dict.update`).
    pub(super) fn mapping_from_args(
        &self,
        e: &Expr,
        fname: &str,
        args: &[Obj],
        kwargs: IndexMap<String, Obj>,
    ) -> R<IndexMap<Key, Obj>> {
        if args.len() > 1 {
            return Err(self.err(
                e,
                "TypeError",
                format!("{fname} expected at most 1 argument"),
            ));
        }
        let mut map = IndexMap::new();
        if let Some(a) = args.first() {
            match a {
                Obj::Dict(_) => self.spread_mapping(e, a, &mut map)?,
                seq => {
                    for pair in self.iterate(e, seq)? {
                        let kv = self.iterate(e, &pair)?;
                        if kv.len() != 2 {
                            return Err(self.err(
                                e,
                                "ValueError",
                                "dictionary update sequence element has wrong length",
                            ));
                        }
                        map.insert(self.key(e, &kv[0])?, kv[1].clone());
                    }
                }
            }
        }
        for (k, v) in kwargs {
            map.insert(Key::Str(k), v);
        }
        Ok(map)
    }

    fn dict_method(
        &mut self,
        e: &Expr,
        d: &DictRef,
        name: &str,
        args: Vec<Obj>,
        kwargs: IndexMap<String, Obj>,
    ) -> R<Obj> {
        let config = d.borrow().config;
        match name {
            "get" => {
                if args.is_empty() || args.len() > 2 {
                    return Err(self.err(e, "TypeError", "get expected 1 or 2 arguments"));
                }
                let k = self.key(e, &args[0])?;
                Ok(d.borrow()
                    .map
                    .get(&k)
                    .cloned()
                    .unwrap_or_else(|| args.get(1).cloned().unwrap_or(Obj::None)))
            }
            "pop" => {
                if args.is_empty() || args.len() > 2 {
                    return Err(self.err(e, "TypeError", "pop expected 1 or 2 arguments"));
                }
                let k = self.key(e, &args[0])?;
                let removed = d.borrow_mut().map.shift_remove(&k);
                match (removed, args.get(1)) {
                    (Some(v), _) => Ok(v),
                    (None, Some(default)) => Ok(default.clone()),
                    // ConfigDict.pop(key, default=None) never raises (mmengine config.py ConfigDict.pop).
                    (None, None) if config => Ok(Obj::None),
                    (None, None) => Err(self.err(e, "KeyError", repr(&args[0]))),
                }
            }
            "setdefault" => {
                let k = self.key(e, args.first().unwrap_or(&Obj::None))?;
                let default = args.get(1).cloned().unwrap_or(Obj::None);
                let mut dm = d.borrow_mut();
                Ok(dm.map.entry(k).or_insert(default).clone())
            }
            "update" => {
                let other = self.mapping_from_args(e, "update", &args, kwargs)?;
                if config {
                    config_update(d, other);
                } else {
                    let mut dm = d.borrow_mut();
                    for (k, v) in other {
                        dm.map.insert(k, v);
                    }
                }
                Ok(Obj::None)
            }
            "copy" => {
                let dm = d.borrow();
                Ok(new_dict(dm.map.clone(), dm.config))
            }
            "keys" => Ok(new_list(d.borrow().map.keys().map(Key::to_obj).collect())),
            "values" => Ok(new_list(d.borrow().map.values().cloned().collect())),
            "items" => Ok(new_list(
                d.borrow()
                    .map
                    .iter()
                    .map(|(k, v)| Obj::Tuple(Rc::new(vec![k.to_obj(), v.clone()])))
                    .collect(),
            )),
            _ => Err(self.unsupported(e, format!("dict.{name}()"))),
        }
    }

    fn str_method(
        &mut self,
        e: &Expr,
        s: &str,
        name: &str,
        args: Vec<Obj>,
        kwargs: IndexMap<String, Obj>,
    ) -> R<Obj> {
        let str_arg = |me: &Self, i: usize| -> R<Option<String>> {
            match args.get(i) {
                None | Some(Obj::None) => Ok(None),
                Some(Obj::Str(x)) => Ok(Some(x.clone())),
                Some(other) => Err(me.err(
                    e,
                    "TypeError",
                    format!("must be str, not {}", other.type_name()),
                )),
            }
        };
        match name {
            "format" => python_format(s, &args, &kwargs)
                .map(Obj::Str)
                .map_err(|m| self.err(e, "ValueError", m)),
            "join" => {
                self.arity(e, name, &args, &kwargs, 1, 1)?;
                let parts = self.iterate(e, &args[0])?;
                let mut out = Vec::with_capacity(parts.len());
                for p in parts {
                    match p {
                        Obj::Str(x) => out.push(x),
                        other => {
                            return Err(self.err(
                                e,
                                "TypeError",
                                format!(
                                    "sequence item: expected str instance, {} found",
                                    other.type_name()
                                ),
                            ))
                        }
                    }
                }
                let len = out.iter().map(|x| x.len() as u64).sum::<u64>()
                    + (s.len() as u64).saturating_mul(out.len().saturating_sub(1) as u64);
                if !limits::allow_len(len, "str.join result") {
                    return Err(self.limit_error(e));
                }
                Ok(Obj::Str(out.join(s)))
            }
            "split" | "rsplit" => {
                let sep = str_arg(self, 0)?;
                let parts: Vec<Obj> = match sep {
                    Some(sep) if !sep.is_empty() => s
                        .split(sep.as_str())
                        .map(|p| Obj::Str(p.to_string()))
                        .collect(),
                    Some(_) => return Err(self.err(e, "ValueError", "empty separator")),
                    None => s
                        .split_whitespace()
                        .map(|p| Obj::Str(p.to_string()))
                        .collect(),
                };
                if args.len() > 1 {
                    return Err(self.unsupported(e, "split with maxsplit"));
                }
                Ok(new_list(parts))
            }
            "replace" => {
                let (Some(a), Some(b)) = (str_arg(self, 0)?, str_arg(self, 1)?) else {
                    return Err(self.err(e, "TypeError", "replace expected 2 arguments"));
                };
                // The result's length first: `s.replace('a', 'a' * 10**6)` multiplies.
                let n = if a.is_empty() {
                    s.chars().count() + 1
                } else {
                    s.matches(a.as_str()).count()
                } as u64;
                let len = (s.len() as u64)
                    .saturating_add(n.saturating_mul(b.len() as u64))
                    .saturating_sub(n.saturating_mul(a.len() as u64));
                if !limits::allow_len(len, "str.replace result") {
                    return Err(self.limit_error(e));
                }
                Ok(Obj::Str(s.replace(&a, &b)))
            }
            "upper" => Ok(Obj::Str(s.to_uppercase())),
            "lower" => Ok(Obj::Str(s.to_lowercase())),
            "startswith" | "endswith" => {
                let pats = match args.first() {
                    Some(Obj::Str(p)) => vec![p.clone()],
                    Some(Obj::Tuple(t)) => t
                        .iter()
                        .filter_map(|x| {
                            if let Obj::Str(p) = x {
                                Some(p.clone())
                            } else {
                                None
                            }
                        })
                        .collect(),
                    _ => {
                        return Err(self.err(
                            e,
                            "TypeError",
                            format!("{name} first arg must be str or a tuple of str"),
                        ))
                    }
                };
                let hit = pats.iter().any(|p| {
                    if name == "startswith" {
                        s.starts_with(p.as_str())
                    } else {
                        s.ends_with(p.as_str())
                    }
                });
                Ok(Obj::Bool(hit))
            }
            "strip" | "lstrip" | "rstrip" => {
                let chars = str_arg(self, 0)?;
                let pred = |c: char| match &chars {
                    Some(cs) => cs.contains(c),
                    None => c.is_whitespace(),
                };
                Ok(Obj::Str(
                    match name {
                        "strip" => s.trim_matches(pred),
                        "lstrip" => s.trim_start_matches(pred),
                        _ => s.trim_end_matches(pred),
                    }
                    .to_string(),
                ))
            }
            _ => Err(self.unsupported(e, format!("str.{name}()"))),
        }
    }
}
