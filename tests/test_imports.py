"""What importing focus costs: the inference path (model, predictor) loads no training- or
evaluation-only dependency (each adds tens of MB to the RSS of every inference process)."""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.resources

TRAINING_OR_EVALUATION_ONLY = ("open_clip", "timm", "scipy", "py_sod_metrics", "skimage", "sklearn")


def test_inference_imports_no_training_or_evaluation_dependency():
    code = (
        "import sys, focus, focus.engine, focus.engine.predictor\n"
        f"print(sorted(m for m in {TRAINING_OR_EVALUATION_ONLY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
