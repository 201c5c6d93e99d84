"""tools/demo.py run in-process on a mixed image folder (resume with --skip-existing) and on a short video,
with the tiny FOCUS (random weights) at 32-px test size."""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
FAST = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "32", "INPUT.MAX_SIZE_TEST", "64"]


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def demo(load_tool):
    return load_tool("demo")


def _rgb(h, w, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    img[h // 4: 3 * h // 4, w // 4: 3 * w // 4] += 150  # a bright square, so masks are not all-constant
    return img


def _mixed_folder(root):
    """Readable inputs (relative stem -> (h, w)) of a folder mixing formats, modes, case and sub-folders."""
    (root / "sub").mkdir(parents=True)
    Image.fromarray(_rgb(48, 64, 0)).save(root / "a.jpg", quality=90)
    Image.fromarray(_rgb(40, 56, 1)[:, :, 0], mode="L").save(root / "sub" / "b_gray.PNG")
    Image.fromarray(np.dstack([_rgb(36, 30, 2), np.full((36, 30), 128, np.uint8)]), mode="RGBA").save(
        root / "sub" / "c_rgba.tif"
    )
    Image.fromarray(np.dstack([_rgb(33, 47, 3), np.full((33, 47), 255, np.uint8)]), mode="RGBA").save(
        root / "d.png"
    )
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG")
    (root / "notes.txt").write_text("not an image")
    return {"a": (48, 64), "sub/b_gray": (40, 56), "sub/c_rgba": (36, 30), "d": (33, 47)}


def test_folder_run_then_resume(demo, tmp_path, capsys, monkeypatch):
    src, out = tmp_path / "in", tmp_path / "out"
    expected = _mixed_folder(src)
    status = demo.main(["--input", str(src), "--output", str(out), "--opts", *FAST])
    captured = capsys.readouterr()
    assert status == 1
    assert "done 4, skipped 0, failed 1" in captured.out
    failures = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 1 and "broken.jpg" in failures[0]

    modes = {"mask": "L", "soft": "L", "cutout": "RGBA", "overlay": "RGB"}
    for stem, (h, w) in expected.items():
        for kind, mode in modes.items():
            with Image.open(out / f"{stem}_{kind}.png") as im:
                assert (im.mode, im.size) == (mode, (w, h)), (stem, kind)
                arr = np.asarray(im)
            if kind == "mask":
                assert set(np.unique(arr)) <= {0, 255}
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(written) == 16 and not any(".tmp" in p for p in written)
    mtimes = {p: os.stat(out / p).st_mtime_ns for p in written}

    def no_model(cfg):
        raise AssertionError("the model must not be built when every output exists")

    monkeypatch.setattr(demo, "Predictor", no_model)
    status = demo.main(["--input", str(src), "--output", str(out), "--skip-existing", "--opts", *FAST])
    assert status == 1  # the corrupt file still fails
    assert "done 0, skipped 4, failed 1" in capsys.readouterr().out
    assert {p: os.stat(out / p).st_mtime_ns for p in written} == mtimes


def test_video_input(demo, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (96, 64))
    assert writer.isOpened()
    for i in range(8):
        writer.write(np.roll(_rgb(64, 96, 0), 4 * i, axis=1))
    writer.release()
    kinds = ["overlay", "mask", "soft", "cutout"]
    status = demo.main(["--video-input", str(clip), "--output", str(tmp_path / "out"), "--save", *kinds,
                        "--opts", *FAST])
    assert status == 0 and "done 1, skipped 0, failed 0" in capsys.readouterr().out
    for kind in kinds:
        cap = cv2.VideoCapture(str(tmp_path / "out" / f"clip_{kind}.mp4"))
        assert cap.isOpened(), kind
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        fps = cap.get(cv2.CAP_PROP_FPS)
        frames = 0
        while cap.read()[0]:
            frames += 1
        cap.release()
        assert (frames, size, fps) == (8, (96, 64), 5.0), kind
    assert sorted(os.listdir(tmp_path / "out")) == sorted(f"clip_{k}.mp4" for k in kinds)
    status = demo.main(["--video-input", str(clip), "--output", str(tmp_path / "out"), "--save", *kinds,
                        "--skip-existing", "--opts", *FAST])
    assert status == 0 and "done 0, skipped 1, failed 0" in capsys.readouterr().out


def test_collect_inputs(demo, tmp_path):
    (tmp_path / "x" / "deep").mkdir(parents=True)
    for name in ("x/one.JPEG", "x/deep/two.webp", "x/deep/two.png", "x/skip.txt", "x/.hidden.png"):
        (tmp_path / name).write_bytes(b"")
    jobs, errors = demo.collect_inputs([str(tmp_path / "x"), str(tmp_path / "x" / "one.JPEG")])
    rel = [(os.path.relpath(p, tmp_path), stem) for p, stem in jobs]
    assert rel == [("x/one.JPEG", "one"), ("x/deep/two.png", "deep/two")]  # folder walk sorted, file deduped
    assert [(os.path.relpath(p, tmp_path), "overwrite" in r) for p, r in errors] == [("x/deep/two.webp", True)]

    (tmp_path / "x" / "out").mkdir()
    (tmp_path / "x" / "out" / "one_mask.png").write_bytes(b"")  # outputs inside the input folder are not inputs
    jobs, errors = demo.collect_inputs(
        [str(tmp_path / "x" / "**" / "*.png"), str(tmp_path / "missing.jpg")], exclude=str(tmp_path / "x" / "out")
    )
    assert [stem for _, stem in jobs] == ["deep/two"]  # relative to the glob's wildcard-free base
    assert len(errors) == 1 and "no such file" in errors[0][1]


def test_config_and_output_errors(demo, tmp_path):
    with pytest.raises(SystemExit):
        demo.main(["--input", str(tmp_path)])  # --output is required for images
    with pytest.raises(SystemExit):
        demo.main(["--config-file", "configs/none.yaml", "--input", str(tmp_path), "--output", str(tmp_path)])
    assert demo.resolve_config(demo.DEFAULT_CONFIG) == str(ROOT / "configs/tiny/focus_tiny.yaml") or os.path.isfile(
        demo.DEFAULT_CONFIG
    )


def test_real_images(demo, shared_data, tmp_path, capsys):
    """Real files: .jpg/.JPG, a TIFF, a 2.7k-px JPEG with '#' in its name; outputs at the EXIF-aware size."""
    from focus.data.io import read_image_size

    folder = shared_data / "dbd" / "CUHK-sample" / "images"
    tif = shared_data / "fd" / "CASIA2-sample" / "images" / "Tp_D_CRD_S_N_ani00028_ani00058_00148.tif"
    dis = sorted((shared_data / "dis" / "DIS5K-sample" / "images").glob("*.jpg"))[0]
    out = tmp_path / "out"
    status = demo.main(
        ["--input", str(folder), str(tif), str(dis), "--output", str(out), "--save", "mask", "overlay",
         "--opts", *FAST]
    )
    assert status == 0 and "done 7, skipped 0, failed 0" in capsys.readouterr().out
    for path in [*sorted(folder.iterdir()), tif, dis]:
        h, w = read_image_size(path)
        for kind in ("mask", "overlay"):
            with Image.open(out / f"{path.stem}_{kind}.png") as im:
                assert im.size == (w, h), (path.name, kind)
