//! `--cfg-options KEY=VALUE ...`, as every mmengine tool takes it: the value grammar of
//! `mmengine/config/config.py: DictAction` (`_parse_iterable`, `_parse_int_float_bool`) and the
//! merge of `Config.merge_from_dict(options, allow_list_keys=True)` (`Config._merge_a_into_b`),
//! mmengine 0.10.7. Checked against the real mmengine by
//! `tests/fixtures/generate/make_cfg_options_refs.py` (`registry/tests/cfg_options.rs`).
//!
//! One deliberate difference: a key that does not exist in the config is an error naming the
//! closest existing key. mmengine adds it silently, so `model.test_cfg.score_th=0.5` (a typo)
//! would change nothing and say nothing. Inside a dict replaced with `KEY._delete_=True` new keys
//! are accepted (the dict is replaced whole, as upstream). Where mmengine fails (a plain value
//! set through a list index, an index past the end, a key under a non-dict, imbalanced brackets)
//! this fails too, with an error that says what to write instead.
//!
//! Never: evaluates a value as Python (values are DictAction's small grammar, not expressions).

use indexmap::IndexMap;

use super::{Config, Value};
use crate::spec::parse::closest_key;

/// Nesting of brackets a value may have (Python would hit its recursion limit long before).
const MAX_VALUE_DEPTH: usize = 64;

/// One `KEY=VALUE` of `--cfg-options`, parsed as `DictAction` parses it.
#[derive(Debug, Clone, PartialEq)]
pub struct CfgOption {
    /// The dotted key (`model.test_cfg.score_thr`, `test_pipeline.1.scale`).
    pub key: String,
    pub value: Value,
}

impl CfgOption {
    /// `DictAction.__call__`: split on the first `=`, parse the value with `_parse_iterable`.
    pub fn parse(arg: &str) -> Result<CfgOption, CfgOptionError> {
        let Some((key, val)) = arg.split_once('=') else {
            return Err(CfgOptionError::NotKeyValue { arg: arg.into() });
        };
        let value = parse_value(val).map_err(|why| CfgOptionError::BadValue {
            key: key.into(),
            value: val.into(),
            why,
        })?;
        Ok(CfgOption {
            key: key.into(),
            value,
        })
    }

    /// Every argument of one `--cfg-options` list (later duplicates win, as in the dict
    /// DictAction fills).
    pub fn parse_all<S: AsRef<str>>(args: &[S]) -> Result<Vec<CfgOption>, CfgOptionError> {
        args.iter().map(|a| CfgOption::parse(a.as_ref())).collect()
    }
}

/// What is wrong with a `--cfg-options` argument; each names the key and says what to write.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CfgOptionError {
    #[error(
        "--cfg-options '{arg}': expected KEY=VALUE (e.g. model.test_cfg.score_thr=0.5); the flag \
         takes every following word, so put it after the positional arguments or end its list with `--`"
    )]
    NotKeyValue { arg: String },

    #[error("--cfg-options {key}={value}: {why}")]
    BadValue {
        key: String,
        value: String,
        why: String,
    },

    #[error(
        "--cfg-options {key}: the config has no key '{missing}' in {}{}; mmcompat refuses keys \
         that do not exist (mmengine would add it silently, so a typo would change nothing)",
        if parent.is_empty() { "its top level" } else { parent.as_str() },
        suggestion(did_you_mean, available)
    )]
    UnknownKey {
        /// The option's full key.
        key: String,
        /// The component that does not exist.
        missing: String,
        /// Where it was looked up (`model.test_cfg`; empty: the top level).
        parent: String,
        /// The closest existing key, as a full dotted key.
        did_you_mean: Option<String>,
        /// The keys that exist there (when none is close).
        available: Vec<String>,
    },

    /// `Config._merge_a_into_b`: `KeyError: Index {k} exceeds the length of list`.
    #[error("--cfg-options {key}: index {index} is past the end of {parent} (a list of {len})")]
    IndexOutOfRange {
        key: String,
        parent: String,
        index: usize,
        len: usize,
    },

    /// A key below a value that is not a dict (mmengine: `TypeError ... cannot inherit from base`).
    #[error(
        "--cfg-options {key}: {parent} is a {type_name}, not a dict, so it has no key '{child}'; \
         set {parent} itself (e.g. {parent}=VALUE)"
    )]
    NotADict {
        key: String,
        parent: String,
        child: String,
        type_name: &'static str,
    },

    /// mmengine only merges dicts into list elements (`pipeline.1.scale=...`); a plain value
    /// through an index fails there with `AttributeError: ... has no attribute 'copy'/'items'`.
    #[error(
        "--cfg-options {key}: a list element can only be changed inside (e.g. {key}.KEY=VALUE), \
         as in mmengine; to replace it, set the whole list: {parent}=[...]"
    )]
    ListElementValue { key: String, parent: String },

    /// A non-numeric key below a list (`TypeError: list indices must be integers`).
    #[error("--cfg-options {key}: {parent} is a list; use an index (e.g. {parent}.0.{child})")]
    NotAnIndex {
        key: String,
        parent: String,
        child: String,
    },

    /// `a=1 a.b=2`: `a` is first set to a value, then used as a dict.
    #[error("--cfg-options {key}: conflicts with the option {prefix}=..., which sets {prefix} to a value")]
    Conflict { key: String, prefix: String },
}

