//! Checkpoint adapter for PaddleDetection PP-YOLOE / PP-YOLOE+ `.pdparams` files (see
//! `mmcompat_registry::adapter` for the contract). `paddle.save(model.state_dict(), path)` pickles
//! a dict of NumPy arrays plus a `StructuredToParameterName@@` name table
//! (`python/paddle/framework/io.py`); the core reads it as data (`checkpoint/numpy.rs`: the arrays
//! become tensors, nothing of NumPy or Paddle is imported or called) into its `<root>` section.
//!
//! `paddle.ppyoloe` does exactly what mmyolo 0.6's `tools/model_converters/ppyoloe_to_mmyolo.py:
//! convert` does, ported line by line into [`convert_key`] and applied key by key through
//! `plan_by_key`: the detector branch (`backbone.` stem/stages, `neck.` fpn/pan stages and routes,
//! `yolo_head.` stems and preds with their level index reversed, BN `_mean`/`_variance` →
//! `running_mean`/`running_var`, RepVGG `conv1`/`conv2` → `rbr_dense`/`rbr_1x1`), or with
//! `--imagenet-pretrain` the backbone-only branch. Differences, each said in the plan's notes:
//! - the script's `--imagenet-pretrain` flag is read from the key set (a backbone-only file has
//!   `stem.`/`stages.` keys without the `backbone.` prefix); the option
//!   `ppyoloe.imagenet_pretrain=true|false` overrides it;
//! - the script writes `yolo_head.proj_conv.weight` as `bbox_head.head_module.proj_conv.weight`,
//!   which mmyolo's PPYOLEHeadModule does not have (its `proj` is a non-persistent buffer; the
//!   script's output loads only with `load_checkpoint(strict=False)`, which drops it): this adapter
//!   drops it with that reason, so that the strict load takes every other tensor.
//!
//! Values keep the file's dtype (`torch.from_numpy`); Paddle's BN has no `num_batches_tracked`,
//! which mmengine's `load_state_dict` does not require.

use mmcompat_registry::adapter::{
    class_count_mismatch, plan_by_key, AdapterError, AdapterOptions, CheckpointAdapter,
    CheckpointView, Confidence, KeyFate, Plan, ROOT_SECTION,
};
use mmcompat_registry::register_adapter;

/// Referenced by the facade crate so the linker keeps this crate and its `inventory` submissions.
pub fn link() {}

/// Adapter name.
pub const NAME: &str = "paddle.ppyoloe";
/// The `AdapterOptions::extra` key for the script's `--imagenet-pretrain` flag (`true`/`false`).
pub const IMAGENET_OPTION: &str = "ppyoloe.imagenet_pretrain";
const SCRIPT: &str = "ppyoloe_to_mmyolo.py";

const SKIPPED: &str = "not under backbone. / neck. / yolo_head.; the script skips it";
const ANCHORS: &str =
    "anchor_points / stride_tensor (recomputed by the head); the script skips them";
const PROJ_CONV: &str = "the DFL projection `yolo_head.proj_conv`, which ppyoloe_to_mmyolo.py writes as bbox_head.head_module.proj_conv (mmyolo's PPYOLOEHeadModule has no such parameter: `proj` is a fixed buffer; load_checkpoint(strict=False) drops it)";

/// `convert_bn`.
fn convert_bn(k: &str) -> String {
    k.replace("._mean", ".running_mean")
        .replace("._variance", ".running_var")
}

/// `convert_repvgg`.
fn convert_repvgg(k: String) -> String {
    if k.contains(".conv2.conv1.") {
        k.replace(".conv2.conv1.", ".conv2.rbr_dense.")
    } else if k.contains(".conv2.conv2.") {
        k.replace(".conv2.conv2.", ".conv2.rbr_1x1.")
    } else {
        k
    }
}

/// Python's `int(s)`, with the script's ValueError as the reason.
fn int(s: &str, what: &str) -> Result<i64, String> {
    s.parse()
        .map_err(|_| format!("{what} `{s}` is not an integer (the script's ValueError)"))
}

/// `k.split('.')[i]`, with the script's IndexError as the reason.
fn part(k: &str, i: usize) -> Result<&str, String> {
    k.split('.').nth(i).ok_or_else(|| {
        format!(
            "fewer than {} dotted parts (the script's IndexError)",
            i + 1
        )
    })
}

/// The stem/stage renaming shared by both branches; `at` is the index of the stem/stage part.
fn backbone_key(k: &str, at: usize, dot: &str) -> Result<String, String> {
    let name = if k.contains(&format!("{dot}stem.")) {
        let org = part(k, at)?
            .chars()
            .last()
            .ok_or("an empty stem part (the script's IndexError)")?
            .to_string();
        let new = int(&org, "stem index")? - 1;
        k.replace(
            &format!("{dot}stem.conv{org}."),
            &format!("{dot}stem.{new}."),
        )
    } else {
        let org = part(k, at)?;
        let new = int(org, "stage index")? + 1;
        let mut name = convert_repvgg(k.replace(
            &format!("{dot}stages.{org}."),
            &format!("{dot}stage{new}.0."),
        ));
        if k.contains(".attn.") {
            name = name.replace(".attn.fc.", ".attn.fc.conv.");
        }
        name
    };
    Ok(convert_bn(&name))
}

