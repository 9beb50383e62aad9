//! Registering a checkpoint adapter from user code. Say an in-house trainer saves the detector
//! under `detector.` (and its optimizer-side copy under `shadow.`): one small adapter makes such
//! checkpoints load into any mmcompat model, automatically, strict as usual.
//!
//! ```text
//! cargo run --example custom_adapter                      # lists the adapters, ours included
//! cargo run --example custom_adapter -- CONFIG CKPT IMAGE # runs a detection with it
//! ```
//! An adapter only looks at the checkpoint's description (keys, shapes, meta) and returns a plan
//! (pure data); mmcompat applies it. The same plan could be written as a TOML file or shipped in a
//! dynamic library (see registry/src/adapter).

use mmcompat::inferencer::Inferencer;
use mmcompat::registry::adapter::{
    AdapterError, AdapterOptions, AdapterSet, CheckpointAdapter, CheckpointView, Confidence, Op,
    Plan,
};
use mmcompat_registry::register_adapter;

/// `detector.*` → `*`, `shadow.*` dropped.
struct InHousePrefix;

impl CheckpointAdapter for InHousePrefix {
    fn name(&self) -> &str {
        "acme.detector_prefix"
    }

    fn scope(&self) -> &str {
        "acme"
    }

    fn description(&self) -> &str {
        "ACME trainer checkpoints: the model under `detector.`, an optimizer shadow copy under `shadow.`"
    }

    fn detect(&self, view: &CheckpointView, _config: Option<&serde_json::Value>) -> Confidence {
        match view.default_section() {
            Some(section) if view.any_key_starts_with(section, "detector.") => {
                Confidence::high("keys start with `detector.`")
            }
            _ => Confidence::none("no `detector.` keys"),
        }
    }

    fn plan(&self, view: &CheckpointView, _options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let section = view.default_section().unwrap_or("state_dict").to_string();
        Ok(Plan {
            adapter: self.name().to_owned(),
            section,
            ops: vec![
                Op::Drop {
                    pattern: r"shadow\.".into(),
                    reason: "optimizer shadow copy".into(),
                },
                Op::StripPrefix {
                    prefix: "detector.".into(),
                },
            ],
            notes: vec!["ACME layout: model weights under `detector.`".into()],
        })
    }
}

// Linked into this binary: from now on every automatic chain considers it.
register_adapter!(name: "acme.detector_prefix", scope: "acme", make: || Box::new(InHousePrefix));

fn main() -> anyhow::Result<()> {
    mmcompat::builtin_adapters();
    let set = AdapterSet::from_inventory()?;
    for (adapter, source) in set.iter() {
        println!(
            "{:<28} {:<10} {}  [{source}]",
            adapter.name(),
            adapter.scope(),
            adapter.description()
        );
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [config, weights, image, ..] = args.as_slice() {
        let inferencer = Inferencer::builder()
            .config(config)
            .weights(weights)
            .build()?;
        println!("adapters applied: [{}]", inferencer.adapters().join(" → "));
        for d in inferencer.infer(image.as_str())?.iter().take(10) {
            println!("{:>16} {:.3} {:?}", d.class_name, d.score, d.bbox);
        }
    }
    Ok(())
}