fn suggestion(did_you_mean: &Option<String>, available: &[String]) -> String {
    match did_you_mean {
        Some(s) => format!(" (did you mean '{s}'?)"),
        None if available.is_empty() => String::new(),
        None => {
            let shown: Vec<&str> = available.iter().take(12).map(String::as_str).collect();
            let more = available.len().saturating_sub(shown.len());
            format!(
                " (keys there: {}{})",
                shown.join(", "),
                if more > 0 {
                    format!(", ... {more} more")
                } else {
                    String::new()
                }
            )
        }
    }
}

/// `DictAction._parse_iterable`: `1,2,3` → `[1, 2, 3]`, `[a, b]` → `['a', 'b']`,
/// `[(1, 2), [a, b], c]` → `[(1, 2), ['a', 'b'], 'c']`. Quotes around each element are
/// stripped and every space is removed (also inside strings: `'a b'` → `ab`, as upstream).
pub fn parse_value(val: &str) -> Result<Value, String> {
    parse_iterable(val, 0)
}

fn parse_iterable(val: &str, depth: usize) -> Result<Value, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err(format!("brackets nested deeper than {MAX_VALUE_DEPTH}"));
    }
    let val: String = val.trim_matches(['\'', '"']).replace(' ', "");
    let (is_tuple, inner) = if val.starts_with('(') && val.ends_with(')') && val.len() >= 2 {
        (true, &val[1..val.len() - 1])
    } else if val.starts_with('[') && val.ends_with(']') && val.len() >= 2 {
        (false, &val[1..val.len() - 1])
    } else if !val.contains(',') {
        return parse_int_float_bool(&val);
    } else {
        (false, val.as_str())
    };
    let bracketed = inner.len() != val.len();
    let mut values = Vec::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let comma = find_next_comma(rest)?;
        if !bracketed && comma == rest.len() && rest == val {
            // Upstream calls itself on the same string forever (RecursionError).
            return Err(format!(
                "'{rest}' has a comma inside unbalanced brackets; \
                 write a list as [a,b] or a tuple as (a,b)"
            ));
        }
        values.push(parse_iterable(&rest[..comma], depth + 1)?);
        rest = rest.get(comma + 1..).unwrap_or("");
    }
    Ok(if is_tuple {
        Value::Tuple(values)
    } else {
        Value::List(values)
    })
}

/// `find_next_comma`: the first comma outside brackets (the string's brackets must balance).
fn find_next_comma(s: &str) -> Result<usize, String> {
    let count = |c| s.matches(c).count();
    if count('(') != count(')') || count('[') != count(']') {
        return Err(format!("Imbalanced brackets exist in {s}"));
    }
    let (mut paren, mut bracket) = (0i64, 0i64);
    for (i, c) in s.char_indices() {
        match c {
            '(' => paren += 1,
            ')' => paren -= 1,
            '[' => bracket += 1,
            ']' => bracket -= 1,
            ',' if paren == 0 && bracket == 0 => return Ok(i),
            _ => {}
        }
    }
    Ok(s.len())
}

