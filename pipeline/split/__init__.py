"""The spatial split: samples into train, validation and test (or k folds) so that no training
patch sees a test pixel. :func:`make_splits` applies a strategy of the table
:data:`STRATEGIES` (``auto``, ``blocks``, ``kfold``, ``random``, ``predefined``); :func:`audit_split`
checks any split independently; :func:`write_splits_gpkg` and :func:`plot_split_map` write it;
:class:`SpatialBlockSplit` is the ``kfold`` strategy as a scikit-learn splitter; :func:`refit_fold`
draws the validation units of the model refitted on all labelled data."""

from pipeline.core.lazy import lazy_exports

__all__ = [
    "STRATEGIES",
    "Fold",
    "SpatialBlockSplit",
    "SplitConfig",
    "SplitInput",
    "SplitResult",
    "Strategy",
    "audit_split",
    "check_no_leak",
    "make_splits",
    "plot_split_map",
    "random_split",
    "refit_fold",
    "write_splits_gpkg",
]
#: name -> module of this package that defines it (imported on first use)
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "STRATEGIES": "make",
        "Fold": "types",
        "SpatialBlockSplit": "splitter",
        "SplitConfig": "settings",
        "SplitInput": "types",
        "SplitResult": "types",
        "Strategy": "make",
        "audit_split": "audit",
        "check_no_leak": "audit",
        "make_splits": "make",
        "plot_split_map": "outputs",
        "random_split": "random",
        "refit_fold": "refit",
        "write_splits_gpkg": "outputs",
    },
)
