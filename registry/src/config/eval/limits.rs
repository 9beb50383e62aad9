//! Bounds on config loading, so that a hostile config fails with [`ConfigError::LimitExceeded`]
//! (naming file:line and the limit) instead of exhausting memory or time. Python itself has no
//! such bounds (`'x' * 10**12` is a `MemoryError` only after trying); mmcompat reads configs
//! from the internet, so it refuses early. The defaults sit far above what any of the 1172
//! shipped mmdet/mmyolo/mmrazor configs needs (`registry/tests/limits.rs` measures them) and far
//! below what hurts (each hostile case fails in well under a second and 100 MB).
//!
//! The evaluator keeps the running counts in a thread-local [`Budget`], installed by the loader
//! for the duration of one `Config::from_file` (which runs on its own thread), so that every
//! recursive helper (copies, `repr`, equality, conversion to the result tree) can charge it
//! without an interpreter at hand. A helper that runs out records the hit and stops; the
//! innermost expression being evaluated turns it into the error with its location.
//!
//! [`ConfigError::LimitExceeded`]: crate::config::ConfigError::LimitExceeded

use std::cell::{Cell, RefCell};
use std::sync::RwLock;

use crate::config::ConfigError;

/// The bounds of one config load (a file and all its `_base_` files). `Limits::default()` is
/// what the CLI uses unless `--config-limit NAME=N` raises one; [`Limits::TABLE`] documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest config file read, in bytes (each file, bases included).
    pub file_bytes: u64,
    /// Most items one list/tuple/`range` may hold and most characters one string may hold.
    pub seq_len: u64,
    /// Deepest nesting of expressions and containers while evaluating.
    pub depth: u64,
    /// Most evaluation steps for the whole load: one per statement and expression evaluated and
    /// one per item a container or string operation creates, copies or converts.
    pub steps: u64,
    /// Most `_base_` entries in one file.
    pub base_fanout: u64,
    /// Longest chain of `_base_` inheritance (the file itself is level 1).
    pub base_depth: u64,
    /// Most files one load may read (the config and all its bases, counted every time).
    pub base_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            file_bytes: 1 << 20,
            seq_len: 1_000_000,
            depth: 500,
            steps: 2_000_000,
            base_fanout: 64,
            base_depth: 32,
            base_files: 2_000,
        }
    }
}

/// Raising `depth` beyond this would let the recursion outgrow the loader thread's stack.
pub const MAX_DEPTH_LIMIT: u64 = 20_000;

