"""Install `focus`. The deformable-attention CUDA kernel is compiled into `focus._C` only when CUDA is
available or FORCE_CUDA=1 (`make build-cuda`); everything runs in pure PyTorch without it."""
import importlib.util
import os

from setuptools import find_packages, setup


ROOT = os.path.dirname(os.path.abspath(__file__))


def _load_build_helper():
    """focus/layers/ms_deform_attn/build.py loaded by path: importing the `focus` package needs detectron2,
    which may not be importable while building."""
    path = os.path.join(ROOT, "focus", "layers", "ms_deform_attn", "build.py")
    spec = importlib.util.spec_from_file_location("focus_ms_deform_attn_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ext_modules():
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension
    except ImportError:
        return [], {}
    want_cuda = os.environ.get("FORCE_CUDA", "0") == "1" or (torch.cuda.is_available() and CUDA_HOME)
    if not want_cuda:
        return [], {}
    return [_load_build_helper().cuda_extension(ROOT)], {"build_ext": BuildExtension}


ext_modules, cmdclass = _ext_modules()

setup(
    name="focus",
    version="0.1.0",
    description="FOCUS universal foreground segmentation (SOD, COD, SD, DBD, FD, DIS) on detectron2",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["focus", "focus.*"]),
    package_data={"focus.layers.ms_deform_attn": ["csrc/*", "csrc/*/*"], "focus.layers.selective_scan": ["csrc/*"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=1.23,<2",
        "opencv-python-headless>=4.7",
        "scipy>=1.10",
        "scikit-learn>=1.2",
        "pysodmetrics>=1.4",
        "open-clip-torch>=2.20",
        "fvcore>=0.1.5",
        "pycocotools>=2.0.6",
        "Pillow>=9",
        "safetensors>=0.4",
        "tqdm",
        "psutil",
        "timm>=1.0",  # Swin/PVT building blocks of the BiRefNet backbones
        "safetensors>=0.4",  # Hugging Face `model.safetensors` checkpoints
    ],
    extras_require={"test": ["pytest>=7", "timm>=0.9"], "wandb": ["wandb"], "sam": ["segment-anything>=1.0"], "sam2": ["sam2>=1.0"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