/// The `for k, v in model.items()` body of the script for one key (`imagenet`: the
/// `--imagenet-pretrain` branch).
pub fn convert_key(k: &str, imagenet: bool) -> Result<KeyFate, String> {
    if imagenet {
        if k.contains("@@") {
            return Ok(KeyFate::Drop(SKIPPED.to_owned()));
        }
        return Ok(KeyFate::Rename(format!(
            "backbone.{}",
            backbone_key(k, 1, "")?
        )));
    }
    let name = if k.starts_with("backbone.") {
        backbone_key(k, 2, ".")?
    } else if k.starts_with("neck.") {
        neck_key(k)?
    } else if k.starts_with("yolo_head.") {
        if k.contains("anchor_points") || k.contains("stride_tensor") {
            return Ok(KeyFate::Drop(ANCHORS.to_owned()));
        }
        if k.contains("proj_conv") {
            // Written by the script under bbox_head.head_module.proj_conv.
            return Ok(KeyFate::Drop(PROJ_CONV.to_owned()));
        }
        let mut name = k.to_owned();
        for (from, to) in [
            ("yolo_head.stem_cls.", "bbox_head.head_module.cls_stems."),
            ("yolo_head.stem_reg.", "bbox_head.head_module.reg_stems."),
            ("yolo_head.pred_cls.", "bbox_head.head_module.cls_preds."),
            ("yolo_head.pred_reg.", "bbox_head.head_module.reg_preds."),
        ] {
            name = name.replace(from, to);
        }
        let mut parts: Vec<String> = name.split('.').map(str::to_owned).collect();
        let ind = parts
            .get(3)
            .ok_or("fewer than 4 dotted parts (the script's IndexError)")?;
        // Paddle's head lists run from the coarsest level; mmyolo's from the finest.
        parts[3] = (2 - int(ind, "head level")?).to_string();
        convert_bn(&parts.join("."))
    } else {
        return Ok(KeyFate::Drop(SKIPPED.to_owned()));
    };
    Ok(KeyFate::Rename(name))
}

/// The `elif k.startswith('neck.')` branch.
fn neck_key(k: &str) -> Result<String, String> {
    let name = if k.starts_with("neck.fpn_stages.") {
        let mut name = if k.starts_with("neck.fpn_stages.0.0.") {
            let name = k.replace("neck.fpn_stages.0.0.", "neck.reduce_layers.2.0.");
            if name.contains(".spp.") {
                name.replace(".spp.conv.", ".spp.conv2.")
            } else {
                name
            }
        } else if k.starts_with("neck.fpn_stages.1.0.") {
            k.replace("neck.fpn_stages.1.0.", "neck.top_down_layers.0.0.")
        } else if k.starts_with("neck.fpn_stages.2.0.") {
            k.replace("neck.fpn_stages.2.0.", "neck.top_down_layers.1.0.")
        } else {
            return Err(
                "a neck.fpn_stages key beyond the script's three (its NotImplementedError)"
                    .to_owned(),
            );
        };
        name = name.replace(".0.convs.", ".0.blocks.");
        name
    } else if k.starts_with("neck.fpn_routes.") {
        let parts: Vec<&str> = k.split('.').collect();
        let index = part(k, 2)?;
        let tail = parts[parts.len().saturating_sub(2)..].join(".");
        format!("neck.upsample_layers.{index}.0.{tail}").replace(".0.convs.", ".0.blocks.")
    } else if k.starts_with("neck.pan_stages.") || k.starts_with("neck.pan_routes.") {
        let (from, to) = if k.starts_with("neck.pan_stages.") {
            ("neck.pan_stages.", "neck.bottom_up_layers.")
        } else {
            ("neck.pan_routes.", "neck.downsample_layers.")
        };
        let ind = part(k, 2)?;
        let to = format!("{to}{}", if ind == "1" { "0" } else { "1" });
        k.replace(&format!("{from}{ind}"), &to)
            .replace(".0.convs.", ".0.blocks.")
    } else {
        return Err(
            "a neck key outside fpn/pan stages and routes (the script's NotImplementedError)"
                .to_owned(),
        );
    };
    Ok(convert_bn(&convert_repvgg(name)))
}

/// Whether the file is a backbone-only (ImageNet) one: `stem.`/`stages.` keys, no `backbone.`.
fn is_imagenet(view: &CheckpointView, options: &AdapterOptions) -> bool {
    if let Some(v) = options.extra.get(IMAGENET_OPTION) {
        return v == "true" || v == "1";
    }
    let has = |p: &str| view.any_key_starts_with(ROOT_SECTION, p);
    !has("backbone.") && (has("stem.") || has("stages."))
}

/// A PaddleDetection PP-YOLOE(+) `.pdparams` → mmyolo `YOLODetector` keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaddlePpyoloe;