impl Limits {
    /// `(name, why)` of every limit, in the order of the struct (docs/limits.md mirrors it).
    pub const TABLE: &'static [(&'static str, &'static str)] = &[
        ("file_bytes", "largest config file read, in bytes"),
        (
            "seq_len",
            "most items of one list/tuple/range, characters of one string",
        ),
        ("depth", "deepest nesting of expressions and containers"),
        (
            "steps",
            "most evaluation steps (expressions, statements, items created) per load",
        ),
        ("base_fanout", "most `_base_` entries in one file"),
        ("base_depth", "longest `_base_` inheritance chain"),
        (
            "base_files",
            "most files (config + bases, counted each time) per load",
        ),
    ];

    /// The value of the limit `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        Some(match name {
            "file_bytes" => self.file_bytes,
            "seq_len" => self.seq_len,
            "depth" => self.depth,
            "steps" => self.steps,
            "base_fanout" => self.base_fanout,
            "base_depth" => self.base_depth,
            "base_files" => self.base_files,
            _ => return None,
        })
    }

    /// Sets the limit `name` (an unknown name is an error that lists the known ones).
    pub fn set(&mut self, name: &str, value: u64) -> Result<(), ConfigError> {
        let slot = match name {
            "file_bytes" => &mut self.file_bytes,
            "seq_len" => &mut self.seq_len,
            "depth" => &mut self.depth,
            "steps" => &mut self.steps,
            "base_fanout" => &mut self.base_fanout,
            "base_depth" => &mut self.base_depth,
            "base_files" => &mut self.base_files,
            _ => {
                let names: Vec<&str> = Self::TABLE.iter().map(|(n, _)| *n).collect();
                let near = names
                    .iter()
                    .map(|n| (strsim::jaro_winkler(n, name), *n))
                    .filter(|(s, _)| *s > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, n)| format!(" (did you mean '{n}'?)"))
                    .unwrap_or_default();
                return Err(ConfigError::BadLimit {
                    spec: name.to_string(),
                    why: format!("unknown limit{near}; known: {}", names.join(", ")),
                });
            }
        };
        if name == "depth" && value > MAX_DEPTH_LIMIT {
            return Err(ConfigError::BadLimit {
                spec: format!("{name}={value}"),
                why: format!(
                    "depth can be raised to {MAX_DEPTH_LIMIT} at most (the loader's stack)"
                ),
            });
        }
        *slot = value;
        Ok(())
    }

    /// Applies `NAME=N` assignments (the CLI's `--config-limit`), in order.
    pub fn with_assignments<S: AsRef<str>>(mut self, specs: &[S]) -> Result<Limits, ConfigError> {
        for spec in specs {
            let spec = spec.as_ref();
            let bad = |why: &str| ConfigError::BadLimit {
                spec: spec.to_string(),
                why: why.to_string(),
            };
            let (name, value) = spec
                .split_once('=')
                .ok_or_else(|| bad("expected NAME=N, e.g. steps=20000000"))?;
            let value: u64 = value
                .trim()
                .replace('_', "")
                .parse()
                .map_err(|_| bad("N must be a non-negative integer"))?;
            self.set(name.trim(), value)?;
        }
        Ok(self)
    }
}

static PROCESS_DEFAULT: RwLock<Option<Limits>> = RwLock::new(None);

/// The limits `Config::from_file` uses: [`Limits::default`] unless [`set_default_limits`] set others.
pub fn default_limits() -> Limits {
    PROCESS_DEFAULT
        .read()
        .ok()
        .and_then(|g| *g)
        .unwrap_or_default()
}

/// Sets the limits every later `Config::from_file` of this process uses (the CLI calls this
/// once with the `--config-limit` values; libraries should prefer `Config::from_file_with_limits`).
pub fn set_default_limits(limits: Limits) {
    if let Ok(mut g) = PROCESS_DEFAULT.write() {
        *g = Some(limits);
    }
}

/// Which limit was hit, and by what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub limit: &'static str,
    pub max: u64,
    pub what: String,
}

/// The running counts of one load (thread-local, see the module documentation).
pub(crate) struct Budget {
    pub limits: Limits,
    pub files: u64,
    pub hit: Option<Hit>,
}

thread_local! {
    static BUDGET: RefCell<Option<Budget>> = const { RefCell::new(None) };
    // The hot counters apart from the RefCell: every expression and every copied item charges
    // a step, so this path must be a few instructions.
    static STEPS_LEFT: Cell<u64> = const { Cell::new(u64::MAX) };
    static MAX_DEPTH: Cell<u64> = const { Cell::new(500) };
    static DEPTH: Cell<u64> = const { Cell::new(0) };
}

/// One level deeper, charging one step (`object::Deep`); false at the `depth` limit or once
/// the budget is spent (then nothing is entered).
pub(crate) fn enter() -> bool {
    let (depth, max) = (DEPTH.with(Cell::get), MAX_DEPTH.with(Cell::get));
    if depth >= max || !charge(1) {
        return false;
    }
    DEPTH.with(|c| c.set(depth + 1));
    true
}

/// Leaves a level entered by [`enter`].
pub(crate) fn leave() {
    DEPTH.with(|c| c.set(c.get().saturating_sub(1)));
}

/// Installs a fresh budget for this thread until the guard drops.
pub(crate) fn install(limits: Limits) -> BudgetGuard {
    BUDGET.with(|b| {
        *b.borrow_mut() = Some(Budget {
            limits,
            files: 0,
            hit: None,
        })
    });
    STEPS_LEFT.with(|c| c.set(limits.steps));
    MAX_DEPTH.with(|c| c.set(limits.depth));
    BudgetGuard
}

