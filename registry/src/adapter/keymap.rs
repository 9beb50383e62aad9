//! Plans for converters that compute each new key with a function. mmyolo's
//! `tools/model_converters/{yolox,yolov6,yolov6_v3}_to_mmyolo.py` loop over a state dict and
//! rename with `str.replace` and `if/elif` chains, which match anywhere in a key, not anchored
//! patterns. An adapter ports that function literally (one [`KeyFate`] per key) and
//! [`plan_by_key`] turns the answers into an exact plan: one escaped full-key rule per renamed
//! key, one drop per skipped key with the script's reason. The report and the strict check then
//! see exactly the keys the script would write.
//!
//! Keys a converter ADDS (identity parameters the source folded away, e.g. `yolov7_to_mmyolo.py`'s
//! ImplicitA zeros / ImplicitM ones) are [`Op::Constant`]s pushed after the plan's renames.
//!
//! Never guesses: a key the ported function cannot place (where the script would raise, e.g. an
//! unbound `new_key`) fails the plan with the keys named.

use indexmap::IndexMap;

use super::{AdapterError, Op, Plan, RenameRule, TensorEntry};
use crate::DType;

/// What a converter does with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFate {
    /// Written under this name (maybe the same).
    Rename(String),
    /// Not written (`continue` in the script), with the reason the report shows.
    Drop(String),
}

/// Keys a failed plan names at most.
const UNPLACED_EXAMPLES: usize = 5;

/// The plan of `adapter` on `section`: `fate` is asked once per key, in file order; `Err` is why
/// the script would fail on that key.
pub fn plan_by_key(
    adapter: &str,
    section: &str,
    entries: &[TensorEntry],
    mut fate: impl FnMut(&str) -> Result<KeyFate, String>,
) -> Result<Plan, AdapterError> {
    let mut drops: IndexMap<String, Vec<String>> = IndexMap::new();
    let mut rules = Vec::new();
    let mut unplaced = Vec::new();
    for e in entries {
        match fate(&e.key) {
            Ok(KeyFate::Rename(to)) => {
                if to != e.key {
                    rules.push(RenameRule {
                        pattern: format!("{}$", regex::escape(&e.key)),
                        // `$` starts a group reference in a replacement: escape it as `$$`.
                        to: to.replace('$', "$$"),
                    });
                }
            }
            Ok(KeyFate::Drop(reason)) => {
                drops.entry(reason).or_default().push(regex::escape(&e.key))
            }
            Err(why) => unplaced.push(format!("{} ({why})", e.key)),
        }
    }
    if !unplaced.is_empty() {
        let n = unplaced.len();
        unplaced.truncate(UNPLACED_EXAMPLES);
        return Err(AdapterError::NotApplicable {
            adapter: adapter.to_owned(),
            reason: format!(
                "{n} keys of `{section}` have no place in its converter's layout, e.g. {}",
                unplaced.join(", ")
            ),
        });
    }
    let mut ops: Vec<Op> = drops
        .into_iter()
        .map(|(reason, keys)| Op::Drop {
            pattern: format!("(?:{})$", keys.join("|")),
            reason,
        })
        .collect();
    if !rules.is_empty() {
        ops.push(Op::RenameFirst { rules });
    }
    Ok(Plan {
        adapter: adapter.to_owned(),
        section: section.to_owned(),
        ops,
        notes: Vec::new(),
    })
}

/// A cast of every floating tensor of `entries` that is not `F32` to `F32` (PyTorch's
/// `module.float()`, or `load_state_dict` into an fp32 model), first in a plan so that it matches
/// the source keys; `None` when all are fp32 already. Integer tensors (`num_batches_tracked`)
/// keep their type. Also returns how many tensors it widens.
pub fn widen_to_f32(entries: &[TensorEntry]) -> Option<(Op, usize)> {
    let keys: Vec<String> = entries
        .iter()
        .filter(|e| e.dtype.is_float() && e.dtype != DType::F32)
        .map(|e| regex::escape(&e.key))
        .collect();
    (!keys.is_empty()).then(|| {
        (
            Op::Cast {
                pattern: format!("(?:{})$", keys.join("|")),
                dtype: DType::F32,
            },
            keys.len(),
        )
    })
}

