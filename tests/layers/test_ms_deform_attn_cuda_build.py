"""The CUDA extension compiles (nvcc present; no GPU needed). Slow: ~2.5 min on 2 cores."""
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch  # noqa: F401  (loads libc10 / libtorch that the extension links against)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME"), reason="no CUDA toolkit")
def test_build_cuda_extension():
    result = subprocess.run(["bash", str(ROOT / "tools" / "build_cuda.sh")], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "TORCH_CUDA_ARCH_LIST": "8.0"}, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    so = next((ROOT / "build" / "cuda" / "lib" / "focus").glob("_C*.so"))
    spec = importlib.util.spec_from_file_location("focus._C", so)
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    assert ext.with_cuda() and ext.cuda_arch_list() == "8.0"
