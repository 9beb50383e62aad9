"""Checks a JSON lines file from ray_data_detect.py against the Python Detector, image by image.

    python examples/ray/check_records.py IMAGE_DIR detections.jsonl [--expect-errors N]

Every image file of the folder must have exactly one record (none lost, none duplicated, none
extra), equal to what ``mmcompat.Detector(...).detect(path)`` returns for it in this process, or,
for a file it cannot decode, to ``{"image": path, "error": str(exception)}``. Run it with the
actors' OMP_NUM_THREADS (run_local.sh exports 1): results are bitwise equal at equal thread
counts (README, "Detection"), so the comparison is exact.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ray_data_detect import demo_model_args, image_files  # noqa: E402


def reference(detector, path: str) -> dict:
    import mmcompat

    try:
        return detector.detect(path)
    except mmcompat.ImageError as e:
        return {"image": path, "error": str(e)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images")
    p.add_argument("jsonl")
    p.add_argument("--expect-errors", type=int, default=1,
                   help="how many error records the folder should give (the corrupt file)")
    p.add_argument("--score-thr", type=float, default=None)
    args = p.parse_args(argv)
    import mmcompat

    records = [json.loads(line) for line in Path(args.jsonl).read_text().splitlines()]
    files = image_files(Path(args.images))
    counts = Counter(r["image"] for r in records)
    problems = [f"duplicated: {img} ({k} records)" for img, k in counts.items() if k > 1]
    problems += [f"lost: {f}" for f in files if f not in counts]
    problems += [f"extra: {img}" for img in counts if img not in set(files)]
    detector = mmcompat.Detector(**demo_model_args(), score_thr=args.score_thr)
    by_image = {r["image"]: r for r in records}
    t0 = time.perf_counter()
    refs = {f: reference(detector, f) for f in files}
    # The same work without Ray, one process, for comparison with the pool's images/s.
    rate = len(files) / (time.perf_counter() - t0)
    for f in files:
        if f in by_image and by_image[f] != refs[f]:
            problems.append(f"differs from Detector.detect: {f}")
    errors = sum("error" in r for r in records)
    if errors != args.expect_errors:
        problems.append(f"{errors} error records, expected {args.expect_errors}")
    for line in problems[:20]:
        print(f"check: {line}", file=sys.stderr)
    if problems:
        sys.exit(f"check: FAILED, {len(problems)} problems in {args.jsonl}")
    print(f"check: {len(records)} records = {len(files)} files, each equal to Detector.detect, "
          f"{errors} error record(s); Detector.detect without Ray: {rate:.1f} images/s "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")


if __name__ == "__main__":
    main()
