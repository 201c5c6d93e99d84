"""The dataset table: every dataset `focus` knows, registered lazily from image and mask folders.

One table (`BUILTIN_DATASETS`) replaces the official twelve `register_*.py` files and their COCO/semantic
JSONs (docs/datasets.md#registration, docs/focus.md#q33): a dataset is an image folder and a mask folder under
``$DETECTRON2_DATASETS`` (default ``datasets/``), paired by file stem (the name without its *last*
extension, so names with dots or ``#`` work: docs/focus.md#q17). Nothing touches the disk at import; the folders
are listed when the dataset is first used (`DatasetCatalog.get`), and a missing folder raises one error that
names the expected path and the command that prepares it.

Dataset dicts (one per image)::

    {"file_name": image path, "sem_seg_file_name": the mask file itself (0/255 or soft; labels are derived
     in the mapper: > 128 -> class 0 "foreground", else class 1 "background"), "height", "width" (of the
     image after EXIF orientation, read from the file header at load time), "image_id": the file stem}

Video datasets (task "vos") are sequences of frames with optional masks and optional precomputed flow images;
their dicts add ``"sequence"``, ``"frame"`` (the frame's stem), ``"frame_index"`` (position in the sequence),
``"prev_file_name"``/``"next_file_name"`` (neighbouring frames, absent at the ends), ``"flow_file_name"`` when a
flow image with the frame's stem exists, and use ``<sequence>/<stem>`` ids. Frames without a mask are listed
only when the dataset does not require masks (their neighbours are always the full frame sequence).

A user's own data needs no code: `register_folder_dataset(name, image_root, mask_root, task)`, or the name
``folder:<task>:<image_root>:<mask_root>`` anywhere a dataset name is accepted (config, command line), which
`ensure_registered` registers on first use (``folder:vos:<root>`` for ``<root>/<sequence>/{frames,masks,flow}``,
masks and flow optional). A Python slice after the mask folder, ``folder:sod:imgs:masks[:400]`` or
``...masks[400:]``, keeps that part of the images in file-name order (``sorted`` order of the names, the order the
dataset lists them in): reproducible splits of one folder (docs/datasets.md#subsets).
"""
import logging
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..errors import BadFileError, DatasetError, MissingFileError, UnknownNameError
from .io import IMAGE_EXTENSIONS, MASK_EXTENSIONS, list_files_by_stem, read_image_size

__all__ = [
    "TASKS",
    "BUILTIN_DATASETS",
    "DatasetSpec",
    "datasets_root",
    "register_folder_dataset",
    "register_video_dataset",
    "register_builtin_datasets",
    "ensure_registered",
    "load_folder_dataset",
    "split_subset",
    "load_video_dataset",
]

logger = logging.getLogger(__name__)

TASKS = ("sod", "cod", "sd", "dbd", "fd", "dis", "vos")
SYNTHETIC_TASKS = ("sod", "cod", "sd", "dbd", "fd")

_README = "see datasets/README.md"


@dataclass(frozen=True)
class DatasetSpec:
    """One row of the dataset table. Paths are relative to ``$DETECTRON2_DATASETS``."""

    name: str
    task: str
    image_dir: str
    mask_dir: str
    prepare: str = _README
    mask_suffix: str = ""  # stripped from mask stems (CASIA: "<stem>_gt.png")
    layout: str = "folder"  # "folder" (image/mask folder pair), "davis" (DAVIS-2016) or "video" (<seq>/<sub>)
    exclude: tuple = ()  # image stems left out, with the reason in a comment at the row
    flow_dir: str = ""  # video: precomputed flow images (davis: a root of <seq> folders; video: a subfolder name)


