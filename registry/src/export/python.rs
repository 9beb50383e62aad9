//! The evaluated config tree printed back as Python source that `mmengine.Config.fromfile` reads
//! into the same tree: one `name = literal` per top-level key, containers wrapped over several
//! lines when a line would pass [`LINE_WIDTH`]. Never emits anything but literals (no names,
//! calls other than `dict(...)`, imports or `_base_`), so the file is self-contained.
//!
//! Round-trip details (checked against the real mmengine by
//! `tests/fixtures/generate/check_export_package.py`):
//! * tuples stay tuples (`(1,)` for one element), lists stay lists, `None`/`True`/`False`;
//! * floats print with the shortest repr that reads back bit-exact (`0.1`, `1e-05` as `1e-5`,
//!   `100.0`), non-finite ones as `float('inf')` / `float('nan')`;
//! * strings are JSON string literals (a subset of Python's: same escapes); a `{{` inside a string
//!   is written `{\x7b`, because mmengine substitutes `{{ fileDirname }}`, `{{$ENV}}` and
//!   `{{_base_.x}}` in the raw file text before parsing it (`mmengine/config/config.py:
//!   Config._substitute_predefined_vars`, `_substitute_env_variables`);
//! * dicts whose keys are all identifiers (and not keywords) print as `dict(k=v)`, like
//!   mmengine's `pretty_text`; others as `{"k": v}`.

use indexmap::IndexMap;

use crate::config::Value;

/// Lines are wrapped at this width (mmengine's pretty_text uses yapf's default, 79; configs in the
/// wild use up to 100).
pub const LINE_WIDTH: usize = 100;
const INDENT: usize = 4;

const PY_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// A name Python accepts on the left of `=` (ASCII identifiers only, keywords excluded).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !PY_KEYWORDS.contains(&s)
}

/// The file text: `header` lines as `# ` comments, then one assignment per top-level key.
/// The caller checked that every top-level key [`is_identifier`].
pub fn python_source(header: &[String], tree: &IndexMap<String, Value>) -> String {
    let mut out = String::new();
    for line in header {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    if !header.is_empty() {
        out.push('\n');
    }
    for (k, v) in tree {
        let prefix = format!("{k} = ");
        write_value(v, prefix.len(), 0, &mut out, &prefix);
        out.push('\n');
    }
    out
}

/// Writes `prefix` then `v`: on one line when `column + len` fits, else wrapped with one element
/// per line at `indent + INDENT`.
fn write_value(v: &Value, column: usize, indent: usize, out: &mut String, prefix: &str) {
    out.push_str(prefix);
    let flat = one_line(v);
    let wrappable = match v {
        Value::List(items) | Value::Tuple(items) => !items.is_empty(),
        Value::Dict(d) => !d.is_empty(),
        _ => false,
    };
    if !wrappable || column + flat.len() <= LINE_WIDTH {
        out.push_str(&flat);
        return;
    }
    let inner = indent + INDENT;
    let pad = " ".repeat(inner);
    match v {
        Value::List(items) | Value::Tuple(items) => {
            let (open, close) = if matches!(v, Value::Tuple(_)) {
                ('(', ')')
            } else {
                ('[', ']')
            };
            out.push(open);
            out.push('\n');
            for item in items {
                // The trailing comma after every element keeps a one-element tuple a tuple.
                write_value(item, inner, inner, out, &pad);
                out.push_str(",\n");
            }
            out.push_str(&" ".repeat(indent));
            out.push(close);
        }
        Value::Dict(d) => {
            let as_call = d.keys().all(|k| is_identifier(k));
            out.push_str(if as_call { "dict(\n" } else { "{\n" });
            for (k, item) in d {
                let key = if as_call {
                    format!("{pad}{k}=")
                } else {
                    format!("{pad}{}: ", string_literal(k))
                };
                write_value(item, key.len(), inner, out, &key);
                out.push_str(",\n");
            }
            out.push_str(&" ".repeat(indent));
            out.push_str(if as_call { ")" } else { "}" });
        }
        _ => unreachable!("only containers wrap"),
    }
}

/// `v` as a one-line Python literal.
pub fn one_line(v: &Value) -> String {
    let mut out = String::new();
    push_literal(v, &mut out);
    out
}

fn push_literal(v: &Value, out: &mut String) {
    match v {
        Value::None => out.push_str("None"),
        Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&float_literal(*f)),
        Value::Str(s) => out.push_str(&string_literal(s)),
        Value::List(items) | Value::Tuple(items) => {
            let tuple = matches!(v, Value::Tuple(_));
            out.push(if tuple { '(' } else { '[' });
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_literal(item, out);
            }
            if tuple && items.len() == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        Value::Dict(d) => {
            let as_call = d.keys().all(|k| is_identifier(k));
            out.push_str(if as_call { "dict(" } else { "{" });
            for (i, (k, item)) in d.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if as_call {
                    out.push_str(k);
                    out.push('=');
                } else {
                    out.push_str(&string_literal(k));
                    out.push_str(": ");
                }
                push_literal(item, out);
            }
            out.push_str(if as_call { ")" } else { "}" });
        }
    }
}

/// Shortest round-trip repr (Rust's `{:?}` of an f64 is, like Python's `repr`; only the exponent
/// spelling differs, `1e-5` vs `1e-05`, and both read back to the same double).
pub fn float_literal(f: f64) -> String {
    if f.is_nan() {
        "float('nan')".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "float('inf')".into()
        } else {
            "float('-inf')".into()
        }
    } else {
        format!("{f:?}")
    }
}

/// A double-quoted literal; see the module docs for `{{`.
pub fn string_literal(s: &str) -> String {
    // A JSON string literal is a valid Python string literal (same escapes, \uXXXX included).
    let json = serde_json::Value::String(s.to_owned()).to_string();
    if json.contains("{{") {
        json.replace('{', "\\x7b")
    } else {
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(one_line(&Value::Tuple(vec![Value::Int(1)])), "(1,)");
        assert_eq!(one_line(&Value::Tuple(vec![])), "()");
        assert_eq!(float_literal(1e-5), "1e-5");
        assert_eq!(float_literal(100.0), "100.0");
        assert_eq!(
            string_literal("{{ fileDirname }}"),
            r#""\x7b\x7b fileDirname }}""#
        );
        assert_eq!(string_literal("a\"b\n"), r#""a\"b\n""#);
    }
}
