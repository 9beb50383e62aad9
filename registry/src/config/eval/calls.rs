//! Calls: dispatch on the callee and the builtins configs use (`dict`, `range`, `round`, ...).

use std::rc::Rc;

use indexmap::IndexMap;
use rustpython_parser::ast::{self, Expr};

use super::format::{py_str, py_str_repr};
use super::object::{deep_copy, new_dict, new_list, num_or_str_cmp, shallow_copy, Key, Obj};
use super::{limits, Interp, R};

impl Interp<'_> {
    pub(super) fn call(&mut self, e: &Expr, c: &ast::ExprCall) -> R<Obj> {
        let f = self.eval(&c.func)?;
        let args = self.eval_elts(&c.args)?;
        let mut kwargs: IndexMap<String, Obj> = IndexMap::new();
        for kw in &c.keywords {
            let v = self.eval(&kw.value)?;
            match &kw.arg {
                Some(name) => {
                    kwargs.insert(name.to_string(), v);
                }
                None => {
                    let Obj::Dict(d) = &v else {
                        return Err(self.err(
                            e,
                            "TypeError",
                            "argument after ** must be a mapping",
                        ));
                    };
                    for (k, v) in &d.borrow().map {
                        match k {
                            Key::Str(s) => {
                                kwargs.insert(s.clone(), v.clone());
                            }
                            _ => return Err(self.err(e, "TypeError", "keywords must be strings")),
                        }
                    }
                }
            }
        }
        match f {
            Obj::Builtin(name) => self.call_builtin(e, name, args, kwargs),
            Obj::Method(recv, name) => self.call_method(e, *recv, &name, args, kwargs),
            Obj::Function(n) => {
                Err(self.unsupported(e, format!("call of function '{n}' defined in the config")))
            }
            other => Err(self.unsupported(
                e,
                format!("call of {} '{}'", other.type_name(), py_str(&other)),
            )),
        }
    }

    pub(super) fn arity(
        &self,
        e: &Expr,
        name: &str,
        args: &[Obj],
        kwargs: &IndexMap<String, Obj>,
        min: usize,
        max: usize,
    ) -> R<()> {
        if !kwargs.is_empty() {
            return Err(self.err(
                e,
                "TypeError",
                format!("{name}() takes no keyword arguments"),
            ));
        }
        if args.len() < min || args.len() > max {
            return Err(self.err(
                e,
                "TypeError",
                format!(
                    "{name}() takes {min}..{max} arguments ({} given)",
                    args.len()
                ),
            ));
        }
        Ok(())
    }

    fn call_builtin(
        &mut self,
        e: &Expr,
        name: &str,
        args: Vec<Obj>,
        kwargs: IndexMap<String, Obj>,
    ) -> R<Obj> {
        match name {
            "dict" => {
                let map = self.mapping_from_args(e, "dict", &args, kwargs)?;
                Ok(new_dict(map, false))
            }
            "list" | "tuple" | "sorted" | "reversed" => {
                self.arity(e, name, &args, &IndexMap::new(), 0, 1)?;
                let mut items = match args.first() {
                    Some(a) => self.iterate(e, a)?,
                    None => Vec::new(),
                };
                if name == "sorted" {
                    let mut err = None;
                    items.sort_by(|a, b| {
                        num_or_str_cmp(a, b).unwrap_or_else(|| {
                            err = Some(());
                            std::cmp::Ordering::Equal
                        })
                    });
                    if err.is_some() {
                        return Err(self.err(
                            e,
                            "TypeError",
                            "'<' not supported between these values",
                        ));
                    }
                    if matches!(kwargs.get("reverse"), Some(r) if r.truthy()) {
                        items.reverse();
                    }
                }
                if name == "reversed" {
                    items.reverse();
                }
                Ok(if name == "tuple" {
                    Obj::Tuple(Rc::new(items))
                } else {
                    new_list(items)
                })
            }
            "range" => {
                self.arity(e, name, &args, &kwargs, 1, 3)?;
                let ints = args
                    .iter()
                    .map(|a| match a {
                        Obj::Int(i) => Ok(*i),
                        other => Err(self.err(
                            e,
                            "TypeError",
                            format!(
                                "'{}' object cannot be interpreted as an integer",
                                other.type_name()
                            ),
                        )),
                    })
                    .collect::<R<Vec<i64>>>()?;
                let (start, stop, step) = match ints.as_slice() {
                    [b] => (0, *b, 1),
                    [a, b] => (*a, *b, 1),
                    [a, b, s] => (*a, *b, *s),
                    _ => (0, 0, 1),
                };
                if step == 0 {
                    return Err(self.err(e, "ValueError", "range() arg 3 must not be zero"));
                }
                // The length first (`range` objects are lazy in Python; here they are lists).
                let span = if step > 0 {
                    (stop as i128 - start as i128 + step as i128 - 1) / step as i128
                } else {
                    (start as i128 - stop as i128 - step as i128 - 1) / -(step as i128)
                };
                let len = span.max(0) as u64;
                if !limits::allow_len(len, "range") {
                    return Err(self.limit_error(e));
                }
                let out = (0..len as i128)
                    .map(|k| Obj::Int((start as i128 + k * step as i128) as i64))
                    .collect();
                Ok(new_list(out))
            }
            "len" => {
                self.arity(e, name, &args, &kwargs, 1, 1)?;
                let n = match &args[0] {
                    Obj::List(l) => l.borrow().len(),
                    Obj::Tuple(t) => t.len(),
                    Obj::Dict(d) => d.borrow().map.len(),
                    Obj::Str(s) => s.chars().count(),
                    other => {
                        return Err(self.err(
                            e,
                            "TypeError",
                            format!("object of type '{}' has no len()", other.type_name()),
                        ))
                    }
                };
                Ok(Obj::Int(n as i64))
            }
            "enumerate" => {
                let start = match kwargs.get("start").or(args.get(1)) {
                    Some(Obj::Int(i)) => *i,
                    _ => 0,
                };
                let Some(first) = args.first() else {
                    return Err(self.err(e, "TypeError", "enumerate() missing argument"));
                };
                let items = self.iterate(e, first)?;
                Ok(new_list(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| Obj::Tuple(Rc::new(vec![Obj::Int(start + i as i64), v])))
                        .collect(),
                ))
            }
            "zip" => {
                let lists = args
                    .iter()
                    .map(|a| self.iterate(e, a))
                    .collect::<R<Vec<_>>>()?;
                let n = lists.iter().map(Vec::len).min().unwrap_or(0);
                Ok(new_list(
                    (0..n)
                        .map(|i| Obj::Tuple(Rc::new(lists.iter().map(|l| l[i].clone()).collect())))
                        .collect(),
                ))
            }
            "int" => {
                self.arity(e, name, &args, &kwargs, 1, 1)?;
                match &args[0] {
                    Obj::Int(i) => Ok(Obj::Int(*i)),
                    Obj::Bool(b) => Ok(Obj::Int(*b as i64)),
                    Obj::Float(f) if f.is_finite() => Ok(Obj::Int(f.trunc() as i64)),
                    Obj::Str(s) => s.trim().parse::<i64>().map(Obj::Int).map_err(|_| {
                        self.err(
                            e,
                            "ValueError",
                            format!("invalid literal for int() with base 10: {}", py_str_repr(s)),
                        )
                    }),
                    other => Err(self.err(
                        e,
                        "TypeError",
                        format!(
                            "int() argument must be a number, not '{}'",
                            other.type_name()
                        ),
                    )),
                }
            }
            "float" => {
                self.arity(e, name, &args, &kwargs, 1, 1)?;
                match &args[0] {
                    Obj::Int(i) => Ok(Obj::Float(*i as f64)),
                    Obj::Bool(b) => Ok(Obj::Float(*b as i64 as f64)),
                    Obj::Float(f) => Ok(Obj::Float(*f)),
                    Obj::Str(s) => parse_py_float(s.trim()).map(Obj::Float).ok_or_else(|| {
                        self.err(
                            e,
                            "ValueError",
                            format!("could not convert string to float: {}", py_str_repr(s)),
                        )
                    }),
                    other => Err(self.err(
                        e,
                        "TypeError",
                        format!(
                            "float() argument must be a number, not '{}'",
                            other.type_name()
                        ),
                    )),
                }
            }
            "str" => {
                self.arity(e, name, &args, &kwargs, 0, 1)?;
                Ok(Obj::Str(args.first().map(py_str).unwrap_or_default()))
            }
            "bool" => {
                self.arity(e, name, &args, &kwargs, 0, 1)?;
                Ok(Obj::Bool(args.first().map(Obj::truthy).unwrap_or(false)))
            }
            "round" => {
                self.arity(e, name, &args, &kwargs, 1, 2)?;
                match (&args[0], args.get(1)) {
                    (Obj::Int(i), _) => Ok(Obj::Int(*i)),
                    (Obj::Float(f), None) => Ok(Obj::Int(round_half_even(*f) as i64)),
                    (Obj::Float(f), Some(Obj::Int(n))) => {
                        // Python rounds the exact decimal value; formatting with the precision does the same.
                        let s = format!("{:.*}", (*n).max(0) as usize, f);
                        Ok(Obj::Float(s.parse().unwrap_or(*f)))
                    }
                    (other, _) => Err(self.err(
                        e,
                        "TypeError",
                        format!("type {} doesn't define __round__", other.type_name()),
                    )),
                }
            }
            "abs" => {
                self.arity(e, name, &args, &kwargs, 1, 1)?;
                match &args[0] {
                    Obj::Int(i) => Ok(Obj::Int(i.abs())),
                    Obj::Float(f) => Ok(Obj::Float(f.abs())),
                    other => Err(self.err(
                        e,
                        "TypeError",
                        format!("bad operand type for abs(): '{}'", other.type_name()),
                    )),
                }
            }
            "min" | "max" | "sum" | "any" | "all" => {
                let items = if args.len() == 1 {
                    self.iterate(e, &args[0])?
                } else {
                    args
                };
                match name {
                    "any" => Ok(Obj::Bool(items.iter().any(Obj::truthy))),
                    "all" => Ok(Obj::Bool(items.iter().all(Obj::truthy))),
                    "sum" => {
                        let mut acc = Obj::Int(0);
                        for it in items {
                            acc = self.binop(e, &ast::Operator::Add, acc, it)?;
                        }
                        Ok(acc)
                    }
                    _ => {
                        let mut it = items.into_iter();
                        let mut best = it.next().ok_or_else(|| {
                            self.err(
                                e,
                                "ValueError",
                                format!("{name}() arg is an empty sequence"),
                            )
                        })?;
                        for x in it {
                            let ord = num_or_str_cmp(&x, &best).ok_or_else(|| {
                                self.err(e, "TypeError", "'<' not supported between these values")
                            })?;
                            if (name == "min" && ord.is_lt()) || (name == "max" && ord.is_gt()) {
                                best = x;
                            }
                        }
                        Ok(best)
                    }
                }
            }
            "hasattr" | "getattr" => {
                if args.len() < 2 || args.len() > 3 || (name == "hasattr" && args.len() != 2) {
                    return Err(self.err(
                        e,
                        "TypeError",
                        format!("{name}() takes 2 or 3 arguments"),
                    ));
                }
                let Obj::Str(attr) = &args[1] else {
                    return Err(self.err(e, "TypeError", "attribute name must be string"));
                };
                let found = self.attribute(e, args[0].clone(), attr);
                match (name, found, args.get(2)) {
                    ("hasattr", r, _) => Ok(Obj::Bool(r.is_ok())),
                    (_, Ok(v), _) => Ok(v),
                    (_, Err(_), Some(d)) => Ok(d.clone()),
                    (_, Err(err), None) => Err(err),
                }
            }
            "isinstance" => Err(self.unsupported(e, "isinstance()")),
            "set" => Err(self.unsupported(e, "set()")),
            "copy.deepcopy" | "copy.copy" => {
                self.arity(e, name, &args, &kwargs, 1, 1)?;
                Ok(if name == "copy.deepcopy" {
                    deep_copy(&args[0])
                } else {
                    shallow_copy(&args[0])
                })
            }
            "math.sqrt" | "math.ceil" | "math.floor" | "math.log" | "math.log2" | "math.exp" => {
                self.arity(e, name, &args, &kwargs, 1, 1)?;
                let x = match &args[0] {
                    Obj::Int(i) => *i as f64,
                    Obj::Float(f) => *f,
                    other => {
                        return Err(self.err(
                            e,
                            "TypeError",
                            format!("must be real number, not {}", other.type_name()),
                        ))
                    }
                };
                Ok(match name {
                    "math.sqrt" => Obj::Float(x.sqrt()),
                    "math.ceil" => Obj::Int(x.ceil() as i64),
                    "math.floor" => Obj::Int(x.floor() as i64),
                    "math.log" => Obj::Float(x.ln()),
                    "math.log2" => Obj::Float(x.log2()),
                    _ => Obj::Float(x.exp()),
                })
            }
            "os.path.join" => {
                let mut out = String::new();
                for a in &args {
                    let Obj::Str(s) = a else {
                        return Err(self.err(e, "TypeError", "join() arguments must be str"));
                    };
                    if s.starts_with('/') {
                        out = s.clone();
                    } else if out.is_empty() || out.ends_with('/') {
                        out.push_str(s);
                    } else {
                        out.push('/');
                        out.push_str(s);
                    }
                }
                Ok(Obj::Str(out))
            }
            other => Err(self.unsupported(e, format!("call of '{other}'"))),
        }
    }
}

fn round_half_even(f: f64) -> f64 {
    let r = f.round();
    if (f - f.trunc()).abs() == 0.5 {
        2.0 * (f / 2.0).round()
    } else {
        r
    }
}

fn parse_py_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.replace('_', "").parse().ok(),
    }
}
