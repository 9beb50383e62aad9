//! Checkpoint adapters for the mmrazor family (see `mmcompat_registry::adapter` for the contract).
//!
//! MMRazor's distillation algorithms (`SingleTeacherDistill`, `FpnTeacherDistill`, ... in
//! `mmrazor/models/algorithms/distill/configurable/`) are `BaseAlgorithm`s whose state dict holds
//! the student under `architecture.`, the teacher under `teacher.` and the distiller's connectors
//! under `distiller.` (behaviour.md §3.4). MMRazor 1.0.0rc's older layout nests them as
//! `architecture.model.` (student) and `architecture.model.distiller.teacher.` (teacher), see
//! `tools/model_converters/convert_kd_ckpt.py`.
//!
//! MMRazor 0.x (mmcv 1.x) distillation checkpoints hold the student as `architecture.model.`
//! (`mmrazor/models/architectures/base.py` 0.x: `BaseArchitecture.model`) and the teacher as
//! `distiller.teacher.` (`mmrazor/models/distillers/single_teacher.py` 0.x:
//! `SingleTeacherDistiller.teacher`, next to `distiller.align_modules.component_N.` and
//! `distiller.losses.`).
//!
//! Unlike `tools/model_converters/convert_kd_ckpt_to_student.py`, which does
//! `key.replace('architecture.', '')` on the WHOLE key, the prefix is stripped only at the start.
//!
//! Pruning, NAS-supernet and quantisation checkpoints (families.md §3 signatures:
//! `mutator.units.N.mutable_channel.mask`, `._candidates.`, `qmodels.`) are refused from their key
//! names: their `architecture.*` alone is a different model than the one they were trained as.
//! The view holds names, dtypes and shapes only; no tensor byte is read before the refusal.

use mmcompat_registry::adapter::{
    select_weights, AdapterError, AdapterOptions, CheckpointAdapter, CheckpointView, Confidence,
    Op, Plan,
};
use mmcompat_registry::register_adapter;

/// Referenced by the facade crate so the linker keeps this crate and its `inventory` submissions.
pub fn link() {}

const ARCH: &str = "architecture.";
const OLD_ARCH: &str = "architecture.model.";
const OLD_TEACHER: &str = "architecture.model.distiller.teacher.";
/// MMRazor 0.x: `SingleTeacherDistiller.teacher` beside the algorithm's `architecture.model.`.
const V0_TEACHER: &str = "distiller.teacher.";

/// Counts of the distillation prefixes in the section mmengine would load.
struct Layout {
    section: String,
    architecture: usize,
    teacher: usize,
    distiller: usize,
    old_layout: bool,
    /// `distiller.teacher.` keys (MMRazor 0.x).
    v0_teacher: usize,
}

/// Why a checkpoint is not a plain model under its `architecture.` prefix, from key names only.
fn refusal(view: &CheckpointView) -> Option<String> {
    use mmcompat_registry::spec::student::{NAS, PRUNING, QUANTISATION};
    let (section, _, _) = select_weights(view, &AdapterOptions::default(), "mmrazor").ok()?;
    let keys: Vec<&str> = view
        .section(&section)?
        .iter()
        .map(|e| e.key.strip_prefix("module.").unwrap_or(&e.key))
        .collect();
    let first = |pred: &dyn Fn(&str) -> bool| -> Option<(usize, String)> {
        let hits: Vec<&&str> = keys.iter().filter(|k| pred(k)).collect();
        hits.first().map(|k| (hits.len(), (**k).to_owned()))
    };
    // mutables/mutable_module/one_shot_mutable_module.py: every candidate op of a supernet (and
    // the chosen one of a `sub_model` subnet) lives under `._candidates.<op>.`.
    if let Some((n, eg)) = first(&|k| k.contains("._candidates.")) {
        return Some(format!(
            "{section} holds an MMRazor NAS supernet ({n} `._candidates.` keys, e.g. `{eg}`): {}",
            NAS.hint
        ));
    }
    // Pruning mutators (ChannelMutator units with their masks); the architecture keeps the
    // UNPRUNED shapes, so it would load into the plain model and run without the masks.
    if let Some((n, eg)) = first(&|k| k.starts_with("mutator.") && k.contains("mutable_channel")) {
        return Some(format!(
            "{section} holds an MMRazor pruning algorithm ({n} `mutator.` channel keys, e.g. `{eg}`): {}",
            PRUNING.hint
        ));
    }
    // Any other mutator state (Darts/DSNAS architecture parameters, ...).
    if let Some((n, eg)) = first(&|k| k.starts_with("mutator.")) {
        return Some(format!(
            "{section} holds an MMRazor NAS or pruning algorithm's mutator ({n} `mutator.` keys, e.g. `{eg}`): {}",
            NAS.hint
        ));
    }
    // algorithms/quantization/mm_architecture.py: fx graph modules with fake-quant observers.
    if let Some((n, eg)) = first(&|k| k.starts_with("qmodels.")) {
        return Some(format!(
            "{section} holds an MMRazor quantisation algorithm (MMArchitectureQuant; {n} `qmodels.` keys, e.g. `{eg}`): {}",
            QUANTISATION.hint
        ));
    }
    // tools/model_converters/convert_quant_ckpt.py output: `qmodels.predict.` stripped, observers kept.
    if let Some((n, eg)) = first(&|k| k.contains("weight_fake_quant.")) {
        return Some(format!(
            "{section} holds a fake-quantised model ({n} `weight_fake_quant` keys, e.g. `{eg}`): {}",
            QUANTISATION.hint
        ));
    }
    None
}

