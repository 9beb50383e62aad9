//! Checkpoint adapter for Megvii YOLOX `.pth` files (see `mmcompat_registry::adapter` for the
//! contract). YOLOX's trainer saves `{'start_epoch', 'model': model.state_dict(), 'optimizer',
//! 'best_ap', 'curr_ap'}` (`yolox/core/trainer.py: save_ckpt`): a plain state dict of tensors, read
//! by the core's safe reader as the `model` section.
//!
//! `megvii.yolox` does exactly what mmyolo 0.6's `tools/model_converters/yolox_to_mmyolo.py:
//! convert` does, ported function by function (`convert_stem`, `convert_backbone`,
//! `convert_neck` with its `neck_dict`, `convert_head`) and applied key by key through
//! [`plan_by_key`]: the same `str.replace` calls, so the same quirks (`new_key[14]` is the stage
//! digit; every `conv1` of a CSP block becomes `main_conv`). The script keeps dtypes; a file with
//! fp16 tensors is widened to fp32 as `init_detector`'s `load_state_dict` into the fp32 model
//! would, and the report says so. The script maps plain `BaseConv` models (YOLOX-s/m/l/x); the
//! depthwise `DWConv` of YOLOX-nano/tiny (`dconv`/`pconv`) has no mmyolo name in it, so a plan
//! for such a file keeps those keys and the strict check names them.

use mmcompat_registry::adapter::{
    class_count_mismatch, plan_by_key, widen_to_f32, AdapterError, AdapterOptions,
    CheckpointAdapter, CheckpointView, Confidence, KeyFate, Plan,
};
use mmcompat_registry::register_adapter;

/// Referenced by the facade crate so the linker keeps this crate and its `inventory` submissions.
pub fn link() {}

/// Adapter name.
pub const NAME: &str = "megvii.yolox";

/// The section YOLOX's trainer writes the weights to (`torch.load(src)['model']` in the script).
pub const SECTION: &str = "model";

/// `yolox_to_mmyolo.py: neck_dict`, in its order (the loop lets a later match win).
const NECK_DICT: [(&str, &str); 12] = [
    ("backbone.lateral_conv0", "neck.reduce_layers.2"),
    ("backbone.C3_p4.conv", "neck.top_down_layers.0.0.cv"),
    ("backbone.C3_p4.m.0.", "neck.top_down_layers.0.0.m.0."),
    ("backbone.reduce_conv1", "neck.top_down_layers.0.1"),
    ("backbone.C3_p3.conv", "neck.top_down_layers.1.cv"),
    ("backbone.C3_p3.m.0.", "neck.top_down_layers.1.m.0."),
    ("backbone.bu_conv2", "neck.downsample_layers.0"),
    ("backbone.C3_n3.conv", "neck.bottom_up_layers.0.cv"),
    ("backbone.C3_n3.m.0.", "neck.bottom_up_layers.0.m.0."),
    ("backbone.bu_conv1", "neck.downsample_layers.1"),
    ("backbone.C3_n4.conv", "neck.bottom_up_layers.1.cv"),
    ("backbone.C3_n4.m.0.", "neck.bottom_up_layers.1.m.0."),
];

/// `cv1`/`conv1` → `main_conv`, 2 → `short_conv`, 3 → `final_conv` (CSPLayer's three convs).
fn csp_names(key: &str, stem: &str) -> String {
    key.replace(&format!("{stem}1"), "main_conv")
        .replace(&format!("{stem}2"), "short_conv")
        .replace(&format!("{stem}3"), "final_conv")
}

/// `convert_stem`: `model_key[9:]` (drops the first `backbone.`).
fn convert_stem(key: &str) -> Result<String, String> {
    key.get(9..)
        .map(str::to_owned)
        .ok_or_else(|| "shorter than `backbone.`".to_owned())
}

