"""Atomic file writes: a file is either absent, its previous version, or complete; never half-written.

The content goes to a temporary name in the destination folder and is moved into place with `os.replace`, so an
interrupted run (a kill, Ctrl-C, a full disk) never leaves a truncated checkpoint, image or metrics file behind.
"""
import os
import tempfile

import cv2
import numpy as np

__all__ = ["atomic_write", "write_png"]


def atomic_write(path, write_fn, mode="wb"):
    """Call `write_fn(file_object)` on a temporary file next to `path`, then move it onto `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_png(path: str, array: np.ndarray) -> None:
    """Write a uint8 L (H, W), RGB (H, W, 3) or RGBA (H, W, 4) array as PNG, atomically."""
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: PNG writer expects uint8, got {array.dtype}")
    if array.ndim == 3:  # OpenCV stores BGR(A)
        code = cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        array = cv2.cvtColor(array, code)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write(path, lambda f: f.write(buf.tobytes()))
