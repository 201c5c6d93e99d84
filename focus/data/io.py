"""Reading images and masks as real benchmark releases store them.

Real data is messy (docs/robustness.md): images come as JPEG, PNG, TIFF or BMP with upper- or
lower-case extensions, in grayscale, RGBA or 16-bit modes and with EXIF orientation tags; masks come in every
PNG mode (1-bit, L, RGB, RGBA, palette, 16-bit) and may hold soft or off-white values. The readers here turn
all of that into one representation:

* `read_image(path)` -> uint8 ``(H, W, 3)`` RGB, EXIF orientation applied (as detectron2's `read_image`).
* `read_mask(path)` -> uint8 ``(H, W)`` grey values 0..255 (EXIF applied as well, like the official loader
  that reads label files with detectron2's `read_image`).
* `binarize_mask(mask)` -> bool ``(H, W)``, foreground = ``mask > 128`` (the PySODMetrics / official
  convention; 1-bit masks are mapped to 0/255 by `read_mask`, so their foreground is "> 0").

Also read: animated GIF/WebP and multi-page TIFF (first frame, with a warning that says so), CMYK, 16-bit and
float images, and HEIC/HEIF/AVIF when a Pillow plugin for them (`pillow-heif`, `pillow-avif-plugin`) is
installed. Images above `MAX_IMAGE_PIXELS` (env `FOCUS_MAX_IMAGE_PIXELS`, default 400 megapixels) are refused.

Every error is a `focus.errors.BadFileError` (`MissingFileError` for a missing file) naming the offending file.
"""
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BadFileError, MissingFileError

logger = logging.getLogger(__name__)

# Pillow refuses images above 2 x its MAX_IMAGE_PIXELS as possible decompression bombs; real photos and scans
# (panoramas, gigapixel-class stitched images) can be larger. The model sees a downscaled copy either way.
MAX_IMAGE_PIXELS = int(os.environ.get("FOCUS_MAX_IMAGE_PIXELS", 400_000_000))
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS // 2


def _register_optional_plugins():
    """HEIC/HEIF and AVIF openers when their Pillow plugins are installed (optional; never required)."""
    try:
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:
        pass
    try:
        import pillow_avif  # noqa: F401  (registers itself)
    except ImportError:
        pass


_register_optional_plugins()

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_EXTENSIONS",
    "read_image",
    "read_mask",
    "binarize_mask",
    "read_image_size",
    "check_same_size",
    "read_image_and_mask",
    "list_files_by_stem",
    "file_stem",
]

# Compared case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".heic", ".heif", ".avif")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".gif")


def file_stem(path):
    """File name without its *last* extension (official loaders cut at the first dot: docs/focus.md#q17)."""
    return Path(path).stem


