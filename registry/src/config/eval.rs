//! A safe evaluator for the Python subset that OpenMMLab configs use. It interprets the AST of
//! `rustpython-parser`; it never imports, opens, calls or executes anything outside this file.
//!
//! Mirrors what `eval(codeobj, {'_base_': base_cfg_dict})` does in mmengine
//! (`mmengine/config/config.py: Config._file2dict`): dicts and lists are shared references
//! (`Rc<RefCell<..>>`) so in-place edits such as `model = _base_.model; model.backbone.depth = 7`
//! or `_base_.train_pipeline[2].update(...)` behave as in Python, `ConfigDict` semantics
//! (attribute access, recursive `update`, `pop` default `None`, `_hook` copies on assignment) are
//! kept apart from plain `dict` semantics. What the corpus needs was found by walking the AST of
//! all 1172 shipped configs (see tests/fixtures/config-corpus/REPORT.md).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use indexmap::IndexMap;
use rustpython_parser::ast::{self, Constant, Expr, Ranged, Stmt};

use super::error::{ConfigError, Location};

pub(crate) type ListRef = Rc<RefCell<Vec<Obj>>>;
pub(crate) type DictRef = Rc<RefCell<PyDict>>;

/// A hashable dict key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    Tuple(Vec<Key>),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct PyDict {
    pub map: IndexMap<Key, Obj>,
    /// `mmengine.config.ConfigDict` (attribute access, recursive update) vs a plain `dict`.
    pub config: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(ListRef),
    Tuple(Rc<Vec<Obj>>),
    Dict(DictRef),
    Builtin(&'static str),
    /// An imported module (mmengine drops these from the result).
    Module(String),
    /// A `def` (never called; mmengine drops these from the result).
    Function(String),
    Method(Box<Obj>, String),
}

pub(crate) fn new_dict(map: IndexMap<Key, Obj>, config: bool) -> Obj {
    Obj::Dict(Rc::new(RefCell::new(PyDict { map, config })))
}

pub(crate) fn new_list(v: Vec<Obj>) -> Obj {
    Obj::List(Rc::new(RefCell::new(v)))
}

impl Obj {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Obj::None => "NoneType",
            Obj::Bool(_) => "bool",
            Obj::Int(_) => "int",
            Obj::Float(_) => "float",
            Obj::Str(_) => "str",
            Obj::List(_) => "list",
            Obj::Tuple(_) => "tuple",
            Obj::Dict(d) => {
                if d.borrow().config {
                    "ConfigDict"
                } else {
                    "dict"
                }
            }
            Obj::Builtin(_) => "builtin_function_or_method",
            Obj::Module(_) => "module",
            Obj::Function(_) => "function",
            Obj::Method(..) => "method",
        }
    }

    pub(crate) fn truthy(&self) -> bool {
        match self {
            Obj::None => false,
            Obj::Bool(b) => *b,
            Obj::Int(i) => *i != 0,
            Obj::Float(f) => *f != 0.0,
            Obj::Str(s) => !s.is_empty(),
            Obj::List(l) => !l.borrow().is_empty(),
            Obj::Tuple(t) => !t.is_empty(),
            Obj::Dict(d) => !d.borrow().map.is_empty(),
            _ => true,
        }
    }
}

impl Key {
    pub(crate) fn to_obj(&self) -> Obj {
        match self {
            Key::Str(s) => Obj::Str(s.clone()),
            Key::Int(i) => Obj::Int(*i),
            Key::Bool(b) => Obj::Bool(*b),
            Key::None => Obj::None,
            Key::Tuple(t) => Obj::Tuple(Rc::new(t.iter().map(Key::to_obj).collect())),
        }
    }

    /// How `json.dumps` writes a non-string key.
    pub(crate) fn json_string(&self) -> String {
        match self {
            Key::Str(s) => s.clone(),
            Key::Int(i) => i.to_string(),
            Key::Bool(b) => b.to_string(),
            Key::None => "null".into(),
            Key::Tuple(_) => repr(&self.to_obj()),
        }
    }
}

pub(crate) fn key_of(o: &Obj) -> Option<Key> {
    Some(match o {
        Obj::Str(s) => Key::Str(s.clone()),
        Obj::Int(i) => Key::Int(*i),
        Obj::Bool(b) => Key::Bool(*b),
        Obj::None => Key::None,
        Obj::Tuple(t) => Key::Tuple(t.iter().map(key_of).collect::<Option<_>>()?),
        _ => return None,
    })
}

pub(crate) fn skey(s: &str) -> Key {
    Key::Str(s.to_string())
}

/// Containers nested deeper than this (only possible through a self-referencing list or dict,
/// which Python refuses too: `RecursionError` / "Circular reference detected") stop the
/// recursive helpers instead of overflowing the stack.
pub(crate) const MAX_DEPTH: usize = 500;

thread_local!(static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });

/// RAII depth counter shared by the recursive helpers.
pub(crate) struct Deep;

impl Deep {
    pub(crate) fn enter() -> Option<Deep> {
        DEPTH.with(|d| {
            if d.get() >= MAX_DEPTH {
                None
            } else {
                d.set(d.get() + 1);
                Some(Deep)
            }
        })
    }
}