/// `DictAction._parse_int_float_bool`: `int(val)`, else `float(val)`, else `true`/`false` (any
/// case), else `None`, else the string itself.
fn parse_int_float_bool(val: &str) -> Result<Value, String> {
    if let Some(digits) = python_int_digits(val) {
        return digits
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| format!("integer {val} does not fit in 64 bits"));
    }
    if let Some(f) = python_float(val) {
        return Ok(Value::Float(f));
    }
    match val.to_lowercase().as_str() {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if val == "None" {
        return Ok(Value::None);
    }
    Ok(Value::Str(val.to_string()))
}

/// Whether every `_` of `s` sits between two ASCII digits (Python's numeric underscores).
fn underscores_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'_'
            || (i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
    })
}

/// `int(s)` for a str: surrounding whitespace, a sign, decimal digits with single underscores
/// between them. Returns the signed digits without underscores.
fn python_int_digits(s: &str) -> Option<String> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body.is_empty()
        || !body.bytes().all(|c| c.is_ascii_digit() || c == b'_')
        || !underscores_ok(body)
    {
        return None;
    }
    let sign = if t.starts_with('-') { "-" } else { "" };
    Some(format!("{sign}{}", body.replace('_', "")))
}

/// `float(s)` for a str: decimal forms with an optional exponent, `inf`/`infinity`/`nan` in any
/// case, each with a sign; numeric underscores between digits.
fn python_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if !t.is_ascii() || !underscores_ok(t) {
        return None;
    }
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let lower = body.to_ascii_lowercase();
    let special = matches!(lower.as_str(), "inf" | "infinity" | "nan");
    // Rust's parser takes the same decimal forms; keep it from anything Python refuses.
    let decimal = !body.is_empty()
        && body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'))
        && body.bytes().any(|c| c.is_ascii_digit());
    if !special && !decimal {
        return None;
    }
    t.replace('_', "").parse::<f64>().ok()
}

/// The options as `merge_from_dict` nests them: `{'model': {'test_cfg': {'score_thr': 0.5}}}`.
#[derive(Debug, Clone)]
enum Node {
    Leaf(Value),
    Dict(IndexMap<String, Node>),
}

impl Node {
    /// `ConfigDict(v)`: a subtree inserted whole.
    fn into_value(self) -> Value {
        match self {
            Node::Leaf(v) => v,
            Node::Dict(d) => Value::Dict(d.into_iter().map(|(k, n)| (k, n.into_value())).collect()),
        }
    }
}

fn nest(options: &[CfgOption]) -> Result<IndexMap<String, Node>, CfgOptionError> {
    // DictAction fills a dict: a repeated key keeps its first position and its last value.
    let mut flat: IndexMap<&str, &Value> = IndexMap::new();
    for o in options {
        flat.insert(o.key.as_str(), &o.value);
    }
    let mut root: IndexMap<String, Node> = IndexMap::new();
    for (full_key, v) in flat {
        let parts: Vec<&str> = full_key.split('.').collect();
        let (last, parents) = parts.split_last().unwrap_or((&"", &[]));
        let mut d = &mut root;
        for (i, sub) in parents.iter().enumerate() {
            let node = d
                .entry(sub.to_string())
                .or_insert_with(|| Node::Dict(IndexMap::new()));
            d = match node {
                Node::Dict(m) => m,
                Node::Leaf(_) => {
                    return Err(CfgOptionError::Conflict {
                        key: full_key.into(),
                        prefix: parts[..=i].join("."),
                    })
                }
            };
        }
        d.insert(last.to_string(), Node::Leaf(v.clone()));
    }
    Ok(root)
}

