"""What every classifier in the pipeline looks like.

A classifier learns from a :class:`TrainingData` (patches centred on labelled
pixels) and classifies rasters block by block through :meth:`predict_block`.
The mapper (:mod:`pipeline.mapping.classify`) owns windows, halos, nodata and writing;
a classifier only turns a float32 block into class ids and confidences.

Conventions shared by all models
--------------------------------
* Patches and blocks are float32 in the raster's own units, with ``NaN``
  wherever the pixel is nodata or outside the raster (padding). Each model
  decides how to fill NaN (the deep models standardise then put 0, i.e. the
  training mean). Filling the same way in training and mapping is what keeps
  per-patch and block predictions identical.
* ``halo`` is how many pixels of context a model needs on each side of an
  output pixel: 0 for per-pixel features, ``patch_size // 2`` for patch models.
* Class ids are the ids of the run's class table (``ClassSpec.id``), never
  0..n-1 indices, so saved models are self-describing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to apply a saved model to a new raster."""

    model: str  # a name of pipeline.models.registry
    band_names: list[str]
    class_ids: list[int]
    class_names: list[str]
    class_colors: list[str]
    patch_size: int
    extra: dict[str, Any] = field(default_factory=dict)
    # nodata value of each band as the model was trained (config override or the files' own);
    # None for a band without one. Mapping uses it, so a map of the training scene equals the run's.
    nodata: list[float | None] | None = None
    # Per-band p1/p50/p99 of the training pixels and the bands' raster data types
    # (pipeline.inputs.value_range.training_value_range); mapping warns when an input is clearly off.
    # None in models saved before it: no check.
    value_range: dict[str, Any] | None = None
    # The training image's grid and how its files were put on it (pipeline.inputs.raster:
    # RasterStack.alignment): rule ("first", "finest", "align_to"), reference file, CRS, pixel
    # size, resampling. `landcover map` and `serve` align new files the same way and say when an
    # input's pixel size differs. None in models saved before it: no pixel-size check, and files
    # on several grids are aligned by the default rule.
    alignment: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        return cls(**d)


class PatchRows(Protocol):
    """Patches as the models read them: a float32 array ``(n, bands, k, k)`` (NaN = no value), or
    a :class:`~pipeline.sampling.patches.PatchStore`, which decodes to that the rows it is asked for."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def ndim(self) -> int: ...

    def __len__(self) -> int: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


@dataclass
class TrainingData:
    """Samples for fitting: patches centred on labelled pixels.

    Attributes
    ----------
    patches : float32 array (n, bands, k, k); NaN marks nodata or padding. May be a memmap or a
        :class:`~pipeline.sampling.patches.PatchStore` (rows decoded to float32 on access); consumers
        read it in row chunks (``patches[a:b]``) rather than as a whole.
    y : int64 array (n,) of class ids (``ClassSpec.id``).
    groups : int64 array (n,) id of the source polygon / point (for grouped CV).
    xy : float64 array (n, 2) map coordinates of the pixel centres.
    band_names : names of the bands, in order.
    """

    patches: PatchRows
    y: np.ndarray
    groups: np.ndarray
    xy: np.ndarray
    band_names: list[str]

    def __post_init__(self) -> None:
        n = len(self.y)
        if self.patches.ndim != 4 or self.patches.shape[0] != n:
            raise ValueError(f"patches must be (n, bands, k, k) with n={n}, got {self.patches.shape}")
        if self.patches.shape[1] != len(self.band_names):
            raise ValueError("patches band axis does not match band_names")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def patch_size(self) -> int:
        return int(self.patches.shape[-1])

    def centre(self) -> np.ndarray:
        """(n, bands) values of the centre pixel of each patch."""
        c = self.patch_size // 2
        return np.asarray(self.patches[:, :, c, c])

    def subset(self, idx: np.ndarray) -> TrainingData:
        """The samples ``idx``. Over a :class:`~pipeline.sampling.patches.PatchStore` the patches stay an
        index list over the memory-mapped store (nothing is read); a plain array is copied."""
        idx = np.asarray(idx)
        patches = (
            self.patches.take(idx)
            if hasattr(self.patches, "take") and not isinstance(self.patches, np.ndarray)
            else np.asarray(self.patches[idx])
        )
        return TrainingData(patches, self.y[idx], self.groups[idx], self.xy[idx], self.band_names)


@runtime_checkable
class Classifier(Protocol):
    """The interface every model implements (see module docstring)."""

    name: ClassVar[str]
    meta: ModelMeta

    @property
    def halo(self) -> int: ...

    def fit(self, train: TrainingData, validation: TrainingData | None = None) -> Classifier:
        """Fit on ``train``; ``validation`` (may be None or empty) is for tuning / early stopping."""

    def predict_patches(self, patches: PatchRows) -> tuple[np.ndarray, np.ndarray]:
        """Classify the centre pixel of each patch.

        patches: float32 (n, bands, k, k), an array or a PatchStore -> (class ids int64 (n,),
        confidence float32 (n,)).
        """

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Classify every pixel of a block.

        block: float32 (bands, H + 2*halo, W + 2*halo) -> (class ids int64 (H, W), confidence float32 (H, W)).
        Output at [i, j] must equal ``predict_patches`` on the patch centred at block pixel
        [i + halo, j + halo]. Values at pixels whose own bands are NaN are ignored by the mapper.
        """

    def save(self, path: Path) -> Path:
        """Write the model (with its ``meta``) to ``path`` atomically; returns the path written."""


@runtime_checkable
class ShowsProgress(Protocol):
    """A model that draws a progress bar while it fits (the deep models: one per epoch)."""

    progress: bool  # draw it at all (``--no-progress`` turns it off)
    progress_desc: str | None  # its label; None: the model's default


def proba_to_labels(proba: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, c) probabilities -> (class ids, max probability). Ties go to the lowest index, as argmax."""
    idx = np.argmax(proba, axis=1)
    return np.asarray(class_ids)[idx].astype(np.int64), proba[np.arange(len(idx)), idx].astype(np.float32)
