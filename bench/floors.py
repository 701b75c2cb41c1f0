"""The I/O floors of the mapping benchmarks: mappings with no model to speak of.

``io_floor`` maps with :class:`ZeroModel` (class 0 everywhere: read + write only);
``io_floor_map`` with :class:`BandThresholdModel` (one band cut at fixed values: read + write of
a map with the scene's own structure, whose compression costs far more than that of zeros).
A model's mapping time over a floor's is what the model itself adds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.synthetic import BANDS, CLASS_IDS, SPECTRA, spectra

#: Names of the floors, as benchmarks list them beside the models.
FLOORS = ("io_floor", "io_floor_map")


class ZeroModel:
    """Returns class 0 everywhere: mapping with it measures read + write only (the I/O floor)."""

    name = "io_floor"
    halo = 0

    def __init__(self, meta: Any):
        self.meta = meta

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(block.shape[1:], np.int64), np.ones(block.shape[1:], np.float32)


class BandThresholdModel(ZeroModel):
    """Labels from one band cut at fixed values (``np.digitize`` of the NIR band): next to no
    computation, but a map with the scene's own structure, so that mapping with it measures
    read + write of a *real* class map (``io_floor_map``). Writing and compressing a map of
    zeros (the I/O floor) costs far less than writing one of real labels."""

    name = "io_floor_map"

    def __init__(self, meta: Any, band: int = BANDS.index("nir"), means: np.ndarray | None = None):
        """``means``: each class's mean value of band ``band`` (default: the scene's NIR)."""
        super().__init__(meta)
        means = SPECTRA[:, band] if means is None else np.asarray(means, dtype=np.float64)
        order = np.argsort(means)
        self.band = band
        self.cuts = (means[order][1:] + means[order][:-1]) / 2
        self.ids = np.asarray(CLASS_IDS)[order]

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.ids[np.digitize(block[self.band], self.cuts)], np.ones(block.shape[1:], np.float32)


def floor_model(name: str, meta: Any) -> ZeroModel:
    """The floor ``name`` (one of :data:`FLOORS`) for rasters with the bands of ``meta``: the
    threshold cuts the band where the synthetic scenes' NIR lies, at its class means."""
    if name == "io_floor":
        return ZeroModel(meta)
    n = len(meta.band_names)
    band = round(3 * (n - 1) / 5)  # the baselines' NIR, where the spectra are interpolated
    return BandThresholdModel(meta, band=band, means=spectra(n)[:, band])
