"""Folder dataset subsets, `folder:<task>:<images>:<masks>[start:stop]` (docs/datasets.md#subsets): a Python slice
of the images in file-name order, for reproducible train/validation splits of one folder."""
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from focus.data import ensure_registered
from focus.data.catalog import split_subset
from focus.errors import DatasetError
from focus.evaluation.evaluator import safe_name

# file-name order: uppercase before lowercase, "a.jpg" before "a_1.png" ('.' < '_'), "img10" before "img2"
NAMES = ["B.jpg", "a.jpg", "a_1.png", "img10.jpg", "img2.jpg", "z.jpeg"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("subsets")
    (root / "im").mkdir()
    (root / "gt").mkdir()
    for name in reversed(NAMES):  # creation order differs from name order
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "im" / name)
        Image.fromarray(np.zeros((6, 8), np.uint8)).save(root / "gt" / (name.rsplit(".", 1)[0] + ".png"))
    return root


def _ids(folder, suffix):
    name = ensure_registered(f"folder:sod:{folder / 'im'}:{folder / 'gt'}{suffix}")
    return [d["image_id"] for d in DatasetCatalog.get(name)]


def test_full_folder_is_in_file_name_order(folder):
    assert _ids(folder, "") == [n.rsplit(".", 1)[0] for n in sorted(NAMES)] == [
        "B", "a", "a_1", "img10", "img2", "z"]


@pytest.mark.parametrize("suffix,expected", [
    ("[:4]", slice(None, 4)), ("[4:]", slice(4, None)), ("[-2:]", slice(-2, None)), ("[1:3]", slice(1, 3)),
    ("[::2]", slice(None, None, 2)), ("[1::-1]", slice(1, None, -1)), ("[:]", slice(None)), ("[0:100]", slice(0, 100)),
])
def test_slice_is_python_slice_of_sorted_images(folder, suffix, expected):
    assert _ids(folder, suffix) == _ids(folder, "")[expected]


def test_split_is_a_partition(folder):
    train, val = _ids(folder, "[:4]"), _ids(folder, "[4:]")
    assert train + val == _ids(folder, "") and not set(train) & set(val)
    name = ensure_registered(f"folder:sod:{folder / 'im'}:{folder / 'gt'}[4:]")
    meta = MetadataCatalog.get(name)
    assert meta.mask_root == str(folder / "gt") and meta.task == "sod" and meta.subset == "slice4_"


def test_subsets_have_distinct_output_names(folder):
    base = f"folder:sod:{folder / 'im'}:{folder / 'gt'}"
    suffixes = ("", "[:4]", "[4:]", "[:40]", "[40:]", "[-1:]", "[::2]", "[2:]", "[4:40]", "[44:0]", "[4:0]")
    names = [safe_name(base + s) for s in suffixes]
    assert len(set(names)) == len(names)  # every slice its own evaluation files
    assert safe_name(base + "[2::]") == safe_name(base + "[2:]")  # the same slice
    assert safe_name(base + "[:4]").endswith("gt_slice_4") and safe_name(base + "[4:]").endswith("gt_slice4")


@pytest.mark.parametrize("bad", ["[4]", "[a:b]", "[1:2:3:4]", "[::0]", "[1.5:]", "[:4"])
def test_malformed_slice_is_one_clear_error(folder, bad):
    name = f"folder:sod:{folder / 'im'}:{folder / 'gt'}{bad}"
    if bad == "[:4":  # no closing bracket: a folder name, which does not exist
        with pytest.raises(FileNotFoundError, match="does not exist"):
            DatasetCatalog.get(ensure_registered(name))
        return
    with pytest.raises(DatasetError, match=r"malformed subset .*expected a Python slice") as e:
        ensure_registered(name)
    assert "\n" not in str(e.value)


def test_empty_subset_is_an_error(folder):
    with pytest.raises(DatasetError, match="empty"):
        _ids(folder, "[10:]")


def test_existing_folder_with_brackets_is_a_folder(tmp_path):
    (tmp_path / "masks[v2]").mkdir()
    assert split_subset(str(tmp_path / "masks[v2]")) == (str(tmp_path / "masks[v2]"), None)
    assert split_subset("m[2:]") == ("m", slice(2, None, None))
