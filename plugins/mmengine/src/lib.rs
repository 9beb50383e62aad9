//! Checkpoint adapters for the mmengine family (see `mmcompat_registry::adapter` for the contract):
//! EMAHook weight choice and DistributedDataParallel's `module.` prefix.

use mmcompat_registry::adapter::{
    select_weights, AdapterError, AdapterOptions, CheckpointAdapter, CheckpointView, Confidence,
    Op, Plan,
};
use mmcompat_registry::register_adapter;

/// Referenced by the facade crate so the linker keeps this crate and its `inventory` submissions.
pub fn link() {}

/// EMAHook checkpoints (`mmengine/hooks/ema_hook.py`): `state_dict` already holds the EMA weights
/// and is the default (init_detector, DetInferencer and MMRazor's converter load it); with
/// `--no-ema` the raw weights come from `ema_state_dict` (`module.` stripped, `steps` dropped).
#[derive(Debug, Default, Clone, Copy)]
pub struct Ema;

impl CheckpointAdapter for Ema {
    fn name(&self) -> &str {
        "mmengine.ema"
    }

    fn scope(&self) -> &str {
        "mmengine"
    }

    fn description(&self) -> &str {
        "EMAHook checkpoints: state_dict (EMA weights, the default) or, with --no-ema, the raw weights of ema_state_dict"
    }

    fn detect(&self, view: &CheckpointView, _config: Option<&serde_json::Value>) -> Confidence {
        match view.section("ema_state_dict") {
            // Low: the default needs no adapter (state_dict is loaded as is); this adapter matters
            // for --no-ema and for the report.
            Some(raw) => Confidence::low(format!(
                "ema_state_dict present ({} tensors{}): EMAHook was on, state_dict holds the EMA weights",
                raw.len(),
                if raw.iter().any(|e| e.key == "steps") { ", `steps` included" } else { "" }
            )),
            None => Confidence::none("no ema_state_dict"),
        }
    }

    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let (section, ops, notes) = select_weights(view, options, self.name())?;
        Ok(Plan {
            adapter: self.name().to_owned(),
            section,
            ops,
            notes,
        })
    }
}

/// DistributedDataParallel / DataParallel wrappers save `module.`-prefixed keys; mmengine's
/// `load_checkpoint` strips them by default (`revise_keys=[(r'^module\.', '')]`,
/// `mmengine/runner/checkpoint.py: load_checkpoint`). Only a LEADING `module.` is removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ddp;

impl CheckpointAdapter for Ddp {
    fn name(&self) -> &str {
        "mmengine.ddp"
    }

    fn scope(&self) -> &str {
        "mmengine"
    }

    fn description(&self) -> &str {
        "strip the leading `module.` of (Distributed)DataParallel checkpoints, as mmengine's load_checkpoint does"
    }

    fn detect(&self, view: &CheckpointView, _config: Option<&serde_json::Value>) -> Confidence {
        let Some(section) = view.default_section() else {
            return Confidence::none("no state dict");
        };
        let keys = view.section(section).unwrap_or_default();
        let n = keys.iter().filter(|e| e.key.starts_with("module.")).count();
        if n == 0 {
            Confidence::none(format!("no key of {section} starts with `module.`"))
        } else if n == keys.len() {
            Confidence::high(format!("all {n} keys of {section} start with `module.`"))
        } else {
            Confidence::low(format!(
                "{n} of {} keys of {section} start with `module.`",
                keys.len()
            ))
        }
    }

    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let (section, mut ops, mut notes) = select_weights(view, options, self.name())?;
        let has_module = view
            .section(&section)
            .unwrap_or_default()
            .iter()
            .any(|e| e.key.starts_with("module."));
        // select_weights already strips `module.` of a raw ema_state_dict.
        if has_module
            && !ops
                .iter()
                .any(|o| matches!(o, Op::StripPrefix { prefix } if prefix == "module."))
        {
            ops.push(Op::StripPrefix {
                prefix: "module.".to_owned(),
            });
        }
        notes.push("leading `module.` stripped (DDP wrapper)".to_owned());
        Ok(Plan {
            adapter: self.name().to_owned(),
            section,
            ops,
            notes,
        })
    }
}

register_adapter!(name: "mmengine.ema", scope: "mmengine", make: || Box::new(Ema));
register_adapter!(name: "mmengine.ddp", scope: "mmengine", make: || Box::new(Ddp));
