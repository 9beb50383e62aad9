//! Hostile and broken files.

use mmcompat_registry::checkpoint::{Checkpoint, CheckpointError, PickleError, Value};
use serde_json::json;

use super::{data, zip_with};

fn pickle_error(r: Result<Checkpoint, CheckpointError>) -> (u64, PickleError) {
    match r {
        Err(CheckpointError::Pickle { offset, error, .. }) => (offset, error),
        other => panic!("expected a pickle error, got {other:?}"),
    }
}

#[test]
fn malicious_os_system_reduce_is_refused_and_never_runs() {
    let marker = std::env::temp_dir().join(format!("mmcompat-pwned-{}", std::process::id()));
    let cmd = format!("touch {}", marker.display());
    // PROTO 2; GLOBAL 'os system'; BINUNICODE cmd; TUPLE1; REDUCE; STOP — what
    // `pickle.dumps(X())` gives for `X.__reduce__ = lambda self: (os.system, (cmd,))`.
    let mut p = b"\x80\x02cos\nsystem\nX".to_vec();
    p.extend((cmd.len() as u32).to_le_bytes());
    p.extend(cmd.as_bytes());
    p.extend(b"\x85R.");
    let (offset, e) = pickle_error(Checkpoint::from_bytes("evil.pth", &zip_with(&p, &[])));
    assert_eq!(offset, 2, "the GLOBAL opcode");
    assert_eq!(
        e,
        PickleError::ForbiddenCallable {
            module: "os".into(),
            name: "system".into()
        }
    );
    assert!(e.to_string().contains("os.system"));
    // The same through STACK_GLOBAL (protocol 4) and `posix.system`, and builtins.eval.
    let mut p4 = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94\x93".to_vec();
    p4.extend(b"\x8c\x02id\x85R.");
    let (_, e) = pickle_error(Checkpoint::from_bytes("evil4.pth", &zip_with(&p4, &[])));
    assert_eq!(
        e,
        PickleError::ForbiddenCallable {
            module: "posix".into(),
            name: "system".into()
        }
    );
    let pe = b"\x80\x02c__builtin__\neval\nX\x04\x00\x00\x001+1s\x85R.";
    let (_, e) = pickle_error(Checkpoint::from_bytes("eval.pth", &zip_with(pe, &[])));
    assert!(matches!(e, PickleError::ForbiddenCallable { ref name, .. } if name == "eval"));
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn unknown_callable_becomes_inert_opaque_data() {
    // {'x': evil.Payload('rm -rf /')}: any other global is only recorded, never imported.
    let p = b"\x80\x02}X\x01\x00\x00\x00xcevil\nPayload\nX\x08\x00\x00\x00rm -rf /\x85Rs.";
    let ck = Checkpoint::from_bytes("inert.pth", &zip_with(p, &[])).unwrap();
    let Some(Value::Opaque(o)) = ck.root().get("x") else {
        panic!("{:?}", ck.root())
    };
    assert_eq!(o.class(), "evil.Payload");
    assert_eq!(o.args, vec![Value::Str("rm -rf /".into())]);
    assert!(ck.opaque_globals().contains("evil.Payload"));
    assert_eq!(
        ck.root().to_json(),
        json!({"x": {"__class__": "evil.Payload", "__args__": ["rm -rf /"]}})
    );
}

/// `{'w': _rebuild_tensor_v2(('storage', torch.<cls>, '0', 'cpu', numel), 0, (n,), (1,), False, OrderedDict())}`
fn tensor_pickle(cls: &str, numel: u32, n: u32) -> Vec<u8> {
    let mut p = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n".to_vec();
    p.extend(cls.as_bytes());
    p.extend(b"\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ");
    p.extend(numel.to_le_bytes());
    p.extend(b"tQK\x00J");
    p.extend(n.to_le_bytes());
    p.extend(b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.");
    p
}

#[test]
fn broken_files_give_located_errors() {
    // Sanity: the hand-made tensor pickle reads.
    let ok = Checkpoint::from_bytes(
        "ok.pth",
        &zip_with(&tensor_pickle("FloatStorage", 2, 2), &[("0", &[0u8; 8])]),
    )
    .unwrap();
    assert_eq!(ok.section("<root>").unwrap().tensors["w"].shape, vec![2]);

    // Truncated zip.
    let full = std::fs::read(data("torch_zip.pth")).unwrap();
    let r = Checkpoint::from_bytes("cut.pth", &full[..full.len() / 2]);
    assert!(matches!(r, Err(CheckpointError::Zip { .. })), "{r:?}");

    // Missing data/N record.
    let r = Checkpoint::from_bytes(
        "missing.pth",
        &zip_with(&tensor_pickle("FloatStorage", 2, 2), &[]),
    );
    match r {
        Err(CheckpointError::MissingStorage { key, record, .. }) => {
            assert_eq!(key, "0");
            assert_eq!(record, "archive/data/0");
        }
        other => panic!("{other:?}"),
    }

    // Unsupported opcode, named, with its offset.
    let (offset, e) = pickle_error(Checkpoint::from_bytes(
        "ext.pth",
        &zip_with(b"\x80\x02\x82\x07.", &[]),
    ));
    assert_eq!(offset, 2);
    assert!(
        matches!(e, PickleError::UnsupportedOpcode { name: "EXT1", .. }),
        "{e}"
    );

    // Unknown storage type.
    let (_, e) = pickle_error(Checkpoint::from_bytes(
        "cplx.pth",
        &zip_with(
            &tensor_pickle("ComplexFloatStorage", 2, 2),
            &[("0", &[0u8; 16])],
        ),
    ));
    assert_eq!(
        e,
        PickleError::UnknownStorageType {
            class: "torch.ComplexFloatStorage".into()
        }
    );

    // Tensor bytes out of range: a 10-element view of a 2-element storage.
    let r = Checkpoint::from_bytes(
        "range.pth",
        &zip_with(&tensor_pickle("FloatStorage", 2, 10), &[("0", &[0u8; 8])]),
    );
    match r {
        Err(CheckpointError::TensorOutOfRange {
            tensor,
            key,
            end,
            available,
            ..
        }) => {
            assert_eq!(
                (tensor.as_str(), key.as_str(), end, available),
                ("w", "0", 40, 8)
            );
        }
        other => panic!("{other:?}"),
    }

    // A storage that declares more than the whole file: refused before anything is allocated.
    let (_, e) = pickle_error(Checkpoint::from_bytes(
        "huge.pth",
        &zip_with(&tensor_pickle("DoubleStorage", i32::MAX as u32, 1), &[]),
    ));
    assert!(matches!(e, PickleError::Limit { .. }), "{e}");
}

#[test]
fn memo_bomb_and_huge_shape_are_limit_errors() {
    // l0 = ['x' * 1000]; l(i+1) = [l(i), l(i)]: 2^40 strings once expanded.
    let mut p = b"\x80\x02]q\x00X\xe8\x03\x00\x00".to_vec();
    p.extend(std::iter::repeat_n(b'x', 1000));
    p.push(b'a');
    for i in 0..40u8 {
        p.extend([b'(', b'h', i, b'h', i, b'l', b'q', i + 1]);
    }
    p.push(b'.');
    let (_, e) = pickle_error(Checkpoint::from_bytes("bomb.pth", &zip_with(&p, &[])));
    assert!(matches!(e, PickleError::Limit { .. }), "{e}");

    // Shape (2^31-1)^3: numel overflows the byte range of any file.
    let mut t = tensor_pickle("FloatStorage", 2, 2);
    let at = t.windows(5).position(|w| w == b"K\x00J\x02\x00").unwrap() + 2;
    t.splice(
        at..at + 6,
        *b"J\xff\xff\xff\x7fJ\xff\xff\xff\x7fJ\xff\xff\xff\x7f\x87",
    );
    let stride = t.windows(3).position(|w| w == b"K\x01\x85").unwrap();
    t.splice(stride..stride + 3, *b"K\x01K\x01K\x01\x87");
    let (_, e) = pickle_error(Checkpoint::from_bytes(
        "shape.pth",
        &zip_with(&t, &[("0", &[0u8; 8])]),
    ));
    assert!(matches!(e, PickleError::Limit { .. }), "{e}");
}

/// A 632-byte pickle (found by fuzzing) whose dict keys are deep tuples: each key's text was the
/// JSON of its whole subtree, built again for every enclosing key and path, which took 533 MB and
/// over a second. Large container keys are now a placeholder, so the JSON view stays small.
#[test]
fn huge_container_keys_are_written_as_a_placeholder() {
    use mmcompat_registry::checkpoint::pickle::{unpickle, Limits, PidMode};
    let input = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/pickle/tensor-path-amplification-533mb"),
    )
    .expect("regression input");
    // As the fuzz entry reads it: the first byte picks the persistent-id mode.
    let (mode, body) = input.split_first().unwrap();
    let mode = [PidMode::Forbidden, PidMode::Zip, PidMode::Legacy][(*mode % 3) as usize];
    let Ok(u) = unpickle(
        body,
        0,
        mode,
        &Limits::for_input(body.len(), body.len() as u64),
    ) else {
        panic!("the input unpickles (within the limits)")
    };
    let json = u.value.to_json().to_string();
    assert!(
        json.contains("<tuple key of over 64 values>"),
        "a placeholder key"
    );
    assert!(json.len() < 4 << 20, "{} bytes of JSON", json.len());
    assert!(u.value.tensor_leaves().is_empty());
}

/// `torch.save` of 2^14 shared references to one tensor under 14 levels of 1000-character keys:
/// 4 KB on disk, within the node and string limits, but 230 MB of dotted tensor paths. Refused by
/// the tensor-path bound before any path is built; and the bound counts exactly what
/// `tensor_leaves` builds, on real checkpoints.
#[test]
fn tensor_path_amplification_is_a_limit_error() {
    let bomb = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/checkpoint_zip/tensor-path-amplification-230mb.pth"),
    )
    .expect("regression input");
    let (_, e) = pickle_error(Checkpoint::from_bytes("bomb.pth", &bomb));
    assert!(
        matches!(&e, PickleError::Limit { what, .. } if what.contains("dotted paths")),
        "{e}"
    );
    for file in [
        "torch_zip.pth",
        "torch_legacy.pth",
        "written_by_mmcompat.pth",
    ] {
        let ck = Checkpoint::open(data(file)).expect(file);
        let built: usize = ck.all_tensors().iter().map(|(k, _)| k.len()).sum();
        assert!(built > 0, "{file}");
        assert_eq!(ck.root().tensor_path_bytes(), built, "{file}");
    }
}
