//! Never a panic: mutated real files.

use mmcompat_registry::checkpoint::inspect::InspectReport;
use mmcompat_registry::checkpoint::Checkpoint;
use proptest::prelude::*;

use super::{data, fixture, zip_with};

fn exercise(name: &str, bytes: &[u8]) {
    if let Ok(ck) = Checkpoint::from_bytes(name, bytes) {
        let _ = ck.meta_json();
        let _ = InspectReport::from_checkpoint(&ck, name).render_human();
        for (_, t) in ck.all_tensors() {
            let _ = ck.tensor_bytes(t);
        }
    }
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "torch_zip.pth",
            std::fs::read(data("torch_zip.pth")).unwrap(),
        ),
        (
            "torch_legacy.pth",
            std::fs::read(data("torch_legacy.pth")).unwrap(),
        ),
        (
            "torch_zip_proto4.pth",
            std::fs::read(data("torch_zip_proto4.pth")).unwrap(),
        ),
        (
            "rtmdet_nano_mmdet_legacy.pth",
            std::fs::read(fixture("rtmdet_nano_mmdet_legacy.pth")).unwrap(),
        ),
        (
            "written_by_mmcompat.safetensors",
            std::fs::read(data("written_by_mmcompat.safetensors")).unwrap(),
        ),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Set(usize, u8),
    Splice(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, v)| Mutation::Splice(i, v)),
    ]
}

/// Mutations land mostly in the pickle (where the interpreter works), sometimes anywhere.
fn apply(bytes: &mut Vec<u8>, m: &Mutation, focus: usize) {
    let len = bytes.len().max(1);
    let pos = |i: usize| {
        if i.is_multiple_of(4) {
            i % len
        } else {
            i % focus.clamp(1, len)
        }
    };
    match m {
        Mutation::Truncate(i) => bytes.truncate(i % len),
        Mutation::Flip(i, b) => {
            let p = pos(*i);
            if let Some(x) = bytes.get_mut(p) {
                *x ^= b;
            }
        }
        Mutation::Set(i, b) => {
            let p = pos(*i);
            if let Some(x) = bytes.get_mut(p) {
                *x = *b;
            }
        }
        Mutation::Splice(i, v) => {
            let p = pos(*i).min(bytes.len());
            bytes.splice(p..p, v.iter().copied());
        }
    }
}

proptest! {
    // PROPTEST_CASES=N runs a longer campaign (see the report in BENCHMARKS.md).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_checkpoints_never_panic(seed in 0usize..5, muts in proptest::collection::vec(mutation(), 1..6)) {
        let seeds = seeds();
        let (name, original) = &seeds[seed];
        // Legacy files and zips keep their pickle in the first part of the file.
        let focus = original.len().min(64 * 1024);
        let mut bytes = original.clone();
        for m in &muts {
            apply(&mut bytes, m, focus);
        }
        exercise(name, &bytes);
    }

    #[test]
    fn random_pickles_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut p = b"\x80\x02".to_vec();
        p.extend(body);
        exercise("random.pth", &zip_with(&p, &[("0", &[0u8; 64])]));
    }
}
