//! A pickle *interpreter* that never executes anything: it reads the opcode stream of
//! `pickle.load` (protocols 0–5) into plain data.
//!
//! Design (mirrors the shape of CPython `Lib/pickle.py: _Unpickler`, without its `find_class`):
//! * Objects live in a heap and the stack holds cheap handles, so the memo has Python's reference
//!   semantics (an `OrderedDict` memoized empty and filled later is seen filled through BINGET)
//!   and a BINGET costs O(1) whatever the object size.
//! * GLOBAL/STACK_GLOBAL only record `module.name`. A call (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ)
//!   is interpreted for the few callables a checkpoint needs (torch tensor and parameter rebuilds,
//!   `collections.OrderedDict`, sets, `_codecs.encode`, `torch.Size`, `copyreg._reconstructor`);
//!   every other callable yields an inert [`Opaque`](super::value::Opaque) record of the call, which later BUILD,
//!   SETITEM(S), APPEND(S) fill with data. There is no code path that imports or calls anything,
//!   so the reader is safe by construction. Well-known code-execution callables (`os.system`,
//!   `builtins.eval`, `subprocess.Popen`, ...) are additionally refused at GLOBAL time with
//!   [`PickleError::ForbiddenCallable`], because no checkpoint has a reason to name them and the
//!   user should learn that the file is hostile.
//! * Limits are checked before allocating: string and bytes lengths against the remaining input,
//!   stack, mark and memo sizes, declared storage sizes and tensor extents against the file size,
//!   nesting depth, and the size of the final value tree (a memo bomb of shared references is
//!   an error, not an OOM).
//!
//! Layout: `vm` holds the interpreter state (input, stack, heap, memo, container mutation),
//! `opcodes` the main loop, `calls` the callables it interprets and the forbidden list,
//! `torch` tensor rebuilds and storage persistent ids, `decode` the text and integer
//! encodings of the opcodes, `heap` the heap objects and `convert` their conversion to
//! [`Value`]. This file is the entry point and its limits.

mod calls;
mod convert;
mod decode;
mod heap;
mod opcodes;
mod torch;
mod vm;

use std::collections::{BTreeSet, HashMap};

use self::convert::Converter;
use self::heap::Memo;
use self::vm::Vm;
use super::error::PickleError;
use super::tensor::StorageInfo;
use super::value::Value;

pub use calls::is_forbidden;

/// Explicit resource limits of one unpickling.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest number of memo entries.
    pub max_memo: usize,
    /// Largest stack (values plus marks).
    pub max_stack: usize,
    /// Deepest nesting of containers in the result.
    pub max_depth: usize,
    /// Most values the result tree may expand to (shared references count every time).
    pub max_nodes: usize,
    /// Most string/bytes bytes the result tree may expand to.
    pub max_expanded_bytes: usize,
    /// No storage or tensor may need more bytes than this (the file size).
    pub max_storage_bytes: u64,
}

impl Limits {
    /// Limits for a pickle of `pickle_len` bytes inside a file of `file_len` bytes.
    pub fn for_input(pickle_len: usize, file_len: u64) -> Limits {
        Limits {
            max_memo: 1 << 22,
            max_stack: 1 << 22,
            max_depth: 200,
            max_nodes: 1_000_000usize.saturating_add(pickle_len),
            max_expanded_bytes: (64usize << 20).saturating_add(pickle_len.saturating_mul(2)),
            max_storage_bytes: file_len,
        }
    }
}

/// How BINPERSID ids are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidMode {
    /// Persistent ids are not allowed (plain pickles such as the legacy header).
    Forbidden,
    /// `('storage', cls, key, location, numel)` (torch zip format).
    Zip,
    /// `('storage', cls, key, location, numel, view_metadata)` (legacy format).
    Legacy,
}

/// The outcome of one `pickle.load`.
#[derive(Debug)]
pub struct Unpickled {
    pub value: Value,
    /// Offset just after STOP.
    pub end: usize,
    /// Every storage named by a persistent id, by key, in order of first appearance.
    pub storages: Vec<StorageInfo>,
    /// `module.name` of every global that is not interpreted (kept as opaque data).
    pub opaque_globals: BTreeSet<String>,
    /// `module.name` of every global named by GLOBAL/STACK_GLOBAL/INST.
    pub globals: BTreeSet<String>,
}

/// An error and the byte offset of the opcode that caused it.
pub type Located = (u64, PickleError);

