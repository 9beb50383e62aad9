"""mmcompat behind Ray Serve: POST image bytes, get the ``detect --json`` record (issue 20).

    python examples/ray/ray_serve_detect.py --port 8000            # serve until Ctrl-C
    curl --data-binary @tests/fixtures/demo/scenes/scene_0000.png http://127.0.0.1:8000/v1/detect
    python examples/ray/ray_serve_detect.py --self-test            # deploy, query, check, exit

The deployment wraps the same ``mmcompat.Detector`` as ray_data_detect.py: one model per replica,
built in ``__init__``. The answers follow ``mmcompat serve``'s ``POST /v1/detect`` for a raw body
(src/serve/router.rs): 200 with the record (``image`` is ``-``), 422 ``{"error": ...}`` for bytes
that do not decode, 405 for another method. Backpressure is Serve's: ``max_ongoing_requests`` per
replica, beyond which requests wait in the proxy (``max_queued_requests`` bounds that queue: 503).

``--self-test`` starts a local Ray cluster (``--num-cpus``), deploys ``--replicas`` replicas on
127.0.0.1, sends ``--requests`` requests from ``--clients`` threads (the demo scenes, plus one
corrupt image), checks each answer against ``Detector.detect`` run here on the same bytes, and
prints requests/s and latency percentiles. It exits non-zero on any lost or wrong answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ray_data_detect import REPO, demo_model_args, omp_threads  # noqa: E402

ROUTE = "/v1/detect"


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=2, max_queued_requests=64)
class DetectDeployment:
    def __init__(self, model_args: dict, score_thr: float | None):
        import mmcompat

        self.detector = mmcompat.Detector(**model_args, score_thr=score_thr)
        self.threads = omp_threads()

    async def __call__(self, request: Request):
        import mmcompat

        if request.method != "POST":
            return JSONResponse({"error": f"POST the image bytes to {ROUTE}"}, status_code=405)
        body = await request.body()
        try:
            # detect() releases the GIL while the model runs: a thread keeps the replica's event
            # loop free to take the next request (up to max_ongoing_requests at once).
            return await asyncio.to_thread(self.detector.detect, body)
        except mmcompat.ImageError as e:
            msg = str(e).replace("<bytes>", "<request body>")
            return JSONResponse({"error": msg}, status_code=422)


def deploy(args):
    import ray

    threads = str(args.torch_threads)
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, runtime_env={"env_vars": env})
    serve.start(http_options={"host": args.host, "port": args.port})
    app = DetectDeployment.options(num_replicas=args.replicas).bind(
        demo_model_args(), args.score_thr
    )
    serve.run(app, name="mmcompat", route_prefix=ROUTE)
    return f"http://{args.host}:{args.port}{ROUTE}"


def post(url: str, body: bytes) -> tuple[int, dict, float]:
    t0 = time.perf_counter()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    return status, json.loads(text), time.perf_counter() - t0


def self_test(args) -> int:
    import mmcompat

    scenes = sorted((REPO / "tests/fixtures/demo/scenes").glob("*.png"))
    bodies = [p.read_bytes() for p in scenes]
    corrupt = bodies[0][:3000]  # a PNG cut short: must be a 422, not a lost request
    # The reference, in this process with the replicas' thread count (run_local.sh exports it).
    det = mmcompat.Detector(**demo_model_args(), score_thr=args.score_thr)
    expected = [(200, det.detect(b)) for b in bodies]
    try:
        det.detect(corrupt)
        sys.exit("self-test: the corrupt image decoded")
    except mmcompat.ImageError as e:
        expected.append((422, {"error": str(e).replace("<bytes>", "<request body>")}))
    bodies.append(corrupt)

    url = deploy(args)
    post(url, bodies[0])  # one answered request: every replica's model is built by now
    jobs = [i % len(bodies) for i in range(args.requests)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        answers = list(pool.map(lambda i: post(url, bodies[i]), jobs))
    wall = time.perf_counter() - t0
    wrong = [i for i, (st, rec, _) in zip(jobs, answers) if (st, rec) != expected[i]]
    lat = sorted(a[2] for a in answers)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    stats = {
        "replicas": args.replicas, "requests": len(answers), "clients": args.clients,
        "wall_s": round(wall, 3), "requests_per_s": round(len(answers) / wall, 2),
        "latency_p50_ms": round(p(0.5) * 1e3, 1), "latency_p99_ms": round(p(0.99) * 1e3, 1),
        "latency_mean_ms": round(statistics.mean(lat) * 1e3, 1),
        "lost": args.requests - len(answers), "wrong": len(wrong),
        "errors_422": sum(a[0] == 422 for a in answers),
    }
    print(json.dumps(stats))
    serve.shutdown()
    import ray

    ray.shutdown()
    for i in wrong[:5]:
        print(f"self-test: wrong answer for {'corrupt' if i == len(scenes) else scenes[i].name}",
              file=sys.stderr)
    return 1 if wrong or stats["lost"] else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--self-test", action="store_true")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default 8000; a free one in --self-test")
    p.add_argument("--replicas", type=int, default=2, help="replicas, one model each")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local cluster")
    p.add_argument("--torch-threads", type=int, default=1, help="libtorch threads per replica")
    p.add_argument("--score-thr", type=float, default=None)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--clients", type=int, default=4)
    args = p.parse_args(argv)
    if args.self_test:
        args.port = args.port or free_port()
        sys.exit(self_test(args))
    args.port = args.port or 8000
    url = deploy(args)
    print(f"serving {url} (Ctrl-C to stop)", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()


if __name__ == "__main__":
    main()
