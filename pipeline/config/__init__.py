"""The one configuration object of a run: the stages' own settings composed into :class:`RunConfig`,
read from YAML and validated once (:func:`load_config`)."""

from __future__ import annotations

from typing import Any

from pipeline.config import schema
from pipeline.config.loading import DuplicateKeyError, dump_config, load_config, parse_config
from pipeline.config.schema import MAX_NAME_LENGTH, MAX_SEED, ModelsBase, RunConfig, check_dir_name

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_SEED",
    "DuplicateKeyError",
    "ModelsBase",
    "RunConfig",
    "check_dir_name",
    "dump_config",
    "load_config",
    "parse_config",
]


def __getattr__(name: str) -> Any:
    # ModelsConfig, MODEL_NAMES, DEEP_MODELS: derived from the model registry when asked for.
    return schema.__getattr__(name)
