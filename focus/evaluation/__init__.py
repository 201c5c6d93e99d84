"""Evaluation: one `FocusEvaluator` for every task, ``standard`` and official ``focus`` protocols."""
from .evaluator import FocusEvaluator, build_evaluator  # noqa: F401
from .folder import format_table, score_folder, score_pair  # noqa: F401
from .metrics import (  # noqa: F401
    FOCUS_METRICS,
    STANDARD_METRICS,
    aggregate,
    focus_image_metrics,
    standard_image_metrics,
    standard_metric_names,
)
