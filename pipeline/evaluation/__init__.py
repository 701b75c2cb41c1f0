"""Evaluation: how accurate a model is, and how far to trust that number.

Per-pixel metrics, block-bootstrap intervals and McNemar tests live in
:mod:`pipeline.evaluation.metrics` (a new metric is added there, in
:func:`classification_metrics`); Olofsson et al.'s area-adjusted estimates and class area tables
in :mod:`pipeline.evaluation.area_estimates`, true pixel areas in any CRS in
:mod:`pipeline.evaluation.areas`; :func:`assess_model` (:mod:`pipeline.evaluation.accuracy`)
gathers what ``metrics.json`` holds for one model. :func:`assess_evidence` says whether the test
set can support a conclusion, :func:`reference_check` compares models on reference polygons, and
:mod:`pipeline.evaluation.reference_sample` designs and assesses an independent reference sample.
"""

from pipeline.core.lazy import lazy_exports

__all__ = [
    "area_adjusted",
    "area_adjusted_from_labels",
    "assess_error_matrix",
    "assess_evidence",
    "assess_model",
    "assess_sample",
    "bootstrap_ci",
    "class_area_table",
    "class_pixels_and_areas",
    "classification_metrics",
    "confidence_summary",
    "design_sample",
    "mcnemar",
    "pairwise_mcnemar",
    "reference_check",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "area_adjusted": "area_estimates",
        "area_adjusted_from_labels": "area_estimates",
        "assess_error_matrix": "reference_sample",
        "assess_evidence": "evidence",
        "assess_model": "accuracy",
        "assess_sample": "reference_sample",
        "bootstrap_ci": "metrics",
        "class_area_table": "area_estimates",
        "class_pixels_and_areas": "areas",
        "classification_metrics": "metrics",
        "confidence_summary": "metrics",
        "design_sample": "reference_sample",
        "mcnemar": "metrics",
        "pairwise_mcnemar": "metrics",
        "reference_check": "reference_polygons",
    },
)