def _rows():
    p = "python datasets/prepare.py"
    camo = "CAMO-V.1.0-CVIU2019"
    dfc = "DEFOCUS/dataset"
    rows = [
        # COD: CAMO's GT folder holds train and test masks together; pairing by stem selects the split.
        DatasetSpec("cod_train", "cod", f"{camo}/Images/Train", f"{camo}/GT", f"{_README} (CAMO)"),
        DatasetSpec("cod_val", "cod", f"{camo}/Images/Test", f"{camo}/GT", f"{_README} (CAMO)"),
        DatasetSpec("cod10k_train", "cod", "COD10K-v3/Train/Image", "COD10K-v3/Train/GT_Object"),
        DatasetSpec("cod10k_val", "cod", "COD10K-v3/Test/Image", "COD10K-v3/Test/GT_Object"),
        DatasetSpec("chameleon", "cod", "CHAMELEON/Imgs", "CHAMELEON/GT"),
        DatasetSpec("nc4k", "cod", "NC4K/Imgs", "NC4K/GT"),
        # SOD
        DatasetSpec("duts_train", "sod", "DUTS/DUTS-TR/DUTS-TR-Image", "DUTS/DUTS-TR/DUTS-TR-Mask"),
        DatasetSpec("duts_val", "sod", "DUTS/DUTS-TE/DUTS-TE-Image", "DUTS/DUTS-TE/DUTS-TE-Mask"),
        DatasetSpec("dutomron", "sod", "DUTOMRON/DUT-OMRON-image", "DUTOMRON/pixelwiseGT-new-PNG"),
        DatasetSpec("ecssd", "sod", "ECSSD/images", "ECSSD/ground_truth_mask"),
        DatasetSpec("hkuis", "sod", "HKU-IS/imgs", "HKU-IS/gt"),
        DatasetSpec("pascal", "sod", "PASCAL/img", "PASCAL/gt", f"{p} pascal"),
        # SD (ISTD: *_A shadow images, *_B shadow masks; *_C shadow-free images unused)
        DatasetSpec("istd_train", "sd", "ISTD_Dataset/train/train_A", "ISTD_Dataset/train/train_B", f"{p} istd"),
        DatasetSpec("istd_val", "sd", "ISTD_Dataset/test/test_A", "ISTD_Dataset/test/test_B", f"{p} istd"),
        # DBD (.bmp images and masks, read directly; 255 = blurred region, no inversion: docs/datasets.md#registration)
        DatasetSpec("defocus_train", "dbd", f"{dfc}/train_data/1204source", f"{dfc}/train_data/1204gt", f"{p} defocus"),
        DatasetSpec("defocus_dut_val", "dbd", f"{dfc}/test_data/DUT/dut500-source", f"{dfc}/test_data/DUT/dut500-gt",
                    f"{p} defocus"),
        DatasetSpec("defocus_cuhk_val", "dbd", f"{dfc}/test_data/CUHK/xu100-source", f"{dfc}/test_data/CUHK/xu100-gt",
                    f"{p} defocus"),
        # FD: built by `prepare.py casia` from the CASIA v2 (train) and v1 (test) releases.
        DatasetSpec("casia_train", "fd", "CASIA/TRAIN/image", "CASIA/TRAIN/gt", f"{p} casia", mask_suffix="_gt"),
        # The official script deletes this test image by name (docs/datasets.md#preparation); kept out for identical
        # test sets.
        DatasetSpec("casia_val", "fd", "CASIA/TEST/image", "CASIA/TEST/gt", f"{p} casia", mask_suffix="_gt",
                    exclude=("Sp_D_NRN_A_cha0011_sec0011_0542",)),
        # High-resolution SOD: HRSOD (ICCV 2019) and UHRSD (CVPR 2022) as their authors distribute them.
        DatasetSpec("hrsod_train", "sod", "HRSOD/HRSOD_train", "HRSOD/HRSOD_train_mask", f"{_README} (HRSOD)"),
        DatasetSpec("hrsod_test", "sod", "HRSOD/HRSOD_test", "HRSOD/HRSOD_test_mask", f"{_README} (HRSOD)"),
        DatasetSpec("uhrsd_train", "sod", "UHRSD/UHRSD_TR_2K/image", "UHRSD/UHRSD_TR_2K/mask", f"{_README} (UHRSD)"),
        DatasetSpec("uhrsd_test", "sod", "UHRSD/UHRSD_TE_2K/image", "UHRSD/UHRSD_TE_2K/mask", f"{_README} (UHRSD)"),
        # DIS5K (dis_val is DIS-VD; DIS-TE1..4 below)
        DatasetSpec("dis_train", "dis", "DIS5K/DIS-TR/im", "DIS5K/DIS-TR/gt", f"{_README} (DIS5K)"),
        DatasetSpec("dis_val", "dis", "DIS5K/DIS-VD/im", "DIS5K/DIS-VD/gt", f"{_README} (DIS5K)"),
    ]
    rows += [
        DatasetSpec(f"dis_te{i}", "dis", f"DIS5K/DIS-TE{i}/im", f"DIS5K/DIS-TE{i}/gt", f"{_README} (DIS5K)")
        for i in range(1, 5)
    ]
    # DAVIS-2016 frames (480p); the sequence lists come from DAVIS/ImageSets; flow from tools/compute_flow.py.
    rows += [
        DatasetSpec(f"davis2016_{s}", "vos", "DAVIS/JPEGImages/480p", "DAVIS/Annotations/480p",
                    f"{_README} (DAVIS-2016)", layout="davis", flow_dir="DAVIS/Flow/480p")
        for s in ("train", "val")
    ]
    # V-SOD test sets as distributed with the DAVSOD benchmark / FSNet: <root>/<seq>/{Frame,GT[,OF_FlowNet2]};
    # image_dir = sequences root, mask_dir = the frame and mask subfolder names "<frames>|<masks>".
    rows += [
        DatasetSpec("fbms_test", "vos", "FBMS", "Frame|GT", f"{_README} (FBMS)", layout="video",
                    flow_dir="OF_FlowNet2"),
        DatasetSpec("segtrackv2", "vos", "SegTrack-V2", "Frame|GT", f"{_README} (SegTrack-V2)", layout="video",
                    flow_dir="OF_FlowNet2"),
    ]
    # DAVSOD (CVPR 2019 release): <split>/<seq>/{Imgs,GT_object_level}
    rows += [
        DatasetSpec(f"davsod_{n.lower().replace('-', '')}", "vos", f"DAVSOD/{n}", "Imgs|GT_object_level",
                    f"{_README} (DAVSOD)", layout="video", flow_dir="flow")
        for n in ("Easy-35", "Normal-25", "Difficult-20")
    ]
    rows += [
        DatasetSpec(f"synthetic_{t}_{s}", t, f"synthetic/{t}/{s}/images", f"synthetic/{t}/{s}/masks",
                    "python datasets/generate_synthetic.py")
        for t in SYNTHETIC_TASKS
        for s in ("train", "test")
    ]
    return {r.name: r for r in rows}


