//! Binary operators and comparisons with Python's semantics for the types configs hold.

use std::rc::Rc;

use rustpython_parser::ast::{self, Expr, Ranged};

use super::format::percent_format;
use super::object::{key_of, new_dict, new_list, num_or_str_cmp, py_eq, Obj};
use super::{limits, Interp, R};

impl Interp<'_> {
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
                let unit = match seq {
                    Obj::Str(s) => s.len(),
                    Obj::List(v) => v.borrow().len(),
                    Obj::Tuple(v) => v.len(),
                    _ => 0,
                };
                // Checked before allocating: `'x' * 10**12` must not try, and `[s] * 10**6`
                // copies the bytes of `s` a million times.
                let total = (unit as u64).saturating_mul(n as u64);
                let bytes = (limits::weight(seq) as u64).saturating_mul(n as u64);
                if !limits::allow_len(total, &format!("{} repetition", seq.type_name()))
                    || !limits::charge(bytes.min(usize::MAX as u64) as usize)
                {
                    return Err(self.limit_error(node));
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

    pub(super) fn compare(&self, node: &Expr, op: &ast::CmpOp, l: &Obj, r: &Obj) -> R<bool> {
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
