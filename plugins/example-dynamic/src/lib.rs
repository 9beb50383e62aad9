//! Example dynamic adapter plugin (cdylib) speaking the versioned C ABI of
//! `mmcompat_registry::plugin`: PyTorch Lightning checkpoints.
//!
//! A `LightningModule` that holds the detector as `self.model` saves `checkpoint['state_dict']`
//! with every key prefixed `model.` (Lightning's `ModelCheckpoint` saves the LightningModule's
//! state dict), plus `epoch`, `global_step`, `pytorch-lightning_version`, `optimizer_states`...
//! This plugin strips the leading `model.`. It is loaded at run time with
//! `mmcompat --adapters target/debug/libmmcompat_plugin_example_dynamic.so` and is NOT
//! registered statically (no `register_adapter!`), to show the dynamic path.

use mmcompat_registry::adapter::{
    select_weights, AdapterError, AdapterOptions, CheckpointAdapter, CheckpointView, Confidence,
    Op, Plan,
};

#[derive(Debug, Default, Clone, Copy)]
pub struct LightningModelPrefix;

impl CheckpointAdapter for LightningModelPrefix {
    fn name(&self) -> &str {
        "lightning.model_prefix"
    }

    fn scope(&self) -> &str {
        "mmengine"
    }

    fn description(&self) -> &str {
        "PyTorch Lightning checkpoints: strip the leading `model.` of the LightningModule's attribute"
    }

    fn detect(&self, view: &CheckpointView, _config: Option<&serde_json::Value>) -> Confidence {
        let Some(section) = view.default_section() else {
            return Confidence::none("no state dict");
        };
        let keys = view.section(section).unwrap_or_default();
        let prefixed = keys.iter().filter(|e| e.key.starts_with("model.")).count();
        let lightning = view
            .top_level_keys
            .iter()
            .any(|k| k == "pytorch-lightning_version");
        match (prefixed, lightning) {
            (0, _) => Confidence::none(format!("no key of {section} starts with `model.`")),
            (n, true) if n == keys.len() => {
                Confidence::high(format!("Lightning checkpoint, all {n} keys under `model.`"))
            }
            (n, _) => Confidence::low(format!(
                "{n} of {} keys of {section} start with `model.`",
                keys.len()
            )),
        }
    }

    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError> {
        if options.extra.contains_key("example_dynamic_panic") {
            // Exercised by the tests: a panic must come back as an error, not abort the host.
            panic!("example_dynamic_panic requested");
        }
        let (section, mut ops, mut notes) = select_weights(view, options, self.name())?;
        ops.push(Op::Keep {
            pattern: r"model\.".to_owned(),
            reason: Some("outside the LightningModule's `model`".to_owned()),
        });
        ops.push(Op::StripPrefix {
            prefix: "model.".to_owned(),
        });
        notes.push("Lightning `model.` prefix stripped (dynamic plugin)".to_owned());
        Ok(Plan {
            adapter: self.name().to_owned(),
            section,
            ops,
            notes,
        })
    }
}

mmcompat_registry::declare_adapter_plugin!(LightningModelPrefix);
