//! The evaluator's value model: Python objects, `ConfigDict` hooks, copies and equality.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use indexmap::IndexMap;

use super::format::repr;

pub(crate) type ListRef = Rc<RefCell<Vec<Obj>>>;
pub(crate) type DictRef = Rc<RefCell<PyDict>>;

/// A hashable dict key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    Tuple(Vec<Key>),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct PyDict {
    pub map: IndexMap<Key, Obj>,
    /// `mmengine.config.ConfigDict` (attribute access, recursive update) vs a plain `dict`.
    pub config: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(ListRef),
    Tuple(Rc<Vec<Obj>>),
    Dict(DictRef),
    Builtin(&'static str),
    /// An imported module (mmengine drops these from the result).
    Module(String),
    /// A `def` (never called; mmengine drops these from the result).
    Function(String),
    Method(Box<Obj>, String),
}

/// Every list and dict made on this thread during a load, held weakly. `Rc` has no counterpart
/// of Python's cycle collector, so a container that holds itself (`a.append(a)`,
/// `p[0].s = dict(e=p)`, both valid mmengine configs) would never be freed: a fuzzing finding
/// (LeakSanitizer on the `config_py` corpus). [`release_containers`] empties those still alive
/// when the load ends. Dead entries are pruned as the list grows, so it holds about as many
/// entries as there are live containers.
#[derive(Default)]
struct Containers {
    lists: Vec<Weak<RefCell<Vec<Obj>>>>,
    dicts: Vec<Weak<RefCell<PyDict>>>,
    prune_at: usize,
}

thread_local! {
    static CONTAINERS: RefCell<Containers> = RefCell::new(Containers::default());
}

fn track(f: impl FnOnce(&mut Containers)) {
    CONTAINERS.with(|c| {
        let mut c = c.borrow_mut();
        f(&mut c);
        if c.lists.len() + c.dicts.len() >= c.prune_at.max(4096) {
            c.lists.retain(|w| w.strong_count() > 0);
            c.dicts.retain(|w| w.strong_count() > 0);
            c.prune_at = 2 * (c.lists.len() + c.dicts.len());
        }
    });
}

/// Breaks every reference cycle among this thread's containers by emptying those still alive
/// (called when a load ends, after its result was converted to plain values). All are upgraded
/// first, so emptying one only decrements its children's counts: nothing is freed recursively
/// until the end, when every container is already empty.
pub(crate) fn release_containers() {
    let Containers { lists, dicts, .. } = CONTAINERS.with(|c| std::mem::take(&mut *c.borrow_mut()));
    let lists: Vec<ListRef> = lists.iter().filter_map(Weak::upgrade).collect();
    let dicts: Vec<DictRef> = dicts.iter().filter_map(Weak::upgrade).collect();
    let mut contents = Vec::new();
    for l in &lists {
        contents.push(std::mem::take(&mut *l.borrow_mut()));
    }
    let mut maps = Vec::new();
    for d in &dicts {
        maps.push(std::mem::take(&mut d.borrow_mut().map));
    }
    drop(contents);
    drop(maps);
}

pub(crate) fn new_dict(map: IndexMap<Key, Obj>, config: bool) -> Obj {
    let d = Rc::new(RefCell::new(PyDict { map, config }));
    track(|c| c.dicts.push(Rc::downgrade(&d)));
    Obj::Dict(d)
}

pub(crate) fn new_list(v: Vec<Obj>) -> Obj {
    let l = Rc::new(RefCell::new(v));
    track(|c| c.lists.push(Rc::downgrade(&l)));
    Obj::List(l)
}

impl Obj {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Obj::None => "NoneType",
            Obj::Bool(_) => "bool",
            Obj::Int(_) => "int",
            Obj::Float(_) => "float",
            Obj::Str(_) => "str",
            Obj::List(_) => "list",
            Obj::Tuple(_) => "tuple",
            Obj::Dict(d) => {
                if d.borrow().config {
                    "ConfigDict"
                } else {
                    "dict"
                }
            }
            Obj::Builtin(_) => "builtin_function_or_method",
            Obj::Module(_) => "module",
            Obj::Function(_) => "function",
            Obj::Method(..) => "method",
        }
    }

    pub(crate) fn truthy(&self) -> bool {
        match self {
            Obj::None => false,
            Obj::Bool(b) => *b,
            Obj::Int(i) => *i != 0,
            Obj::Float(f) => *f != 0.0,
            Obj::Str(s) => !s.is_empty(),
            Obj::List(l) => !l.borrow().is_empty(),
            Obj::Tuple(t) => !t.is_empty(),
            Obj::Dict(d) => !d.borrow().map.is_empty(),
            _ => true,
        }
    }
}

