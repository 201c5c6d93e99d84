"""How the deformable-attention kernels are compiled; shared by `setup.py` (which loads this file by path, so
it must import nothing from `focus`) and the just-in-time CPU build (`extension.load_cpu_extension`)."""
import glob
import os

CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
CUDA_EXT_NAME = "focus._C"
CPU_EXT_NAME = "focus_ms_deform_attn_cpu"
# -fopenmp only at compile time: at::parallel_for's OpenMP region then links against torch's own libgomp
# (already loaded with libtorch_cpu), so torch.set_num_threads governs the kernel too.
CXX_FLAGS = ["-O3", "-fopenmp"]
NVCC_FLAGS = [
    "-O3",
    "-DCUDA_HAS_FP16=1",
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
]


def cpu_sources():
    """Absolute paths of the sources of the CPU-only extension (bindings + CPU kernel)."""
    return [os.path.join(CSRC, "vision.cpp")] + sorted(glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))


def cuda_sources():
    """Absolute paths of the sources of `focus._C` (bindings + CPU kernel + CUDA kernel)."""
    return cpu_sources() + sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))


def write_build_info(directory, arch_list):
    """Write `focus_build_info.h` (recorded in the binary: the CUDA arch list it was compiled for) into
    `directory` and return the directory, to be added to the include path."""
    os.makedirs(directory, exist_ok=True)
    text = f'#pragma once\n#define FOCUS_CUDA_ARCH_LIST "{arch_list}"\n'
    path = os.path.join(directory, "focus_build_info.h")
    if not os.path.isfile(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)
    return directory


def cuda_extension(root):
    """`torch.utils.cpp_extension.CUDAExtension` building `focus._C` (setup.py; `root` = the repo root).

    The arch list comes from TORCH_CUDA_ARCH_LIST (torch's own default when unset) and is recorded in the
    binary (`focus._C.cuda_arch_list()`)."""
    from torch.utils.cpp_extension import CUDAExtension

    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "torch default")
    info_dir = write_build_info(os.path.join(root, "build", "generated"), arch_list)
    return CUDAExtension(
        CUDA_EXT_NAME,
        sources=[os.path.relpath(p, root) for p in cuda_sources()],
        include_dirs=[CSRC, info_dir],
        define_macros=[("WITH_CUDA", None)],
        extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS},
    )
