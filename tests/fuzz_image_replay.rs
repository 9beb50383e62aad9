//! CI replay of the image decoder's fuzz corpus (FUZZING.md) on the stable toolchain: every
//! file of `fuzz/corpus/image_decode/` and `fuzz/regressions/image_decode/` goes through the
//! entry function the libFuzzer target calls, compiled in from fuzz/src/image_entry.rs.

use std::path::Path;

#[path = "../fuzz/src/image_entry.rs"]
mod image_entry;

#[test]
fn image_decode_corpus_replays() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(rd) = std::fs::read_dir(root.join(kind).join("image_decode")) else {
            continue;
        };
        let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).expect("read corpus file");
            let r = std::panic::catch_unwind(|| image_entry::image_decode(&data));
            assert!(r.is_ok(), "image_decode panics on {}", f.display());
            n += 1;
        }
    }
    // The committed corpus holds at least the 40-odd format fixtures it was seeded with.
    assert!(n >= 40, "only {n} image corpus files");
}
