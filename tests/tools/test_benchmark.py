"""Smoke tests of `tools/benchmark.py` / `focus.engine.benchmark` on the tiny config (no timing assertions)."""
import json
from pathlib import Path

import pytest
import torch

from focus.engine import benchmark as B

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny" / "focus_tiny.yaml")


@pytest.fixture(autouse=True)
def _tiny_calibration(monkeypatch):
    """The real calibration (DINOv2-L at 518 px) takes seconds per call: substitute a tiny workload."""
    lin = torch.nn.Linear(8, 8)
    monkeypatch.setattr(B, "build_calibration", lambda device="cpu": (_Calib(lin), torch.zeros(1, 8)))


class _Calib:
    def __init__(self, lin):
        self.lin = lin

    def forward_features(self, x):
        return self.lin(x)


def test_inference_benchmark_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    res = B.main(["--config-file", TINY, "--size", "64", "--runs", "1", "--warmup", "0", "--no-agreement",
                  "--no-op", "--json", str(out), "--malloc", "default", "MODEL.DINOV2.DEPTH", "4"])
    data = json.loads(out.read_text())
    for key in ("latency_s", "ratio_to_calibration", "peak_rss_mb"):
        assert data[key] > 0
    assert data["ratio_to_calibration"] == pytest.approx(res["ratio_to_calibration"])
    assert data["rss_after_build_mb"] <= data["peak_rss_mb"]


def test_train_step_benchmark():
    res = B.main(["--config-file", TINY, "--size", "64", "--runs", "1", "--warmup", "0", "--train",
                  "--dtype", "bf16", "--no-rss", "--no-op", "--malloc", "default"])
    assert res["train"] and res["latency_s"] > 0


@pytest.mark.parametrize("cast", ["autocast", "full"])
def test_build_in_bf16_keeps_fp32_normalisation(cast):
    cfg = B._setup_cfg(TINY, [], "cpu", "bf16", cast=cast)
    model = B.build_benchmark_model(cfg, build_in_dtype=True)
    dtypes = {p.dtype for p in model.parameters()}
    assert dtypes == ({torch.bfloat16} if cast == "full" else {torch.bfloat16, torch.float32})
    if cast == "autocast":  # what autocast does not round is back in fp32, buffers included
        assert model.backbone.blocks[0].norm1.weight.dtype == torch.float32
        assert model.backbone.blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
        assert all(b.dtype == torch.float32 for b in model.buffers() if b.is_floating_point())
    assert model.pixel_mean.dtype == torch.float32 and model.criterion is None
    out = B.make_inference_step(model, 64, "cpu")()[0]
    assert out["sem_seg"].dtype == torch.float32 and torch.isfinite(out["sem_seg"]).all()


def test_mask_agreement_counts_pixels():
    from detectron2.structures import Instances

    def res(mask, sem):
        inst = Instances(mask.shape)
        inst.pred_masks = mask
        return {"instances": inst, "sem_seg": sem}

    a = res(torch.tensor([[1, 0], [1, 1]], dtype=torch.int32), torch.zeros(2, 2, 2))
    b = res(torch.tensor([[1, 1], [1, 1]], dtype=torch.int32), torch.full((2, 2, 2), 0.25))
    assert B.mask_agreement([a], [b]) == (0.75, 0.25)


@pytest.mark.slow
def test_golden_bf16_agreement(shared_reference, shared_data):
    res = B.golden_agreement("bf16", real_images=3)
    assert res["fp32_vs_official_mask_agreement"] == 1.0
    assert res["mask_agreement"] > 0.99  # measured 0.995 with the PyTorch reference op
    assert res["real_images"]["images"] == 3 and res["real_images"]["mask_agreement"] > 0.99
