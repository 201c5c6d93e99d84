"""Finding and loading the compiled deformable-attention kernels.

* `focus._C`: built by `setup.py` with CUDA (`make build-cuda` / `tools/build_cuda.sh`, or `pip install -e .`
  with FORCE_CUDA=1); holds the CUDA and the CPU kernel.
* the CPU-only extension `focus_ms_deform_attn_cpu`: compiled just in time with ninja by
  `load_cpu_extension()`, or automatically at first CPU use when `FOCUS_CPU_EXT=1`.
"""
import importlib
import importlib.util
import logging
import os
from pathlib import Path

import torch

from . import build

__all__ = [
    "cuda_extension", "cpu_extension", "load_cpu_extension", "cpu_extension_build_dir", "cpu_extension_built",
    "status",
]

logger = logging.getLogger(__name__)
BUILD_HINT = "build it with `make build-cuda` (tools/build_cuda.sh) or `FORCE_CUDA=1 pip install -e .`"
_state = {"cuda": None, "cuda_checked": False, "cuda_reported": False, "cpu": None}


def _import_c():
    """`focus._C` or None if it was never built; a present but unloadable build is an error."""
    if importlib.util.find_spec("focus._C") is None:
        return None
    try:
        return importlib.import_module("focus._C")
    except ImportError as e:
        raise ImportError(f"focus._C exists but cannot be loaded ({e}); rebuild it: {BUILD_HINT}") from e


def cuda_extension(report_missing=False):
    """`focus._C` if it was built with CUDA, else None. With `report_missing`, a missing build is logged
    once (only callers that would have used it ask for the report)."""
    if not _state["cuda_checked"]:
        ext = _import_c()
        _state["cuda"] = ext if ext is not None and ext.with_cuda() else None
        _state["cuda_checked"] = True
    if _state["cuda"] is None and report_missing and not _state["cuda_reported"]:
        _state["cuda_reported"] = True
        logger.warning(
            "focus._C (CUDA multi-scale deformable attention) is not built; CUDA tensors use the slower "
            "PyTorch reference. To %s", BUILD_HINT
        )
    return _state["cuda"]


def cpu_extension():
    """The module whose CPU kernel `ms_deform_attn` uses for CPU tensors, or None (-> PyTorch reference):
    the JIT CPU extension once loaded (loaded here at first use when FOCUS_CPU_EXT=1), else `focus._C`
    if built (it contains the CPU kernel too)."""
    if _state["cpu"] is None and os.environ.get("FOCUS_CPU_EXT", "0") == "1":
        load_cpu_extension()
    if _state["cpu"] is not None:
        return _state["cpu"]
    cuda_extension()
    return _state["cuda"]


def cpu_extension_build_dir():
    """Where the JIT CPU extension is compiled: $FOCUS_EXT_DIR, else `<repo>/build/cpu_ext` for a source
    checkout (gitignored), else `~/.cache/focus/cpu_ext`."""
    if os.environ.get("FOCUS_EXT_DIR"):
        path = Path(os.environ["FOCUS_EXT_DIR"])
    else:
        root = Path(__file__).resolve().parents[3]
        if (root / "setup.py").is_file() and os.access(root, os.W_OK):
            path = root / "build" / "cpu_ext"
        else:
            path = Path.home() / ".cache" / "focus" / "cpu_ext"
    path = path / f"torch{torch.__version__.split('+')[0]}"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def load_cpu_extension(verbose=False):
    """Compile (first time, with ninja; later calls reuse the cache) and load the CPU kernel; from
    then on `ms_deform_attn` uses it for CPU tensors. Returns the extension module."""
    if _state["cpu"] is None:
        from torch.utils.cpp_extension import load

        _state["cpu"] = load(
            name=build.CPU_EXT_NAME,
            sources=build.cpu_sources(),
            extra_cflags=build.CXX_FLAGS,
            extra_include_paths=[build.CSRC],
            build_directory=cpu_extension_build_dir(),
            verbose=verbose,
        )
    return _state["cpu"]


def unload_cpu_extension():
    """Stop using the JIT CPU extension (the module stays imported); for tests and benchmarks."""
    _state["cpu"] = None


def cpu_extension_built():
    """Path of the compiled JIT CPU extension in the cache, or None if it was never built there."""
    found = sorted(Path(cpu_extension_build_dir()).glob(f"{build.CPU_EXT_NAME}*.so"))
    return str(found[0]) if found else None


def status():
    """What is built and loaded, and which implementation `ms_deform_attn` uses per device (ordered dict of
    strings, printed by `python -m focus.collect_env`). Never compiles nor logs."""
    try:
        c_ext, c_error = _import_c(), None
    except ImportError as e:
        c_ext, c_error = None, str(e)
    has_cuda = c_ext is not None and c_ext.with_cuda()
    cpu_jit = _state["cpu"]
    info = {
        "focus._C": c_error or ("not built" if c_ext is None else c_ext.__file__),
        "focus._C CUDA kernel": (f"yes, archs {c_ext.cuda_arch_list()}" if has_cuda else "no"),
        "CPU ext (JIT)": (f"loaded from {cpu_jit.__file__}" if cpu_jit is not None
                          else f"built, not loaded: {cpu_extension_built()}" if cpu_extension_built()
                          else f"not built (cache {cpu_extension_build_dir()})"),
    }
    disabled = os.environ.get("FOCUS_DISABLE_EXT", "0") == "1"
    reference = "PyTorch reference (grid_sample)"
    if disabled:
        cpu_impl = cuda_impl = reference + ", FOCUS_DISABLE_EXT=1"
    else:
        if cpu_jit is not None:
            cpu_impl = "CPU kernel (JIT ext)"
        elif os.environ.get("FOCUS_CPU_EXT", "0") == "1":
            cpu_impl = "CPU kernel (JIT ext, compiled/loaded at first use: FOCUS_CPU_EXT=1)"
        elif c_ext is not None:
            cpu_impl = "CPU kernel (focus._C)"
        else:
            cpu_impl = reference + " (load_cpu_extension() or FOCUS_CPU_EXT=1 for the CPU kernel)"
        cuda_impl = "CUDA kernel (focus._C)" if has_cuda else reference + f" ({BUILD_HINT})"
    info["ms_deform_attn on cpu"] = cpu_impl
    info["ms_deform_attn on cuda"] = cuda_impl
    return info
