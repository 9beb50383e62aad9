"""mmcompat over an image folder with Ray Data: one model per actor, JSON lines out (issue 20).

    python examples/ray/ray_data_detect.py IMAGE_DIR --output detections.jsonl --concurrency 2

Ray Data reads the files as bytes (``read_binary_files``: the I/O part, which works the same on a
shared or remote file system), and ``map_batches`` hands batches to a pool of ``concurrency``
actors of :class:`DetectActor`. Each actor builds one ``mmcompat.Detector`` in ``__init__`` and
keeps it for every batch it gets (building it per batch would reload the checkpoint each time).
Each image gives one line, in the record format of ``mmcompat detect --json``:

    {"image": PATH, "width": W, "height": H, "detections": [{"bbox", "score", "label", "class"}]}

and an image that cannot be decoded gives ``{"image": PATH, "error": MESSAGE}``, as ``detect``
writes it (src/inferencer/detect/records.rs): no image is dropped. Lines come in the order the
actors finish, not the folder's order.

Without ``--address`` a local Ray cluster with ``--num-cpus`` CPUs is started in-process. Each
actor asks for 1 CPU and runs libtorch with ``--torch-threads`` threads (default 1, through
OMP_NUM_THREADS in the job's runtime_env), so N actors use N cores without oversubscribing them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def demo_model_args() -> dict:
    """The bundled demo (tests/fixtures/demo, the Makefile's `demo` target): the distilled
    RTMDet-tiny shapes detector, with the config trees `make setup` installs."""
    roots = REPO / ".cache/fixture-configs"
    return {
        "config": str(roots / "mmyolo/mmcompat/demo_shapes_kd_rtmdet.py"),
        "weights": str(REPO / "tests/fixtures/demo/demo_shapes_kd_rtmdet.pth"),
        "scope": "mmyolo",
        "config_roots": {pkg: str(roots / pkg) for pkg in ("mmyolo", "mmdet", "mmrazor")},
    }


def omp_threads() -> int | None:
    """The OpenMP thread count libtorch's intra-op pool starts with in this process (None when
    libgomp is not loaded here); reported so the per-actor thread setting can be checked."""
    import ctypes

    try:
        return ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD).omp_get_max_threads()
    except OSError:
        return None


def record_for(detector, data: bytes, path: str) -> dict:
    """One image's record: what ``detector.detect(path)`` returns for the file, or the error
    record ``detect --json`` writes. The bytes are decoded by the same decoder as a path; the
    binding names bytes ``-`` / ``<bytes>``, so the path is put back where the name goes."""
    import mmcompat

    try:
        rec = detector.detect(data)
    except mmcompat.ImageError as e:
        # Only undecodable images become records: a model error is a bug to stop on.
        return {"image": path, "error": str(e).replace("<bytes>", path)}
    rec["image"] = path
    return rec


class DetectActor:
    """A Ray Data actor: one ``mmcompat.Detector`` for its lifetime."""

    def __init__(self, model_args: dict, score_thr: float | None):
        import mmcompat

        t0 = time.perf_counter()
        self.detector = mmcompat.Detector(**model_args, score_thr=score_thr)
        self.load_s = time.perf_counter() - t0
        self.threads = omp_threads()

    def __call__(self, batch: dict) -> dict:
        start = time.time()
        lines = [
            json.dumps(record_for(self.detector, bytes(data), str(path)))
            for data, path in zip(batch["bytes"], batch["path"])
        ]
        # Who ran it, so the driver can report the pool that really worked.
        who = (f"pid {os.getpid()}, {self.threads} OpenMP threads, "
               f"model built in {self.load_s:.2f} s")
        end = time.time()
        n = len(lines)
        return {"line": lines, "actor": [who] * n, "start": [start] * n, "end": [end] * n}


def image_files(folder: Path) -> list[str]:
    files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        sys.exit(f"error: no images ({', '.join(IMAGE_EXTS)}) in {folder}")
    return files


def run(args) -> dict:
    import ray

    threads = str(args.torch_threads)
    # OMP_NUM_THREADS reaches every worker before it loads libtorch (libgomp reads it once, at
    # load); MKL likewise. Ray would set OMP_NUM_THREADS to the actor's num_cpus (1) by itself;
    # saying it makes the setting visible and keeps it when an actor asks for more CPUs.
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if args.address:
        ray.init(address=args.address, runtime_env={"env_vars": env})
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, runtime_env={"env_vars": env})
    files = image_files(Path(args.images))
    model = demo_model_args()
    if args.weights:
        # Another model: its own config, or (None) the one its checkpoint carries.
        model.update(weights=args.weights, config=args.config, scope=args.scope)
    elif args.config or args.scope:
        sys.exit("error: --config/--scope need --weights (the default is the bundled demo)")
    if args.config_root:
        model["config_roots"] = dict(r.split("=", 1) for r in args.config_root)

    t0 = time.perf_counter()
    # Reading asks for no CPU: it is a few ms of file I/O per block, and with every CPU held by
    # an actor a 1-CPU read task would never be scheduled. One read task at a time by default:
    # each concurrent one is another worker process to start (seconds each on 2 cores), for I/O
    # that takes milliseconds.
    ds = ray.data.read_binary_files(
        files,
        include_paths=True,
        num_cpus=0,
        concurrency=args.read_concurrency,
        override_num_blocks=max(1, len(files) // args.batch_size),
    )
    ds = ds.map_batches(
        DetectActor,
        fn_constructor_kwargs={"model_args": model, "score_thr": args.score_thr},
        batch_size=args.batch_size,
        batch_format="numpy",
        concurrency=args.concurrency,
        num_cpus=1,
    )
    n = 0
    actors = set()
    calls = set()  # (start, end) of each actor call, on each of its rows
    with open(args.output, "w") as out:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for line in batch["line"]:
                out.write(str(line) + "\n")
                n += 1
            actors.update(str(a) for a in batch["actor"])
            calls.update(zip(batch["start"].tolist(), batch["end"].tolist()))
    wall = time.perf_counter() - t0
    ray.shutdown()
    # wall: from building the dataset to the last line written (worker processes started, models
    # built, pipeline filled and drained). pool: from the first batch an actor began to the last
    # one it finished, the pool's detection throughput once it runs. actor_ms_per_image: the
    # actors' time inside __call__ per image (decode, model, JSON), summed over actors.
    pool = max(e for _, e in calls) - min(s for s, _ in calls)
    inside = sum(e - s for s, e in calls)
    return {"images": n, "files": len(files), "wall_s": round(wall, 3), "pool_s": round(pool, 3),
            "actor_ms_per_image": round(inside / n * 1e3, 2), "actors": sorted(actors)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", help="a folder of images")
    p.add_argument("--output", required=True, help="the JSON lines file to write")
    p.add_argument("--concurrency", type=int, default=2, help="actors, one model each")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local cluster")
    p.add_argument("--address", help="an existing Ray cluster (e.g. auto) instead of a local one")
    p.add_argument("--read-concurrency", type=int, default=1, help="read tasks at once")
    p.add_argument("--torch-threads", type=int, default=1, help="libtorch threads per actor")
    p.add_argument("--score-thr", type=float, default=None, help="keep score > thr (--score-thr)")
    p.add_argument("--config", help="default: the bundled demo model")
    p.add_argument("--weights")
    p.add_argument("--scope")
    p.add_argument("--config-root", action="append", metavar="PKG=DIR")
    args = p.parse_args(argv)
    stats = run(args)
    if stats["images"] != stats["files"]:
        sys.exit(f"error: {stats['files']} files in, {stats['images']} records out")
    print(json.dumps({
        "concurrency": args.concurrency,
        **stats,
        "images_per_s_wall": round(stats["images"] / stats["wall_s"], 2),
        "images_per_s_pool": round(stats["images"] / stats["pool_s"], 2),
    }))


if __name__ == "__main__":
    main()
