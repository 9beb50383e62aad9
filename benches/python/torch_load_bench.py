"""torch side of the checkpoint-reading benchmark (registry/benches/checkpoint.rs is the Rust
side), side by side with our reader on the same files.

For each checkpoint:
  * torch: `torch.load(f, map_location='cpu', weights_only=False)` + listing every key of every
    dict (what "open + list" costs in Python: the whole file is unpickled and every storage
    read), median of --repeat runs; and for zip files the same with `mmap=True`.
  * peak RSS of each, in a fresh child process: ru_maxrss after `import torch` and after the load
    (resource.getrusage); we report the increase the load causes and the total.
  * ours: registry/examples/ckpt_rss (release build) run --repeat times: median open+list time,
    and peak RSS (VmHWM, whole process) after open + list + reading the student
    (`architecture.*` tensors; all tensors of files without that prefix are NOT read: only listed).
Prints a markdown table and writes --json.

Usage: .venv-fixtures/bin/python benches/python/torch_load_bench.py --ours BIN FILE... [--repeat N]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r'''
import json, os, resource, sys, time
os.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = '1'
import torch
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path, mmap = sys.argv[1], sys.argv[2] == '1'
t = time.perf_counter()
ck = torch.load(path, map_location='cpu', weights_only=False, mmap=mmap)
n = 0
stack = [ck]
while stack:
    v = stack.pop()
    if isinstance(v, dict):
        n += len(v)
        stack.extend(v.values())
    elif isinstance(v, torch.Tensor) and sys.argv[3] == '1':
        # read the student's bytes (what inference needs)
        pass
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(seconds=dt, keys=n, rss_after_import_kib=base, peak_rss_kib=peak)))
'''


def torch_run(path, mmap):
    out = subprocess.run([sys.executable, '-c', CHILD, path, '1' if mmap else '0', '0'],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ours_run(binary, path, prefix):
    out = subprocess.run([binary, path, prefix], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def is_zip(path):
    with open(path, 'rb') as f:
        return f.read(4) == b'PK\x03\x04'


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('files', nargs='+')
    ap.add_argument('--ours', required=True, help='path of the release ckpt_rss example')
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--json', default='/tmp/mmcompat-bench/torch_load_bench.json')
    args = ap.parse_args()
    rows = []
    for path in args.files:
        size = os.path.getsize(path)
        runs = [torch_run(path, False) for _ in range(args.repeat)]
        row = dict(file=os.path.basename(path), bytes=size,
                   torch_load_s=statistics.median(r['seconds'] for r in runs),
                   torch_peak_rss_kib=max(r['peak_rss_kib'] for r in runs),
                   torch_rss_increase_kib=statistics.median(r['peak_rss_kib'] - r['rss_after_import_kib'] for r in runs))
        if is_zip(path):
            mruns = [torch_run(path, True) for _ in range(args.repeat)]
            row['torch_load_mmap_s'] = statistics.median(r['seconds'] for r in mruns)
            row['torch_mmap_rss_increase_kib'] = statistics.median(
                r['peak_rss_kib'] - r['rss_after_import_kib'] for r in mruns)
        ours = [ours_run(args.ours, path, 'architecture.') for _ in range(args.repeat)]
        row['ours_open_list_s'] = statistics.median(r['open_list_s'] for r in ours)
        row['ours_peak_rss_kib'] = max(r['peak_rss_kib'] for r in ours)
        row['ours_student_bytes_read'] = ours[0]['read_bytes']
        row['ours_tensors_listed'] = ours[0]['all_tensors']
        row['speedup_vs_torch_load'] = row['torch_load_s'] / row['ours_open_list_s']
        if 'torch_load_mmap_s' in row:
            row['speedup_vs_torch_load_mmap'] = row['torch_load_mmap_s'] / row['ours_open_list_s']
        rows.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(rows, f, indent=1)
    print()
    print('| file | size | torch.load | ours open+list | speed-up | torch.load(mmap) | speed-up | '
          'torch RSS increase | ours peak RSS (whole process, student read) |')
    print('|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        mm = (f"{r['torch_load_mmap_s'] * 1e3:.1f} ms | {r['speedup_vs_torch_load_mmap']:.0f}x"
              if 'torch_load_mmap_s' in r else 'n/a (legacy) | -')
        print(f"| {r['file']} | {r['bytes'] / 2**20:.1f} MiB | {r['torch_load_s'] * 1e3:.1f} ms | "
              f"{r['ours_open_list_s'] * 1e3:.2f} ms | {r['speedup_vs_torch_load']:.0f}x | {mm} | "
              f"{r['torch_rss_increase_kib'] / 1024:.1f} MiB | {r['ours_peak_rss_kib'] / 1024:.1f} MiB "
              f"({r['ours_student_bytes_read'] / 2**20:.1f} MiB read) |")


if __name__ == '__main__':
    t0 = time.time()
    main()
    print(f'\n(total {time.time() - t0:.0f} s)')
