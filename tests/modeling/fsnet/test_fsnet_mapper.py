"""FSNet mappers: the official squash-resize, where each frame's flow comes from, soft training targets."""
import numpy as np
import torch
from PIL import Image

from focus.modeling.flow import render_flow


class _FakeEstimator:
    """Records the calls; returns a flow image that encodes (partner frame value, negate)."""

    def __init__(self):
        self.calls = []

    def image(self, a, b, negate=False):
        self.calls.append((int(a[0, 0, 0]), int(b[0, 0, 0]), negate))
        return np.full(a.shape, 200 if negate else 100, np.uint8)


def _mapper(load_cfg, train=False, **opts):
    from focus.data.mappers import build_mapper

    pairs = ["INPUT.FSNET.SIZE", 32]
    for k, v in opts.items():
        pairs += [k, v]
    m = build_mapper(load_cfg("fsnet/tiny.yaml", *pairs), train)
    m._flow_estimator = _FakeEstimator()
    return m


def _frames(tmp_path, n=3, h=20, w=30):
    paths = []
    for i in range(n):
        p = tmp_path / f"{i:05d}.png"
        Image.fromarray(np.full((h, w, 3), 10 * (i + 1), np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_map_image_squash_and_stream(load_cfg):
    m = _mapper(load_cfg)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 7
    first = m.map_image(a)
    expect = np.asarray(Image.fromarray(a).resize((32, 32), Image.BILINEAR))
    assert torch.equal(first["image"], torch.from_numpy(expect).permute(2, 0, 1))
    assert (first["flow"] == 255).all() and (first["height"], first["width"]) == (20, 30)  # zero motion
    second = m.map_image(b)  # flow from b back to a, negated
    assert m._flow_estimator.calls == [(7, int(a[0, 0, 0]), True)] and (second["flow"] == 200).all()
    m.reset()
    assert (m.map_image(b)["flow"] == 255).all()
    field = np.zeros((2, 20, 30), np.float32)
    field[0] = 2.0
    out = m.map_image(a, flow=field)
    expect = np.asarray(Image.fromarray(render_flow(field)).resize((32, 32), Image.BILINEAR))
    assert torch.equal(out["flow"], torch.from_numpy(expect).permute(2, 0, 1))


def test_dataset_flow_priority(load_cfg, tmp_path):
    m = _mapper(load_cfg)
    f = _frames(tmp_path)
    flow_file = tmp_path / "flow.png"
    Image.fromarray(np.full((20, 30, 3), 50, np.uint8)).save(flow_file)
    assert (m({"file_name": f[0], "flow_file_name": str(flow_file), "next_file_name": f[1]})["flow"] == 50).all()
    assert (m({"file_name": f[1], "next_file_name": f[2], "prev_file_name": f[0]})["flow"] == 100).all()
    assert (m({"file_name": f[2], "prev_file_name": f[1]})["flow"] == 200).all()  # last frame (docs/fsnet.md#q12)
    assert m._flow_estimator.calls == [(20, 30, False), (30, 20, True)]
    assert (m({"file_name": f[0]})["flow"] == 255).all()


def test_train_mapper_soft_targets(load_cfg, tmp_path):
    f = _frames(tmp_path)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 7:23] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    d = {"file_name": f[0], "sem_seg_file_name": str(tmp_path / "m.png"), "next_file_name": f[1]}
    soft = _mapper(load_cfg, True)(d)
    assert soft["sem_seg"].dtype == torch.float32 and soft["sem_seg"].shape == (32, 32)
    assert ((soft["sem_seg"] > 0) & (soft["sem_seg"] < 1)).any()  # bilinear edges (docs/fsnet.md#q15)
    hard = _mapper(load_cfg, True, **{"INPUT.FSNET.BINARY_TARGETS": True})(d)
    assert set(hard["sem_seg"].unique().tolist()) <= {0.0, 1.0}
    rgb = _mapper(load_cfg, True, **{"MODEL.FSNET.STREAMS": "rgb"})(d)
    assert "flow" not in rgb and "image" in rgb
    flow_only = _mapper(load_cfg, True, **{"MODEL.FSNET.STREAMS": "flow"})(d)
    assert "image" not in flow_only and (flow_only["flow"] == 100).all()
