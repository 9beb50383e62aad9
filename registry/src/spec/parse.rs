//! The one way a config dict becomes a typed struct: serde with `deny_unknown_fields`, through
//! `serde_path_to_error` so that an error names the exact key path (`model.test_cfg.nms.iou_thr`),
//! the upstream type whose arguments were being read, and the closest valid key.
//!
//! Every section of the spec (model components, data preprocessor, test pipeline, test_cfg) is
//! read with [`parse_section`]; nothing else in the crate turns config values into structs.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::SpecError;

/// Deserialises `value` (the config dict at `path`, e.g. `model.backbone`) into `T`, the typed
/// arguments of the upstream class `type_name`. An unknown key becomes [`SpecError::UnknownKey`]
/// with the closest accepted key; a wrong value type or a missing required key becomes
/// [`SpecError::Invalid`] naming the key path.
pub fn parse_section<T: DeserializeOwned>(
    value: &Value,
    type_name: &str,
    path: &str,
) -> Result<T, SpecError> {
    // Serde would read a list into a struct position by position; a Python constructor takes
    // keyword arguments only.
    if !value.is_object() {
        return Err(SpecError::Invalid {
            path: path.to_string(),
            type_name: type_name.to_string(),
            message: format!("expected a dict of keyword arguments, found {value}"),
        });
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let inner_path = e.path().to_string();
        let full = join_path(path, &inner_path);
        let msg = e.inner().to_string();
        // serde: "unknown field `foo`, expected one of `a`, `b`" (or "expected `a`").
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            if let Some(end) = rest.find('`') {
                let key = rest[..end].to_string();
                let accepted: Vec<String> = rest[end..]
                    .split('`')
                    .skip(2)
                    .step_by(2)
                    .map(str::to_string)
                    .collect();
                // serde_path_to_error's path includes the unknown key itself.
                let parent = full
                    .strip_suffix(&key)
                    .map(|p| p.trim_end_matches('.').to_string())
                    .unwrap_or_else(|| full.clone());
                return SpecError::UnknownKey {
                    path: parent,
                    type_name: type_name.to_string(),
                    closest: closest_key(&key, accepted.iter().map(String::as_str)),
                    key,
                    accepted,
                };
            }
        }
        SpecError::Invalid {
            path: full,
            type_name: type_name.to_string(),
            message: msg,
        }
    })
}

fn join_path(path: &str, inner: &str) -> String {
    match (path.is_empty(), inner.is_empty() || inner == ".") {
        (_, true) => path.to_string(),
        (true, false) => inner.to_string(),
        (false, false) if inner.starts_with('[') => format!("{path}{inner}"),
        (false, false) => format!("{path}.{inner}"),
    }
}

/// The accepted key closest to a misspelt `key`, if one is close enough to be a likely typo
/// (the same measure the registries use for type names).
pub fn closest_key<'a>(key: &str, accepted: impl Iterator<Item = &'a str>) -> Option<String> {
    crate::scoped::closest(key, accepted, 1).into_iter().next()
}

/// Joins a config path and a key: `model` + `backbone` = `model.backbone`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `type` of a config dict, if it is a string.
pub fn type_of(value: &Value) -> Option<&str> {
    value.get("type").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        iou_threshold: f64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        score_thr: f64,
        nms: Inner,
    }

    #[test]
    fn unknown_nested_key_names_its_path_and_closest_key() {
        let v = serde_json::json!({"score_thr": 0.1, "nms": {"iou_treshold": 0.5}});
        let err = parse_section::<Outer>(&v, "test_cfg", "model.test_cfg").unwrap_err();
        match &err {
            SpecError::UnknownKey {
                path, key, closest, ..
            } => {
                assert_eq!(path, "model.test_cfg.nms");
                assert_eq!(key, "iou_treshold");
                assert_eq!(closest.as_deref(), Some("iou_threshold"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string().contains("did you mean `iou_threshold`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_the_key_path() {
        let v = serde_json::json!({"score_thr": "high", "nms": {"iou_threshold": 0.5}});
        let err = parse_section::<Outer>(&v, "test_cfg", "model.test_cfg").unwrap_err();
        assert!(
            err.to_string().starts_with("model.test_cfg.score_thr:"),
            "{err}"
        );
    }
}