BUILTIN_DATASETS = _rows()


def datasets_root():
    """``$DETECTRON2_DATASETS`` (default ``datasets``), as detectron2 resolves its builtin datasets."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def _metadata(task, image_root, mask_root, **extra):
    if task not in TASKS:
        raise DatasetError(f"Unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return dict(
        task=task,
        evaluator_type="focus",
        ignore_label=255,
        image_root=str(image_root),
        mask_root=str(mask_root),
        stuff_classes=["foreground", "background"],
        stuff_colors=[[255, 255, 255], [0, 0, 0]],
        thing_classes=["foreground"],
        thing_colors=[[255, 255, 255]],
        thing_dataset_id_to_contiguous_id={1: 0},
        stuff_dataset_id_to_contiguous_id={1: 0, 2: 1},
        **extra,
    )


def _require_dir(path, name, prepare):
    if not Path(path).is_dir():
        raise MissingFileError(
            f"Dataset '{name}': expected folder {path} does not exist. Prepare it with: {prepare} "
            f"(dataset root: $DETECTRON2_DATASETS={datasets_root()!r})",
            path,
        )


_SLICE = re.compile(r"\[(-?\d*):(-?\d*)(?::(-?\d*))?\]")


def split_subset(text):
    """``"masks[:400]"`` -> ``("masks", slice(None, 400, None))``; text without a ``[...]`` suffix -> ``(text,
    None)``. A ``[...]`` suffix that is not a slice of integers is an error, unless `text` is an existing folder."""
    if not text.endswith("]") or "[" not in text:
        return text, None
    start = text.rindex("[")
    m = _SLICE.fullmatch(text[start:])
    if m is None or (m.group(3) or None) is not None and int(m.group(3)) == 0:
        if Path(text).is_dir():
            return text, None
        raise DatasetError(f"Dataset name: malformed subset {text[start:]!r} after {text[:start]!r}; expected a "
                           f"Python slice of the images in file-name order, e.g. [:400], [400:], [-100:], [::5]")
    return text[:start], slice(*(int(g) if g not in (None, "") else None for g in m.groups()))


def subset_tag(subset):
    """A file-name-safe tag of a slice, distinct for distinct slices: ``[:400]`` -> "slice_400", ``[400:]`` ->
    "slice400_", ``[::5]`` -> "slice__5"."""
    part = [("" if v is None else str(v)) for v in (subset.start, subset.stop)]
    if subset.step is not None:
        part.append(str(subset.step))
    return "slice" + "_".join(part)


def load_folder_dataset(name, image_root, mask_root, mask_suffix="", exclude=(), prepare=_README, subset=None):
    """Dataset dicts of an image folder and a mask folder paired by stem (see module docstring).

    `subset` (a `slice`) keeps that part of the images, in file-name order, before they are paired with masks.
    Raises `FileNotFoundError` naming the folder if one is missing, and `ValueError` listing images without
    a mask. Masks without an image are ignored (CAMO keeps train and test masks in one folder).
    """
    _require_dir(image_root, name, prepare)
    _require_dir(mask_root, name, prepare)
    images = list_files_by_stem(image_root, IMAGE_EXTENSIONS)  # in file-name order
    masks = list_files_by_stem(mask_root, MASK_EXTENSIONS, suffix=mask_suffix)
    for stem in exclude:
        images.pop(stem, None)
    if subset is not None:
        total = len(images)
        images = dict(list(images.items())[subset])
        if not images:
            raise DatasetError(f"Dataset '{name}': its subset ({subset_tag(subset)}) of the {total} images in "
                               f"{image_root} is empty")
    if Path(image_root).resolve() == Path(mask_root).resolve():
        raise DatasetError(f"Dataset '{name}': image and mask folders are the same ({image_root}); {prepare}")
    missing = sorted(set(images) - set(masks))
    if missing:
        raise DatasetError(
            f"Dataset '{name}': {len(missing)} image(s) in {image_root} have no mask in {mask_root} "
            f"(e.g. {missing[:5]})"
        )
    if not images:
        raise DatasetError(f"Dataset '{name}': no images ({', '.join(IMAGE_EXTENSIONS)}) in {image_root}")
    dicts = []
    for stem, path in images.items():
        d = {"file_name": str(path), "sem_seg_file_name": str(masks[stem]), "image_id": stem}
        try:
            d["height"], d["width"] = read_image_size(path)
        except BadFileError:  # kept without a size: the mapper reports it and the sample is skipped/excluded
            pass
        dicts.append(d)
    return dicts


def _davis_sequences(root, split):
    """Sequence names of a DAVIS split from ``ImageSets/2016/<split>.txt`` or ``ImageSets/480p/<split>.txt``."""
    root = Path(root)
    seq_list = root / "ImageSets" / "2016" / f"{split}.txt"
    if seq_list.is_file():
        return [s.strip() for s in seq_list.read_text().splitlines() if s.strip()]
    pair_list = root / "ImageSets" / "480p" / f"{split}.txt"
    if pair_list.is_file():
        seqs = []
        for line in pair_list.read_text().splitlines():
            if line.strip():
                seq = Path(line.split()[0]).parent.name
                if seq not in seqs:
                    seqs.append(seq)
        return seqs
    raise MissingFileError(f"DAVIS split '{split}': neither {seq_list} nor {pair_list} exists; {_README} (DAVIS-2016)")


def load_video_dataset(name, sequences, require_masks=True, prepare=_README):
    """Dataset dicts of video frames (see the module docstring).

    Args:
        sequences: list of ``(sequence, frames_dir, masks_dir or None, flows_dir or None)``.
        require_masks: keep only annotated frames (training, evaluation); their neighbours are still the
            sequence's full frame list. Raises if a sequence then has no frame.
    """
    dicts = []
    for entry in sequences:
        seq, frames_dir, masks_dir, flows_dir = (tuple(entry) + (None, None))[:4]
        _require_dir(frames_dir, name, prepare)
        frames = list_files_by_stem(frames_dir, IMAGE_EXTENSIONS)
        masks = {}
        if masks_dir is not None and Path(masks_dir).is_dir():
            masks = list_files_by_stem(masks_dir, MASK_EXTENSIONS)
        elif require_masks:
            _require_dir(masks_dir, name, prepare)
        flows = list_files_by_stem(flows_dir, IMAGE_EXTENSIONS) if flows_dir and Path(flows_dir).is_dir() else {}
        stems = sorted(frames)
        if not stems:
            raise DatasetError(f"Dataset '{name}': no frames ({', '.join(IMAGE_EXTENSIONS)}) in {frames_dir}")
        kept = 0
        size = None
        for i, stem in enumerate(stems):
            if require_masks and stem not in masks:
                continue
            if size is None:  # frames of a sequence share one size; the mapper checks each pair when reading
                try:
                    size = read_image_size(frames[stem])
                except BadFileError:  # the mapper reports it when reading the frame
                    pass
            d = {"file_name": str(frames[stem]), "image_id": f"{seq}/{stem}", "sequence": seq, "frame": stem,
                 "frame_index": i}
            if size is not None:
                d["height"], d["width"] = size
            if stem in masks:
                d["sem_seg_file_name"] = str(masks[stem])
            if stem in flows:
                d["flow_file_name"] = str(flows[stem])
            if i > 0:
                d["prev_file_name"] = str(frames[stems[i - 1]])
            if i + 1 < len(stems):
                d["next_file_name"] = str(frames[stems[i + 1]])
            dicts.append(d)
            kept += 1
        if require_masks and not kept:
            raise DatasetError(f"Dataset '{name}': no frame of {frames_dir} has a mask in {masks_dir}")
    return dicts


def _davis_loader(name, image_root, mask_root, root, split, prepare, flow_root=None):
    _require_dir(image_root, name, prepare)
    seqs = _davis_sequences(Path(root) / "DAVIS", split)
    return load_video_dataset(
        name, [(s, Path(image_root) / s, Path(mask_root) / s, Path(flow_root) / s if flow_root else None)
               for s in seqs], prepare=prepare)


def _video_folder_loader(name, root, frames="frames", masks="masks", flows="flow", require_masks=True,
                         prepare=_README):
    """Sequences ``<root>/<seq>/{<frames>,<masks>,<flows>}`` (masks and flows optional unless required)."""
    _require_dir(root, name, prepare)
    seqs = sorted(p.name for p in Path(root).iterdir() if (p / frames).is_dir()
                  and (not require_masks or (p / masks).is_dir()))
    if not seqs:
        raise DatasetError(f"Dataset '{name}': no <sequence>/{frames}" + (f" + <sequence>/{masks}" if require_masks else "")
                         + f" folders under {root}")
    return load_video_dataset(
        name, [(s, Path(root) / s / frames, Path(root) / s / masks, Path(root) / s / flows) for s in seqs],
        require_masks=require_masks, prepare=prepare)


def _register(name, loader, metadata, overwrite):
    if name in DatasetCatalog.list():
        if not overwrite:
            old = MetadataCatalog.get(name)
            if (getattr(old, "image_root", None), getattr(old, "mask_root", None), getattr(old, "subset", None)) == (
                metadata["image_root"], metadata["mask_root"], metadata.get("subset")
            ):
                return name
            raise DatasetError(f"Dataset '{name}' is already registered with other folders ({old.image_root})")
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)
    return name


def register_folder_dataset(name, image_root, mask_root, task, mask_suffix="", overwrite=False, subset=None):
    """Register an image folder + mask folder (paired by stem) as dataset `name` of `task`; no disk access.

    `subset`: a `slice` of the images in file-name order (None: all). Re-registering the same folders and subset
    under the same name is a no-op; anything else needs ``overwrite=True``.
    """
    image_root, mask_root = str(image_root), str(mask_root)
    loader = partial(load_folder_dataset, name, image_root, mask_root, mask_suffix, subset=subset)
    extra = {"subset": subset_tag(subset)} if subset is not None else {}
    return _register(name, loader, _metadata(task, image_root, mask_root, mask_suffix=mask_suffix, **extra), overwrite)


def register_video_dataset(name, root, frames="frames", masks="masks", flows="flow", require_masks=True,
                           overwrite=False):
    """Register ``<root>/<sequence>/{frames,masks,flow}`` (a frame folder per sequence; subfolder names
    configurable, flow optional) as a "vos" dataset; ``require_masks=False`` also lists unannotated frames."""
    root = str(root)
    loader = partial(_video_folder_loader, name, root, frames, masks, flows, require_masks)
    return _register(name, loader, _metadata("vos", root, root), overwrite)


def register_builtin_datasets(root=None, overwrite=True):
    """Register every row of `BUILTIN_DATASETS` under `root` (default `datasets_root()`), lazily."""
    root = Path(root if root is not None else datasets_root())
    for spec in BUILTIN_DATASETS.values():
        image_root, mask_root = root / spec.image_dir, root / spec.mask_dir
        if spec.layout == "davis":
            split = spec.name.rsplit("_", 1)[1]
            loader = partial(_davis_loader, spec.name, str(image_root), str(mask_root), str(root), split, spec.prepare,
                             str(root / spec.flow_dir) if spec.flow_dir else None)
        elif spec.layout == "video":
            frames, masks = spec.mask_dir.split("|")
            loader = partial(_video_folder_loader, spec.name, str(image_root), frames, masks, spec.flow_dir or "flow",
                             True, spec.prepare)
            mask_root = image_root
        else:
            loader = partial(load_folder_dataset, spec.name, str(image_root), str(mask_root), spec.mask_suffix,
                             spec.exclude, spec.prepare)
        meta = _metadata(spec.task, image_root, mask_root, mask_suffix=spec.mask_suffix, prepare=spec.prepare)
        _register(spec.name, loader, meta, overwrite)


def ensure_registered(name):
    """Return `name` after making sure it is registered.

    Accepts a registered name, or ``folder:<task>:<image_root>:<mask_root>`` (registered under that exact
    string on first use) with an optional slice suffix ``[start:stop]`` (images in file-name order, see
    `split_subset`), or ``folder:vos:<root>`` for ``<root>/<sequence>/{frames,masks}``.
    """
    if name in DatasetCatalog.list():
        return name
    if name.startswith("folder:"):
        parts = name.split(":", 3)
        if len(parts) == 3 and parts[1] == "vos":
            return register_video_dataset(name, parts[2])
        if len(parts) != 4:
            raise DatasetError(f"Dataset name {name!r}: expected 'folder:<task>:<image_root>:<mask_root>[<slice>]'")
        _, task, image_root, mask_root = parts
        mask_root, subset = split_subset(mask_root)
        return register_folder_dataset(name, image_root, mask_root, task, subset=subset)
    if name.startswith("weak:"):  # weak:<image_root>:<sparse_root>[:<pseudo_dir>] (focus.data.sparse)
        from .sparse import register_sparse_dataset

        parts = name.split(":")
        if len(parts) not in (3, 4):
            raise DatasetError(f"Dataset name {name!r}: expected 'weak:<image_root>:<sparse_root>[:<pseudo_dir>]'")
        return register_sparse_dataset(name, *parts[1:])
    raise UnknownNameError(
        f"Dataset '{name}' is not registered. Known: {', '.join(sorted(BUILTIN_DATASETS))}; or use "
        f"'folder:<task>:<image_root>:<mask_root>' or focus.data.register_folder_dataset()"
    )
