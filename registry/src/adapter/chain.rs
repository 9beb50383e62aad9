//! Automatic choice of adapters: find the chain (identity, one adapter, or two in a row such as
//! `mmrazor.kd_student` then `mmengine.ddp`) whose output keys are exactly the keys the model
//! expects. When nothing fits, explain the mismatch grouped by prefix (never 1000 lines) and name
//! what came closest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use indexmap::IndexMap;

use super::plan::resolve_chain;
use super::report::{key_prefix, PREFIX_DEPTH};
use super::{
    AdapterError, AdapterOptions, AdapterSet, CheckpointView, Confidence, Plan, ResolvedMapping,
};

/// What the model expects: parameter/buffer name → shape, in model order.
pub type ExpectedKeys = IndexMap<String, Vec<usize>>;

/// Suffix of the batch-norm step counter PyTorch adds next to `running_mean`/`running_var`.
/// Unused at inference; mmengine ignores it when missing (`mmengine/runner/checkpoint.py:
/// load_state_dict`) and checkpoints usually carry it, so it is expected but never required.
pub const BN_COUNTER_SUFFIX: &str = "num_batches_tracked";

/// Whether `key` is a batch norm's `num_batches_tracked` counter (the one definition used by the
/// strict check in this module and by backends that skip it when copying weights).
pub fn is_bn_counter(key: &str) -> bool {
    key.ends_with(BN_COUNTER_SUFFIX)
}

/// Missing keys with this suffix are ignored, as mmengine's `load_state_dict` does
/// (`mmengine/runner/checkpoint.py:58-139`); see [`is_bn_counter`].
pub const IGNORED_MISSING: &str = BN_COUNTER_SUFFIX;

/// A chain that fits (or was asked for), with everything needed to apply and report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub adapters: Vec<String>,
    pub confidences: Vec<Confidence>,
    pub plans: Vec<Plan>,
    pub mapping: ResolvedMapping,
}

/// How a mapping's keys differ from the expected ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMismatch {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// (key, expected shape, checkpoint shape).
    pub shape_mismatch: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl KeyMismatch {
    /// The strict check of an adapter chain's output against the model's keys.
    pub fn between(mapping: &ResolvedMapping, expected: &ExpectedKeys) -> KeyMismatch {
        KeyMismatch::of(
            mapping
                .tensors
                .iter()
                .map(|t| (t.key.as_str(), t.shape.as_slice())),
            expected,
        )
    }

    /// The strict check of any (key, shape) list, in its order, against the model's keys: what
    /// PyTorch's `load_state_dict(strict=True)` reports, with missing `num_batches_tracked`
    /// ignored as mmengine does. Backends use it too, so the accounting exists once.
    pub fn of<'k>(
        got: impl IntoIterator<Item = (&'k str, &'k [usize])>,
        expected: &ExpectedKeys,
    ) -> KeyMismatch {
        let got: Vec<(&str, &[usize])> = got.into_iter().collect();
        let by_key: BTreeMap<&str, &[usize]> = got.iter().copied().collect();
        let missing = expected
            .keys()
            .filter(|k| !by_key.contains_key(k.as_str()) && !is_bn_counter(k))
            .cloned()
            .collect();
        let unexpected = got
            .iter()
            .filter(|(k, _)| !expected.contains_key(*k))
            .map(|(k, _)| (*k).to_owned())
            .collect();
        let shape_mismatch = expected
            .iter()
            .filter_map(|(k, shape)| {
                by_key
                    .get(k.as_str())
                    .filter(|g| **g != shape.as_slice())
                    .map(|g| (k.clone(), shape.clone(), g.to_vec()))
            })
            .collect();
        KeyMismatch {
            missing,
            unexpected,
            shape_mismatch,
        }
    }

    pub fn fits(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.shape_mismatch.is_empty()
    }

    pub fn size(&self) -> usize {
        self.missing.len() + self.unexpected.len() + self.shape_mismatch.len()
    }

    /// Grouped by prefix with counts and one example each.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let group = |keys: &[String]| -> BTreeMap<String, (usize, String)> {
            let mut g: BTreeMap<String, (usize, String)> = BTreeMap::new();
            for k in keys {
                let e = g
                    .entry(key_prefix(k, PREFIX_DEPTH))
                    .or_insert((0, k.clone()));
                e.0 += 1;
            }
            g
        };
        for (title, keys) in [("missing", &self.missing), ("unexpected", &self.unexpected)] {
            if keys.is_empty() {
                continue;
            }
            out.push_str(&format!("  {} {title} keys:\n", keys.len()));
            for (p, (c, example)) in group(keys) {
                out.push_str(&format!(
                    "    {:<28} {c:>5}  e.g. {example}\n",
                    format!("{p}.*")
                ));
            }
        }
        if !self.shape_mismatch.is_empty() {
            out.push_str(&format!(
                "  {} shape mismatches, e.g.:\n",
                self.shape_mismatch.len()
            ));
            for (k, want, got) in self.shape_mismatch.iter().take(3) {
                out.push_str(&format!("    {k}: model {want:?}, checkpoint {got:?}\n"));
            }
        }
        out
    }
}

