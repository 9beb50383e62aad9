//! Checkpoint adapters for the mmrazor family (see `mmcompat_registry::adapter` for the contract).
//!
//! MMRazor's distillation algorithms (`SingleTeacherDistill`, `FpnTeacherDistill`, ... in
//! `mmrazor/models/algorithms/distill/configurable/`) are `BaseAlgorithm`s whose state dict holds
//! the student under `architecture.`, the teacher under `teacher.` and the distiller's connectors
//! under `distiller.` (behaviour.md §3.4). MMRazor 1.0.0rc's older layout nests them as
//! `architecture.model.` (student) and `architecture.model.distiller.teacher.` (teacher), see
//! `tools/model_converters/convert_kd_ckpt.py`.
//!
//! Unlike `tools/model_converters/convert_kd_ckpt_to_student.py`, which does
//! `key.replace('architecture.', '')` on the WHOLE key, the prefix is stripped only at the start.

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

/// Counts of the distillation prefixes in the section mmengine would load.
struct Layout {
    section: String,
    architecture: usize,
    teacher: usize,
    distiller: usize,
    old_layout: bool,
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
        teacher: count("teacher.") + count(OLD_TEACHER),
        distiller: count("distiller."),
        old_layout: count(OLD_ARCH) > 0,
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
        if l.old_layout {
            " (old `architecture.model.` layout)"
        } else {
            ""
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
        match detect_distill(view) {
            Some((l, what)) if l.architecture > 0 && (l.teacher > 0 || l.distiller > 0) => {
                Confidence::high(what)
            }
            // NAS/pruning supernets (`convert_supernet2subnet.py` output) are architecture.-prefixed
            // without a teacher: the student extraction still gives the plain model.
            Some((l, what)) if l.architecture > 0 => Confidence::low(what),
            Some((_, what)) => Confidence::none(format!("no `architecture.` keys ({what})")),
            None => Confidence::none("no state dict"),
        }
    }

    fn plan(&self, view: &CheckpointView, options: &AdapterOptions) -> Result<Plan, AdapterError> {
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
            let pattern = if l.old_layout {
                r"teacher\.|architecture\.model\.distiller\.teacher\."
            } else {
                r"teacher\."
            };
            ops.push(Op::Drop {
                pattern: pattern.to_owned(),
                reason: "teacher (not part of the student)".to_owned(),
            });
        }
        if l.distiller > 0 || l.old_layout {
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
            if l.old_layout {
                " (MMRazor 1.0.0rc layout)"
            } else {
                ""
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
                reason: format!("{section} has no teacher keys (`teacher.` or `{OLD_TEACHER}`)"),
            })?;
        let teacher = if l.old_layout {
            OLD_TEACHER
        } else {
            "teacher."
        };
        if l.old_layout {
            ops.push(Op::Keep {
                pattern: regex_escape(OLD_TEACHER),
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
