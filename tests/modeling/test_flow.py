"""Optical flow helpers: Middlebury rendering, RAFT wrapper (random weights), padding and rescaling."""
import numpy as np
import pytest
import torch

from focus.modeling.flow import FlowEstimator, render_flow, zero_motion_image


def test_render_flow_colour_wheel():
    flow = torch.zeros(2, 4, 4)
    flow[0, :, 2:] = 3.0  # rightwards motion on the right half, zero elsewhere
    img = render_flow(flow)
    assert img.shape == (4, 4, 3) and img.dtype == np.uint8
    assert (img[:, :2] == 255).all()  # zero motion is white
    # Middlebury wheel: +u (right) at full saturation is red-ish (255, 0, 0) - the hue of angle 0
    assert tuple(img[0, 3]) == (255, 0, 0)
    assert np.array_equal(render_flow(flow.permute(1, 2, 0).numpy()), img)
    assert (zero_motion_image(3, 5) == 255).all()


@pytest.fixture(scope="module")
def estimator():
    torch.manual_seed(0)
    return FlowEstimator("raft_small", "", num_flow_updates=1, max_size=64)


def test_estimator_shapes_any_size(estimator):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    b = np.roll(a, 2, axis=1)
    flow = estimator(a, b)  # downscaled to 64 px, padded to RAFT's 128 minimum, resized back
    assert flow.shape == (2, 50, 70) and flow.dtype == torch.float32 and torch.isfinite(flow).all()
    img = estimator.image(a, b, negate=True)
    assert img.shape == (50, 70, 3) and img.dtype == np.uint8
    with pytest.raises(ValueError):
        estimator(a, b[:10])


def test_estimator_weights_file(tmp_path):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(1)
    net = raft_small(weights=None)
    torch.save(net.state_dict(), tmp_path / "raft.pth")
    est = FlowEstimator("raft_small", str(tmp_path / "raft.pth"), num_flow_updates=1)
    for (k, v), w in zip(est.net.state_dict().items(), net.state_dict().values()):
        assert torch.equal(v, w), k
