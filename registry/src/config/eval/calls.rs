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
                    Obj::Float(f) if f.is_finite() => float_to_int(f.trunc())
                        .map(Obj::Int)
                        .ok_or_else(|| self.overflow(e)),
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
                self.py_round(e, &args[0], args.get(1))
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
                // CPython's errors where the float result would be NaN, infinite or beyond the
                // integers (a cast would saturate: silent wrong values).
                let domain = || self.err(e, "ValueError", "math domain error");
                Ok(match name {
                    "math.sqrt" if x < 0.0 => return Err(domain()),
                    "math.sqrt" => Obj::Float(x.sqrt()),
                    "math.ceil" | "math.floor" => {
                        if x.is_nan() {
                            return Err(self.err(
                                e,
                                "ValueError",
                                "cannot convert float NaN to integer",
                            ));
                        }
                        if x.is_infinite() {
                            return Err(self.err(
                                e,
                                "OverflowError",
                                "cannot convert float infinity to integer",
                            ));
                        }
                        let r = if name == "math.ceil" {
                            x.ceil()
                        } else {
                            x.floor()
                        };
                        Obj::Int(float_to_int(r).ok_or_else(|| self.overflow(e))?)
                    }
                    "math.log" | "math.log2" if x <= 0.0 => return Err(domain()),
                    "math.log" => Obj::Float(x.ln()),
                    "math.log2" => Obj::Float(x.log2()),
                    _ if x.is_finite() && x.exp().is_infinite() => {
                        return Err(self.err(e, "OverflowError", "math range error"))
                    }
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

/// `int(f)` of an integer-valued float: `None` outside the 64-bit range (a cast would saturate:
/// a silent wrong value).
fn float_to_int(f: f64) -> Option<i64> {
    // 2^63 is exact in f64; every float below it in magnitude converts exactly.
    (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0)
        .contains(&f)
        .then_some(f as i64)
}

/// Python's `ndigits` limits for floats (`Objects/floatobject.c`: `NDIGITS_MAX`/`NDIGITS_MIN`):
/// beyond them every digit is kept, or none is.
const NDIGITS_MAX: i64 = 323;
const NDIGITS_MIN: i64 = -308;

/// `round(x, -k)` for `1 <= k <= 308` (`float.__round__`): the exact decimal value of `x`
/// rounded half to even at `10^k`, then the nearest float (CPython's `_Py_dg_dtoa` mode 3 and
/// `strtod`). Works on the digits: an integer-valued float prints exactly.
fn round_float_to_tens(x: f64, k: usize) -> f64 {
    let digits = format!("{:.0}", x.abs().trunc());
    let padded = format!("{digits:0>w$}", w = k + 1);
    let (head, tail) = padded.split_at(padded.len() - k);
    let half = format!("5{}", "0".repeat(k - 1));
    let exact_tail = x.fract() == 0.0;
    let odd = head.bytes().last().is_some_and(|d| (d - b'0') % 2 == 1);
    let up = tail > half.as_str() || (tail == half && (!exact_tail || odd));
    let mut head = head.as_bytes().to_vec();
    if up {
        // Decimal increment of the head.
        let mut i = head.len();
        loop {
            if i == 0 {
                head.insert(0, b'1');
                break;
            }
            i -= 1;
            if head[i] == b'9' {
                head[i] = b'0';
            } else {
                head[i] += 1;
                break;
            }
        }
    }
    let text = format!("{}{}", String::from_utf8_lossy(&head), "0".repeat(k));
    let v: f64 = text.parse().unwrap_or(f64::INFINITY);
    if x.is_sign_negative() {
        -v
    } else {
        v
    }
}

impl Interp<'_> {
    /// `round(x[, ndigits])` as CPython: an int without `ndigits` (or `None`), else the type of
    /// `x`; half to even on the exact value; negative `ndigits` round to tens, hundreds, ...
    /// (a fuzzing finding: `round(.3, 211111)` panicked formatting the precision, and negative
    /// `ndigits` were taken as 0, a silent wrong value).
    fn py_round(&self, e: &Expr, x: &Obj, ndigits: Option<&Obj>) -> R<Obj> {
        let n = match ndigits {
            None | Some(Obj::None) => None,
            Some(Obj::Int(n)) => Some(*n),
            Some(Obj::Bool(b)) => Some(i64::from(*b)),
            Some(other) => {
                return Err(self.err(
                    e,
                    "TypeError",
                    format!(
                        "'{}' object cannot be interpreted as an integer",
                        other.type_name()
                    ),
                ))
            }
        };
        match (x, n) {
            (Obj::Bool(b), n) => {
                self.py_round(e, &Obj::Int(i64::from(*b)), n.map(Obj::Int).as_ref())
            }
            (Obj::Int(i), None) => Ok(Obj::Int(*i)),
            (Obj::Int(i), Some(n)) if n >= 0 => Ok(Obj::Int(*i)),
            (Obj::Int(i), Some(n)) => {
                // long_round: floor divmod by 10^k, then half to even.
                let k = n.unsigned_abs();
                if k > 19 {
                    return Ok(Obj::Int(0));
                }
                let p = 10i128.pow(k as u32);
                let (mut q, r) = (i128::from(*i).div_euclid(p), i128::from(*i).rem_euclid(p));
                if 2 * r > p || (2 * r == p && q % 2 != 0) {
                    q += 1;
                }
                i64::try_from(q * p)
                    .map(Obj::Int)
                    .map_err(|_| self.overflow(e))
            }
            (Obj::Float(f), None) => {
                if f.is_nan() {
                    return Err(self.err(e, "ValueError", "cannot convert float NaN to integer"));
                }
                if f.is_infinite() {
                    return Err(self.err(
                        e,
                        "OverflowError",
                        "cannot convert float infinity to integer",
                    ));
                }
                float_to_int(round_half_even(*f))
                    .map(Obj::Int)
                    .ok_or_else(|| self.overflow(e))
            }
            (Obj::Float(f), Some(_)) if !f.is_finite() => Ok(Obj::Float(*f)),
            (Obj::Float(f), Some(n)) if n > NDIGITS_MAX => Ok(Obj::Float(*f)),
            (Obj::Float(f), Some(n)) if n < NDIGITS_MIN => Ok(Obj::Float(0.0 * f)),
            (Obj::Float(f), Some(n)) if n >= 0 => {
                // Formatting with the precision rounds the exact decimal value half to even,
                // as CPython does; the precision is at most NDIGITS_MAX here.
                let s = format!("{:.*}", n as usize, f);
                Ok(Obj::Float(s.parse().unwrap_or(*f)))
            }
            (Obj::Float(f), Some(n)) => Ok(Obj::Float(round_float_to_tens(
                *f,
                n.unsigned_abs() as usize,
            ))),
            (other, _) => Err(self.err(
                e,
                "TypeError",
                format!("type {} doesn't define __round__", other.type_name()),
            )),
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
