"""Reading images and masks: every real sample folder, every mask mode, EXIF, errors naming files."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from focus.data.io import (
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    binarize_mask,
    check_same_size,
    list_files_by_stem,
    read_image,
    read_image_size,
    read_mask,
)


def _pair_folders(root):
    """(images, masks) folder pairs of ../shared/data, including the per-sequence video folders."""
    pairs = [(p, p.parent / "masks") for p in sorted(root.glob("*/*/images"))]
    pairs += [(p, p.parent / "masks") for p in sorted(root.glob("vos/*/*/frames"))]
    return pairs


def test_every_shared_folder_reads(shared_data):
    pairs = _pair_folders(shared_data)
    assert len(pairs) >= 10
    for img_dir, mask_dir in pairs:
        images = list_files_by_stem(img_dir, IMAGE_EXTENSIONS)
        masks = list_files_by_stem(mask_dir, MASK_EXTENSIONS)
        assert set(images) == set(masks), img_dir
        # ECSSD-half and DAVIS are large: read a few of each; every file of the small folders
        stems = sorted(images)[:3] if len(images) > 20 else sorted(images)
        for s in stems:
            img, mask = read_image(images[s]), read_mask(masks[s])
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
            assert mask.dtype == np.uint8 and mask.ndim == 2
            check_same_size(img, mask, images[s], masks[s])
            assert read_image_size(images[s]) == img.shape[:2]
            fg = binarize_mask(mask)
            assert 0 < fg.mean() < 1, masks[s]


def test_casia_rgba_and_soft_masks(shared_data):
    d = shared_data / "fd" / "CASIA2-sample" / "masks"
    rgba = read_mask(d / "Tp_S_NRN_S_N_pla20088_pla20088_01988.png")  # RGBA with soft values
    raw = np.asarray(Image.open(d / "Tp_S_NRN_S_N_pla20088_pla20088_01988.png"))[..., 0]
    np.testing.assert_array_equal(rgba, raw)
    assert binarize_mask(rgba).sum() == (raw > 128).sum()


def test_grayscale_ecssd_image_becomes_rgb(shared_data):
    d = shared_data / "sod" / "ECSSD-half" / "images"
    gray = [p for p in sorted(d.iterdir()) if Image.open(p).mode == "L"]
    assert gray
    img = read_image(gray[0])
    assert img.shape[2] == 3 and np.array_equal(img[..., 0], img[..., 2])


@pytest.mark.parametrize("mode", ["1", "L", "RGB", "RGBA", "LA", "P-grey", "P-label", "I;16"])
def test_mask_modes(tmp_path, mode):
    fg = np.zeros((20, 30), bool)
    fg[5:12, 8:20] = True
    path = tmp_path / "m.png"
    if mode == "1":
        Image.fromarray(fg).convert("1").save(path)
    elif mode == "P-grey":
        im = Image.fromarray(fg.astype(np.uint8) * 255).convert("P")
        im.save(path)
    elif mode == "P-label":
        im = Image.fromarray(fg.astype(np.uint8), mode="L").convert("P")
        im.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # VOC-style palette: index 1 is dark red
        im.save(path)
    elif mode == "I;16":
        Image.fromarray(fg.astype(np.uint16) * 65535).save(path)
    else:
        Image.fromarray(fg.astype(np.uint8) * 255).convert(mode).save(path)
    np.testing.assert_array_equal(binarize_mask(read_mask(path)), fg)


def test_soft_values_threshold_128(tmp_path):
    m = np.array([[0, 128, 129, 255]], np.uint8)
    Image.fromarray(m).save(tmp_path / "s.png")
    np.testing.assert_array_equal(binarize_mask(read_mask(tmp_path / "s.png")), [[False, False, True, True]])


def test_exif_orientation_and_extension_case(tmp_path):
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :5] = 255  # white left band
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(img).save(tmp_path / "a.JPG", exif=exif, quality=100)
    out = read_image(tmp_path / "a.JPG")
    assert out.shape == (20, 10, 3)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # left band is now at the top
    assert read_image_size(tmp_path / "a.JPG") == (20, 10)
    Image.fromarray(img).save(tmp_path / "b.TIFF")
    Image.fromarray(img).convert("RGBA").save(tmp_path / "c.PNG")
    Image.fromarray(img).save(tmp_path / "d.bmp")
    found = list_files_by_stem(tmp_path, IMAGE_EXTENSIONS)
    assert sorted(found) == ["a", "b", "c", "d"]
    for p in found.values():
        assert read_image(p).dtype == np.uint8


def test_size_mismatch_names_both_files(tmp_path):
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(tmp_path / "x.jpg")
    Image.fromarray(np.zeros((10, 21), np.uint8)).save(tmp_path / "x.png")
    img, mask = read_image(tmp_path / "x.jpg"), read_mask(tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"x\.jpg.*x\.png"):
        check_same_size(img, mask, tmp_path / "x.jpg", tmp_path / "x.png")


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_mask(tmp_path / "nope.png")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg"):
        read_image(tmp_path / "bad.jpg")


def test_duplicate_stem_is_an_error(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.bmp")
    with pytest.raises(ValueError, match="a.bmp"):
        list_files_by_stem(tmp_path, MASK_EXTENSIONS)


def test_stems_with_dots_and_hashes(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "1#Bag#v1.2.png")
    assert list(list_files_by_stem(Path(tmp_path), MASK_EXTENSIONS)) == ["1#Bag#v1.2"]
