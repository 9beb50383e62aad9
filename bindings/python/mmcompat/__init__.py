"""mmcompat: run OpenMMLab (mmdet/mmyolo/mmrazor) detectors and read their checkpoints without
executing them, on the libtorch of the installed ``torch==2.11.0`` (no second copy).

    import mmcompat
    det = mmcompat.Detector("config.py", weights="model.pth", scope="mmyolo")
    det.detect("image.jpg")   # the dict `mmcompat detect --json` prints for the image
"""

import ctypes
import importlib.util
import os
import sys


def _load_libtorch():
    """Loads libtorch from the installed ``torch`` package before the extension.

    The extension links ``libc10.so`` / ``libtorch_cpu.so`` by name. Its rpath
    (``$ORIGIN/../torch/lib``) finds them when torch sits in the same site-packages; loading
    them here (RTLD_GLOBAL) also covers a torch elsewhere on ``sys.path``, without importing
    torch itself (seconds, and its CUDA dependencies). If ``import torch`` happens later, it maps
    the same files, so the process holds one libtorch. ``LIBTORCH`` (a libtorch folder, as the
    Rust build uses) is the fallback when no torch package is found.
    """
    spec = importlib.util.find_spec("torch")
    lib = None
    if spec is not None and spec.submodule_search_locations:
        torch_dir = list(spec.submodule_search_locations)[0]
        lib = os.path.join(torch_dir, "lib")
        # device="cuda" loads libtorch_cuda.so from $LIBTORCH/lib (src/device.rs).
        os.environ.setdefault("LIBTORCH", torch_dir)
    elif os.environ.get("LIBTORCH"):
        lib = os.path.join(os.environ["LIBTORCH"], "lib")
    if lib is None or not os.path.isdir(lib):
        raise ImportError(
            "mmcompat needs torch==2.11.0 installed in this environment (its libtorch runs the "
            "models): pip install torch==2.11.0"
        )
    if sys.platform.startswith("linux"):
        # Exactly the extension's NEEDED entries (readelf -d): libtorch.so would pull in
        # libtorch_cuda.so and the CUDA libraries, which a CPU run never needs.
        for name in ("libc10.so", "libtorch_cpu.so"):
            path = os.path.join(lib, name)
            if os.path.exists(path):
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_load_libtorch()

from ._mmcompat import (  # noqa: E402
    CheckpointError,
    ConfigError,
    Detector,
    ImageError,
    MmcompatError,
    ModelError,
    __version__,
    convert,
    inspect,
    load_state_dict,
)

__all__ = [
    "Detector",
    "inspect",
    "convert",
    "load_state_dict",
    "MmcompatError",
    "ConfigError",
    "CheckpointError",
    "ModelError",
    "ImageError",
    "__version__",
]