impl CheckpointAdapter for PaddlePpyoloe {
    fn name(&self) -> &str {
        NAME
    }

    fn scope(&self) -> &str {
        "mmyolo"
    }

    fn description(&self) -> &str {
        "PaddleDetection PP-YOLOE(+) .pdparams (pickled numpy arrays, read as data) → mmyolo keys, as ppyoloe_to_mmyolo.py"
    }

    fn detect(&self, view: &CheckpointView, config: Option<&serde_json::Value>) -> Confidence {
        let has = |p: &str| view.any_key_starts_with(ROOT_SECTION, p);
        let bn = view
            .section(ROOT_SECTION)
            .is_some_and(|t| t.iter().any(|e| e.key.ends_with("._variance")));
        if !bn {
            return Confidence::none("no Paddle BatchNorm keys (`._variance`) at the top level");
        }
        if has("backbone.stem.conv1.") && has("yolo_head.pred_cls.") {
            if let Some(reason) = class_count_mismatch(
                view,
                ROOT_SECTION,
                "yolo_head.pred_cls.0.weight",
                Some,
                config,
            ) {
                return Confidence::high(reason);
            }
            return Confidence::high(
                "a Paddle state dict with PP-YOLOE's CSPResNet (`backbone.stem.conv1.`) and head (`yolo_head.pred_cls.`)",
            );
        }
        if has("stem.conv1.") && has("stages.") {
            return Confidence::low(
                "a Paddle CSPResNet backbone alone (ImageNet weights: the script's --imagenet-pretrain)",
            );
        }
        Confidence::none("Paddle BatchNorm keys, but no PP-YOLOE backbone / head")
    }

    fn option_keys(&self) -> &[&'static str] {
        &[IMAGENET_OPTION]
    }

    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let entries = view
            .section(ROOT_SECTION)
            .ok_or_else(|| AdapterError::MissingSection {
                adapter: NAME.to_owned(),
                section: ROOT_SECTION.to_owned(),
                available: view.section_names(),
                hint: "a .pdparams file is one dict of arrays at the top level".to_owned(),
            })?;
        let imagenet = is_imagenet(view, options);
        let mut plan = plan_by_key(NAME, ROOT_SECTION, entries, |k| convert_key(k, imagenet))?;
        plan.notes.push(
            "weights: the top-level dict of numpy arrays (read as data; nothing was imported or run)"
                .to_owned(),
        );
        let how = match options.extra.get(IMAGENET_OPTION) {
            Some(_) => format!("named by {IMAGENET_OPTION}"),
            None => "read from the key set".to_owned(),
        };
        plan.notes.push(if imagenet {
            format!("{SCRIPT} --imagenet-pretrain branch (backbone only; {how})")
        } else {
            format!("{SCRIPT} detector branch ({how})")
        });
        Ok(plan)
    }
}

register_adapter!(name: "paddle.ppyoloe", scope: "mmyolo", make: || Box::new(PaddlePpyoloe));

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(key: &str, imagenet: bool) -> String {
        match convert_key(key, imagenet).unwrap() {
            KeyFate::Rename(k) => k,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_branch_as_the_script() {
        assert_eq!(
            renamed("backbone.stem.conv2.bn._mean", false),
            "backbone.stem.1.bn.running_mean"
        );
        assert_eq!(
            renamed("backbone.stages.1.blocks.0.conv2.conv1.conv.weight", false),
            "backbone.stage2.0.blocks.0.conv2.rbr_dense.conv.weight"
        );
        assert_eq!(
            renamed("backbone.stages.3.attn.fc.bias", false),
            "backbone.stage4.0.attn.fc.conv.bias"
        );
        assert_eq!(
            renamed("neck.fpn_stages.0.0.convs.spp.conv.bn._variance", false),
            "neck.reduce_layers.2.0.blocks.spp.conv2.bn.running_var"
        );
        assert_eq!(
            renamed("neck.fpn_routes.1.conv.weight", false),
            "neck.upsample_layers.1.0.conv.weight"
        );
        assert_eq!(
            renamed("neck.pan_stages.1.0.convs.0.conv2.conv2.conv.weight", false),
            "neck.bottom_up_layers.0.0.blocks.0.conv2.rbr_1x1.conv.weight"
        );
        assert_eq!(
            renamed("neck.pan_routes.0.bn.weight", false),
            "neck.downsample_layers.1.bn.weight"
        );
        assert_eq!(
            renamed("yolo_head.stem_cls.0.conv.bn._mean", false),
            "bbox_head.head_module.cls_stems.2.conv.bn.running_mean"
        );
        assert_eq!(
            renamed("stages.0.conv_down.conv.weight", true),
            "backbone.stage1.0.conv_down.conv.weight"
        );
        assert!(matches!(
            convert_key("yolo_head.proj_conv.weight", false),
            Ok(KeyFate::Drop(r)) if r == PROJ_CONV
        ));
        assert!(convert_key("neck.fpn_stages.3.0.conv1.conv.weight", false)
            .unwrap_err()
            .contains("NotImplementedError"));
    }
}
