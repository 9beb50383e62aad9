//! Lossless TOML encoding of a config tree.
//!
//! TOML has no `None` and no tuples, and Python configs have both, so two marker tables encode
//! them (and a third escapes a real dict that would look like a marker):
//!
//! | Python            | TOML                                  |
//! |-------------------|---------------------------------------|
//! | `None`            | `{ __none__ = true }`                 |
//! | `(1, 2)`          | `{ __tuple__ = [1, 2] }`              |
//! | `{'__none__': x}` | `{ __dict__ = { __none__ = x } }`     |
//!
//! Names starting with `__` are dropped by mmengine from a config's top level, so markers never
//! collide with a real top-level key; a nested dict whose only key is a marker name is escaped with
//! `__dict__`. Everything else is native: int vs float stay distinct (TOML writes `1.0`), strings,
//! bools, arrays (mixed types allowed since TOML 1.0), tables in insertion order. `_base_` works in
//! TOML exactly as in Python configs (`_base_ = "x.py"` or a list), as do `{{_base_.x}}`,
//! `{{fileDirname}}` and `{{$ENV:default}}` (text substitutions made before parsing).

use std::path::Path;

use indexmap::IndexMap;

use super::error::ConfigError;
use super::value::Value;

const NONE: &str = "__none__";
const TUPLE: &str = "__tuple__";
const DICT: &str = "__dict__";

fn encode(v: &Value) -> toml::Value {
    match v {
        Value::None => marker(NONE, toml::Value::Boolean(true)),
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Int(i) => toml::Value::Integer(*i),
        Value::Float(f) => toml::Value::Float(*f),
        Value::Str(s) => toml::Value::String(s.clone()),
        Value::List(l) => toml::Value::Array(l.iter().map(encode).collect()),
        Value::Tuple(t) => marker(TUPLE, toml::Value::Array(t.iter().map(encode).collect())),
        Value::Dict(d) => {
            let table: toml::Table = d.iter().map(|(k, v)| (k.clone(), encode(v))).collect();
            let looks_like_marker =
                d.len() == 1 && d.keys().all(|k| k == NONE || k == TUPLE || k == DICT);
            if looks_like_marker {
                marker(DICT, toml::Value::Table(table))
            } else {
                toml::Value::Table(table)
            }
        }
    }
}

fn marker(name: &str, v: toml::Value) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert(name.to_string(), v);
    toml::Value::Table(t)
}

fn decode(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::Str(s.clone()),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::Str(d.to_string()),
        toml::Value::Array(a) => Value::List(a.iter().map(decode).collect()),
        toml::Value::Table(t) => {
            if t.len() == 1 {
                if let Some((k, inner)) = t.iter().next() {
                    match (k.as_str(), inner) {
                        (NONE, toml::Value::Boolean(true)) => return Value::None,
                        (TUPLE, toml::Value::Array(a)) => {
                            return Value::Tuple(a.iter().map(decode).collect())
                        }
                        (DICT, toml::Value::Table(inner)) => {
                            return Value::Dict(
                                inner.iter().map(|(k, v)| (k.clone(), decode(v))).collect(),
                            )
                        }
                        _ => {}
                    }
                }
            }
            Value::Dict(t.iter().map(|(k, v)| (k.clone(), decode(v))).collect())
        }
    }
}

/// Writes a resolved config tree as TOML.
pub fn to_toml(tree: &IndexMap<String, Value>) -> Result<String, ConfigError> {
    let table: toml::Table = tree.iter().map(|(k, v)| (k.clone(), encode(v))).collect();
    toml::to_string(&table).map_err(|e| ConfigError::TomlWrite(e.to_string()))
}

/// Reads TOML text (after the text substitutions) into a tree.
pub(crate) fn parse(text: &str, file: &Path) -> Result<Value, ConfigError> {
    let t: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Toml {
        file: file.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(decode(&toml::Value::Table(t)))
}