/// One chain tried, and how far it was from fitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub adapters: Vec<String>,
    pub mismatch: KeyMismatch,
    /// Each adapter's own reason for applying (its `detect`), shown under the closest chain: an
    /// adapter that sees why the keys cannot fit (e.g. a class-count mismatch) says so there.
    pub reasons: Vec<String>,
}

/// Nothing fits. Shows the plain checkpoint's mismatch and the closest chain tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NoFit {
    /// Identity (no adapter).
    pub identity: KeyMismatch,
    /// Every chain tried, closest first.
    pub attempts: Vec<Attempt>,
    /// Adapters that fit on their own when the caller's chain did not (see [`explain_mismatch`]).
    pub would_fix: Vec<String>,
}

impl fmt::Display for NoFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "no adapter chain makes the checkpoint match the model's keys"
        )?;
        writeln!(f, "without adapters:")?;
        f.write_str(&self.identity.render())?;
        let best = self.attempts.iter().find(|a| !a.adapters.is_empty());
        if let Some(best) = best.filter(|_| self.would_fix.is_empty()) {
            writeln!(
                f,
                "closest chain: {} ({} keys off)",
                best.adapters.join(" → "),
                best.mismatch.size()
            )?;
            for reason in &best.reasons {
                writeln!(f, "  why: {reason}")?;
            }
            f.write_str(&best.mismatch.render())?;
        }
        if !self.would_fix.is_empty() {
            writeln!(
                f,
                "this would fit: --adapter {}",
                self.would_fix.join(" / --adapter ")
            )?;
        }
        Ok(())
    }
}

/// Plans and resolves the named adapters in order (each plan made on the previous output).
pub fn apply_named(
    view: &CheckpointView,
    names: &[&str],
    set: &AdapterSet,
    options: &AdapterOptions,
    config: Option<&serde_json::Value>,
) -> Result<Chain, AdapterError> {
    let mut current = view.clone();
    let mut plans = Vec::new();
    let mut confidences = Vec::new();
    for name in names {
        let adapter = set.get(name)?;
        confidences.push(adapter.detect(&current, config));
        let plan = adapter.plan(&current, options)?;
        let m = plan.resolve(&current)?;
        current = m.as_view(&current);
        plans.push(plan);
    }
    let mapping = resolve_chain(view, &plans)?;
    Ok(Chain {
        adapters: names.iter().map(|s| (*s).to_owned()).collect(),
        confidences,
        plans,
        mapping,
    })
}

/// Candidate chains: identity, each adapter that detects itself, and pairs where the second
/// detects itself on the first one's output. Ordered by length, then confidence, then name.
fn candidates(
    view: &CheckpointView,
    set: &AdapterSet,
    options: &AdapterOptions,
    config: Option<&serde_json::Value>,
) -> Vec<Result<Chain, AdapterError>> {
    let mut out: Vec<Result<Chain, AdapterError>> = Vec::new();
    out.push(apply_named(view, &[], set, options, config));
    let mut singles = Vec::new();
    for (a, _) in set.iter() {
        let c = a.detect(view, config);
        if c.applies() {
            singles.push((c.level, a.name().to_owned()));
        }
    }
    // High confidence first; names break ties so the order is deterministic.
    singles.sort_by(|x, y| y.0.cmp(&x.0).then_with(|| x.1.cmp(&y.1)));
    let mut pairs = Vec::new();
    for (level, first) in &singles {
        let chain = apply_named(view, &[first.as_str()], set, options, config);
        if let Ok(c) = &chain {
            let next_view = c.mapping.as_view(view);
            for (b, _) in set.iter() {
                if b.name() == first {
                    continue;
                }
                let cb = b.detect(&next_view, config);
                if cb.applies() {
                    pairs.push(((*level).min(cb.level), first.clone(), b.name().to_owned()));
                }
            }
        }
        out.push(chain);
    }
    pairs.sort_by(|x, y| y.0.cmp(&x.0).then_with(|| (&x.1, &x.2).cmp(&(&y.1, &y.2))));
    for (_, a, b) in pairs {
        out.push(apply_named(
            view,
            &[a.as_str(), b.as_str()],
            set,
            options,
            config,
        ));
    }
    out
}

