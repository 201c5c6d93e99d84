"""tools/compute_flow.py: sequence folders and videos -> flow images (random RAFT), resumable; FSNet reads them."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compute_flow(load_tool):
    return load_tool("compute_flow")

ARGS = ["--num-flow-updates", "1", "--max-size", "64"]


def _copy_frames(src_seq, dst_seq, n, size=(96, 54)):
    """First `n` frames (downscaled, so that random RAFT runs in a fraction of a second) and masks of a sequence."""
    for sub in ("frames", "masks"):
        (dst_seq / sub).mkdir(parents=True)
        for f in sorted((src_seq / sub).iterdir())[:n]:
            im = Image.open(f)
            im.resize(size, Image.NEAREST if sub == "masks" else Image.BILINEAR).save(dst_seq / sub / (f.stem + ".png"))


def test_sequences_resume_and_fsnet_reads_them(compute_flow, shared_data, tmp_path):
    root = tmp_path / "vos"
    for seq in ("dog", "blackswan"):
        _copy_frames(shared_data / "vos" / "DAVIS2016-sample" / seq, root / seq, 3)
    torch.manual_seed(0)
    assert compute_flow.main(["--input", str(root), "--frames-subdir", "frames", "--output", str(root / "_f")] + ARGS) == 0
    for seq in ("dog", "blackswan"):
        names = sorted(p.name for p in (root / "_f" / seq).iterdir())
        assert names == sorted(p.stem + ".png" for p in (root / seq / "frames").iterdir())
        img = np.asarray(Image.open(root / "_f" / seq / names[0]))
        assert img.shape == (54, 96, 3) and img.dtype == np.uint8
    first = root / "_f" / "dog" / names[0]
    stamp = first.stat().st_mtime_ns
    assert compute_flow.main(["--input", str(root), "--frames-subdir", "frames", "--output", str(root / "_f")] + ARGS) == 0
    assert first.stat().st_mtime_ns == stamp  # resumed: nothing recomputed
    # the flow folder plugs into the dataset (flow_file_name) and the FSNet test mapper reads it
    for seq in ("dog", "blackswan"):
        (root / "_f" / seq).rename(root / seq / "flow")
    from detectron2.data import DatasetCatalog

    from focus.data.catalog import register_video_dataset
    from focus.data.mappers import MAPPER_REGISTRY
    from focus.engine.trainer import setup_cfg

    dicts = DatasetCatalog.get(register_video_dataset("flowtest_vos", root, overwrite=True))
    assert len(dicts) == 6 and all("flow_file_name" in d for d in dicts)
    cfg = setup_cfg(str(ROOT / "configs/fsnet/tiny.yaml"))
    mapper = MAPPER_REGISTRY.get("fsnet_test")(cfg, False)
    out = mapper(dicts[0])
    expect = np.asarray(Image.open(dicts[0]["flow_file_name"]).resize((128, 128), Image.BILINEAR))
    assert torch.equal(out["flow"], torch.from_numpy(expect).permute(2, 0, 1))
    assert (out["height"], out["width"]) == (54, 96) and out["sequence"] in ("dog", "blackswan")


def test_video_input(compute_flow, tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for i in range(4):
        frame = np.zeros((48, 64, 3), np.uint8)
        cv2.circle(frame, (10 + 8 * i, 24), 8, (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    assert compute_flow.main(["--video-input", str(path), "--output", str(tmp_path / "out"), "--last", "skip"] + ARGS) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "flow").iterdir()) == [f"{i:05d}.png" for i in range(3)]
