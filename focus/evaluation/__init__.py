"""Evaluation: one `FocusEvaluator` for every task and member: ``standard``, ``focus``, ``dis``, ``vos`` protocols."""
from .evaluator import FocusEvaluator, build_evaluator  # noqa: F401
from .folder import format_table, score_folder, score_pair, score_video_folder  # noqa: F401
from .metrics import (  # noqa: F401
    DIS_METRICS,
    FOCUS_METRICS,
    STANDARD_METRICS,
    VOS_METRICS,
    aggregate,
    dis_image_metrics,
    focus_image_metrics,
    standard_image_metrics,
    standard_metric_names,
    vos_aggregate,
    vos_frame_metrics,
)
