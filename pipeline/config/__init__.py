"""The one configuration object of a run: the stages' own settings composed into :class:`RunConfig`,
read from YAML and validated once (:func:`load_config`)."""

from pipeline.core.lazy import lazy_exports

# ModelsConfig, MODEL_NAMES, DEEP_MODELS are derived from the model registry on every access
# (pipeline.config.schema's module __getattr__): a model registered later is listed too.
__all__ = [
    "DEEP_MODELS",
    "MAX_NAME_LENGTH",
    "MAX_SEED",
    "MODEL_NAMES",
    "DuplicateKeyError",
    "ModelsBase",
    "ModelsConfig",
    "RunConfig",
    "check_dir_name",
    "dump_config",
    "load_config",
    "parse_config",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DEEP_MODELS": "schema",
        "MAX_NAME_LENGTH": "schema",
        "MAX_SEED": "schema",
        "MODEL_NAMES": "schema",
        "DuplicateKeyError": "loading",
        "ModelsBase": "schema",
        "ModelsConfig": "schema",
        "RunConfig": "schema",
        "check_dir_name": "schema",
        "dump_config": "loading",
        "load_config": "loading",
        "parse_config": "loading",
    },
)