fn layout(view: &CheckpointView, options: &AdapterOptions) -> Option<Layout> {
    let (section, _, _) = select_weights(view, options, "mmrazor").ok()?;
    let keys = view.section(&section)?;
    // A raw ema_state_dict is still `module.`-prefixed at this point.
    let strip = |k: &str| {
        k.strip_prefix("module.")
            .map(str::to_owned)
            .unwrap_or_else(|| k.to_owned())
    };
    let keys: Vec<String> = keys.iter().map(|e| strip(&e.key)).collect();
    let count = |p: &str| keys.iter().filter(|k| k.starts_with(p)).count();
    Some(Layout {
        architecture: count(ARCH),
        teacher: count("teacher.") + count(OLD_TEACHER) + count(V0_TEACHER),
        distiller: count("distiller."),
        old_layout: count(OLD_ARCH) > 0,
        v0_teacher: count(V0_TEACHER),
        section,
    })
}

fn detect_distill(view: &CheckpointView) -> Option<(Layout, String)> {
    let l = layout(view, &AdapterOptions::default())?;
    let what = format!(
        "{}: {} `architecture.` (student), {} teacher, {} `distiller.` keys{}",
        l.section,
        l.architecture,
        l.teacher,
        l.distiller,
        match (l.old_layout, l.v0_teacher > 0) {
            (true, true) => " (MMRazor 0.x `architecture.model.` / `distiller.teacher.` layout)",
            (true, false) => " (old `architecture.model.` layout)",
            _ => "",
        }
    );
    Some((l, what))
}

/// Student extraction from any MMRazor distillation checkpoint.
#[derive(Debug, Default, Clone, Copy)]
pub struct KdStudent;

impl CheckpointAdapter for KdStudent {
    fn name(&self) -> &str {
        "mmrazor.kd_student"
    }

    fn scope(&self) -> &str {
        "mmrazor"
    }

    fn description(&self) -> &str {
        "student of an MMRazor distillation checkpoint: architecture.* (prefix stripped at the start only), teacher.* and distiller.* dropped"
    }

    fn detect(&self, view: &CheckpointView, _config: Option<&serde_json::Value>) -> Confidence {
        if let Some(why) = refusal(view) {
            // High so that `inspect` names the reason; `plan` and `refuse` then refuse it.
            return Confidence::high(format!("refused: {why}"));
        }
        match detect_distill(view) {
            Some((l, what)) if l.architecture > 0 && (l.teacher > 0 || l.distiller > 0) => {
                Confidence::high(what)
            }
            // An `architecture.`-prefixed checkpoint without a teacher or mutator state (e.g. a
            // `BaseAlgorithm` wrapping a plain model): the student extraction gives the model.
            Some((l, what)) if l.architecture > 0 => Confidence::low(what),
            Some((_, what)) => Confidence::none(format!("no `architecture.` keys ({what})")),
            None => Confidence::none("no state dict"),
        }
    }