/// `convert_backbone`: `backbone.backbone.darkN.` → `backbone.stage{N-1}.`, then `.m.` →
/// `.blocks.`, or the CSP conv names outside block 0 and the SPP block `stage4.1`.
fn convert_backbone(key: &str) -> Result<String, String> {
    let new_key = key.replace("backbone.dark", "stage");
    let digit = |i: usize| new_key.as_bytes().get(i).copied().map(char::from);
    // `int(new_key[14]) - 1`
    let num = digit(14)
        .and_then(|c| c.to_digit(10))
        .ok_or_else(|| format!("`{new_key}`[14] is not the stage digit"))?
        .checked_sub(1)
        .ok_or_else(|| format!("`{new_key}`: stage 0"))?;
    // Byte 14 is an ASCII digit, so both slices sit on character boundaries.
    let (head, tail) = new_key.split_at(14);
    let mut new_key = format!("{head}{num}{}", &tail[1..]);
    if key.contains(".m.") {
        new_key = new_key.replace(".m.", ".blocks.");
    } else {
        let block = digit(16).ok_or_else(|| format!("`{new_key}` has no block index"))?;
        if block != '0' && !new_key.contains("stage4.1") {
            new_key = csp_names(&new_key, "conv");
        }
    }
    Ok(new_key)
}

/// `convert_neck`: the last `neck_dict` entry found anywhere in the key, then `.m.` → `.blocks.`
/// or (a `C3_*` layer) the CSP conv names.
fn convert_neck(key: &str) -> Result<String, String> {
    let mut new_key = None;
    for (old, new) in NECK_DICT {
        if key.contains(old) {
            new_key = Some(key.replace(old, new));
        }
    }
    // The script's `new_key` would be unbound here (UnboundLocalError).
    let new_key = new_key.ok_or("no entry of neck_dict matches")?;
    Ok(if key.contains(".m.") {
        new_key.replace(".m.", ".blocks.")
    } else if key.contains(".C") {
        csp_names(&new_key, "cv")
    } else {
        new_key
    })
}

/// `convert_head`: stems into the neck's `out_layers`, the towers and `*_preds` into the
/// head module.
fn convert_head(key: &str) -> Result<String, String> {
    if key.contains("stem") {
        Ok(key.replace("head.stem", "neck.out_layer"))
    } else if key.contains("cls_convs") {
        Ok(key.replace(
            "head.cls_convs",
            "bbox_head.head_module.multi_level_cls_convs",
        ))
    } else if key.contains("reg_convs") {
        Ok(key.replace(
            "head.reg_convs",
            "bbox_head.head_module.multi_level_reg_convs",
        ))
    } else if key.contains("preds") {
        Ok(key
            .replace("head.", "bbox_head.head_module.multi_level_conv_")
            .replace("_preds", ""))
    } else {
        Err("a head key that is no stem, tower or prediction".to_owned())
    }
}

/// `convert`'s dispatch for one key.
pub fn convert_key(key: &str) -> Result<KeyFate, String> {
    let new_key = if key.contains("backbone.stem") {
        convert_stem(key)?
    } else if key.contains("backbone.backbone") {
        convert_backbone(key)?
    } else if !key.contains("backbone.neck") && !key.contains("head") {
        convert_neck(key)?
    } else if key.contains("head") {
        convert_head(key)?
    } else {
        return Ok(KeyFate::Drop(
            "under backbone.neck: yolox_to_mmyolo.py writes no such key".to_owned(),
        ));
    };
    Ok(KeyFate::Rename(new_key))
}

/// A Megvii YOLOX `.pth` → mmyolo `YOLODetector` keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct MegviiYolox;

impl CheckpointAdapter for MegviiYolox {
    fn name(&self) -> &str {
        NAME
    }

    fn scope(&self) -> &str {
        "mmyolo"
    }

    fn description(&self) -> &str {
        "Megvii YOLOX .pth (`model`: YOLOX's state dict) → mmyolo keys, as yolox_to_mmyolo.py"
    }

