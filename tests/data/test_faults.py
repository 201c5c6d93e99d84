"""`focus.data.faults`: bad samples skipped (training) or excluded (evaluation), counted once, shared through the
log file, and a run that has too many of them stops with one clear error."""
import numpy as np
import pytest
from PIL import Image

from focus.data.faults import ExcludeBadSamples, FaultLog, SkipBadSamples
from focus.data.io import check_same_size, read_image
from focus.errors import BadFileError, DatasetError, MissingFileError


def _mapper(d):
    image = read_image(d["file_name"])
    check_same_size(image, np.zeros(d.get("mask_hw", image.shape[:2])), d["file_name"], "mask.png")
    return {"image": image}


@pytest.fixture
def files(tmp_path):
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    return tmp_path


def test_skip_counts_each_file_once_and_stops_above_the_share(files, tmp_path):
    log = FaultLog()
    log.reset(str(tmp_path / "log" / "bad.tsv"))
    skip = SkipBadSamples(_mapper, num_samples=10, max_fraction=0.2, log=log)
    assert skip({"file_name": str(files / "ok.png")})["image"].shape == (8, 10, 3)
    assert skip({"file_name": str(files / "bad.png")}) is None
    assert skip({"file_name": str(files / "bad.png")}) is None  # same file: still one fault
    assert skip({"file_name": str(files / "ok.png"), "mask_hw": (8, 9)}) is None  # mask that does not fit
    assert sorted(log.faults()) == sorted(["mask.png", str(files / "bad.png")])
    with pytest.raises(DatasetError, match=r"3 of 10 .*MAX_BAD_SAMPLE_FRACTION = 0.2.*missing\.png"):
        skip({"file_name": str(files / "missing.png")})


def test_fault_log_file_collects_other_processes(tmp_path):
    path = str(tmp_path / "bad.tsv")
    main, worker = FaultLog(), FaultLog(path)
    main.reset(path)
    worker.record("/data/x.jpg", "Cannot read\nimage")  # as a data-loader worker would, after the fork
    assert main.faults() == {"/data/x.jpg": "Cannot read image"} and len(main) == 1


def test_exclude_marks_the_sample(files):
    log = FaultLog()
    wrapped = ExcludeBadSamples(_mapper, log=log)
    out = wrapped({"file_name": str(files / "bad.png"), "image_id": "bad"})
    assert out["bad_file"] == str(files / "bad.png") and "bad.png" in out["reason"] and out["image_id"] == "bad"
    assert list(log.faults()) == [str(files / "bad.png")]


def test_read_errors_are_bad_file_errors(files):
    with pytest.raises(MissingFileError) as err:
        read_image(files / "missing.png")
    assert isinstance(err.value, FileNotFoundError) and err.value.path.endswith("missing.png")
    with pytest.raises(BadFileError, match="bad.png"):
        read_image(files / "bad.png")
    with pytest.raises(BadFileError, match="it is a folder"):
        read_image(files)


def test_first_frame_of_animations_with_a_warning(tmp_path, caplog):
    frames = [Image.fromarray(np.full((6, 7, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "p.tif", save_all=True, append_images=frames[1:])
    for name in ("a.gif", "p.tif"):
        caplog.clear()
        image = read_image(tmp_path / name)
        assert image.shape == (6, 7, 3) and abs(int(image.mean()) - 10) <= 2
        assert "2 frames" in caplog.text and "first frame" in caplog.text