/// When a converted checkpoint's class count differs from the config's
/// `model.bbox_head.head_module.num_classes`, the sentence that names both numbers and the option
/// that makes them agree (a silent mismatch loads nothing useful). The checkpoint's count comes
/// from the rows of the tensor `key` of `section` through `classes_of_rows` (YOLOv5's Detect
/// convs have `3 * (5 + classes)` rows).
pub fn class_count_mismatch(
    view: &super::CheckpointView,
    section: &str,
    key: &str,
    classes_of_rows: fn(usize) -> Option<usize>,
    config: Option<&serde_json::Value>,
) -> Option<String> {
    let rows = *view
        .section(section)?
        .iter()
        .find(|e| e.key == key)?
        .shape
        .first()?;
    let ck = classes_of_rows(rows)?;
    let cfg = config?
        .pointer("/model/bbox_head/head_module/num_classes")?
        .as_u64()?;
    (u64::try_from(ck).ok()? != cfg).then(|| {
        format!(
            "the checkpoint has {ck} classes ({section}:{key} has {rows} rows) but the config has {cfg} \
             (model.bbox_head.head_module.num_classes); use a config for {ck} classes or \
             --cfg-options model.bbox_head.head_module.num_classes={ck}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{CheckpointView, TensorOp};

    fn entry(key: &str, dtype: DType) -> TensorEntry {
        TensorEntry {
            key: key.to_owned(),
            dtype,
            shape: vec![1],
        }
    }

    #[test]
    fn exact_keys_only_and_drops_grouped_by_reason() {
        let entries = vec![
            entry("a.b", DType::F16),
            entry("axb", DType::F16),
            entry("a.proj", DType::F16),
            entry("n", DType::I64),
        ];
        let mut plan = plan_by_key("t", "model", &entries, |k| {
            Ok(match k {
                "a.b" => KeyFate::Rename("x.$1".into()),
                "a.proj" => KeyFate::Drop("fixed".into()),
                other => KeyFate::Rename(other.to_owned()),
            })
        })
        .unwrap();
        let (cast, n) = widen_to_f32(&entries).unwrap();
        assert_eq!(n, 3);
        plan.ops.insert(0, cast);
        let mut view = CheckpointView::default();
        view.sections.insert("model".into(), entries);
        let m = plan.resolve(&view).unwrap();
        // `a.b`'s rule does not touch `axb` (the dot is escaped); `$1` is literal.
        assert_eq!(m.keys(), ["x.$1", "axb", "n"]);
        assert_eq!(m.dropped.len(), 1);
        assert_eq!(m.tensors[2].dtype, DType::I64);
        assert_eq!(m.tensors[1].dtype, DType::F32);
    }

    /// `Op::Constant` (plan.rs): a tensor no source holds, appended where the op stands, read
    /// from nothing; its bytes are the fill in the dtype; a clash with a mapped key is an error.
    #[test]
    fn a_constant_is_added_with_no_source() {
        let entries = vec![entry("w", DType::F32)];
        let constant = |key: &str, dtype, fill| Op::Constant {
            key: key.to_owned(),
            dtype,
            shape: vec![1, 3, 1, 1],
            fill,
            reason: "identity".to_owned(),
        };
        let mut plan =
            plan_by_key("t", "model", &entries, |k| Ok(KeyFate::Rename(k.into()))).unwrap();
        plan.ops.push(constant("a.implicit", DType::F32, 0));
        plan.ops.push(constant("m.implicit", DType::F16, 1));
        let mut view = CheckpointView::default();
        view.sections.insert("model".into(), entries);
        let m = plan.resolve(&view).unwrap();
        assert_eq!(m.keys(), ["w", "a.implicit", "m.implicit"]);
        let t = &m.tensors[2];
        assert_eq!(
            (t.source_key.as_str(), &t.ops[..]),
            ("", &[TensorOp::Fill { value: 1 }][..])
        );
        let (dtype, shape, bytes) = crate::adapter::apply_tensor_ops(
            t.dtype,
            &t.shape,
            std::borrow::Cow::Borrowed(&[]),
            &t.ops,
        )
        .unwrap();
        assert_eq!((dtype, shape), (DType::F16, vec![1, 3, 1, 1]));
        // f16 1.0 is 0x3c00.
        assert_eq!(&bytes[..], [0x00, 0x3c, 0x00, 0x3c, 0x00, 0x3c]);
        assert!(m.unused_ops.is_empty(), "{:?}", m.unused_ops);
        plan.ops.push(constant("w", DType::F32, 0));
        assert!(matches!(
            plan.resolve(&view),
            Err(AdapterError::DuplicateOutputs { .. })
        ));
    }

    #[test]
    fn an_unplaced_key_fails_naming_it() {
        let entries = vec![entry("odd", DType::F32)];
        let e = plan_by_key("t", "model", &entries, |_| Err("no branch".into())).unwrap_err();
        assert!(e.to_string().contains("odd (no branch)"), "{e}");
    }
}