/// Unpickles one pickle starting at `start` of `data`.
pub fn unpickle(
    data: &[u8],
    start: usize,
    mode: PidMode,
    limits: &Limits,
) -> Result<Unpickled, Located> {
    let mut vm = Vm {
        data,
        pos: start,
        op_pos: start,
        mode,
        limits,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Memo::default(),
        heap: Vec::new(),
        storages: Vec::new(),
        storage_index: HashMap::new(),
        opaque_globals: BTreeSet::new(),
        globals: BTreeSet::new(),
    };
    let root = vm.run().map_err(|e| (vm.op_pos as u64, e))?;
    let end = vm.pos;
    let mut conv = Converter {
        heap: &vm.heap,
        on_path: vec![false; vm.heap.len()],
        nodes: 0,
        bytes: 0,
        limits,
    };
    let value = conv.value(&root, 0).map_err(|e| (end as u64, e))?;
    // Every tensor's dotted path repeats its ancestors' keys: a deep, wide tree within the node
    // and byte limits could still make `Value::tensor_leaves` build hundreds of MB of paths from
    // a few hundred input bytes (a fuzzing finding, fuzz/regressions/pickle). Bound their sum
    // like the expanded string bytes, before anyone walks them.
    let path_bytes = value.tensor_path_bytes();
    if path_bytes > limits.max_expanded_bytes {
        return Err((
            end as u64,
            PickleError::Limit {
                what: "bytes of the tensors' dotted paths",
                value: path_bytes as u64,
                limit: limits.max_expanded_bytes as u64,
            },
        ));
    }
    Ok(Unpickled {
        value,
        end,
        storages: vm.storages,
        opaque_globals: vm.opaque_globals,
        globals: vm.globals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn run(p: &[u8]) -> Result<Unpickled, Located> {
        unpickle(p, 0, PidMode::Zip, &Limits::for_input(p.len(), 1 << 20))
    }

    #[test]
    fn memo_keeps_reference_semantics() {
        // d = {}; l = [d, d]; d['a'] = 1 — pickled as: ] q0 ( } q1 h1 e ... built by hand:
        // EMPTY_DICT BINPUT0 EMPTY_LIST MARK BINGET0 BINGET0 APPENDS POP? Simpler:
        // PROTO2 } q0 ] ( h0 h0 e  (list [d, d]) then h0 'a' 1 s (fill d) 0 (pop d) .
        let p = b"\x80\x02}q\x00](h\x00h\x00eh\x00X\x01\x00\x00\x00aK\x01s0.";
        let v = run(p).unwrap().value;
        let Value::List(items) = v else {
            panic!("{v:?}")
        };
        assert_eq!(items.len(), 2);
        for d in items {
            assert_eq!(d.get("a"), Some(&Value::Int(1)));
        }
    }

    #[test]
    fn memo_bomb_is_a_limit_error() {
        // l0 = [ 'x'*1000 ]; each next list holds the previous twice; 40 levels → 2^40 strings.
        let mut p = b"\x80\x02]q\x00X\xe8\x03\x00\x00".to_vec();
        p.extend(std::iter::repeat_n(b'x', 1000));
        p.extend(b"a");
        for i in 0..40u8 {
            p.extend([b'(', b'h', i, b'h', i, b'l', b'q', i + 1]);
        }
        p.push(b'.');
        let (_, e) = run(&p).unwrap_err();
        assert!(matches!(e, PickleError::Limit { .. }), "{e}");
    }

    #[test]
    fn forbidden_callable_is_refused_by_name() {
        let p = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        let (pos, e) = run(p).unwrap_err();
        assert_eq!(pos, 2);
        assert_eq!(
            e,
            PickleError::ForbiddenCallable {
                module: "os".into(),
                name: "system".into()
            }
        );
    }

    #[test]
    fn unknown_global_reduce_is_inert_opaque() {
        let p = b"\x80\x02cmypkg.mod\nThing\nK\x05\x85R}X\x01\x00\x00\x00kK\x07sb.";
        let u = run(p).unwrap();
        let Value::Opaque(o) = u.value else { panic!() };
        assert_eq!(o.class(), "mypkg.mod.Thing");
        assert_eq!(o.args, vec![Value::Int(5)]);
        assert_eq!(
            o.state.as_ref().and_then(|s| s.get("k")),
            Some(&Value::Int(7))
        );
        assert!(u.opaque_globals.contains("mypkg.mod.Thing"));
    }

    #[test]
    fn ext_opcode_is_named() {
        let (pos, e) = run(b"\x80\x02\x82\x01.").unwrap_err();
        assert_eq!(pos, 2);
        assert!(matches!(
            e,
            PickleError::UnsupportedOpcode { name: "EXT1", .. }
        ));
    }
}