impl Drop for Deep {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// `ConfigDict._hook`: plain dicts become (copied) ConfigDicts, lists and tuples are rebuilt;
/// ConfigDicts and scalars are kept as they are.
pub(crate) fn hook(o: &Obj) -> Obj {
    let Some(_deep) = Deep::enter() else {
        return o.clone();
    };
    match o {
        Obj::Dict(d) if !d.borrow().config => config_dict_from(&d.borrow()),
        Obj::List(l) => new_list(l.borrow().iter().map(hook).collect()),
        Obj::Tuple(t) => Obj::Tuple(Rc::new(t.iter().map(hook).collect())),
        other => other.clone(),
    }
}

/// `ConfigDict(d)`: a new ConfigDict whose values are hooked.
pub(crate) fn config_dict_from(d: &PyDict) -> Obj {
    new_dict(
        d.map.iter().map(|(k, v)| (k.clone(), hook(v))).collect(),
        true,
    )
}

/// Structural deep copy (`copy.deepcopy` without the memo: aliasing inside the copy is not
/// needed because every later step of mmengine copies again).
pub(crate) fn deep_copy(o: &Obj) -> Obj {
    let Some(_deep) = Deep::enter() else {
        return o.clone();
    };
    match o {
        Obj::Dict(d) => {
            let d = d.borrow();
            new_dict(
                d.map
                    .iter()
                    .map(|(k, v)| (k.clone(), deep_copy(v)))
                    .collect(),
                d.config,
            )
        }
        Obj::List(l) => new_list(l.borrow().iter().map(deep_copy).collect()),
        Obj::Tuple(t) => Obj::Tuple(Rc::new(t.iter().map(deep_copy).collect())),
        other => other.clone(),
    }
}

/// Python `repr` for the values configs hold.
pub(crate) fn repr(o: &Obj) -> String {
    let Some(_deep) = Deep::enter() else {
        return "...".into();
    };
    match o {
        Obj::Str(s) => py_str_repr(s),
        Obj::List(l) => format!(
            "[{}]",
            l.borrow().iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Obj::Tuple(t) if t.len() == 1 => format!("({},)", repr(&t[0])),
        Obj::Tuple(t) => format!("({})", t.iter().map(repr).collect::<Vec<_>>().join(", ")),
        Obj::Dict(d) => format!(
            "{{{}}}",
            d.borrow()
                .map
                .iter()
                .map(|(k, v)| format!("{}: {}", repr(&k.to_obj()), repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => py_str(other),
    }
}

fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python `str()`.
pub(crate) fn py_str(o: &Obj) -> String {
    match o {
        Obj::None => "None".into(),
        Obj::Bool(true) => "True".into(),
        Obj::Bool(false) => "False".into(),
        Obj::Int(i) => i.to_string(),
        Obj::Float(f) => float_repr(*f),
        Obj::Str(s) => s.clone(),
        Obj::Builtin(n) => format!("<built-in function {n}>"),
        Obj::Module(n) => format!("<module '{n}'>"),
        Obj::Function(n) => format!("<function {n}>"),
        Obj::Method(_, n) => format!("<method {n}>"),
        other => repr(other),
    }
}

/// Python's `repr(float)`: shortest round-trip digits, scientific when the exponent is < -4 or
/// >= 16, `.0` on integral values.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{f:e}"); // e.g. "1.2345e-5", shortest round-trip
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let es = if exp < 0 { "-" } else { "+" };
        return format!("{sign}{m}e{es}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        format!("{sign}0.{}{}", "0".repeat((-point) as usize), digits)
    } else if (point as usize) >= digits.len() {
        format!(
            "{sign}{}{}.0",
            digits,
            "0".repeat(point as usize - digits.len())
        )
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{sign}{a}.{b}")
    }
}

type R<T> = Result<T, ConfigError>;

/// Interpreter state for one config file.
pub(crate) struct Interp<'a> {
    path: &'a Path,
    src: &'a str,
    line_starts: Vec<usize>,
    pub globals: IndexMap<String, Obj>,
    locals: Vec<HashMap<String, Obj>>,
}

const BUILTINS: &[&str] = &[
    "dict",
    "list",
    "tuple",
    "set",
    "range",
    "len",
    "enumerate",
    "int",
    "float",
    "str",
    "bool",
    "round",
    "hasattr",
    "getattr",
    "min",
    "max",
    "sum",
    "abs",
    "zip",
    "sorted",
    "reversed",
    "any",
    "all",
    "isinstance",
];

/// Standard-library modules a config may `import` (bound as names, never really imported; mmengine
/// drops modules from the result). Only the functions listed in `module_attr` are usable.
const IMPORTABLE: &[&str] = &["math", "copy", "os", "os.path"];

impl<'a> Interp<'a> {
    pub(crate) fn new(path: &'a Path, src: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Interp {
            path,
            src,
            line_starts,
            globals: IndexMap::new(),
            locals: Vec::new(),
        }
    }

    pub(crate) fn location(&self, offset: usize) -> (Location, String) {
        location_in(self.path, self.src, &self.line_starts, offset)
    }

    fn err(
        &self,
        node: &impl Ranged,
        kind: &'static str,
        message: impl Into<String>,
    ) -> ConfigError {
        let (at, snippet) = self.location(node.start().to_usize());
        ConfigError::Eval {
            at,
            kind,
            message: message.into(),
            snippet,
        }
    }

    fn unsupported(&self, node: &impl Ranged, what: impl Into<String>) -> ConfigError {
        let (at, snippet) = self.location(node.start().to_usize());
        ConfigError::Unsupported {
            at,
            what: what.into(),
            snippet,
        }
    }

    // ----------------------------------------------------------------------------- statements

    pub(crate) fn exec_block(&mut self, body: &[Stmt]) -> R<()> {
        for s in body {
            self.exec(s)?;
        }
        Ok(())
    }

    fn exec(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::Assign(a) => {
                // mmengine's RemoveAssignFromAST drops every `_base_ = ...` before execution.
                if matches!(a.targets.first(), Some(Expr::Name(n)) if n.id.as_str() == "_base_") {
                    return Ok(());
                }
                let v = self.eval(&a.value)?;
                for t in &a.targets {
                    self.assign(t, v.clone())?;
                }
                Ok(())
            }
            Stmt::AnnAssign(a) => match &a.value {
                Some(v) => {
                    let v = self.eval(v)?;
                    self.assign(&a.target, v)
                }
                None => Ok(()),
            },
            Stmt::AugAssign(a) => {
                let cur = self.eval(&a.target)?;
                let rhs = self.eval(&a.value)?;
                // `lst += x` extends in place (aliases see it); everything else rebinds.
                if let (Obj::List(l), ast::Operator::Add) = (&cur, &a.op) {
                    let items = self.iterate(a.value.as_ref(), &rhs)?;
                    l.borrow_mut().extend(items);
                    return Ok(());
                }
                let v = self.binop(s, &a.op, cur, rhs)?;
                self.assign(&a.target, v)
            }
            Stmt::Expr(e) => self.eval(&e.value).map(|_| ()),
            Stmt::Pass(_) => Ok(()),
            Stmt::Delete(d) => {
                for t in &d.targets {
                    self.delete(t)?;
                }
                Ok(())
            }
            Stmt::If(i) => {
                if self.eval(&i.test)?.truthy() {
                    self.exec_block(&i.body)
                } else {
                    self.exec_block(&i.orelse)
                }
            }
            Stmt::For(f) => {
                if !f.orelse.is_empty() {
                    return Err(self.unsupported(s, "for ... else"));
                }
                let it = self.eval(&f.iter)?;
                for item in self.iterate(f.iter.as_ref(), &it)? {
                    self.assign(&f.target, item)?;
                    self.exec_block(&f.body)?;
                }
                Ok(())
            }
            Stmt::Assert(a) => {
                if self.eval(&a.test)?.truthy() {
                    Ok(())
                } else {
                    let msg = match &a.msg {
                        Some(m) => py_str(&self.eval(m)?),
                        None => String::new(),
                    };
                    Err(self.err(s, "AssertionError", msg))
                }
            }
            Stmt::Import(i) => {
                for alias in &i.names {
                    let name = alias.name.as_str();
                    if !IMPORTABLE.contains(&name) {
                        return Err(self.unsupported(
                            s,
                            format!(
                                "import of module '{name}' (only {} may be imported)",
                                IMPORTABLE.join(", ")
                            ),
                        ));
                    }
                    match &alias.asname {
                        Some(asn) => self.set_name(asn.as_str(), Obj::Module(name.to_string())),
                        None => {
                            let top = name.split('.').next().unwrap_or(name);
                            self.set_name(top, Obj::Module(top.to_string()))
                        }
                    }
                }
                Ok(())
            }
            Stmt::ImportFrom(i) => {
                let module = i
                    .module
                    .as_ref()
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default();
                if i.level.map(|l| l.to_u32()).unwrap_or(0) != 0
                    || !IMPORTABLE.contains(&module.as_str())
                {
                    return Err(self.unsupported(s, format!("import from module '{module}'")));
                }
                for alias in &i.names {
                    let attr = alias.name.as_str();
                    let v = module_attr(&module, attr).ok_or_else(|| {
                        self.unsupported(
                            s,
                            format!("'{module}.{attr}' is not available in configs"),
                        )
                    })?;
                    let bind = alias.asname.as_ref().map(|a| a.as_str()).unwrap_or(attr);
                    self.set_name(bind, v);
                }
                Ok(())
            }
            Stmt::FunctionDef(f) => {
                // Defining is harmless; calling is refused. mmengine drops functions from the result.
                self.set_name(f.name.as_str(), Obj::Function(f.name.to_string()));
                Ok(())
            }
            other => Err(self.unsupported(other, format!("statement `{}`", stmt_kind(other)))),
        }
    }

    fn set_name(&mut self, name: &str, v: Obj) {
        match self.locals.last_mut() {
            Some(scope) => {
                scope.insert(name.to_string(), v);
            }
            None => {
                self.globals.insert(name.to_string(), v);
            }
        }
    }

    fn assign(&mut self, target: &Expr, v: Obj) -> R<()> {
        match target {
            Expr::Name(n) => {
                self.set_name(n.id.as_str(), v);
                Ok(())
            }
            Expr::Tuple(ast::ExprTuple { elts, .. }) | Expr::List(ast::ExprList { elts, .. }) => {
                let items = self.iterate(target, &v)?;
                if items.len() != elts.len() {
                    return Err(self.err(
                        target,
                        "ValueError",
                        format!(
                            "cannot unpack {} values into {} names",
                            items.len(),
                            elts.len()
                        ),
                    ));
                }
                for (t, item) in elts.iter().zip(items) {
                    self.assign(t, item)?;
                }
                Ok(())
            }
            Expr::Attribute(a) => {
                let obj = self.eval(&a.value)?;
                match &obj {
                    Obj::Dict(d) if d.borrow().config => {
                        d.borrow_mut().map.insert(skey(a.attr.as_str()), hook(&v));
                        Ok(())
                    }
                    _ => Err(self.err(
                        target,
                        "AttributeError",
                        format!(
                            "'{}' object has no attribute '{}'",
                            obj.type_name(),
                            a.attr.as_str()
                        ),
                    )),
                }
            }
            Expr::Subscript(sub) => {
                let obj = self.eval(&sub.value)?;
                let idx = self.eval(&sub.slice)?;
                match &obj {
                    Obj::Dict(d) => {
                        let k = key_of(&idx).ok_or_else(|| {
                            self.err(
                                target,
                                "TypeError",
                                format!("unhashable type: '{}'", idx.type_name()),
                            )
                        })?;
                        let config = d.borrow().config;
                        d.borrow_mut()
                            .map
                            .insert(k, if config { hook(&v) } else { v });
                        Ok(())
                    }
                    Obj::List(l) => {
                        let len = l.borrow().len();
                        let i = self.index(target, &idx, len)?;
                        l.borrow_mut()[i] = v;
                        Ok(())
                    }
                    _ => Err(self.err(
                        target,
                        "TypeError",
                        format!(
                            "'{}' object does not support item assignment",
                            obj.type_name()
                        ),
                    )),
                }
            }
            Expr::Starred(_) => Err(self.unsupported(target, "starred assignment")),
            other => Err(self.unsupported(other, "assignment to this kind of target")),
        }
    }

    fn delete(&mut self, target: &Expr) -> R<()> {
        match target {
            Expr::Name(n) => {
                let name = n.id.as_str();
                let removed = match self.locals.last_mut() {
                    Some(scope) => scope.remove(name).is_some(),
                    None => self.globals.shift_remove(name).is_some(),
                };
                if removed {
                    Ok(())
                } else {
                    Err(self.undefined(target, name))
                }
            }
            Expr::Attribute(a) => {
                let obj = self.eval(&a.value)?;
                match &obj {
                    Obj::Dict(d) if d.borrow().config => {
                        if d.borrow_mut()
                            .map
                            .shift_remove(&skey(a.attr.as_str()))
                            .is_none()
                        {
                            return Err(self.err(target, "AttributeError", a.attr.to_string()));
                        }
                        Ok(())
                    }
                    _ => Err(self.err(
                        target,
                        "AttributeError",
                        format!(
                            "'{}' object has no attribute '{}'",
                            obj.type_name(),
                            a.attr.as_str()
                        ),
                    )),
                }
            }
            Expr::Subscript(sub) => {
                let obj = self.eval(&sub.value)?;
                let idx = self.eval(&sub.slice)?;
                match &obj {
                    Obj::Dict(d) => {
                        let k = key_of(&idx);
                        let removed = k.and_then(|k| d.borrow_mut().map.shift_remove(&k));
                        if removed.is_none() {
                            return Err(self.err(target, "KeyError", repr(&idx)));
                        }
                        Ok(())
                    }
                    Obj::List(l) => {
                        let len = l.borrow().len();
                        let i = self.index(target, &idx, len)?;
                        l.borrow_mut().remove(i);
                        Ok(())
                    }
                    _ => Err(self.err(
                        target,
                        "TypeError",
                        format!("'{}' object doesn't support item deletion", obj.type_name()),
                    )),
                }
            }
            other => Err(self.unsupported(other, "deletion of this kind of target")),
        }
    }

    // ----------------------------------------------------------------------------- expressions

    fn undefined(&self, node: &impl Ranged, name: &str) -> ConfigError {
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
            return Err(self.unsupported(e, "expression nested too deeply"));
        };
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

    fn overflow(&self, e: &impl Ranged) -> ConfigError {
        self.err(
            e,
            "OverflowError",
            "integer outside the 64-bit range configs support",
        )
    }

    fn key(&self, node: &impl Ranged, v: &Obj) -> R<Key> {
        key_of(v).ok_or_else(|| {
            self.err(
                node,
                "TypeError",
                format!("unhashable type: '{}'", v.type_name()),
            )
        })
    }

    fn eval_elts(&mut self, elts: &[Expr]) -> R<Vec<Obj>> {
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

    fn spread_mapping(&self, node: &impl Ranged, src: &Obj, map: &mut IndexMap<Key, Obj>) -> R<()> {
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

    fn index(&self, node: &impl Ranged, idx: &Obj, len: usize) -> R<usize> {
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

    fn attribute(&self, node: &Expr, v: Obj, attr: &str) -> R<Obj> {
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

    fn call(&mut self, e: &Expr, c: &ast::ExprCall) -> R<Obj> {
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

    fn arity(
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
                let mut out = Vec::new();
                let mut i = start;
                while (step > 0 && i < stop) || (step < 0 && i > stop) {
                    out.push(Obj::Int(i));
                    if out.len() > 10_000_000 {
                        return Err(self.err(e, "MemoryError", "range too large for a config"));
                    }
                    i += step;
                }
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

    fn call_method(
        &mut self,
        e: &Expr,
        recv: Obj,
        name: &str,
        args: Vec<Obj>,
        kwargs: IndexMap<String, Obj>,
    ) -> R<Obj> {
        match recv {
            Obj::Dict(d) => self.dict_method(e, &d, name, args, kwargs),
            Obj::List(l) => {
                let mut list = l.borrow_mut();
                match name {
                    "append" => {
                        self.arity(e, name, &args, &kwargs, 1, 1)?;
                        list.push(args[0].clone());
                        Ok(Obj::None)
                    }
                    "extend" => {
                        self.arity(e, name, &args, &kwargs, 1, 1)?;
                        let items = self.iterate(e, &args[0])?;
                        list.extend(items);
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
                    "remove" | "index" | "count" => {
                        self.arity(e, name, &args, &kwargs, 1, 1)?;
                        let pos = list.iter().position(|x| py_eq(x, &args[0]));
                        match name {
                            "count" => Ok(Obj::Int(
                                list.iter().filter(|x| py_eq(x, &args[0])).count() as i64,
                            )),
                            _ => {
                                let Some(p) = pos else {
                                    return Err(self.err(
                                        e,
                                        "ValueError",
                                        format!("{} is not in list", repr(&args[0])),
                                    ));
                                };
                                if name == "remove" {
                                    list.remove(p);
                                    Ok(Obj::None)
                                } else {
                                    Ok(Obj::Int(p as i64))
                                }
                            }
                        }
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
    fn mapping_from_args(
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

    // ----------------------------------------------------------------------------- operators

    pub(crate) fn binop(&self, node: &impl Ranged, op: &ast::Operator, l: Obj, r: Obj) -> R<Obj> {
        use ast::Operator as Op;
        let type_err = |me: &Self, l: &Obj, r: &Obj| {
            me.err(
                node,
                "TypeError",
                format!(
                    "unsupported operand type(s) for {}: '{}' and '{}'",
                    op_symbol(op),
                    l.type_name(),
                    r.type_name()
                ),
            )
        };
        let as_int = |o: &Obj| match o {
            Obj::Int(i) => Some(*i),
            Obj::Bool(b) => Some(*b as i64),
            _ => None,
        };
        let as_f = |o: &Obj| match o {
            Obj::Float(f) => Some(*f),
            other => as_int(other).map(|i| i as f64),
        };
        if let (Some(a), Some(b)) = (as_int(&l), as_int(&r)) {
            let ovf = || self.overflow(node);
            return Ok(match op {
                Op::Add => Obj::Int(a.checked_add(b).ok_or_else(ovf)?),
                Op::Sub => Obj::Int(a.checked_sub(b).ok_or_else(ovf)?),
                Op::Mult => Obj::Int(a.checked_mul(b).ok_or_else(ovf)?),
                Op::Div => {
                    if b == 0 {
                        return Err(self.err(node, "ZeroDivisionError", "division by zero"));
                    }
                    Obj::Float(a as f64 / b as f64)
                }
                Op::FloorDiv | Op::Mod => {
                    if b == 0 {
                        return Err(self.err(
                            node,
                            "ZeroDivisionError",
                            "integer division or modulo by zero",
                        ));
                    }
                    let q = a.div_euclid(b);
                    // Python floors toward -inf, Rust's div_euclid keeps the remainder >= 0.
                    let (q, m) = if b < 0 && a.rem_euclid(b) != 0 {
                        (q - 1, a.rem_euclid(b) + b)
                    } else {
                        (q, a.rem_euclid(b))
                    };
                    if matches!(op, Op::FloorDiv) {
                        Obj::Int(q)
                    } else {
                        Obj::Int(m)
                    }
                }
                Op::Pow => {
                    if b >= 0 {
                        Obj::Int(
                            a.checked_pow(u32::try_from(b).map_err(|_| ovf())?)
                                .ok_or_else(ovf)?,
                        )
                    } else {
                        Obj::Float((a as f64).powf(b as f64))
                    }
                }
                Op::LShift => Obj::Int(
                    a.checked_shl(u32::try_from(b).map_err(|_| ovf())?)
                        .ok_or_else(ovf)?,
                ),
                Op::RShift => Obj::Int(a >> b.clamp(0, 63)),
                Op::BitAnd => Obj::Int(a & b),
                Op::BitOr => Obj::Int(a | b),
                Op::BitXor => Obj::Int(a ^ b),
                Op::MatMult => return Err(type_err(self, &l, &r)),
            });
        }
        if let (Some(a), Some(b)) = (as_f(&l), as_f(&r)) {
            return Ok(Obj::Float(match op {
                Op::Add => a + b,
                Op::Sub => a - b,
                Op::Mult => a * b,
                Op::Div => {
                    if b == 0.0 {
                        return Err(self.err(node, "ZeroDivisionError", "float division by zero"));
                    }
                    a / b
                }
                Op::FloorDiv => {
                    if b == 0.0 {
                        return Err(self.err(
                            node,
                            "ZeroDivisionError",
                            "float floor division by zero",
                        ));
                    }
                    (a / b).floor()
                }
                Op::Mod => {
                    if b == 0.0 {
                        return Err(self.err(node, "ZeroDivisionError", "float modulo"));
                    }
                    a - b * (a / b).floor()
                }
                Op::Pow => a.powf(b),
                _ => return Err(type_err(self, &l, &r)),
            }));
        }
        match (op, &l, &r) {
            (Op::Add, Obj::Str(a), Obj::Str(b)) => Ok(Obj::Str(format!("{a}{b}"))),
            (Op::Add, Obj::List(a), Obj::List(b)) => {
                let mut v = a.borrow().clone();
                v.extend(b.borrow().iter().cloned());
                Ok(new_list(v))
            }
            (Op::Add, Obj::Tuple(a), Obj::Tuple(b)) => {
                let mut v = a.as_ref().clone();
                v.extend(b.iter().cloned());
                Ok(Obj::Tuple(Rc::new(v)))
            }
            (Op::Mult, Obj::Str(_) | Obj::List(_) | Obj::Tuple(_), Obj::Int(_))
            | (Op::Mult, Obj::Int(_), Obj::Str(_) | Obj::List(_) | Obj::Tuple(_)) => {
                let (seq, n) = if let Obj::Int(n) = r {
                    (&l, n)
                } else if let Obj::Int(n) = l {
                    (&r, n)
                } else {
                    (&l, 0)
                };
                let n = n.max(0) as usize;
                if n > 1_000_000 {
                    return Err(self.err(
                        node,
                        "MemoryError",
                        "sequence repetition too large for a config",
                    ));
                }
                Ok(match seq {
                    Obj::Str(s) => Obj::Str(s.repeat(n)),
                    Obj::List(v) => new_list(
                        v.borrow()
                            .iter()
                            .cloned()
                            .cycle()
                            .take(v.borrow().len() * n)
                            .collect(),
                    ),
                    Obj::Tuple(v) => Obj::Tuple(Rc::new(
                        v.iter().cloned().cycle().take(v.len() * n).collect(),
                    )),
                    _ => Obj::None,
                })
            }
            (Op::Mod, Obj::Str(fmt), _) => {
                let args = match &r {
                    Obj::Tuple(t) => t.as_ref().clone(),
                    other => vec![other.clone()],
                };
                percent_format(fmt, &args)
                    .map(Obj::Str)
                    .map_err(|m| self.err(node, "TypeError", m))
            }
            (Op::BitOr, Obj::Dict(a), Obj::Dict(b)) => {
                let mut m = a.borrow().map.clone();
                for (k, v) in &b.borrow().map {
                    m.insert(k.clone(), v.clone());
                }
                Ok(new_dict(m, false))
            }
            _ => Err(type_err(self, &l, &r)),
        }
    }

    fn compare(&self, node: &Expr, op: &ast::CmpOp, l: &Obj, r: &Obj) -> R<bool> {
        use ast::CmpOp as C;
        Ok(match op {
            C::Eq => py_eq(l, r),
            C::NotEq => !py_eq(l, r),
            C::Is => match (l, r) {
                (Obj::None, Obj::None) => true,
                (Obj::Bool(a), Obj::Bool(b)) => a == b,
                (Obj::Dict(a), Obj::Dict(b)) => Rc::ptr_eq(a, b),
                (Obj::List(a), Obj::List(b)) => Rc::ptr_eq(a, b),
                _ => false,
            },
            C::IsNot => !self.compare(node, &C::Is, l, r)?,
            C::In | C::NotIn => {
                let found = match r {
                    Obj::Str(s) => match l {
                        Obj::Str(sub) => s.contains(sub.as_str()),
                        _ => {
                            return Err(self.err(
                                node,
                                "TypeError",
                                "'in <string>' requires string as left operand",
                            ))
                        }
                    },
                    Obj::Dict(d) => key_of(l)
                        .map(|k| d.borrow().map.contains_key(&k))
                        .unwrap_or(false),
                    other => self.iterate(node, other)?.iter().any(|x| py_eq(x, l)),
                };
                found == matches!(op, C::In)
            }
            C::Lt | C::LtE | C::Gt | C::GtE => {
                let ord = num_or_str_cmp(l, r).ok_or_else(|| {
                    self.err(
                        node,
                        "TypeError",
                        format!(
                            "'<' not supported between instances of '{}' and '{}'",
                            l.type_name(),
                            r.type_name()
                        ),
                    )
                })?;
                match op {
                    C::Lt => ord.is_lt(),
                    C::LtE => ord.is_le(),
                    C::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                }
            }
        })
    }
}

/// `ConfigDict.update` (mmengine config.py): dict values merge recursively into dict values,
/// everything else is replaced (hooked).
pub(crate) fn config_update(d: &DictRef, other: IndexMap<Key, Obj>) {
    for (k, v) in other {
        let existing = d.borrow().map.get(&k).cloned();
        match (existing, &v) {
            (Some(Obj::Dict(cur)), Obj::Dict(new)) => {
                let new_map = new.borrow().map.clone();
                if cur.borrow().config {
                    config_update(&cur, new_map);
                } else {
                    let mut c = cur.borrow_mut();
                    for (k2, v2) in new_map {
                        c.map.insert(k2, v2);
                    }
                }
            }
            _ => {
                d.borrow_mut().map.insert(k, hook(&v));
            }
        }
    }
}

fn shallow_copy(o: &Obj) -> Obj {
    match o {
        Obj::Dict(d) => {
            let d = d.borrow();
            new_dict(d.map.clone(), d.config)
        }
        Obj::List(l) => new_list(l.borrow().clone()),
        other => other.clone(),
    }
}

fn module_attr(module: &str, attr: &str) -> Option<Obj> {
    Some(match (module, attr) {
        ("math", "pi") => Obj::Float(std::f64::consts::PI),
        ("math", "e") => Obj::Float(std::f64::consts::E),
        ("math", "inf") => Obj::Float(f64::INFINITY),
        ("math", "sqrt") => Obj::Builtin("math.sqrt"),
        ("math", "ceil") => Obj::Builtin("math.ceil"),
        ("math", "floor") => Obj::Builtin("math.floor"),
        ("math", "log") => Obj::Builtin("math.log"),
        ("math", "log2") => Obj::Builtin("math.log2"),
        ("math", "exp") => Obj::Builtin("math.exp"),
        ("copy", "deepcopy") => Obj::Builtin("copy.deepcopy"),
        ("copy", "copy") => Obj::Builtin("copy.copy"),
        ("os", "path") => Obj::Module("os.path".into()),
        ("os.path", "join") => Obj::Builtin("os.path.join"),
        _ => return None,
    })
}

pub(crate) fn py_eq(a: &Obj, b: &Obj) -> bool {
    let Some(_deep) = Deep::enter() else {
        return false;
    };
    match (a, b) {
        (Obj::None, Obj::None) => true,
        (Obj::Str(x), Obj::Str(y)) => x == y,
        (Obj::List(x), Obj::List(y)) => {
            let (x, y) = (x.borrow(), y.borrow());
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| py_eq(a, b))
        }
        (Obj::Tuple(x), Obj::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| py_eq(a, b))
        }
        (Obj::Dict(x), Obj::Dict(y)) => {
            let (x, y) = (x.borrow(), y.borrow());
            x.map.len() == y.map.len()
                && x.map
                    .iter()
                    .all(|(k, v)| y.map.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

fn num(o: &Obj) -> Option<f64> {
    match o {
        Obj::Int(i) => Some(*i as f64),
        Obj::Bool(b) => Some(*b as i64 as f64),
        Obj::Float(f) => Some(*f),
        _ => None,
    }
}

fn num_or_str_cmp(a: &Obj, b: &Obj) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Obj::Str(x), Obj::Str(y)) => Some(x.cmp(y)),
        _ => num(a)?.partial_cmp(&num(b)?),
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

fn op_symbol(op: &ast::Operator) -> &'static str {
    use ast::Operator as Op;
    match op {
        Op::Add => "+",
        Op::Sub => "-",
        Op::Mult => "*",
        Op::MatMult => "@",
        Op::Div => "/",
        Op::Mod => "%",
        Op::Pow => "** or pow()",
        Op::LShift => "<<",
        Op::RShift => ">>",
        Op::BitOr => "|",
        Op::BitXor => "^",
        Op::BitAnd => "&",
        Op::FloorDiv => "//",
    }
}

fn stmt_kind(s: &Stmt) -> &'static str {
    match s {
        Stmt::ClassDef(_) => "class",
        Stmt::AsyncFunctionDef(_) => "async def",
        Stmt::Return(_) => "return",
        Stmt::While(_) => "while",
        Stmt::With(_) | Stmt::AsyncWith(_) => "with",
        Stmt::Raise(_) => "raise",
        Stmt::Try(_) | Stmt::TryStar(_) => "try",
        Stmt::Global(_) | Stmt::Nonlocal(_) => "global/nonlocal",
        Stmt::Match(_) => "match",
        Stmt::Break(_) | Stmt::Continue(_) => "break/continue",
        _ => "statement",
    }
}

/// Python `format(value, spec)` for the specs configs use: `[[fill]align][sign][0][width][,][.prec][type]`.
pub(crate) fn format_spec(v: &Obj, spec: &str) -> Result<String, String> {
    if spec.is_empty() {
        return Ok(py_str(v));
    }
    let re_chars: Vec<char> = spec.chars().collect();
    let mut i = 0;
    let (mut fill, mut align) = (' ', None);
    if re_chars.len() >= 2 && "<>^=".contains(re_chars[1]) {
        fill = re_chars[0];
        align = Some(re_chars[1]);
        i = 2;
    } else if !re_chars.is_empty() && "<>^=".contains(re_chars[0]) {
        align = Some(re_chars[0]);
        i = 1;
    }
    let mut sign = '-';
    if i < re_chars.len() && "+- ".contains(re_chars[i]) {
        sign = re_chars[i];
        i += 1;
    }
    if i < re_chars.len() && re_chars[i] == '0' {
        fill = '0';
        align = align.or(Some('='));
        i += 1;
    }
    let mut width = 0usize;
    while i < re_chars.len() && re_chars[i].is_ascii_digit() {
        width = width * 10 + re_chars[i].to_digit(10).unwrap_or(0) as usize;
        i += 1;
    }
    let mut prec = None;
    if i < re_chars.len() && re_chars[i] == '.' {
        i += 1;
        let mut p = 0usize;
        while i < re_chars.len() && re_chars[i].is_ascii_digit() {
            p = p * 10 + re_chars[i].to_digit(10).unwrap_or(0) as usize;
            i += 1;
        }
        prec = Some(p);
    }
    let ty: String = re_chars[i..].iter().collect();
    let (neg, body) = match (ty.as_str(), v) {
        ("" | "s", Obj::Str(s)) => (
            false,
            match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
        ),
        ("" | "d", Obj::Int(n)) => (*n < 0, n.unsigned_abs().to_string()),
        ("f" | "F" | "%" | "e" | "" | "g", Obj::Int(_) | Obj::Float(_)) => {
            let f = num(v).unwrap_or(0.0);
            let f = if ty == "%" { f * 100.0 } else { f };
            let body = match ty.as_str() {
                "e" => {
                    let s = format!("{:.*e}", prec.unwrap_or(6), f.abs());
                    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                    let e: i32 = e.parse().unwrap_or(0);
                    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
                }
                "" | "g" if prec.is_none() => float_repr(f.abs()),
                "g" | "" => return Err(format!("format spec '{spec}' not supported in configs")),
                _ => format!("{:.*}", prec.unwrap_or(6), f.abs()),
            };
            (
                f.is_sign_negative() && f != 0.0,
                if ty == "%" { format!("{body}%") } else { body },
            )
        }
        _ => {
            return Err(format!(
                "format spec '{spec}' not supported for {}",
                v.type_name()
            ))
        }
    };
    let sign_str = match (neg, sign) {
        (true, _) => "-",
        (false, '+') => "+",
        (false, ' ') => " ",
        _ => "",
    };
    let len = sign_str.chars().count() + body.chars().count();
    let pad = width.saturating_sub(len);
    let padding: String = std::iter::repeat_n(fill, pad).collect();
    let default_align = if matches!(v, Obj::Str(_)) { '<' } else { '>' };
    Ok(match align.unwrap_or(default_align) {
        '<' => format!("{sign_str}{body}{padding}"),
        '^' => {
            let left: String = std::iter::repeat_n(fill, pad / 2).collect();
            let right: String = std::iter::repeat_n(fill, pad - pad / 2).collect();
            format!("{left}{sign_str}{body}{right}")
        }
        '=' => format!("{sign_str}{padding}{body}"),
        _ => format!("{padding}{sign_str}{body}"),
    })
}

/// `str.format` with `{}`, `{0}`, `{name}`, `{name.attr}` is not supported, `{x:spec}`, `{{`/`}}`.
fn python_format(
    fmt: &str,
    args: &[Obj],
    kwargs: &IndexMap<String, Obj>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut auto = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut field = String::new();
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    field.push(c);
                }
                let (name, spec) = field.split_once(':').unwrap_or((&field, ""));
                let (name, conv) = name
                    .split_once('!')
                    .map(|(n, c)| (n, Some(c)))
                    .unwrap_or((name, None));
                let v = if name.is_empty() {
                    auto += 1;
                    args.get(auto - 1)
                } else if let Ok(i) = name.parse::<usize>() {
                    args.get(i)
                } else {
                    kwargs.get(name)
                }
                .ok_or_else(|| format!("replacement field '{{{field}}}' has no argument"))?;
                let v = match conv {
                    Some("r") => Obj::Str(repr(v)),
                    Some("s") => Obj::Str(py_str(v)),
                    _ => v.clone(),
                };
                out.push_str(&format_spec(&v, spec)?);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `'%s' % x` with `%s %r %d %i %f %.Nf %%`.
fn percent_format(fmt: &str, args: &[Obj]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&n) = chars.peek() {
            chars.next();
            if n.is_ascii_alphabetic() || n == '%' {
                spec.push(n);
                break;
            }
            spec.push(n);
        }
        if spec == "%" {
            out.push('%');
            continue;
        }
        let ty = spec.pop().ok_or("incomplete format")?;
        let v = it.next().ok_or("not enough arguments for format string")?;
        match ty {
            's' => out.push_str(&format_spec(&Obj::Str(py_str(v)), &spec)?),
            'r' => out.push_str(&format_spec(&Obj::Str(repr(v)), &spec)?),
            'd' | 'i' => {
                let n = match v {
                    Obj::Float(f) => Obj::Int(f.trunc() as i64),
                    other => other.clone(),
                };
                out.push_str(&format_spec(&n, &format!("{spec}d"))?)
            }
            'f' | 'e' => out.push_str(&format_spec(v, &format!("{spec}{ty}"))?),
            _ => return Err(format!("unsupported format character '{ty}'")),
        }
    }
    if it.next().is_some() {
        return Err("not all arguments converted during string formatting".into());
    }
    Ok(out)
}

/// 1-based line/column of a byte offset, plus the source line with a caret under the column.
pub(crate) fn location_in(
    path: &Path,
    src: &str,
    line_starts: &[usize],
    offset: usize,
) -> (Location, String) {
    let offset = offset.min(src.len());
    let line_idx = match line_starts.binary_search(&offset) {
        Ok(i) => i,
        Err(i) => i.saturating_sub(1),
    };
    let start = line_starts.get(line_idx).copied().unwrap_or(0);
    let end = src[start..]
        .find('\n')
        .map(|i| start + i)
        .unwrap_or(src.len());
    let line = &src[start..end];
    let col = src
        .get(start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(0);
    let snippet = format!("    {}\n    {}^", line.trim_end(), " ".repeat(col));
    (
        Location {
            path: path.to_path_buf(),
            line: line_idx + 1,
            col: col + 1,
        },
        snippet,
    )
}

pub(crate) fn line_starts(src: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(src.match_indices('\n').map(|(i, _)| i + 1));
    v
}