fn truthy(v: &Node) -> bool {
    match v {
        Node::Dict(d) => !d.is_empty(),
        Node::Leaf(v) => match v {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) | Value::Tuple(l) => !l.is_empty(),
            Value::Dict(d) => !d.is_empty(),
        },
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `Config._merge_a_into_b(a, b, allow_list_keys=True)` into `b` (a dict or a list), refusing
/// keys `b` does not have. `path` is `b`'s dotted key; `full` the option key for errors.
fn merge_into(
    a: IndexMap<String, Node>,
    b: &mut Value,
    path: &str,
    full: &dyn Fn(&str) -> String,
) -> Result<(), CfgOptionError> {
    for (k, v) in a {
        let here = join(path, &k);
        match b {
            Value::List(items) if !k.is_empty() && k.bytes().all(|c| c.is_ascii_digit()) => {
                let index: usize = k.parse().unwrap_or(usize::MAX);
                let len = items.len();
                let Some(item) = items.get_mut(index) else {
                    return Err(CfgOptionError::IndexOutOfRange {
                        key: full(&here),
                        parent: path.into(),
                        index,
                        len,
                    });
                };
                let Node::Dict(sub) = v else {
                    return Err(CfgOptionError::ListElementValue {
                        key: full(&here),
                        parent: path.into(),
                    });
                };
                descend(sub, item, &here, full)?;
            }
            Value::List(_) => {
                return Err(CfgOptionError::NotAnIndex {
                    key: full(&here),
                    parent: path.into(),
                    child: k,
                })
            }
            Value::Dict(d) => {
                let Some(existing) = d.get_mut(&k) else {
                    return Err(unknown_key(d, path, &k, full(&here)));
                };
                match v {
                    Node::Dict(mut sub) => {
                        let delete = sub.shift_remove("_delete_").is_some_and(|x| truthy(&x));
                        if delete {
                            *existing = Node::Dict(sub).into_value();
                        } else {
                            descend(sub, existing, &here, full)?;
                        }
                    }
                    Node::Leaf(value) => *existing = value,
                }
            }
            other => {
                return Err(CfgOptionError::NotADict {
                    key: full(&here),
                    parent: path.into(),
                    child: k,
                    type_name: other.type_name(),
                })
            }
        }
    }
    Ok(())
}

/// Merging a dict of options into an existing value: only a dict or a list can take it
/// (`allowed_types = (dict, list)`).
fn descend(
    sub: IndexMap<String, Node>,
    target: &mut Value,
    path: &str,
    full: &dyn Fn(&str) -> String,
) -> Result<(), CfgOptionError> {
    if !matches!(target, Value::Dict(_) | Value::List(_)) {
        let child = sub.keys().next().cloned().unwrap_or_default();
        return Err(CfgOptionError::NotADict {
            key: full(&join(path, &child)),
            parent: path.into(),
            child,
            type_name: target.type_name(),
        });
    }
    merge_into(sub, target, path, full)
}

fn unknown_key(
    d: &IndexMap<String, Value>,
    parent: &str,
    missing: &str,
    key: String,
) -> CfgOptionError {
    let did_you_mean = closest_key(missing, d.keys().map(String::as_str)).map(|c| join(parent, &c));
    CfgOptionError::UnknownKey {
        key,
        missing: missing.into(),
        parent: parent.into(),
        available: if did_you_mean.is_some() {
            Vec::new()
        } else {
            d.keys().cloned().collect()
        },
        did_you_mean,
    }
}

impl Config {
    /// `cfg.merge_from_dict(options, allow_list_keys=True)` for parsed `--cfg-options`, except
    /// that a key the config does not have is an error (see the module documentation). On error
    /// the config is unchanged.
    pub fn merge_cfg_options(&mut self, options: &[CfgOption]) -> Result<(), CfgOptionError> {
        if options.is_empty() {
            return Ok(());
        }
        let nested = nest(options)?;
        // The option whose key starts with a path, for errors (the nested form lost it).
        let full = |path: &str| -> String {
            options
                .iter()
                .rev()
                .find(|o| o.key == path || o.key.starts_with(&format!("{path}.")))
                .map(|o| o.key.clone())
                .unwrap_or_else(|| path.to_string())
        };
        let mut tree = Value::Dict(self.tree.clone());
        merge_into(nested, &mut tree, "", &full)?;
        if let Value::Dict(t) = tree {
            self.tree = t;
        }
        for o in options {
            tracing::info!(key = %o.key, value = ?o.value, "--cfg-options");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_numbers() {
        assert_eq!(parse_value("1_000").unwrap(), Value::Int(1000));
        assert_eq!(parse_value("-7").unwrap(), Value::Int(-7));
        assert_eq!(parse_value("1e3").unwrap(), Value::Float(1000.0));
        assert_eq!(parse_value("1__0").unwrap(), Value::Str("1__0".into()));
        assert_eq!(parse_value("e3").unwrap(), Value::Str("e3".into()));
        assert!(matches!(parse_value("-inf").unwrap(), Value::Float(f) if f == f64::NEG_INFINITY));
        assert!(parse_value("99999999999999999999").is_err());
    }

    #[test]
    fn runaway_recursion_is_an_error() {
        let err = parse_value("(1,2),(3,4)").unwrap_err();
        assert!(err.contains("unbalanced"), "{err}");
    }
}