    fn detect(&self, view: &CheckpointView, config: Option<&serde_json::Value>) -> Confidence {
        let has = |p: &str| view.any_key_starts_with(SECTION, p);
        if !has("backbone.backbone.") {
            return Confidence::none(
                "no YOLOX state dict (`model` with `backbone.backbone.dark*` keys)",
            );
        }
        if !has("backbone.backbone.stem.") || !has("head.") {
            return Confidence::low(
                "`model` has YOLOX backbone keys but no `backbone.backbone.stem` or `head.` keys",
            );
        }
        if has("backbone.backbone.dark2.0.dconv.") {
            return Confidence::low(
                "a depthwise YOLOX (nano/tiny: DWConv `dconv`/`pconv`), which yolox_to_mmyolo.py does not map",
            );
        }
        // Still the right adapter when the class counts differ: the reason then says why the
        // strict check fails, with both numbers and the fix.
        if let Some(reason) =
            class_count_mismatch(view, SECTION, "head.cls_preds.0.weight", Some, config)
        {
            return Confidence::high(reason);
        }
        Confidence::high(
            "`model` is a YOLOX state dict (backbone.backbone.dark*, YOLOPAFPN, YOLOXHead), as YOLOX's trainer saves it",
        )
    }

    fn plan(&self, view: &CheckpointView, _options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let entries = view
            .section(SECTION)
            .ok_or_else(|| AdapterError::MissingSection {
                adapter: NAME.to_owned(),
                section: SECTION.to_owned(),
                available: view.section_names(),
                hint: "not a YOLOX checkpoint: its trainer saves the weights under `model`"
                    .to_owned(),
            })?;
        let mut plan = plan_by_key(NAME, SECTION, entries, convert_key)?;
        plan.notes.push(
            "weights: model (YOLOX's state dict, renamed key by key as yolox_to_mmyolo.py)"
                .to_owned(),
        );
        if let Some((cast, n)) = widen_to_f32(entries) {
            plan.ops.insert(0, cast);
            plan.notes.push(format!(
                "{n} non-fp32 tensors widened to fp32 (the script keeps them; init_detector's load_state_dict copies them into the fp32 model)"
            ));
        }
        Ok(plan)
    }
}

register_adapter!(name: "megvii.yolox", scope: "mmyolo", make: || Box::new(MegviiYolox));

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(key: &str) -> String {
        match convert_key(key).unwrap() {
            KeyFate::Rename(k) => k,
            other => panic!("{other:?}"),
        }
    }

    /// The script's branches on keys of the released yolox_s.pth layout.
    #[test]
    fn each_branch_as_the_script() {
        assert_eq!(
            renamed("backbone.backbone.stem.conv.conv.weight"),
            "backbone.stem.conv.conv.weight"
        );
        assert_eq!(
            renamed("backbone.backbone.dark3.1.conv1.bn.bias"),
            "backbone.stage2.1.main_conv.bn.bias"
        );
        assert_eq!(
            renamed("backbone.backbone.dark3.1.m.2.conv1.conv.weight"),
            "backbone.stage2.1.blocks.2.conv1.conv.weight"
        );
        // The SPP block keeps conv1/conv2.
        assert_eq!(
            renamed("backbone.backbone.dark5.1.conv2.conv.weight"),
            "backbone.stage4.1.conv2.conv.weight"
        );
        assert_eq!(
            renamed("backbone.C3_p4.conv3.bn.running_var"),
            "neck.top_down_layers.0.0.final_conv.bn.running_var"
        );
        assert_eq!(
            renamed("backbone.C3_n4.m.0.conv2.conv.weight"),
            "neck.bottom_up_layers.1.blocks.0.conv2.conv.weight"
        );
        assert_eq!(
            renamed("head.stems.2.bn.weight"),
            "neck.out_layers.2.bn.weight"
        );
        assert_eq!(
            renamed("head.obj_preds.1.bias"),
            "bbox_head.head_module.multi_level_conv_obj.1.bias"
        );
        // A neck key the table does not know: the script's UnboundLocalError, here a named error.
        assert!(convert_key("backbone.C3_p4.m.1.conv1.conv.weight").is_err());
    }
}
