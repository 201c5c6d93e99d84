"""FSNet through the predictor and tools/demo.py: temporal inputs (flow from the previous frame), video and frame
folders, tiny model with random weights (and random RAFT)."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
TINY = str(ROOT / "configs/fsnet/tiny.yaml")
FAST = ["MODEL.FSNET.FLOW.MAX_SIZE", "64", "MODEL.FSNET.FLOW.NUM_FLOW_UPDATES", "1", "INPUT.FSNET.SIZE", "64"]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def demo(load_tool):
    return load_tool("demo")


@pytest.fixture(scope="module")
def predictor():
    from focus.engine.predictor import Predictor
    from focus.engine.trainer import setup_cfg

    torch.manual_seed(0)
    return Predictor(setup_cfg(TINY, FAST, eval_only=True))


def _disc_frames(n, h=48, w=64):
    frames = []
    for i in range(n):
        f = np.full((h, w, 3), 30, np.uint8)
        cv2.circle(f, (12 + 6 * i, h // 2), 9, (230, 200, 40), -1)
        frames.append(f)
    return frames


def test_predictor_temporal_state(predictor):
    assert predictor.temporal
    a, b = _disc_frames(2)
    predictor.reset()
    first = predictor(a)  # no previous frame: zero-motion flow
    assert first["mask"].shape == (48, 64) and first["mask"].dtype == np.uint8
    assert first["soft"].dtype == np.float32 and 0 <= first["soft"].min() and first["soft"].max() <= 1
    white = np.full((48, 64, 3), 255, np.uint8)
    predictor.reset()
    assert np.array_equal(predictor(a, flow=white)["soft"], first["soft"])
    # the second frame's flow is estimated from the first: same as giving that flow image explicitly
    from focus.modeling.flow import FlowEstimator

    streamed = predictor(b)["soft"]
    est = predictor.mapper._estimator()
    assert isinstance(est, FlowEstimator)
    explicit = predictor(b, flow=est.image(b, a, negate=True))["soft"]
    np.testing.assert_array_equal(streamed, explicit)


def test_demo_generated_video(demo, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (64, 48))
    for f in _disc_frames(5):
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    kinds = ["mask", "soft", "cutout", "overlay"]
    status = demo.main(["--config-file", TINY, "--video-input", str(clip), "--output", str(tmp_path / "out"),
                        "--save", *kinds, "--opts", *FAST])
    assert status == 0
    for kind in kinds:
        cap = cv2.VideoCapture(str(tmp_path / "out" / f"clip_{kind}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5, kind
        cap.release()


def test_demo_davis_frame_folder(demo, shared_data, tmp_path):
    src = shared_data / "vos" / "DAVIS2016-sample" / "dog" / "frames"
    seq = tmp_path / "dog"
    seq.mkdir()
    for f in sorted(src.iterdir())[:3]:
        (seq / f.name).write_bytes(f.read_bytes())
    status = demo.main(["--config-file", TINY, "--input", str(seq), "--output", str(tmp_path / "out"),
                        "--save", "mask", "soft", "--opts", *FAST])
    assert status == 0
    masks = sorted((tmp_path / "out").glob("*_mask.png"))
    assert len(masks) == 3 and len(list((tmp_path / "out").glob("*_soft.png"))) == 3
    assert Image.open(masks[0]).size == (854, 480)
