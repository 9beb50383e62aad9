#![no_main]
// See FUZZING.md; the entry is shared with tests/fuzz_image_replay.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mmcompat_fuzz::image_entry::image_decode(data));