    fn refuse(&self, view: &CheckpointView) -> Option<String> {
        refusal(view)
    }

    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError> {
        if let Some(reason) = refusal(view) {
            return Err(AdapterError::Refused {
                adapter: self.name().to_owned(),
                reason,
            });
        }
        let (section, mut ops, mut notes) = select_weights(view, options, self.name())?;
        let l = layout(view, options)
            .filter(|l| l.architecture > 0)
            .ok_or_else(|| AdapterError::NotApplicable {
                adapter: self.name().to_owned(),
                reason: format!(
                    "{section} has no `architecture.` keys: not an MMRazor algorithm checkpoint"
                ),
            })?;
        if l.teacher > 0 || l.old_layout {
            let pattern = if l.v0_teacher > 0 {
                r"distiller\.teacher\."
            } else if l.old_layout {
                r"teacher\.|architecture\.model\.distiller\.teacher\."
            } else {
                r"teacher\."
            };
            ops.push(Op::Drop {
                pattern: pattern.to_owned(),
                reason: "teacher (not part of the student)".to_owned(),
            });
        }
        // 0.x: `distiller.teacher.` is dropped above as the teacher; the rest of `distiller.`
        // (align_modules, losses) here.
        if l.distiller > l.v0_teacher || (l.old_layout && l.v0_teacher == 0) {
            let pattern = if l.old_layout {
                r"distiller\.|architecture\.model\.distiller\."
            } else {
                r"distiller\."
            };
            ops.push(Op::Drop {
                pattern: pattern.to_owned(),
                reason: "distiller (connectors and losses, training only)".to_owned(),
            });
        }
        ops.push(Op::Keep {
            pattern: r"architecture\.".to_owned(),
            reason: Some("outside the student `architecture.`".to_owned()),
        });
        ops.push(Op::StripPrefix {
            prefix: if l.old_layout { OLD_ARCH } else { ARCH }.to_owned(),
        });
        notes.push(format!(
            "student = {}* of the distillation algorithm{}",
            if l.old_layout { OLD_ARCH } else { ARCH },
            match (l.old_layout, l.v0_teacher > 0) {
                (true, true) => " (MMRazor 0.x layout)",
                (true, false) => " (MMRazor 1.0.0rc layout)",
                _ => "",
            }
        ));
        Ok(Plan {
            adapter: self.name().to_owned(),
            section,
            ops,
            notes,
        })
    }
}

/// Teacher extraction from an MMRazor distillation checkpoint.
#[derive(Debug, Default, Clone, Copy)]
pub struct KdTeacher;

impl CheckpointAdapter for KdTeacher {
    fn name(&self) -> &str {
        "mmrazor.kd_teacher"
    }

    fn scope(&self) -> &str {
        "mmrazor"
    }

    fn description(&self) -> &str {
        "teacher of an MMRazor distillation checkpoint: teacher.* with the prefix stripped, student and distiller dropped"
    }

    fn detect(&self, view: &CheckpointView, _config: Option<&serde_json::Value>) -> Confidence {
        match detect_distill(view) {
            // Low: taking the teacher is a deliberate choice, never what a student config wants.
            Some((l, what)) if l.teacher > 0 => Confidence::low(what),
            Some((_, what)) => Confidence::none(format!("no teacher keys ({what})")),
            None => Confidence::none("no state dict"),
        }
    }

    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError> {
        let (section, mut ops, mut notes) = select_weights(view, options, self.name())?;
        let l = layout(view, options)
            .filter(|l| l.teacher > 0)
            .ok_or_else(|| AdapterError::NotApplicable {
                adapter: self.name().to_owned(),
                reason: format!(
                    "{section} has no teacher keys (`teacher.`, `{OLD_TEACHER}` or `{V0_TEACHER}`)"
                ),
            })?;
        let teacher = if l.v0_teacher > 0 {
            V0_TEACHER
        } else if l.old_layout {
            OLD_TEACHER
        } else {
            "teacher."
        };
        if l.v0_teacher > 0 || l.old_layout {
            ops.push(Op::Keep {
                pattern: regex_escape(teacher),
                reason: Some("student and distiller (not the teacher)".to_owned()),
            });
        } else {
            ops.push(Op::Drop {
                pattern: r"architecture\.".to_owned(),
                reason: "student (architecture.*)".to_owned(),
            });
            ops.push(Op::Drop {
                pattern: r"distiller\.".to_owned(),
                reason: "distiller (connectors and losses, training only)".to_owned(),
            });
            ops.push(Op::Keep {
                pattern: r"teacher\.".to_owned(),
                reason: Some("not the teacher".to_owned()),
            });
        }
        ops.push(Op::StripPrefix {
            prefix: teacher.to_owned(),
        });
        notes.push(format!(
            "teacher = {teacher}* of the distillation algorithm"
        ));
        Ok(Plan {
            adapter: self.name().to_owned(),
            section,
            ops,
            notes,
        })
    }
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

register_adapter!(name: "mmrazor.kd_student", scope: "mmrazor", make: || Box::new(KdStudent));
register_adapter!(name: "mmrazor.kd_teacher", scope: "mmrazor", make: || Box::new(KdTeacher));
