//! Statements: assignments, `del`, `if`/`for`, `assert` and the allowed `import`s.

use rustpython_parser::ast::{self, Expr, Stmt};

use super::format::{py_str, repr};
use super::object::{hook, key_of, skey, Obj};
use super::{module_attr, Interp, IMPORTABLE, R};

impl Interp<'_> {
    pub(crate) fn exec_block(&mut self, body: &[Stmt]) -> R<()> {
        for s in body {
            self.exec(s)?;
        }
        Ok(())
    }

    fn exec(&mut self, s: &Stmt) -> R<()> {
        if !super::limits::charge(1) {
            return Err(self.limit_error(s));
        }
        let r = self.exec_unbounded(s);
        self.bounded(s, r)
    }

    fn exec_unbounded(&mut self, s: &Stmt) -> R<()> {
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
                    let len = (l.borrow().len() + items.len()) as u64;
                    if !super::limits::allow_len(len, "a list") {
                        return Err(self.limit_error(s));
                    }
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

    pub(super) fn assign(&mut self, target: &Expr, v: Obj) -> R<()> {
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
                        // Hooked before the dict is borrowed for writing: the value may hold
                        // the dict itself (`p[0].s = dict(e=p)`; `_hook` keeps a ConfigDict as
                        // it is, a cycle as in mmengine). A fuzzing finding: the nested borrow
                        // panicked.
                        let v = hook(&v);
                        d.borrow_mut().map.insert(skey(a.attr.as_str()), v);
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
                        // Hooked first, as for attributes: `v` may hold `d`.
                        let v = if d.borrow().config { hook(&v) } else { v };
                        d.borrow_mut().map.insert(k, v);
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