impl Key {
    pub(crate) fn to_obj(&self) -> Obj {
        match self {
            Key::Str(s) => Obj::Str(s.clone()),
            Key::Int(i) => Obj::Int(*i),
            Key::Bool(b) => Obj::Bool(*b),
            Key::None => Obj::None,
            Key::Tuple(t) => Obj::Tuple(Rc::new(t.iter().map(Key::to_obj).collect())),
        }
    }

    /// How `json.dumps` writes a non-string key.
    pub(crate) fn json_string(&self) -> String {
        match self {
            Key::Str(s) => s.clone(),
            Key::Int(i) => i.to_string(),
            Key::Bool(b) => b.to_string(),
            Key::None => "null".into(),
            Key::Tuple(_) => repr(&self.to_obj()),
        }
    }
}

pub(crate) fn key_of(o: &Obj) -> Option<Key> {
    Some(match o {
        Obj::Str(s) => Key::Str(s.clone()),
        Obj::Int(i) => Key::Int(*i),
        Obj::Bool(b) => Key::Bool(*b),
        Obj::None => Key::None,
        Obj::Tuple(t) => Key::Tuple(t.iter().map(key_of).collect::<Option<_>>()?),
        _ => return None,
    })
}

pub(crate) fn skey(s: &str) -> Key {
    Key::Str(s.to_string())
}

/// RAII depth counter shared by the recursive helpers. Entering also charges one evaluation
/// step, so every copy, comparison, `repr` and conversion is bounded by the `steps` limit, and
/// refuses beyond the `depth` limit (only reachable through a deeply nested expression or a
/// self-referencing list or dict, which Python refuses too: `RecursionError` / "Circular
/// reference detected"), instead of overflowing the stack.
pub(crate) struct Deep;

impl Deep {
    pub(crate) fn enter() -> Option<Deep> {
        // Not `then_some(Deep)`: that builds (and drops, leaving a level) a Deep on failure too.
        if super::limits::enter() {
            Some(Deep)
        } else {
            None
        }
    }
}

impl Drop for Deep {
    fn drop(&mut self) {
        super::limits::leave();
    }
}

/// Items of a list, tuple or dict (0 for anything else).
pub(crate) fn container_len(o: &Obj) -> usize {
    match o {
        Obj::List(l) => l.borrow().len(),
        Obj::Tuple(t) => t.len(),
        Obj::Dict(d) => d.borrow().map.len(),
        _ => 0,
    }
}

/// A scalar's copy. Strings are copied by value, so their bytes are charged to the `steps`
/// budget: a copy of a list holding one long string a thousand times costs what it allocates.
/// Once the budget is spent, `None` stands in (the load fails with the limit error anyway).
pub(crate) fn leaf_clone(o: &Obj) -> Obj {
    if let Obj::Str(s) = o {
        if !super::limits::charge(s.len()) {
            return Obj::None;
        }
    }
    o.clone()
}

/// `ConfigDict._hook`: plain dicts become (copied) ConfigDicts, lists and tuples are rebuilt;
/// ConfigDicts and scalars are kept as they are.
pub(crate) fn hook(o: &Obj) -> Obj {
    let Some(_deep) = Deep::enter() else {
        return o.clone();
    };
    match o {
        Obj::Dict(d) if !d.borrow().config => config_dict_from(&d.borrow()),
        Obj::List(l) => new_list(l.borrow().iter().map(hook).collect()),
        Obj::Tuple(t) => Obj::Tuple(Rc::new(t.iter().map(hook).collect())),
        other => leaf_clone(other),
    }
}

/// `ConfigDict(d)`: a new ConfigDict whose values are hooked.
pub(crate) fn config_dict_from(d: &PyDict) -> Obj {
    new_dict(
        d.map.iter().map(|(k, v)| (k.clone(), hook(v))).collect(),
        true,
    )
}

