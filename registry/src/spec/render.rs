//! Text view of an [`InferenceSpec`] (`mmcompat config FILE --spec`): one line per component with
//! its resolved `scope.Type`, then its typed arguments (defaults filled in) as compact JSON.

use std::fmt::Write;

use super::{ComponentSpec, InferenceSpec};

impl InferenceSpec {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scope: {}", self.scope);
        if let Some(algo) = &self.distillation {
            let _ = writeln!(
                out,
                "distillation: {algo} reduced to its student (teacher never built)"
            );
        }
        let json = |v: serde_json::Result<serde_json::Value>| {
            v.map(|v| v.to_string()).unwrap_or_else(|e| e.to_string())
        };
        out.push_str("model:\n");
        component(&mut out, "model", &self.model, 1);
        let _ = writeln!(
            out,
            "data_preprocessor: {}",
            json(serde_json::to_value(&self.data_preprocessor))
        );
        out.push_str("test_pipeline:\n");
        for (i, step) in self.test_pipeline.steps.iter().enumerate() {
            let _ = writeln!(out, "  [{i}] {}", json(serde_json::to_value(step)));
        }
        let _ = writeln!(
            out,
            "test_cfg: {}",
            json(serde_json::to_value(&self.test_cfg))
        );
        match &self.config_classes {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "classes (config; the checkpoint's meta wins): {}",
                    c.join(", ")
                );
            }
            None => out.push_str("classes: none in the config (checkpoint meta, else COCO)\n"),
        }
        out
    }
}

fn component(out: &mut String, slot: &str, c: &ComponentSpec, depth: usize) {
    let pad = "  ".repeat(depth);
    let _ = writeln!(
        out,
        "{pad}{slot}: {} ({}, built in scope {})",
        c.qualified_name(),
        c.kind.describe(),
        c.build_scope.name()
    );
    let _ = writeln!(out, "{pad}  args: {}", c.args.to_json());
    for (name, child) in &c.children {
        component(out, name, child, depth + 1);
    }
}
