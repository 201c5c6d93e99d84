"""`python -m focus.collect_env` runs and reports the op implementation per device."""
import subprocess
import sys
from pathlib import Path

from focus.collect_env import collect_env_info

ROOT = Path(__file__).resolve().parents[2]


def test_collect_env_info_rows():
    info = dict(collect_env_info())
    for key in ("Python", "torch", "detectron2", "open_clip", "pysodmetrics", "focus._C",
                "ms_deform_attn on cpu", "ms_deform_attn on cuda"):
        assert key in info, key
    assert info["torch"].startswith(__import__("torch").__version__)
    assert "@" in info["detectron2"]  # version and where it was imported from


def test_collect_env_module_runs():
    result = subprocess.run([sys.executable, "-m", "focus.collect_env"], cwd=ROOT, capture_output=True, text=True,
                            env={"FOCUS_DISABLE_EXT": "1", "PATH": "/usr/bin:/bin"}, check=False, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "FOCUS_DISABLE_EXT=1" in result.stdout and "ms_deform_attn on cuda" in result.stdout
