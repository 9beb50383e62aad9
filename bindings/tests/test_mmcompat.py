"""The Python package against the committed fixtures.

References: the Rust CLI's own output for the same inputs (``detect --json``, ``inspect --json``,
``convert``), the real stack's detections on the demo (tests/fixtures/demo/python_detections.json,
mmdet's inference_detector), and what the real ``torch.load`` reads from the checkpoints
(bindings/tests/fixtures/, made by generate_fixtures.py with torch 2.11.0).

Run by ``make test-python`` (scripts/test-python.sh). Needs the CLI binary (MMCOMPAT_BIN, default
target/debug/mmcompat) and the fixture config trees (scripts/install-fixture-configs.sh).
"""

import io
import json
import math
import os
import re
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mmcompat

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "tests/fixtures/demo"
WEIGHTS = DEMO / "demo_shapes_kd_rtmdet.pth"
SCENES = sorted((DEMO / "scenes").glob("*.png"))
ROOTS_DIR = REPO / ".cache/fixture-configs"
CONFIG = ROOTS_DIR / "mmyolo/mmcompat/demo_shapes_kd_rtmdet.py"
ROOTS = {pkg: str(ROOTS_DIR / pkg) for pkg in ("mmyolo", "mmdet", "mmrazor")}
FIXTURES = Path(__file__).resolve().parent / "fixtures"
BIN = Path(os.environ.get("MMCOMPAT_BIN", REPO / "target/debug/mmcompat"))


def cli(*args):
    roots = [a for pkg, d in ROOTS.items() for a in ("--config-root", f"{pkg}={d}")]
    cmd = [str(BIN), *args]
    if args[0] in ("detect", "convert"):
        cmd += roots
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def detector():
    assert CONFIG.is_file(), f"{CONFIG} missing: run scripts/install-fixture-configs.sh"
    return mmcompat.Detector(str(CONFIG), weights=WEIGHTS, scope="mmyolo", config_roots=ROOTS)


@pytest.fixture(scope="module")
def cli_records():
    assert BIN.is_file(), f"{BIN} missing: cargo build --bin mmcompat (or set MMCOMPAT_BIN)"
    lines = cli("detect", "--json", "--config", str(CONFIG), "--weights", str(WEIGHTS),
                "--scope", "mmyolo", "--device", "cpu", *map(str, SCENES))
    records = [json.loads(line) for line in lines.splitlines()]
    assert len(records) == len(SCENES) == 8
    return records


def bgr_array(path):
    """The image as cv2.imread gives it: HxWx3 uint8, BGR (PNG is lossless, so any decoder)."""
    return np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[..., ::-1])


def test_detect_equals_cli_json(detector, cli_records):
    for path, record in zip(SCENES, cli_records):
        ours = detector.detect(str(path))
        assert ours == record
        assert ours["detections"], f"{path.name}: the demo finds objects in every scene"


def test_detect_batch_and_pathlike_equal_cli(detector, cli_records):
    assert detector.detect_batch([str(p) for p in SCENES]) == cli_records
    # os.PathLike: the record names the path as str() spells it, as the CLI does.
    assert detector.detect(SCENES[0]) == cli_records[0]


def test_score_thr_filters_like_cli(cli_records):
    det = mmcompat.Detector(CONFIG, weights=str(WEIGHTS), scope="mmyolo", config_roots=ROOTS,
                            score_thr=0.5)
    got = det.detect(str(SCENES[1]))
    want = [d for d in cli_records[1]["detections"] if d["score"] > 0.5]
    assert got["detections"] == want and 0 < len(want) < len(cli_records[1]["detections"])


def test_detections_match_the_real_stack(detector):
    """mmdet's inference_detector on the same images (python_detections.json, score >= 0.5,
    rounded there to 3 decimals for boxes and 5 for scores)."""
    theirs = json.loads((DEMO / "python_detections.json").read_text())
    for path in SCENES:
        ours = [d for d in detector.detect(str(path))["detections"] if d["score"] >= 0.5]
        ref = theirs[path.name]
        assert len(ours) == len(ref), path.name
        for t in ref:
            assert any(d["class"] == t["class"] and abs(d["score"] - t["score"]) < 1e-4
                       and all(abs(a - b) < 0.1 for a, b in zip(d["bbox"], t["bbox"]))
                       for d in ours), f"{path.name}: {t} not found in {ours}"


def test_ndarray_and_bytes_equal_path(detector, cli_records):
    for path, record in zip(SCENES[:3], cli_records):
        from_array = detector.detect(bgr_array(path))
        from_bytes = detector.detect(path.read_bytes())
        assert detector.detect(memoryview(path.read_bytes())) == from_bytes
        want = dict(record, image="-")
        assert from_array == want
        assert from_bytes == want
    # A non-contiguous view (every other column) is read in C order, like a copy of it.
    img = bgr_array(SCENES[0])
    assert detector.detect(img[:, ::2]) == detector.detect(np.ascontiguousarray(img[:, ::2]))


def test_gil_is_released_during_inference(detector):
    """Another Python thread keeps running while the model runs."""
    ticks, done = [0], threading.Event()

    def count():
        while not done.is_set():
            ticks[0] += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        start = ticks[0]
        detector.detect_batch([str(p) for p in SCENES])
        during = ticks[0] - start
    finally:
        done.set()
        t.join()
    assert during > 1000, f"the counting thread ran {during} times during detect_batch"


