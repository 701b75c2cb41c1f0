"""Settings of the spatial split (the ``split:`` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.core.settings import Strict

#: What stays whole on one side of a split (``split.group_by``; see :class:`SplitConfig`).
GroupBy = Literal["auto", "polygon", "block", "scene"]


class SplitFractions(Strict):
    train: float = Field(default=0.70, gt=0, lt=1)
    validation: float = Field(default=0.15, ge=0, lt=1)
    test: float = Field(default=0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum(self) -> SplitFractions:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"fractions must add up to 1, they add up to {total:g}")
        return self


class SplitFiles(Strict):
    """A split the user brings for multi-scene runs: scenes (names or image paths), or CSV files
    listing image paths one per line, per split."""

    train: list[str] = Field(min_length=1)
    validation: list[str] = []
    test: list[str] = Field(min_length=1)


class SplitConfig(Strict):
    # auto: spatial k-fold, or one blocks split for large dense-label data that it tests well
    strategy: Literal["auto", "blocks", "kfold", "random", "predefined"] = "auto"
    block_size: float | None = Field(default=None, gt=0)  # map units; default derived from data
    buffer: float | None = Field(default=None, ge=0)  # map units; default (k//2 + 1/2) pixels: the test patch footprint
    fractions: SplitFractions = SplitFractions()
    k: int = Field(default=5, ge=2, le=20)  # folds for strategies kfold and auto
    random_contrast: bool = True  # also fit on a random pixel split and report the gap
    # What stays whole on one side of the split: "auto" = polygons, except that the polygons of a
    # class with too few of them are cut into sub-blocks (polygon x block); "polygon" never cuts;
    # "block" cuts every polygon at block edges; "scene" keeps whole scenes apart.
    group_by: GroupBy = "auto"
    column: str = Field(default="split", min_length=1)  # predefined: train/validation/test column of the labels
    files: SplitFiles | None = None  # predefined: scenes (or CSV lists of images) per split

    @model_validator(mode="after")
    def _files_need_predefined(self) -> SplitConfig:
        if self.files is not None and self.strategy != "predefined":
            raise ValueError("files is a user-supplied split: set split.strategy: predefined to use it")
        return self
