"""Print the environment relevant to `focus`: versions and locations of the stack, CUDA, and which
multi-scale deformable attention implementation runs on each device.

    python -m focus.collect_env
"""
import importlib
import importlib.metadata
import os
import platform
import shutil
import sys

import torch

from focus.layers.ms_deform_attn import extension

__all__ = ["collect_env_info"]


def _package(module_name, dist_name=None):
    """'<version> @ <file>' of an importable module, or why it is not importable."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        return f"not importable ({e})"
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(dist_name or module_name)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown version"
    return f"{version} @ {os.path.dirname(getattr(module, '__file__', '') or '')}"


def collect_env_info():
    """Rows (name, value) describing the environment."""
    rows = [
        ("Python", f"{sys.version.split()[0]} ({sys.executable})"),
        ("Platform", platform.platform()),
        ("torch", _package("torch")),
        ("torch CUDA build", str(torch.version.cuda)),
        ("torch threads", str(torch.get_num_threads())),
        ("CUDA available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        rows.append(("GPUs", f"{torch.cuda.device_count()} x {', '.join(names)}"))
    rows.append(("torch CUDA archs", " ".join(torch.cuda.get_arch_list()) or "none"))
    rows.append(("CUDA_HOME", os.environ.get("CUDA_HOME", "unset")))
    rows.append(("nvcc", shutil.which("nvcc") or "not found"))
    for name, module, dist in (
        ("detectron2", "detectron2", None),
        ("open_clip", "open_clip", "open_clip_torch"),
        ("pysodmetrics", "py_sod_metrics", "pysodmetrics"),
        ("timm", "timm", None),
        ("numpy", "numpy", None),
        ("opencv", "cv2", "opencv-python-headless"),
        ("focus", "focus", None),
    ):
        rows.append((name, _package(module, dist)))
    rows.extend(extension.status().items())
    return rows


def main():
    rows = collect_env_info()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
