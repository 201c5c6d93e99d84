"""Dataset table: lazy registration, folder datasets, missing-folder errors, every shared folder loads."""
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

import focus  # noqa: F401  (registers the builtin datasets)
from focus.data import BUILTIN_DATASETS, ensure_registered, register_builtin_datasets, register_folder_dataset

OFFICIAL = [
    "cod_train", "cod_val", "cod10k_train", "cod10k_val", "chameleon", "nc4k", "duts_train", "duts_val",
    "dutomron", "ecssd", "hkuis", "pascal", "istd_train", "istd_val", "defocus_train", "defocus_dut_val",
    "defocus_cuhk_val", "casia_train", "casia_val",
]
TASK_OF_FOLDER = {"sod": "sod", "cod": "cod", "sd": "sd", "dbd": "dbd", "fd": "fd", "dis": "dis"}


def test_every_official_name_is_registered_with_its_task():
    names = set(DatasetCatalog.list())
    for n in OFFICIAL + ["dis_train", "dis_val", "dis_te1", "dis_te2", "dis_te3", "dis_te4",
                         "davis2016_train", "davis2016_val"]:
        assert n in names, n
    for t in ("sod", "cod", "sd", "dbd", "fd"):
        for s in ("train", "test"):
            assert f"synthetic_{t}_{s}" in names
    assert MetadataCatalog.get("casia_val").task == "fd"
    assert MetadataCatalog.get("defocus_train").task == "dbd"
    assert MetadataCatalog.get("istd_val").task == "sd"
    assert MetadataCatalog.get("davis2016_val").task == "vos"
    m = MetadataCatalog.get("ecssd")
    assert (m.evaluator_type, m.ignore_label, m.stuff_classes, m.thing_classes) == (
        "focus", 255, ["foreground", "background"], ["foreground"])


def test_registration_is_lazy_and_missing_folder_names_path_and_command(tmp_path):
    register_builtin_datasets(root=tmp_path / "nowhere")  # no disk access: must not raise
    try:
        with pytest.raises(FileNotFoundError) as e:
            DatasetCatalog.get("pascal")
        msg = str(e.value)
        assert str(tmp_path / "nowhere" / "PASCAL" / "img") in msg and "datasets/prepare.py pascal" in msg
        with pytest.raises(FileNotFoundError, match="generate_synthetic.py"):
            DatasetCatalog.get("synthetic_cod_train")
    finally:
        register_builtin_datasets()


@pytest.mark.parametrize("folder", ["sod/ECSSD-half", "fd/CASIA2-sample", "dbd/CUHK-sample", "sd/SBU-sample",
                                    "cod/CAMO-test-sample", "dis/DIS5K-sample", "sd/ISTD-sample"])
def test_shared_folder_as_folder_dataset(shared_data, folder):
    task = TASK_OF_FOLDER[folder.split("/")[0]]
    root = shared_data / folder
    name = ensure_registered(f"folder:{task}:{root / 'images'}:{root / 'masks'}")
    assert MetadataCatalog.get(name).task == task
    dicts = DatasetCatalog.get(name)
    n_images = len(list((root / "images").iterdir()))
    assert len(dicts) == n_images
    for d in dicts[:20]:
        assert set(d) >= {"file_name", "sem_seg_file_name", "height", "width", "image_id"}
        assert d["image_id"] == d["file_name"].rsplit("/", 1)[1].rsplit(".", 1)[0]
        assert d["sem_seg_file_name"].rsplit("/", 1)[1].rsplit(".", 1)[0] == d["image_id"]
        w, h = Image.open(d["sem_seg_file_name"]).size
        assert (d["height"], d["width"]) == (h, w)


def test_video_folder_dataset(shared_data):
    name = ensure_registered(f"folder:vos:{shared_data / 'vos' / 'DAVIS2016-sample'}")
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 150
    assert {d["sequence"] for d in dicts} == {"blackswan", "car-shadow", "dog"}
    first = [d for d in dicts if d["sequence"] == "dog"]
    assert [d["frame_index"] for d in first] == list(range(len(first)))
    assert first[0]["image_id"].startswith("dog/")


def test_register_folder_dataset_and_errors(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "gt").mkdir()
    for stem in ("a.b", "c"):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "im" / f"{stem}.JPG")
        Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "gt" / f"{stem}.png")
    register_folder_dataset("user_ds", tmp_path / "im", tmp_path / "gt", "cod")
    register_folder_dataset("user_ds", tmp_path / "im", tmp_path / "gt", "cod")  # same folders: no-op
    dicts = DatasetCatalog.get("user_ds")
    assert [d["image_id"] for d in dicts] == ["a.b", "c"]
    with pytest.raises(ValueError, match="already registered"):
        register_folder_dataset("user_ds", tmp_path / "gt", tmp_path / "im", "cod")
    (tmp_path / "gt" / "c.png").unlink()
    register_folder_dataset("user_ds", tmp_path / "im", tmp_path / "gt", "cod", overwrite=True)
    with pytest.raises(ValueError, match="have no mask"):
        DatasetCatalog.get("user_ds")
    with pytest.raises(KeyError, match="folder:"):
        ensure_registered("no_such_dataset")
    with pytest.raises(ValueError, match="Unknown task"):
        register_folder_dataset("bad_task", tmp_path / "im", tmp_path / "gt", "xyz")


def test_casia_suffix_and_exclusion(tmp_path):
    spec = BUILTIN_DATASETS["casia_val"]
    img_dir, gt_dir = tmp_path / spec.image_dir, tmp_path / spec.mask_dir
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    for stem in ("Sp_D_x_1", "Sp_D_NRN_A_cha0011_sec0011_0542"):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(img_dir / f"{stem}.jpg")
        Image.fromarray(np.zeros((6, 8), np.uint8)).save(gt_dir / f"{stem}_gt.png")
    register_builtin_datasets(root=tmp_path)
    try:
        dicts = DatasetCatalog.get("casia_val")
        assert [d["image_id"] for d in dicts] == ["Sp_D_x_1"]
        assert dicts[0]["sem_seg_file_name"].endswith("Sp_D_x_1_gt.png")
    finally:
        register_builtin_datasets()


def test_high_resolution_sod_and_dis_rows(tmp_path):
    """HRSOD, UHRSD (their authors' layouts) and DIS-VD (`dis_val`) load from `$DETECTRON2_DATASETS`."""
    for name in ("hrsod_train", "hrsod_test", "uhrsd_train", "uhrsd_test", "dis_val"):
        spec = BUILTIN_DATASETS[name]
        assert MetadataCatalog.get(name).task == ("dis" if name == "dis_val" else "sod")
        (tmp_path / spec.image_dir).mkdir(parents=True)
        (tmp_path / spec.mask_dir).mkdir(parents=True)
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / spec.image_dir / "a#1.jpg")
        Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / spec.mask_dir / "a#1.png")
    assert BUILTIN_DATASETS["dis_val"].image_dir == "DIS5K/DIS-VD/im"
    register_builtin_datasets(root=tmp_path)
    try:
        for name in ("hrsod_test", "uhrsd_test", "dis_val"):
            (d,) = DatasetCatalog.get(name)
            assert d["image_id"] == "a#1" and (d["height"], d["width"]) == (6, 8)
    finally:
        register_builtin_datasets()
