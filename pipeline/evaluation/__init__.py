"""Evaluation: how accurate a model is, and how far to trust that number.

Metrics and their block-bootstrap intervals live in :mod:`pipeline.evaluation.metrics` (a new
metric is added there, in :func:`classification_metrics`); the resampling of spatial blocks
behind every interval and test in :mod:`pipeline.evaluation.resampling`; the paired tests
between models with Holm's correction and the scores on the assessable classes in
:func:`compare_classifiers`; the no-skill baselines in :func:`no_skill_predictions`. Olofsson et
al.'s area-adjusted estimates (with block intervals, :func:`unit_intervals`) and class area
tables in :mod:`pipeline.evaluation.area_estimates`, true pixel areas in any CRS in
:mod:`pipeline.evaluation.areas` (pixel areas: :mod:`pipeline.inputs.pixel_area`); :func:`assess_model` (:mod:`pipeline.evaluation.accuracy`)
gathers what ``metrics.json`` holds for one model. :func:`assess_evidence` says which classes can
be assessed and whether the test set can support a conclusion, :func:`min_train_test_distance`
measures the nearest training-test pair in metres and pixels, :func:`reference_check` compares
models on reference polygons, and :mod:`pipeline.evaluation.reference_sample` designs and
assesses an independent reference sample.
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
    "compare_classifiers",
    "confidence_summary",
    "design_sample",
    "holm",
    "min_train_test_distance",
    "no_skill_predictions",
    "reference_check",
    "unit_intervals",
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
        "compare_classifiers": "comparison",
        "confidence_summary": "metrics",
        "design_sample": "reference_sample",
        "holm": "resampling",
        "min_train_test_distance": "distance",
        "no_skill_predictions": "baselines",
        "reference_check": "reference_polygons",
        "unit_intervals": "area_estimates",
    },
)