/// `adapter: reason` for each adapter of a chain (what its `detect` said).
fn reasons_of(chain: &Chain) -> Vec<String> {
    chain
        .adapters
        .iter()
        .zip(&chain.confidences)
        .map(|(a, c)| format!("{a}: {}", c.reason))
        .collect()
}

/// Picks the first chain (identity, then single adapters, then pairs) whose output keys match
/// `expected` exactly (shapes included; missing `num_batches_tracked` ignored).
pub fn choose_chain(
    view: &CheckpointView,
    config: Option<&serde_json::Value>,
    expected: &ExpectedKeys,
    set: &AdapterSet,
    options: &AdapterOptions,
) -> Result<Chain, NoFit> {
    let mut attempts = Vec::new();
    let mut identity = KeyMismatch::default();
    for (i, cand) in candidates(view, set, options, config)
        .into_iter()
        .enumerate()
    {
        let Ok(chain) = cand else { continue };
        let mismatch = KeyMismatch::between(&chain.mapping, expected);
        if mismatch.fits() {
            return Ok(chain);
        }
        if i == 0 {
            identity = mismatch.clone();
        }
        attempts.push(Attempt {
            reasons: reasons_of(&chain),
            adapters: chain.adapters,
            mismatch,
        });
    }
    attempts.sort_by_key(|a| (a.mismatch.size(), a.adapters.len()));
    Err(NoFit {
        identity,
        attempts,
        would_fix: Vec::new(),
    })
}

/// For a mapping that does not fit (e.g. the chain the user asked for): the mismatch, and which
/// adapter chains WOULD fit.
pub fn explain_mismatch(
    view: &CheckpointView,
    mapping: &ResolvedMapping,
    config: Option<&serde_json::Value>,
    expected: &ExpectedKeys,
    set: &AdapterSet,
    options: &AdapterOptions,
) -> NoFit {
    let mismatch = KeyMismatch::between(mapping, expected);
    let mut would_fix: Vec<Vec<String>> = Vec::new();
    let mut attempts = vec![Attempt {
        adapters: mapping.adapters.clone(),
        mismatch: mismatch.clone(),
        reasons: Vec::new(),
    }];
    for chain in candidates(view, set, options, config).into_iter().flatten() {
        let m = KeyMismatch::between(&chain.mapping, expected);
        if m.fits() {
            would_fix.push(chain.adapters);
        } else {
            attempts.push(Attempt {
                reasons: reasons_of(&chain),
                adapters: chain.adapters,
                mismatch: m,
            });
        }
    }
    attempts.sort_by_key(|a| (a.mismatch.size(), a.adapters.len()));
    // Only the shortest fixes: `kd_student` fits, so `ema then kd_student` is noise.
    let shortest = would_fix.iter().map(Vec::len).min().unwrap_or(0);
    let would_fix = would_fix
        .into_iter()
        .filter(|c| c.len() == shortest)
        .map(|c| c.join(" then "))
        .collect();
    NoFit {
        identity: mismatch,
        attempts,
        would_fix,
    }
}

/// The keys of one section of a view as an expected set (tests use plain checkpoints' listings).
pub fn expected_from_view(view: &CheckpointView, section: &str) -> ExpectedKeys {
    view.section(section)
        .unwrap_or_default()
        .iter()
        .map(|e| (e.key.clone(), e.shape.clone()))
        .collect()
}

/// Distinct prefixes of a key list (helper for messages).
pub fn prefixes(keys: &[String]) -> BTreeSet<String> {
    keys.iter().map(|k| key_prefix(k, PREFIX_DEPTH)).collect()
}
