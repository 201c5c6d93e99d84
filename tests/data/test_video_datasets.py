"""Video datasets as sequences: DAVIS-2016, V-SOD (FBMS / SegTrack-V2 layout), DAVSOD and frame folders."""
import numpy as np
from detectron2.data import DatasetCatalog
from PIL import Image

from focus.data.catalog import BUILTIN_DATASETS, ensure_registered, register_builtin_datasets, register_video_dataset


def _frames(folder, stems, ext=".jpg", size=(6, 8)):
    folder.mkdir(parents=True, exist_ok=True)
    for s in stems:
        Image.fromarray(np.full(size + (3,), 100, np.uint8)).save(folder / f"{s}{ext}")


def _masks(folder, stems, size=(6, 8)):
    folder.mkdir(parents=True, exist_ok=True)
    for s in stems:
        Image.fromarray(np.full(size, 255, np.uint8)).save(folder / f"{s}.png")


def test_davis2016_layout_split_and_flow(tmp_path):
    d = tmp_path / "DAVIS"
    for seq in ("bear", "cows"):
        _frames(d / "JPEGImages/480p" / seq, ["00000", "00001", "00002"])
        _masks(d / "Annotations/480p" / seq, ["00000", "00001", "00002"])
    _frames(d / "Flow/480p/cows", ["00000", "00001"], ext=".png")
    (d / "ImageSets/2016").mkdir(parents=True)
    (d / "ImageSets/2016/val.txt").write_text("cows\n")
    (d / "ImageSets/2016/train.txt").write_text("bear\n")
    register_builtin_datasets(tmp_path)
    try:
        val = DatasetCatalog.get("davis2016_val")
        assert [(x["sequence"], x["frame"], x["frame_index"]) for x in val] == [("cows", f"0000{i}", i) for i in range(3)]
        assert [("flow_file_name" in x) for x in val] == [True, True, False]
        assert "prev_file_name" not in val[0] and val[0]["next_file_name"] == val[1]["file_name"]
        assert val[2]["prev_file_name"] == val[1]["file_name"] and "next_file_name" not in val[2]
        assert val[1]["image_id"] == "cows/00001"
        assert [x["sequence"] for x in DatasetCatalog.get("davis2016_train")] == ["bear"] * 3
    finally:
        register_builtin_datasets()


def test_vsod_layouts_sparse_annotations(tmp_path):
    root = tmp_path / "FBMS"
    _frames(root / "cars1" / "Frame", ["cars1_01", "cars1_02", "cars1_03", "cars1_04"])
    _masks(root / "cars1" / "GT", ["cars1_01", "cars1_03"])  # FBMS annotates every few frames
    _frames(tmp_path / "DAVSOD/Easy-35/0001/Imgs", ["a", "b"])
    _masks(tmp_path / "DAVSOD/Easy-35/0001/GT_object_level", ["a", "b"])
    assert {"fbms_test", "segtrackv2", "davsod_easy35", "davsod_normal25", "davsod_difficult20"} <= set(BUILTIN_DATASETS)
    register_builtin_datasets(tmp_path)
    try:
        fbms = DatasetCatalog.get("fbms_test")
        assert [x["frame"] for x in fbms] == ["cars1_01", "cars1_03"]
        assert [x["frame_index"] for x in fbms] == [0, 2]
        assert fbms[1]["prev_file_name"].endswith("cars1_02.jpg")  # neighbours from the full frame list
        assert all("sem_seg_file_name" in x for x in fbms)
        assert [x["image_id"] for x in DatasetCatalog.get("davsod_easy35")] == ["0001/a", "0001/b"]
    finally:
        register_builtin_datasets()


def test_frame_folders_without_masks(tmp_path):
    _frames(tmp_path / "clip" / "frames", ["f0", "f1"])
    _frames(tmp_path / "clip" / "flow", ["f0"], ext=".png")
    name = register_video_dataset("unlabelled_clips", tmp_path, require_masks=False, overwrite=True)
    dicts = DatasetCatalog.get(name)
    assert [x["frame"] for x in dicts] == ["f0", "f1"]
    assert "sem_seg_file_name" not in dicts[0] and "flow_file_name" in dicts[0]


def test_shared_davis_sample_sequences(shared_data):
    dicts = DatasetCatalog.get(ensure_registered(f"folder:vos:{shared_data / 'vos' / 'DAVIS2016-sample'}"))
    dog = [d for d in dicts if d["sequence"] == "dog"]
    assert [d["frame"] for d in dog] == sorted(d["frame"] for d in dog)
    assert all(d["file_name"].endswith(".jpg") and d["sem_seg_file_name"].endswith(".png") for d in dog)
    assert (dog[0]["height"], dog[0]["width"]) == (480, 854)
