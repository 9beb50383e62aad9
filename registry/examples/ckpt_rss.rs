//! Peak-RSS probe for the checkpoint reader (used by benches/python/torch_load_bench.py and
//! BENCHMARKS.md): opens a checkpoint, lists every tensor, then reads the bytes of the tensors of
//! the first section whose key starts with PREFIX (default: all), and prints one JSON line with
//! the times and the peak resident set size (VmHWM from /proc/self/status, Linux).
//!
//! usage: cargo run --release -p mmcompat-registry --example ckpt_rss -- FILE [PREFIX]

use mmcompat_registry::checkpoint::Checkpoint;
use std::time::Instant;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: ckpt_rss FILE [PREFIX]")?;
    let prefix = args.next().unwrap_or_default();
    let t0 = Instant::now();
    let ck = Checkpoint::open(&path)?;
    let listed: usize = ck.sections().iter().map(|s| s.tensors.len()).sum();
    let all = ck.all_tensors().len();
    let open_list_s = t0.elapsed().as_secs_f64();
    let rss_after_list = peak_rss_kib();
    let t1 = Instant::now();
    let (mut read_tensors, mut read_bytes, mut checksum) = (0usize, 0usize, 0u64);
    if let Some(section) = ck.sections().first() {
        for (name, t) in &section.tensors {
            if !name.starts_with(&prefix) {
                continue;
            }
            let b = ck.tensor_bytes(t)?;
            // Touch every byte so the pages are really read.
            checksum = b.iter().fold(checksum, |a, &x| {
                a.wrapping_mul(31).wrapping_add(u64::from(x))
            });
            read_tensors += 1;
            read_bytes += b.len();
        }
    }
    let read_s = t1.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(&path)?.len();
    println!(
        "{{\"file\": {:?}, \"file_bytes\": {file_bytes}, \"format\": \"{}\", \"section_tensors\": {listed}, \"all_tensors\": {all}, \"open_list_s\": {open_list_s:.6}, \"peak_rss_after_list_kib\": {}, \"read_prefix\": {prefix:?}, \"read_tensors\": {read_tensors}, \"read_bytes\": {read_bytes}, \"read_s\": {read_s:.6}, \"peak_rss_kib\": {}, \"checksum\": {checksum}}}",
        path,
        ck.format(),
        rss_after_list.unwrap_or(0),
        peak_rss_kib().unwrap_or(0)
    );
    Ok(())
}
