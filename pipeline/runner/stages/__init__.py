"""The pipeline's stages, one module each, in the order they run:

1. :mod:`~pipeline.runner.stages.prepare`: ingest labels, tile patches, build the spatial split;
2. :mod:`~pipeline.runner.stages.fit`: each model's fits, one stage each: one per fold of the
   split (the out-of-fold predictions), the refit on all labelled data (the model that maps) and
   the random-split contrast; :mod:`~pipeline.runner.stages.train` pools them per model;
3. :mod:`~pipeline.runner.stages.map`: classify every scene with each saved model;
4. :mod:`~pipeline.runner.stages.assess`: every model's test predictions into metrics.json;
5. :mod:`~pipeline.runner.stages.report`: report.html and report.md of the run.

Each stage is a plain function of a :class:`~pipeline.runner.context.RunContext` (and, for
the per-model stages, a model name): it reads files of the run directory, writes its outputs
atomically and returns a small JSON-able record naming its ``outputs``. The runners
(:mod:`pipeline.runner.pipeline`, ``flows/pipeline.py``) call them through
:data:`pipeline.runner.pipeline.STAGES` and the stage store (:mod:`pipeline.runner.store`).
"""

from pipeline.core.lazy import lazy_exports

__all__ = ["stage_assess", "stage_fit", "stage_map", "stage_prepare", "stage_report", "stage_train"]
#: name -> module of this package that defines it (imported on first use)
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "stage_assess": "assess",
        "stage_fit": "fit",
        "stage_map": "map",
        "stage_prepare": "prepare",
        "stage_report": "report",
        "stage_train": "train",
    },
)
