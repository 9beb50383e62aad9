#![no_main]
// See FUZZING.md; the entry is shared with registry/tests/fuzz_replay.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mmcompat_fuzz::entries::module_tree(data));
