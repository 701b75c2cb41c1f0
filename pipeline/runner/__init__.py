"""The runner: a run directory, the stages that fill it, and the store that lets runs share work.

:func:`init_run_dir` creates (or reopens) a run directory and gives its :class:`RunContext`;
:func:`run_pipeline` runs the stages in order in this process (``prepare``, then per model its
fits (``fold-<i>``, ``refit``, ``random``: :func:`fit_parts`), ``train`` (pooling them) and ``map``,
then ``assess``, ``report``: :mod:`pipeline.runner.stages`), each through
:func:`run_one`, which reuses a stage's outputs from the run directory or the cross-run stage
store (:mod:`pipeline.runner.store`) when its inputs are unchanged. A model whose stage raises is
recorded (:func:`record_failure`) and the run goes on. The Prefect flows (``flows/``) call the
same functions. :mod:`pipeline.runner.batch` is the library side of ``landcover serve``.
"""

from pipeline.core.lazy import lazy_exports

__all__ = [
    "STAGES",
    "RunContext",
    "clear_failure",
    "execute_stage",
    "failed_models",
    "finish_cycle",
    "fit_parts",
    "init_run_dir",
    "map_one_scene",
    "new_run_id",
    "plan_cycle",
    "record_failure",
    "run_one",
    "run_pipeline",
    "stage_assess",
    "stage_fit",
    "stage_key",
    "stage_map",
    "stage_prepare",
    "stage_report",
    "stage_train",
    "train_model",
    "write_manifest",
]
#: name -> module of this package that defines it (imported on first use)
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "STAGES": "pipeline",
        "RunContext": "context",
        "clear_failure": "failures",
        "execute_stage": "store",
        "failed_models": "failures",
        "finish_cycle": "batch",
        "fit_parts": "stages.fit",
        "init_run_dir": "context",
        "map_one_scene": "batch",
        "new_run_id": "context",
        "plan_cycle": "batch",
        "record_failure": "failures",
        "run_one": "pipeline",
        "run_pipeline": "pipeline",
        "stage_assess": "stages.assess",
        "stage_fit": "stages.fit",
        "stage_key": "store",
        "stage_map": "stages.map",
        "stage_prepare": "stages.prepare",
        "stage_report": "stages.report",
        "stage_train": "stages.train",
        "train_model": "pipeline",
        "write_manifest": "manifest",
    },
)