def list_files_by_stem(folder, extensions, suffix=""):
    """Map ``stem -> path`` of the files in `folder` whose extension (any case) is in `extensions`.

    `suffix` is stripped from the stem when present (e.g. "_gt" for CASIA masks named ``<stem>_gt.png``).
    Two files with the same stem (``a.jpg`` and ``a.png``) are an error naming both.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise MissingFileError(f"folder {folder} {what}; check the path", folder)
    out = {}
    exts = tuple(e.lower() for e in extensions)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file() or not entry.name.lower().endswith(exts) or entry.name.startswith("."):
            continue
        stem = file_stem(entry.name)
        if suffix and stem.endswith(suffix):
            stem = stem[: -len(suffix)]
        if stem in out:
            raise BadFileError(f"Two files with the same stem {stem!r} in {folder}: {out[stem].name} and {entry.name}")
        out[stem] = Path(entry.path)
    return out


_PLUGIN_HINT = {".heic": "pillow-heif", ".heif": "pillow-heif", ".avif": "pillow-avif-plugin"}


def _open(path):
    """Open and decode `path` (first frame of a multi-frame file, with a warning), EXIF orientation applied."""
    try:
        img = Image.open(path)
        frames = getattr(img, "n_frames", 1)
        img.load()
    except FileNotFoundError:
        raise MissingFileError(f"File not found: {path}", path) from None
    except IsADirectoryError:
        raise BadFileError(f"Cannot read image file {path}: it is a folder", path) from None
    except Image.DecompressionBombError as e:
        raise BadFileError(f"Cannot read image file {path}: {e} (raise FOCUS_MAX_IMAGE_PIXELS if you trust it)",
                           path) from None
    except UnidentifiedImageError:
        hint = _PLUGIN_HINT.get(Path(path).suffix.lower())
        what = f"Pillow cannot read this format here; `pip install {hint}` adds it" if hint else (
            "not an image, or a format Pillow cannot read")
        raise BadFileError(f"Cannot read image file {path}: {what}", path) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # truncated or corrupt data
        raise BadFileError(f"Cannot read image file {path}: {e}", path) from None
    if frames > 1:
        logger.warning(f"{path}: {frames} frames (animated or multi-page); using the first frame")
    try:
        return ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError):  # a corrupt EXIF block: keep the raw orientation
        return img


def _to_uint8_gray(arr, path):
    """Map an integer/float single-channel array to 0..255 uint8."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        a = np.nan_to_num(arr.astype(np.float64))
        if a.max() <= 1.0:
            a = a * 255.0
        return np.clip(np.round(a), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        a = arr.astype(np.int64)
        if a.max() > 255:  # 16-bit data
            a = a >> 8
        return np.clip(a, 0, 255).astype(np.uint8)
    raise BadFileError(f"Unsupported pixel type {arr.dtype} in {path}", path)


def read_image(path):
    """Read an image file as uint8 RGB ``(H, W, 3)``, EXIF orientation applied.

    Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit images are converted to 8-bit RGB.
    """
    img = _open(path)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        g = _to_uint8_gray(np.asarray(img), path)
        return np.repeat(g[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def read_mask(path):
    """Read a mask file as uint8 grey values ``(H, W)`` in 0..255, EXIF orientation applied.

    * "1" (1-bit): 0 / 255, so that the foreground is "> 0" as the README requires;
    * "L": as stored (soft values kept); "LA"/"RGBA": alpha ignored, colour converted as below;
    * "RGB": ITU-R 601 luma (PIL ``convert("L")``), which keeps 0/255 masks in any channel layout;
    * "P" (palette): the grey level of the palette colour when every used colour is grey, otherwise the
      palette *index* is treated as a label and any non-zero index becomes 255 (DAVIS-2017 style masks);
    * 16-bit / 32-bit / float: rescaled to 8 bits.
    """
    img = _open(path)
    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=bool).astype(np.uint8) * 255
    if mode == "L":
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    if mode == "P":
        idx = np.asarray(img)
        pal = np.asarray(img.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        used = np.unique(idx)
        if len(pal) > used.max() and np.all(pal[used, 0] == pal[used, 1]) and np.all(pal[used, 1] == pal[used, 2]):
            return pal[idx, 0].astype(np.uint8)
        return (idx != 0).astype(np.uint8) * 255
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _to_uint8_gray(np.asarray(img), path)
    if mode in ("LA", "La"):
        return np.ascontiguousarray(np.asarray(img.getchannel(0), dtype=np.uint8))
    return np.ascontiguousarray(np.asarray(img.convert("RGB").convert("L"), dtype=np.uint8))


def binarize_mask(mask):
    """Foreground of a mask: ``mask > 128`` (uint8 0..255 input) or ``mask > 0.5`` (float in [0, 1]), as bool."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.floating) and mask.size and mask.max() <= 1.0:
        return mask > 0.5
    return mask > 128


def read_image_size(path):
    """``(height, width)`` of an image after EXIF orientation, reading only the file header."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            try:
                orientation = img.getexif().get(0x0112, 1)
            except (OSError, ValueError, SyntaxError):
                orientation = 1
    except FileNotFoundError:
        raise MissingFileError(f"File not found: {path}", path) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadFileError(f"Cannot read image file {path}: {e}", path) from None
    if orientation in (5, 6, 7, 8):  # transposed orientations
        h, w = w, h
    return h, w


def check_same_size(image, mask, image_path, mask_path):
    """Raise if an image ``(H, W[, C])`` and its mask ``(H', W')`` differ in size (never resize silently)."""
    if tuple(image.shape[:2]) != tuple(mask.shape[:2]):
        raise BadFileError(
            f"Image and mask sizes differ: {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but "
            f"{mask_path} is {mask.shape[1]}x{mask.shape[0]}",
            mask_path,
        )


def read_image_and_mask(dataset_dict):
    """The (H, W, 3) uint8 RGB image and (H, W) uint8 mask of a dataset dict (`file_name`, `sem_seg_file_name`),
    checked to have the same size (an error names both files)."""
    image = read_image(dataset_dict["file_name"])
    mask = read_mask(dataset_dict["sem_seg_file_name"])
    check_same_size(image, mask, dataset_dict["file_name"], dataset_dict["sem_seg_file_name"])
    return image, mask
