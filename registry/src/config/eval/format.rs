//! Python `repr`/`str` of config values and the formatting mini-languages (`format`, `%`).

use indexmap::IndexMap;

use super::object::{num, Deep, Obj};

/// Python `repr` for the values configs hold.
pub(crate) fn repr(o: &Obj) -> String {
    let Some(_deep) = Deep::enter() else {
        return "...".into();
    };
    match o {
        Obj::Str(s) if !super::limits::charge(s.len()) => "...".into(),
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

pub(super) fn py_str_repr(s: &str) -> String {
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
    // Width and precision allocate that many characters: checked against `seq_len` first
    // (`'{:>99999999999}'.format(1)`), saturating so that no digit string overflows.
    let digits = |i: &mut usize| {
        let mut n = 0usize;
        while *i < re_chars.len() && re_chars[*i].is_ascii_digit() {
            n = n
                .saturating_mul(10)
                .saturating_add(re_chars[*i].to_digit(10).unwrap_or(0) as usize);
            *i += 1;
        }
        n
    };
    let width = digits(&mut i);
    let mut prec = None;
    if i < re_chars.len() && re_chars[i] == '.' {
        i += 1;
        prec = Some(digits(&mut i));
    }
    let widest = width.max(prec.unwrap_or(0)) as u64;
    if !super::limits::allow_len(widest, "a format width or precision") {
        return Err(format!("format spec '{spec}' is too wide for a config"));
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
pub(super) fn python_format(
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
pub(super) fn percent_format(fmt: &str, args: &[Obj]) -> Result<String, String> {
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
