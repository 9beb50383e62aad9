//! The resolved config tree: Python's data model as far as configs use it. Tuples and lists stay
//! distinct (mmengine keeps tuples; JSON output turns them into lists), ints and floats stay
//! distinct (`1/2` is a float, `//` an int), dict keys keep insertion order.

use indexmap::IndexMap;

/// One value of a resolved config.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Keys are strings; a non-string Python key is stored as `json.dumps` would write it.
    Dict(IndexMap<String, Value>),
}

impl Value {
    /// Python's type name (`dict`, `list`, `tuple`, `str`, `int`, `float`, `bool`, `NoneType`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&IndexMap<String, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// One step of a path: a dict key, or a list/tuple index (negative counts from the end).
    pub fn child(&self, step: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(step),
            Value::List(v) | Value::Tuple(v) => {
                let i: i64 = step.parse().ok()?;
                let i = if i < 0 { v.len() as i64 + i } else { i };
                usize::try_from(i).ok().and_then(|i| v.get(i))
            }
            _ => None,
        }
    }

    /// Dotted path access: `model.backbone.depth`, `train_pipeline.0.type`, or with brackets
    /// `model.neck.in_channels[0]`.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut cur = self;
        for step in split_path(path) {
            cur = cur.child(&step)?;
        }
        Some(cur)
    }

    /// `json.dumps(..., sort_keys=True)` parsed: tuples become lists, NaN/inf become null
    /// (Python would write the non-standard `NaN`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::None => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::List(v) | Value::Tuple(v) => {
                serde_json::Value::Array(v.iter().map(Value::to_json).collect())
            }
            Value::Dict(d) => {
                serde_json::Value::Object(d.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// The JSON reading used for `.json` configs (arrays are lists).
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::None,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Dict(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// Splits `a.b[0].c` / `a.b.0.c` into steps.
pub(crate) fn split_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(rest[..i].to_string());
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                match stripped.find(']') {
                    Some(j) => {
                        out.push(stripped[..j].trim_matches(['\'', '"']).to_string());
                        rest = &stripped[j + 1..];
                    }
                    None => {
                        out.push(stripped.to_string());
                        rest = "";
                    }
                }
            }
        } else if !rest.is_empty() {
            out.push(rest.to_string());
        }
    }
    out
}