def test_load_state_dict_equals_torch_load():
    ref = json.loads((FIXTURES / "demo_state_dict.json").read_text())
    sd = mmcompat.load_state_dict(WEIGHTS)
    assert list(sd) == sorted(ref) or sorted(sd) == sorted(ref)
    for name, r in ref.items():
        a = sd[name]
        assert isinstance(a, np.ndarray) and a.flags.writeable
        assert list(a.shape) == r["shape"], name
        assert str(a.dtype) == r["dtype"], name
        d = a.astype(np.float64)
        assert math.isclose(d.sum(), r["sum"], rel_tol=1e-9, abs_tol=1e-9), name
        assert math.isclose(np.abs(d).sum(), r["abs_sum"], rel_tol=1e-9, abs_tol=1e-9), name


def test_load_state_dict_dtypes():
    ref = json.loads((FIXTURES / "dtypes.json").read_text())
    sd = mmcompat.load_state_dict(FIXTURES / "dtypes.pth")
    assert sorted(sd) == sorted(ref)
    numpy_of = {"bfloat16": "float32"}  # numpy has no bfloat16: exact float32 values
    for name, r in ref.items():
        a = sd[name]
        assert str(a.dtype) == numpy_of.get(r["dtype"], r["dtype"]), name
        assert a.tolist() == r["values"], name
    with pytest.raises(mmcompat.CheckpointError, match=r"no state dict `ema_state_dict`.*state_dict"):
        mmcompat.load_state_dict(FIXTURES / "dtypes.pth", section="ema_state_dict")


def test_inspect_equals_cli():
    assert mmcompat.inspect(str(WEIGHTS)) == json.loads(cli("inspect", "--json", str(WEIGHTS)))


def test_convert_equals_cli(tmp_path):
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "cli.safetensors"
    report = mmcompat.convert(WEIGHTS, ours)
    cli_report = cli("convert", str(WEIGHTS), "-o", str(theirs))
    assert report == cli_report.replace(str(theirs), str(ours))
    a, b = mmcompat.load_state_dict(ours), mmcompat.load_state_dict(theirs)
    assert list(a) == list(b) and a
    assert not any(k.startswith("architecture.") for k in a), "the student, unprefixed"
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_errors_are_typed_and_carry_the_message(detector, tmp_path):
    with pytest.raises(mmcompat.CheckpointError, match="nope.pth"):
        mmcompat.Detector(CONFIG, weights=tmp_path / "nope.pth", config_roots=ROOTS)
    with pytest.raises(mmcompat.ConfigError, match="missing.py"):
        mmcompat.Detector(tmp_path / "missing.py", weights=WEIGHTS, config_roots=ROOTS)
    with pytest.raises(mmcompat.ConfigError, match="unknown scope `mmyol`.*did you mean `mmyolo`"):
        mmcompat.Detector(CONFIG, weights=WEIGHTS, scope="mmyol", config_roots=ROOTS)
    with pytest.raises(mmcompat.ImageError, match=r"HxWx3 uint8.*float32"):
        detector.detect(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(mmcompat.ImageError, match="<bytes>"):
        detector.detect(b"not an image")
    with pytest.raises(mmcompat.ImageError, match="missing.png"):
        detector.detect(str(tmp_path / "missing.png"))
    with pytest.raises(TypeError, match="image path"):
        detector.detect(42)
    # adapter_options as --adapter-option: a key no adapter reads is refused, named.
    with pytest.raises(mmcompat.MmcompatError, match="yolov7.varient.*did you mean `yolov7.variant`"):
        mmcompat.Detector(CONFIG, weights=WEIGHTS, config_roots=ROOTS,
                          adapter_options={"yolov7.varient": "yolov7-tiny"})
    with pytest.raises(mmcompat.MmcompatError, match="yolov7.varient.*did you mean `yolov7.variant`"):
        mmcompat.convert(WEIGHTS, tmp_path / "x.pth", adapter_options={"yolov7.varient": "x"})
    assert issubclass(mmcompat.ModelError, mmcompat.MmcompatError)
    assert all(issubclass(c, mmcompat.MmcompatError) for c in (
        mmcompat.ConfigError, mmcompat.CheckpointError, mmcompat.ImageError))


def evil_pickle(marker):
    """A pickle whose loading runs ``os.system`` (GLOBAL posix.system + REDUCE), protocol 2."""
    cmd = f"touch {marker}".encode()
    return (b"\x80\x02cposix\nsystem\nq\x00X" + len(cmd).to_bytes(4, "little") + cmd
            + b"q\x01\x85q\x02Rq\x03.")


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = evil_pickle(marker)
    # As torch.save lays a file out: <name>/data.pkl in a zip (plus the version record).
    ckpt = tmp_path / "evil.pth"
    with zipfile.ZipFile(ckpt, "w") as z:
        z.writestr("evil/data.pkl", payload)
        z.writestr("evil/version", "3\n")
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(payload)
    for path in (ckpt, legacy):
        for call in (mmcompat.load_state_dict, mmcompat.inspect,
                     lambda p: mmcompat.Detector(CONFIG, weights=p, config_roots=ROOTS)):
            with pytest.raises(mmcompat.CheckpointError, match=re.escape(path.name)) as e:
                call(path)
            assert "system" in str(e.value), str(e.value)
    assert not marker.exists(), "the pickle's code ran"


def test_readme_python_snippet_runs():
    """The README's Python section, as a user pastes it (from the repository root)."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python", 1)[1].split("\n## ", 1)[0]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        from contextlib import redirect_stdout
        with redirect_stdout(out):
            exec(compile(snippet, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert "circle" in out.getvalue() or "cross" in out.getvalue(), out.getvalue()
