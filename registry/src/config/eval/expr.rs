//! Expressions: names, constants, containers, comprehensions, f-strings, subscripts, attributes.

use std::collections::HashMap;
use std::rc::Rc;

use indexmap::IndexMap;
use rustpython_parser::ast::{self, Constant, Expr, Ranged};

use super::format::{format_spec, py_str, repr};
use super::limits;
use super::object::{key_of, new_dict, new_list, skey, Deep, Key, Obj};
use super::{module_attr, Interp, BUILTINS, R};
use crate::config::error::ConfigError;

impl Interp<'_> {
    pub(super) fn undefined(&self, node: &impl Ranged, name: &str) -> ConfigError {
        let (at, snippet) = self.location(node.start().to_usize());
        let candidates = self
            .globals
            .keys()
            .map(String::as_str)
            .chain(
                self.locals
                    .iter()
                    .flat_map(|s| s.keys().map(String::as_str)),
            )
            .chain(BUILTINS.iter().copied());
        let did_you_mean = candidates
            .map(|c| (strsim::jaro_winkler(c, name), c))
            .filter(|(s, _)| *s > 0.85)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| c.to_string());
        ConfigError::UndefinedName {
            at,
            name: name.to_string(),
            did_you_mean,
            snippet,
        }
    }

    fn lookup(&self, node: &Expr, name: &str) -> R<Obj> {
        for scope in self.locals.iter().rev() {
            if let Some(v) = scope.get(name) {
                return Ok(v.clone());
            }
        }
        if let Some(v) = self.globals.get(name) {
            return Ok(v.clone());
        }
        if let Some(b) = BUILTINS.iter().find(|b| **b == name) {
            return Ok(Obj::Builtin(b));
        }
        match name {
            // The exec globals have no `__name__`, so Python finds the builtins module's.
            "__name__" => Ok(Obj::Str("builtins".into())),
            "True" => Ok(Obj::Bool(true)),
            "False" => Ok(Obj::Bool(false)),
            "None" => Ok(Obj::None),
            "exec" | "eval" | "open" | "__import__" | "compile" | "globals" | "locals" | "vars" => {
                Err(self.unsupported(
                    node,
                    format!("'{name}' (configs are evaluated, never executed)"),
                ))
            }
            _ => Err(self.undefined(node, name)),
        }
    }

    pub(crate) fn eval(&mut self, e: &Expr) -> R<Obj> {
        let Some(_deep) = Deep::enter() else {
            if !limits::pending() {
                let max = limits::current().depth;
                limits::record("depth", max, "expression nesting");
            }
            return Err(self.limit_error(e));
        };
        let r = self.eval_unbounded(e);
        // Every sequence an expression creates (not merely names) is charged by its length, so
        // that the `steps` limit bounds the memory of copies (`list(x)`, `sorted`, slices, ...)
        // and `seq_len` bounds one value (concatenation in a loop doubles it each time).
        // A string is copied by value even by a name lookup; a list or tuple that a name or
        // attribute returns is a shared reference (free).
        if let Ok(v) = &r {
            let len = match v {
                Obj::Str(s) => s.len(),
                Obj::List(l) => l.borrow().len(),
                Obj::Tuple(t) => t.len(),
                _ => 0,
            };
            let shared = matches!(v, Obj::List(_) | Obj::Tuple(_))
                && matches!(e, Expr::Name(_) | Expr::Attribute(_) | Expr::Constant(_));
            if len > 0 && !shared && limits::allow_len(len as u64, &format!("a {}", v.type_name()))
            {
                limits::charge(limits::weight(v));
            }
        }
        self.bounded(e, r)
    }

    fn eval_unbounded(&mut self, e: &Expr) -> R<Obj> {
        match e {
            Expr::Constant(c) => self.constant(e, &c.value),
            Expr::Name(n) => self.lookup(e, n.id.as_str()),
            Expr::List(l) => Ok(new_list(self.eval_elts(&l.elts)?)),
            Expr::Tuple(t) => Ok(Obj::Tuple(Rc::new(self.eval_elts(&t.elts)?))),
            Expr::Set(_) | Expr::SetComp(_) => {
                Err(self.unsupported(e, "a set (mmengine cannot dump sets to JSON either)"))
            }
            Expr::Dict(d) => {
                let mut map = IndexMap::new();
                for (k, v) in d.keys.iter().zip(&d.values) {
                    match k {
                        Some(k) => {
                            let kv = self.eval(k)?;
                            let key = self.key(k, &kv)?;
                            let v = self.eval(v)?;
                            map.insert(key, v);
                        }
                        None => {
                            let src = self.eval(v)?;
                            self.spread_mapping(v, &src, &mut map)?;
                        }
                    }
                }
                Ok(new_dict(map, false))
            }
            Expr::BinOp(b) => {
                let l = self.eval(&b.left)?;
                let r = self.eval(&b.right)?;
                self.binop(e, &b.op, l, r)
            }
            Expr::UnaryOp(u) => {
                let v = self.eval(&u.operand)?;
                match (&u.op, &v) {
                    (ast::UnaryOp::Not, _) => Ok(Obj::Bool(!v.truthy())),
                    (ast::UnaryOp::USub, Obj::Int(i)) => i
                        .checked_neg()
                        .map(Obj::Int)
                        .ok_or_else(|| self.overflow(e)),
                    (ast::UnaryOp::USub, Obj::Bool(b)) => Ok(Obj::Int(-(*b as i64))),
                    (ast::UnaryOp::USub, Obj::Float(f)) => Ok(Obj::Float(-f)),
                    (ast::UnaryOp::UAdd, Obj::Int(_) | Obj::Float(_)) => Ok(v),
                    (ast::UnaryOp::Invert, Obj::Int(i)) => Ok(Obj::Int(!i)),
                    _ => Err(self.err(
                        e,
                        "TypeError",
                        format!("bad operand type for unary operator: '{}'", v.type_name()),
                    )),
                }
            }
            Expr::BoolOp(b) => {
                let mut last = Obj::None;
                for (i, v) in b.values.iter().enumerate() {
                    last = self.eval(v)?;
                    let t = last.truthy();
                    let is_last = i + 1 == b.values.len();
                    match b.op {
                        ast::BoolOp::And if !t && !is_last => return Ok(last),
                        ast::BoolOp::Or if t && !is_last => return Ok(last),
                        _ => {}
                    }
                }
                Ok(last)
            }
            Expr::Compare(c) => {
                let mut left = self.eval(&c.left)?;
                for (op, right) in c.ops.iter().zip(&c.comparators) {
                    let right = self.eval(right)?;
                    if !self.compare(e, op, &left, &right)? {
                        return Ok(Obj::Bool(false));
                    }
                    left = right;
                }
                Ok(Obj::Bool(true))
            }
            Expr::IfExp(i) => {
                if self.eval(&i.test)?.truthy() {
                    self.eval(&i.body)
                } else {
                    self.eval(&i.orelse)
                }
            }
            Expr::Attribute(a) => {
                let v = self.eval(&a.value)?;
                self.attribute(e, v, a.attr.as_str())
            }
            Expr::Subscript(s) => {
                let v = self.eval(&s.value)?;
                if let Expr::Slice(sl) = s.slice.as_ref() {
                    return self.slice(e, &v, sl);
                }
                let idx = self.eval(&s.slice)?;
                self.subscript(e, &v, &idx)
            }
            Expr::Call(c) => self.call(e, c),
            Expr::JoinedStr(j) => {
                let mut out = String::new();
                for v in &j.values {
                    out.push_str(&self.fstring_part(v)?);
                }
                Ok(Obj::Str(out))
            }
            Expr::FormattedValue(_) => Ok(Obj::Str(self.fstring_part(e)?)),
            Expr::ListComp(c) => {
                Ok(new_list(self.comprehension(&c.generators, &mut |me| {
                    me.eval(&c.elt).map(|v| vec![v])
                })?))
            }
            Expr::GeneratorExp(c) => {
                // Consumed at once by whatever receives it (tuple(), list(), sum(), ...).
                Ok(new_list(self.comprehension(&c.generators, &mut |me| {
                    me.eval(&c.elt).map(|v| vec![v])
                })?))
            }
            Expr::DictComp(c) => {
                let mut pairs = Vec::new();
                let items = self.comprehension(&c.generators, &mut |me| {
                    let k = me.eval(&c.key)?;
                    let v = me.eval(&c.value)?;
                    Ok(vec![k, v])
                })?;
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                let mut map = IndexMap::new();
                for (k, v) in pairs {
                    let key = self.key(e, &k)?;
                    map.insert(key, v);
                }
                Ok(new_dict(map, false))
            }
            Expr::Starred(_) => Err(self.unsupported(e, "starred expression here")),
            Expr::Slice(_) => Err(self.unsupported(e, "slice outside a subscript")),
            Expr::Lambda(_) => Err(self.unsupported(e, "lambda")),
            Expr::NamedExpr(_) => Err(self.unsupported(e, "assignment expression (:=)")),
            Expr::Await(_) | Expr::Yield(_) | Expr::YieldFrom(_) => {
                Err(self.unsupported(e, "await/yield"))
            }
        }
    }

    fn constant(&self, e: &Expr, c: &Constant) -> R<Obj> {
        Ok(match c {
            Constant::None => Obj::None,
            Constant::Bool(b) => Obj::Bool(*b),
            Constant::Str(s) => Obj::Str(s.clone()),
            Constant::Int(i) => {
                Obj::Int(i.to_string().parse::<i64>().map_err(|_| self.overflow(e))?)
            }
            Constant::Float(f) => Obj::Float(*f),
            Constant::Tuple(t) => Obj::Tuple(Rc::new(
                t.iter()
                    .map(|c| self.constant(e, c))
                    .collect::<R<Vec<_>>>()?,
            )),
            Constant::Bytes(_) => return Err(self.unsupported(e, "bytes literal")),
            Constant::Complex { .. } => return Err(self.unsupported(e, "complex number")),
            Constant::Ellipsis => return Err(self.unsupported(e, "Ellipsis")),
        })
    }

    pub(super) fn overflow(&self, e: &impl Ranged) -> ConfigError {
        self.err(
            e,
            "OverflowError",
            "integer outside the 64-bit range configs support",
        )
    }

    pub(super) fn key(&self, node: &impl Ranged, v: &Obj) -> R<Key> {
        key_of(v).ok_or_else(|| {
            self.err(
                node,
                "TypeError",
                format!("unhashable type: '{}'", v.type_name()),
            )
        })
    }

    pub(super) fn eval_elts(&mut self, elts: &[Expr]) -> R<Vec<Obj>> {
        let mut out = Vec::with_capacity(elts.len());
        for el in elts {
            if let Expr::Starred(s) = el {
                let v = self.eval(&s.value)?;
                out.extend(self.iterate(el, &v)?);
            } else {
                out.push(self.eval(el)?);
            }
        }
        Ok(out)
    }

    pub(super) fn spread_mapping(
        &self,
        node: &impl Ranged,
        src: &Obj,
        map: &mut IndexMap<Key, Obj>,
    ) -> R<()> {
        match src {
            Obj::Dict(d) => {
                for (k, v) in &d.borrow().map {
                    map.insert(k.clone(), v.clone());
                }
                Ok(())
            }
            other => Err(self.err(
                node,
                "TypeError",
                format!("'{}' object is not a mapping", other.type_name()),
            )),
        }
    }

    pub(crate) fn iterate(&self, node: &impl Ranged, v: &Obj) -> R<Vec<Obj>> {
        // The items are copied out: charged like any sequence created.
        let r = self.iterate_unbounded(node, v)?;
        if !limits::charge(limits::weight(v).max(r.len())) {
            return Err(self.limit_error(node));
        }
        Ok(r)
    }

    fn iterate_unbounded(&self, node: &impl Ranged, v: &Obj) -> R<Vec<Obj>> {
        match v {
            Obj::List(l) => Ok(l.borrow().clone()),
            Obj::Tuple(t) => Ok(t.as_ref().clone()),
            Obj::Dict(d) => Ok(d.borrow().map.keys().map(Key::to_obj).collect()),
            Obj::Str(s) => Ok(s.chars().map(|c| Obj::Str(c.to_string())).collect()),
            other => Err(self.err(
                node,
                "TypeError",
                format!("'{}' object is not iterable", other.type_name()),
            )),
        }
    }

    fn comprehension(
        &mut self,
        gens: &[ast::Comprehension],
        body: &mut dyn FnMut(&mut Self) -> R<Vec<Obj>>,
    ) -> R<Vec<Obj>> {
        self.locals.push(HashMap::new());
        let mut out = Vec::new();
        let r = self.comp_level(gens, body, &mut out);
        self.locals.pop();
        r.map(|_| out)
    }

    fn comp_level(
        &mut self,
        gens: &[ast::Comprehension],
        body: &mut dyn FnMut(&mut Self) -> R<Vec<Obj>>,
        out: &mut Vec<Obj>,
    ) -> R<()> {
        let Some((g, rest)) = gens.split_first() else {
            out.extend(body(self)?);
            return Ok(());
        };
        let it = self.eval(&g.iter)?;
        'items: for item in self.iterate(&g.iter, &it)? {
            self.assign(&g.target, item)?;
            for cond in &g.ifs {
                if !self.eval(cond)?.truthy() {
                    continue 'items;
                }
            }
            self.comp_level(rest, body, out)?;
        }
        Ok(())
    }

    fn fstring_part(&mut self, v: &Expr) -> R<String> {
        match v {
            Expr::Constant(ast::ExprConstant {
                value: Constant::Str(s),
                ..
            }) => Ok(s.clone()),
            Expr::FormattedValue(f) => {
                let val = self.eval(&f.value)?;
                let val = match f.conversion {
                    ast::ConversionFlag::Repr | ast::ConversionFlag::Ascii => Obj::Str(repr(&val)),
                    ast::ConversionFlag::Str => Obj::Str(py_str(&val)),
                    ast::ConversionFlag::None => val,
                };
                let spec = match &f.format_spec {
                    Some(s) => match self.eval(s)? {
                        Obj::Str(s) => s,
                        other => py_str(&other),
                    },
                    None => String::new(),
                };
                format_spec(&val, &spec).map_err(|m| self.err(v, "ValueError", m))
            }
            Expr::JoinedStr(j) => {
                let mut out = String::new();
                for p in &j.values {
                    out.push_str(&self.fstring_part(p)?);
                }
                Ok(out)
            }
            other => Ok(py_str(&self.eval(other)?)),
        }
    }

    pub(super) fn index(&self, node: &impl Ranged, idx: &Obj, len: usize) -> R<usize> {
        let i = match idx {
            Obj::Int(i) => *i,
            Obj::Bool(b) => *b as i64,
            other => {
                return Err(self.err(
                    node,
                    "TypeError",
                    format!("indices must be integers, not {}", other.type_name()),
                ))
            }
        };
        let j = if i < 0 { i + len as i64 } else { i };
        if j < 0 || j >= len as i64 {
            return Err(self.err(node, "IndexError", "index out of range"));
        }
        Ok(j as usize)
    }

    fn subscript(&self, node: &Expr, v: &Obj, idx: &Obj) -> R<Obj> {
        match v {
            Obj::Dict(d) => {
                let k = self.key(node, idx)?;
                d.borrow()
                    .map
                    .get(&k)
                    .cloned()
                    .ok_or_else(|| self.err(node, "KeyError", repr(idx)))
            }
            Obj::List(l) => {
                let l = l.borrow();
                let i = self.index(node, idx, l.len())?;
                Ok(l[i].clone())
            }
            Obj::Tuple(t) => {
                let i = self.index(node, idx, t.len())?;
                Ok(t[i].clone())
            }
            Obj::Str(s) => {
                let chars: Vec<char> = s.chars().collect();
                let i = self.index(node, idx, chars.len())?;
                Ok(Obj::Str(chars[i].to_string()))
            }
            other => Err(self.err(
                node,
                "TypeError",
                format!("'{}' object is not subscriptable", other.type_name()),
            )),
        }
    }

    fn slice(&mut self, node: &Expr, v: &Obj, sl: &ast::ExprSlice) -> R<Obj> {
        let bound = |me: &mut Self, b: &Option<Box<Expr>>| -> R<Option<i64>> {
            match b {
                None => Ok(None),
                Some(b) => match me.eval(b)? {
                    Obj::Int(i) => Ok(Some(i)),
                    Obj::None => Ok(None),
                    other => Err(me.err(
                        node,
                        "TypeError",
                        format!("slice indices must be integers, not {}", other.type_name()),
                    )),
                },
            }
        };
        let lo = bound(self, &sl.lower)?;
        let hi = bound(self, &sl.upper)?;
        let step = bound(self, &sl.step)?.unwrap_or(1);
        if step == 0 {
            return Err(self.err(node, "ValueError", "slice step cannot be zero"));
        }
        let pick = |len: usize| -> Vec<usize> {
            let len = len as i64;
            let norm = |x: i64, lo_clip: i64, hi_clip: i64| {
                let x = if x < 0 { x + len } else { x };
                x.clamp(lo_clip, hi_clip)
            };
            let mut out = Vec::new();
            if step > 0 {
                let a = lo.map(|x| norm(x, 0, len)).unwrap_or(0);
                let b = hi.map(|x| norm(x, 0, len)).unwrap_or(len);
                let mut i = a;
                while i < b {
                    out.push(i as usize);
                    i += step;
                }
            } else {
                let a = lo.map(|x| norm(x, -1, len - 1)).unwrap_or(len - 1);
                let b = hi.map(|x| norm(x, -1, len - 1)).unwrap_or(-1);
                let mut i = a;
                while i > b {
                    out.push(i as usize);
                    i += step;
                }
            }
            out
        };
        match v {
            Obj::List(l) => {
                let l = l.borrow();
                Ok(new_list(
                    pick(l.len()).into_iter().map(|i| l[i].clone()).collect(),
                ))
            }
            Obj::Tuple(t) => Ok(Obj::Tuple(Rc::new(
                pick(t.len()).into_iter().map(|i| t[i].clone()).collect(),
            ))),
            Obj::Str(s) => {
                let chars: Vec<char> = s.chars().collect();
                Ok(Obj::Str(
                    pick(chars.len()).into_iter().map(|i| chars[i]).collect(),
                ))
            }
            other => Err(self.err(
                node,
                "TypeError",
                format!("'{}' object is not subscriptable", other.type_name()),
            )),
        }
    }

    pub(super) fn attribute(&self, node: &Expr, v: Obj, attr: &str) -> R<Obj> {
        let methods: &[&str] = match &v {
            Obj::Dict(_) => &[
                "get",
                "pop",
                "update",
                "copy",
                "keys",
                "values",
                "items",
                "setdefault",
                "merge",
            ],
            Obj::List(_) => &[
                "append", "extend", "insert", "pop", "index", "count", "copy", "remove", "reverse",
            ],
            Obj::Tuple(_) => &["index", "count"],
            Obj::Str(_) => &[
                "format",
                "join",
                "split",
                "rsplit",
                "replace",
                "upper",
                "lower",
                "startswith",
                "endswith",
                "strip",
                "lstrip",
                "rstrip",
            ],
            _ => &[],
        };
        if methods.contains(&attr) {
            return Ok(Obj::Method(Box::new(v), attr.to_string()));
        }
        match &v {
            Obj::Dict(d) if d.borrow().config => {
                d.borrow().map.get(&skey(attr)).cloned().ok_or_else(|| {
                    self.err(
                        node,
                        "AttributeError",
                        format!("'ConfigDict' object has no attribute '{attr}'"),
                    )
                })
            }
            Obj::Module(m) => module_attr(m, attr).ok_or_else(|| {
                self.unsupported(node, format!("'{m}.{attr}' is not available in configs"))
            }),
            other => Err(self.err(
                node,
                "AttributeError",
                format!("'{}' object has no attribute '{attr}'", other.type_name()),
            )),
        }
    }
}