pub(crate) struct BudgetGuard;

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        // The load is over: free what reference cycles would keep alive (object.rs).
        super::object::release_containers();
        BUDGET.with(|b| *b.borrow_mut() = None);
        STEPS_LEFT.with(|c| c.set(u64::MAX));
        MAX_DEPTH.with(|c| c.set(Limits::default().depth));
    }
}

fn with<T>(f: impl FnOnce(&mut Budget) -> T) -> Option<T> {
    BUDGET.with(|b| b.borrow_mut().as_mut().map(f))
}

/// The limits in force on this thread (the defaults where no load is running, e.g. in unit use).
pub(crate) fn current() -> Limits {
    with(|b| b.limits).unwrap_or_default()
}

/// Records a hit (the first one wins: it is the cause, later ones are consequences).
pub(crate) fn record(limit: &'static str, max: u64, what: impl Into<String>) {
    // A hit stops everything that charges from here on.
    STEPS_LEFT.with(|c| c.set(0));
    with(|b| {
        if b.hit.is_none() {
            b.hit = Some(Hit {
                limit,
                max,
                what: what.into(),
            });
        }
    });
}

/// Charges `n` steps; false (and the hit recorded) once the budget is spent or a limit was hit.
pub(crate) fn charge(n: usize) -> bool {
    let n = n as u64;
    let ok = STEPS_LEFT.with(|c| {
        let left = c.get();
        let ok = n < left || (n == left && n > 0);
        if ok {
            c.set(left - n);
        }
        ok
    });
    if ok {
        return true;
    }
    let left = STEPS_LEFT.with(Cell::get);
    if n == 0 && left > 0 {
        return true;
    }
    let Some(limits) = with(|b| b.limits) else {
        return true;
    };
    if !pending() {
        record("steps", limits.steps, "evaluation");
    }
    false
}

/// Checks, before it is allocated, that a sequence of `len` items may be created (`what` says
/// which). Not charged here: the expression that returns it is (`Interp::eval`).
pub(crate) fn allow_len(len: u64, what: &str) -> bool {
    let max = current().seq_len;
    if len > max {
        record("seq_len", max, format!("{what} of {len} items"));
        return false;
    }
    !pending()
}

/// What copying `o`'s top level costs: its items, plus the bytes of the strings among them
/// (copied by value, unlike nested containers, which are shared references).
pub(crate) fn weight(o: &super::Obj) -> usize {
    use super::Obj;
    let items = |v: &[Obj]| {
        v.len()
            + v.iter()
                .map(|x| match x {
                    Obj::Str(s) => s.len(),
                    _ => 0,
                })
                .sum::<usize>()
    };
    match o {
        Obj::Str(s) => s.len(),
        Obj::List(l) => items(&l.borrow()),
        Obj::Tuple(t) => items(t),
        _ => 0,
    }
}

/// Counts one more file read by this load; false (and the hit recorded) beyond `base_files`.
pub(crate) fn count_file() -> bool {
    with(|b| {
        b.files += 1;
        if b.files > b.limits.base_files {
            if b.hit.is_none() {
                b.hit = Some(Hit {
                    limit: "base_files",
                    max: b.limits.base_files,
                    what: format!("reading file number {}", b.files),
                });
            }
            false
        } else {
            true
        }
    })
    .unwrap_or(true)
}

/// True once a limit was hit.
pub(crate) fn pending() -> bool {
    with(|b| b.hit.is_some()).unwrap_or(false)
}

/// The recorded hit, if any (it stays recorded: a load that hit a limit never succeeds).
pub(crate) fn hit() -> Option<Hit> {
    with(|b| b.hit.clone()).flatten()
}

/// Steps used so far by the load on this thread (for measurements).
pub(crate) fn steps_used() -> u64 {
    let left = STEPS_LEFT.with(Cell::get);
    with(|b| b.limits.steps.saturating_sub(left)).unwrap_or(0)
}
