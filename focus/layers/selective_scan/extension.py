"""The compiled CPU selective-scan kernel: compiled just in time with ninja (like the deformable-attention CPU
extension, in the same cache folder) by `load_cpu_extension()`, or at first CPU use when `FOCUS_CPU_EXT=1`."""
import os

__all__ = ["cpu_extension", "load_cpu_extension", "unload_cpu_extension", "CPU_EXT_NAME"]

CPU_EXT_NAME = "focus_selective_scan_cpu"
CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
# -fopenmp: at::parallel_for and `omp simd`; -fno-math-errno lets the compiler vectorise exp over the states
CXX_FLAGS = ["-O3", "-fopenmp", "-fno-math-errno"]
_state = {"cpu": None}


def load_cpu_extension(verbose=False):
    """Compile (first time; later calls reuse the cache) and load the CPU kernel; from then on `selective_scan`
    uses it for CPU tensors that need no gradient. Returns the extension module."""
    if _state["cpu"] is None:
        from torch.utils.cpp_extension import load

        from ..ms_deform_attn.extension import cpu_extension_build_dir

        _state["cpu"] = load(
            name=CPU_EXT_NAME,
            sources=[os.path.join(CSRC, "selective_scan_cpu.cpp")],
            extra_cflags=CXX_FLAGS,
            build_directory=cpu_extension_build_dir(),
            verbose=verbose,
        )
    return _state["cpu"]


def cpu_extension():
    """The loaded CPU kernel (loaded here at first use when FOCUS_CPU_EXT=1), or None."""
    if _state["cpu"] is None and os.environ.get("FOCUS_CPU_EXT", "0") == "1":
        load_cpu_extension()
    return _state["cpu"]


def unload_cpu_extension():
    """Stop using the CPU kernel (the module stays imported); for tests and benchmarks."""
    _state["cpu"] = None
