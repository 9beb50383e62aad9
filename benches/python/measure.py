"""Runs a command RUNS times in fresh processes; prints the median wall time (s) and the largest
peak RSS (MiB) of the child, measured from outside the same way for both languages.

Usage: python3 benches/python/measure.py RUNS COMMAND [ARG ...]
"""
import resource
import statistics
import subprocess
import sys
import time

runs, cmd = int(sys.argv[1]), sys.argv[2:]
walls, rss = [], 0.0
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    walls.append(time.perf_counter() - t)
    rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
print(f"{statistics.median(walls):.3f} {rss:.1f}")
