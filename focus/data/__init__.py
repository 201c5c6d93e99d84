"""Datasets (lazy folder-based catalog), file reading, mappers and synthetic data.

Importing this package registers every builtin dataset name (no disk access).
"""
from . import io  # noqa: F401
from .catalog import (  # noqa: F401
    BUILTIN_DATASETS,
    TASKS,
    datasets_root,
    ensure_registered,
    register_builtin_datasets,
    register_folder_dataset,
    register_video_dataset,
)
from .io import binarize_mask, read_image, read_mask  # noqa: F401
from .mappers import (  # noqa: F401
    MAPPER_REGISTRY,
    FocusDatasetMapper,
    FocusTestMapper,
    build_mapper,
    build_test_loader,
    build_train_loader,
    labels_to_instances,
    mask_to_labels,
    register_mapper,
)
from . import synthetic  # noqa: F401

register_builtin_datasets()