/// Structural deep copy (`copy.deepcopy` without the memo: aliasing inside the copy is not
/// needed because every later step of mmengine copies again).
pub(crate) fn deep_copy(o: &Obj) -> Obj {
    let Some(_deep) = Deep::enter() else {
        return o.clone();
    };
    // A copied container costs its allocation as well as its items' visits.
    if !super::limits::charge(container_len(o)) {
        return Obj::None;
    }
    match o {
        Obj::Dict(d) => {
            let d = d.borrow();
            new_dict(
                d.map
                    .iter()
                    .map(|(k, v)| (k.clone(), deep_copy(v)))
                    .collect(),
                d.config,
            )
        }
        Obj::List(l) => new_list(l.borrow().iter().map(deep_copy).collect()),
        Obj::Tuple(t) => Obj::Tuple(Rc::new(t.iter().map(deep_copy).collect())),
        other => leaf_clone(other),
    }
}

/// `ConfigDict.update` (mmengine config.py): dict values merge recursively into dict values,
/// everything else is replaced (hooked).
pub(crate) fn config_update(d: &DictRef, other: IndexMap<Key, Obj>) {
    for (k, v) in other {
        let existing = d.borrow().map.get(&k).cloned();
        match (existing, &v) {
            (Some(Obj::Dict(cur)), Obj::Dict(new)) => {
                let new_map = new.borrow().map.clone();
                if cur.borrow().config {
                    config_update(&cur, new_map);
                } else {
                    let mut c = cur.borrow_mut();
                    for (k2, v2) in new_map {
                        c.map.insert(k2, v2);
                    }
                }
            }
            _ => {
                // Hooked before `d` is borrowed for writing: `v` may hold `d` itself.
                let v = hook(&v);
                d.borrow_mut().map.insert(k, v);
            }
        }
    }
}

pub(super) fn shallow_copy(o: &Obj) -> Obj {
    match o {
        Obj::Dict(d) => {
            let d = d.borrow();
            new_dict(d.map.clone(), d.config)
        }
        Obj::List(l) => new_list(l.borrow().clone()),
        other => other.clone(),
    }
}

pub(crate) fn py_eq(a: &Obj, b: &Obj) -> bool {
    let Some(_deep) = Deep::enter() else {
        return false;
    };
    match (a, b) {
        (Obj::None, Obj::None) => true,
        (Obj::Str(x), Obj::Str(y)) => x == y,
        (Obj::List(x), Obj::List(y)) => {
            let (x, y) = (x.borrow(), y.borrow());
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| py_eq(a, b))
        }
        (Obj::Tuple(x), Obj::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| py_eq(a, b))
        }
        (Obj::Dict(x), Obj::Dict(y)) => {
            let (x, y) = (x.borrow(), y.borrow());
            x.map.len() == y.map.len()
                && x.map
                    .iter()
                    .all(|(k, v)| y.map.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

pub(super) fn num(o: &Obj) -> Option<f64> {
    match o {
        Obj::Int(i) => Some(*i as f64),
        Obj::Bool(b) => Some(*b as i64 as f64),
        Obj::Float(f) => Some(*f),
        _ => None,
    }
}

pub(super) fn num_or_str_cmp(a: &Obj, b: &Obj) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Obj::Str(x), Obj::Str(y)) => Some(x.cmp(y)),
        _ => num(a)?.partial_cmp(&num(b)?),
    }
}

#[cfg(test)]
mod cycle_tests {
    use super::*;

    /// `a = []; a.append(a); d = dict(a=a); d['d'] = d`: both cycles are freed at the end of the
    /// load (before [`release_containers`] they would outlive it: `Rc` does not collect cycles).
    #[test]
    fn release_containers_frees_self_referencing_lists_and_dicts() {
        let (weak_list, weak_dict) = {
            let Obj::List(a) = new_list(Vec::new()) else {
                unreachable!()
            };
            a.borrow_mut().push(Obj::List(a.clone()));
            let Obj::Dict(d) = new_dict(IndexMap::new(), false) else {
                unreachable!()
            };
            d.borrow_mut()
                .map
                .insert(Key::Str("a".into()), Obj::List(a.clone()));
            d.borrow_mut()
                .map
                .insert(Key::Str("d".into()), Obj::Dict(d.clone()));
            (Rc::downgrade(&a), Rc::downgrade(&d))
        };
        assert!(weak_list.upgrade().is_some() && weak_dict.upgrade().is_some());
        release_containers();
        assert!(weak_list.upgrade().is_none(), "the list's cycle is freed");
        assert!(weak_dict.upgrade().is_none(), "the dict's cycle is freed");
    }
}
