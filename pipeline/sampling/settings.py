"""Settings of patches, dense-label sampling and the per-pixel features (``patch:``, ``sampling:``,
``models.<m>.features``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from pipeline.core.settings import Strict


class PatchConfig(Strict):
    size: int = Field(default=9, ge=1, le=65)

    @field_validator("size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"patch size must be odd so that a patch has a centre pixel, got {v}")
        return v


class SamplingConfig(Strict):
    """Sampling of dense labels (a reference map, a dense annotation): a cap per class, drawn after
    the split, spatially balanced across blocks (see :mod:`pipeline.sampling.dense`)."""

    # auto: on when the labels exceed auto_above_pixels or the full patch store would exceed
    # auto_above_store_mb; on: always cap; off: every labelled pixel becomes a sample.
    mode: Literal["auto", "on", "off"] = "auto"
    max_per_class: int = Field(default=20000, ge=10)  # training samples per class; validation/test in proportion
    auto_above_pixels: int = Field(default=1_000_000, ge=1)
    auto_above_store_mb: float = Field(default=2048.0, gt=0)


class FeatureConfig(Strict):
    """Per-pixel features of the classical models (``models.<m>.features``).

    By default a classical model sees what a practitioner would give it: the pixel's bands, the
    spectral indices its band names allow, and each band's mean and standard deviation over the
    k x k window the patch models see (k = ``patch.size``). ``patch_stats: false`` and
    ``indices: []`` give the centre pixel's bands alone (the models of version 0.1).
    """

    # "auto": every index whose bands the band names identify (pipeline.sampling.features.auto_indices);
    # a list: exactly those (a missing band is an error); []: none
    indices: list[Literal["ndvi", "ndwi", "ndbi", "nbr"]] | Literal["auto"] = "auto"
    patch_stats: bool = True  # mean and std of each band over the k x k window
