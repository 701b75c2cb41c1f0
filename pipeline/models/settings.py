"""Settings of each model (the ``models.<name>`` sections); the registry pairs each with its class."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from pipeline.core.settings import Strict
from pipeline.sampling.settings import FeatureConfig


class DecisionTreeConfig(Strict):
    max_depth: int | None = Field(default=None, ge=1)
    min_samples_leaf: int = Field(default=1, ge=1)
    # confidence = class frequency in the leaf, or in its deepest ancestor with at least this many
    # training samples (a fully grown tree's own leaves are pure: confidence 1 everywhere)
    confidence_min_samples: int = Field(default=20, ge=1)
    features: FeatureConfig = FeatureConfig()


class RandomForestConfig(Strict):
    n_estimators: int = Field(default=200, ge=1)
    max_depth: int | None = Field(default=None, ge=1)
    min_samples_leaf: int = Field(default=1, ge=1)
    n_jobs: int = Field(default=2, ge=1)
    features: FeatureConfig = FeatureConfig()


class GradientBoostingConfig(Strict):
    max_rounds: int = Field(default=1000, ge=1)  # boosting rounds at most; early stopping keeps the best
    early_stopping_rounds: int = Field(default=30, ge=1)  # stop after this many rounds without a better validation loss
    learning_rate: float = Field(default=0.1, gt=0, le=1)
    num_leaves: int = Field(default=31, ge=2)  # leaves per tree
    min_child_samples: int = Field(default=20, ge=1)  # training samples per leaf at least
    feature_fraction: float = Field(default=0.8, gt=0, le=1)  # share of the features each tree may split on
    l2_regularisation: float = Field(default=0.0, ge=0)
    # threads of the fit and of mapping. 1: LightGBM's OpenMP threads on a busy machine (other fits, the
    # mapping) slowed a 3,000-sample fit 30x (90 s against 2.7 s here), and the mapper runs windows in parallel
    n_jobs: int = Field(default=1, ge=1)
    features: FeatureConfig = FeatureConfig()


class SVMConfig(Strict):
    C: list[float] = [1.0, 10.0, 100.0]
    gamma: list[float | Literal["scale"]] = ["scale"]
    max_train_samples: int = Field(default=5000, ge=10)  # cap on SVC training set size
    features: FeatureConfig = FeatureConfig()


class MaxLikelihoodConfig(Strict):
    priors: Literal["equal", "proportional"] = "equal"
    # shrinkage of each class covariance towards a scaled identity: "auto" estimates it per class
    # (OAS; works with fewer training pixels than bands), a number in [0, 1] fixes it
    reg_param: Literal["auto"] | float = Field(default="auto")

    @field_validator("reg_param")
    @classmethod
    def _unit(cls, v: Any) -> Any:
        if v != "auto" and not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"must be 'auto' or a number from 0 to 1, got {v!r}")
        return v

    features: FeatureConfig = FeatureConfig()


class DeepConfig(Strict):
    epochs: int = Field(default=40, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    schedule: Literal["cosine", "onecycle", "none"] = "cosine"
    # Which epoch's weights the model keeps. "validation": the best validation macro-F1, stopping
    # after `patience` epochs without gain; "schedule": all `epochs` run and the last is kept (the
    # learning rate has decayed to ~0 by then); "auto": validation when it holds at least
    # `min_validation_groups` groups (polygons), else the schedule -- an epoch picked on a handful
    # of polygons is picked on noise (the demo's chosen CNN: validation OA 0.43, test OA 0.79).
    selection: Literal["auto", "validation", "schedule"] = "auto"
    min_validation_groups: int = Field(default=20, ge=1)
    patience: int = Field(default=8, ge=1)  # early stopping on validation macro-F1
    channels: int = Field(default=64, ge=4)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    class_balance: Literal["loss", "sampler", "none"] = "loss"
    # Augmentation of the training patches (never at inference). `augment: false` turns all of it off.
    augment: bool = True
    amplitude_scale: tuple[float, float] = (0.9, 1.1)
    shift: int = Field(default=1, ge=0)  # max centre shift (pixels) onto another pixel of the same polygon and class
    # Mirror / rotate patches by multiples of 90 degrees: land cover seen from above has no
    # orientation. Turn off for classes that do (e.g. slopes by aspect, shadow sides of buildings).
    flips: bool = True
    rotations: bool = True
    num_workers: int = Field(default=0, ge=0)

    @field_validator("amplitude_scale")
    @classmethod
    def _scale_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"need 0 < low <= high, got {list(v)}")
        return v


class CNNConfig(DeepConfig):
    pass


class ResNetConfig(DeepConfig):
    stochastic_depth: float = Field(default=0.1, ge=0, lt=1)  # drop prob of the deepest block
