"""Smoke tests of `tools/benchmark.py` on the tiny config (no timing assertions)."""
import json

import pytest
import torch


@pytest.fixture
def bench(load_tool, monkeypatch):
    """The benchmark tool with a tiny calibration (the real one, DINOv2-L at 518 px, takes seconds per call)."""
    B = load_tool("benchmark")
    lin = torch.nn.Linear(8, 8)
    monkeypatch.setattr(B, "build_calibration", lambda device="cpu": (_Calib(lin), torch.zeros(1, 8)))
    return B


class _Calib:
    def __init__(self, lin):
        self.lin = lin

    def forward_features(self, x):
        return self.lin(x)


TINY = "configs/tiny/focus_tiny.yaml"


def test_inference_benchmark_writes_json(bench, tmp_path):
    out = tmp_path / "bench.json"
    res = bench.main(["--config-file", TINY, "--size", "64", "--runs", "1", "--warmup", "0", "--no-agreement",
                      "--json", str(out), "--malloc", "default", "MODEL.DINOV2.DEPTH", "4"])
    data = json.loads(out.read_text())
    for key in ("latency_s", "ratio_to_calibration", "peak_rss_mb"):
        assert data[key] > 0
    assert data["ratio_to_calibration"] == pytest.approx(res["ratio_to_calibration"])
    assert data["rss_after_build_mb"] <= data["peak_rss_mb"]
    assert data["meta_architecture"] == "FOCUS"


def test_train_step_benchmark(bench):
    res = bench.main(["--config-file", TINY, "--size", "64", "--runs", "1", "--warmup", "0", "--train",
                      "--dtype", "bf16", "--no-rss", "--malloc", "default", "INPUT.CROP.SIZE", "(64, 64)",
                      "INPUT.SIZE_DIVISIBILITY", "64"])
    assert res["train"] and res["latency_s"] > 0 and res["train_batch"] == 1


def test_train_step_uses_the_member_minimum_batch(bench, monkeypatch):
    """BiRefNet's image-pooling BatchNorm needs two images per batch (`min_train_batch`): the step runs on 2
    different synthetic samples, in the timing and in the peak-RSS process alike."""
    seen = []
    make = bench.make_train_step

    def spy(model, cfg, size, amp_dtype=None):
        seen.append(bench.train_batch_size(model))
        return make(model, cfg, size, amp_dtype)

    monkeypatch.setattr(bench, "make_train_step", spy)
    res = bench.main(["--config-file", "configs/birefnet/tiny.yaml", "--size", "64", "--runs", "1", "--warmup", "0",
                      "--train", "--no-rss", "--malloc", "default"])
    assert res["train_batch"] == 2 and seen == [2] and res["latency_s"] > 0
    batch = [s for i in range(2) for s in bench.synthetic_train_batch(
        bench.setup_benchmark_cfg("configs/birefnet/tiny.yaml", [], "cpu", train=True), 64, seed=i)]
    assert not torch.equal(batch[0]["image"], batch[1]["image"])


@pytest.mark.parametrize("cast", ["autocast", "full"])
def test_build_in_bf16_keeps_fp32_constants(bench, cast):
    cfg = bench.setup_benchmark_cfg(TINY, [], "cpu")
    prepared = bench.build_benchmark_model(cfg, dtype="bf16", cast=cast, build_in_dtype=True)
    model = prepared.model
    dtypes = {p.dtype for p in model.parameters()}
    assert dtypes == ({torch.bfloat16} if cast == "full" else {torch.bfloat16, torch.float32})
    if cast == "autocast":  # what autocast does not round is back in fp32, buffers included
        assert model.backbone.blocks[0].norm1.weight.dtype == torch.float32
        assert model.backbone.blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
        assert all(b.dtype == torch.float32 for b in model.buffers() if b.is_floating_point())
    assert model.pixel_mean.dtype == torch.float32
    out = bench.make_inference_step(prepared, cfg, 64)()[0]
    assert out["foreground"].dtype == torch.float32 and torch.isfinite(out["foreground"]).all()


def test_reduced_precision_agreement_is_reported(bench, tmp_path):
    import cv2

    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), bench.synthetic_image(48, seed=i + 1))
    res = bench.main(["--config-file", TINY, "--size", "64", "--runs", "1", "--warmup", "0", "--dtype", "bf16",
                      "--no-rss", "--real-images", "2", "--real-images-dir", str(tmp_path), "--malloc", "default"])
    assert res["real_images"]["images"] == 2 and res["synthetic"]["images"] == 1
    assert 0.5 < res["mask_agreement"] <= 1.0
    assert res["mask_agreement"] == min(res["real_images"]["mask_agreement"], res["synthetic"]["mask_agreement"])


def test_mask_agreement_counts_pixels(bench):
    a = {"mask": torch.tensor([[1, 0], [1, 1]], dtype=torch.int32), "foreground": torch.zeros(2, 2)}
    b = {"mask": torch.tensor([[1, 1], [1, 1]], dtype=torch.int32), "foreground": torch.full((2, 2), 0.25)}
    assert bench.mask_agreement([a], [b]) == (0.75, 0.25)
