"""Assignment units of the spatial strategies (``blocks``, ``kfold``) and the buffer between them.

A :class:`~pipeline.split.types.Layout` puts every sample's group (polygon, polygon x block, or
scene) into one unit at one block size; :func:`plan_units` chooses it for ``split.group_by``
(cutting the polygons of classes found in too few units). :func:`buffered_labels` turns the
units' split into the samples' split: the buffer, then the audit, which must find no leak. The
rules (block grid, default block size, group integrity, buffer, sub-blocks, scenes) are in the
docstring of :mod:`pipeline.split.make`.
"""

from __future__ import annotations

import logging
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.split.assign import (
    EXCLUDED,
    buffer_mask,
    default_buffer,
    default_size,
    extent,
    grid,
    group_blocks,
    pixel_size,
)
from pipeline.split.audit import check_no_leak
from pipeline.split.outputs import block_frame
from pipeline.split.summary import audit_labels
from pipeline.split.types import Layout, SplitInput

__all__ = [
    "ClassWithoutTraining",
    "buffer_of",
    "buffered_labels",
    "cuttable",
    "default_block_size",
    "layout_frame",
    "plan_units",
    "sub_block_report",
    "warn_sub_blocks",
]

log = logging.getLogger(__name__)


class ClassWithoutTraining(InputError):
    """A split left a class without training samples (its units all fell in test, or the buffer
    cleared the rest); ``cls`` is the class's index into ``SplitInput.names`` (None when re-raised
    with a longer message)."""

    def __init__(self, message: str, cls: int | None = None) -> None:
        super().__init__(message)
        self.cls = cls


def default_block_size(
    samples: pd.DataFrame, patch_size: int, res: tuple[float, float], buffer: float, k: int = 5
) -> float:
    """Default block size in map units for polygons kept whole (see :mod:`pipeline.split.make`).

    Parameters
    ----------
    samples : DataFrame, n rows
        Needs ``x``, ``y`` and ``group``.
    patch_size : int
        Patch width k in pixels.
    res : (float, float)
        Pixel size.
    buffer : float
        Buffer in map units.
    k : int
        Folds (only raises the wanted number of blocks to ``5 * k``).
    """
    xy = samples[["x", "y"]].to_numpy(dtype=np.float64)
    groups = samples["group"].to_numpy()
    rx, ry = pixel_size(res)
    pix = max(rx, ry)
    return default_size(
        lambda s: len(np.unique(group_blocks(groups, grid(xy, s)[0]))),
        patch_size * pix + buffer,
        pix,
        max(extent(xy, rx, ry)),
        k,
    )


def buffer_of(inp: SplitInput) -> float:
    """The buffer in map units: ``split.buffer``, or by default the test patch's footprint."""
    return float(inp.cfg.buffer) if inp.cfg.buffer is not None else default_buffer(inp.patch_size, (inp.rx, inp.ry))


def _grid_cells(inp: SplitInput, size: float) -> tuple[np.ndarray, np.ndarray, tuple[float, float, int]]:
    """Per sample the block id keyed by scene (n,), the plain grid cell (n,) and the grid (x0, y0, nx)."""
    cell, x0, y0, nx = grid(inp.xy, size)
    return inp.scene * (int(cell.max()) + 1) + cell, cell, (x0, y0, nx)


def _unit_blocks(inp: SplitInput, sblock: np.ndarray, sub: tuple[int, ...]) -> np.ndarray:
    """Block of each sample's group, where the polygons of classes ``sub`` are cut at block edges."""
    keys = inp.groups
    cut = np.isin(inp.cls, sub) if inp.cfg.group_by != "block" else np.ones(inp.n, dtype=bool)
    if cut.any():  # group = polygon x block for the cut samples
        keys = pd.MultiIndex.from_arrays([cut, inp.groups, np.where(cut, sblock, -1)]).factorize()[0]
    return group_blocks(keys, sblock)


def _layout(inp: SplitInput, size: float, sub: tuple[int, ...] = ()) -> Layout:
    """Units at block size ``size``: each group (polygon, or polygon x block) goes to the block
    holding most of its samples."""
    sblock, cell, gridspec = _grid_cells(inp, size)
    block = _unit_blocks(inp, sblock, sub)
    return _units(inp, block, size, cell, gridspec, sub)


def _units(
    inp: SplitInput,
    block: np.ndarray,
    size: float | None,
    cell: np.ndarray | None,
    gridspec: tuple[float, float, int] | None,
    sub: tuple[int, ...],
) -> Layout:
    unit_ids, unit_of = np.unique(block, return_inverse=True)
    C = np.zeros((unit_ids.size, len(inp.names)), dtype=np.int64)
    np.add.at(C, (unit_of, inp.cls), 1)
    return Layout(size, block, cell, gridspec, unit_ids, unit_of, C, int(np.unique(inp.groups).size), sub)


def _scene_layout(inp: SplitInput) -> Layout:
    """``group_by: scene``: every scene is one unit."""
    return _units(inp, inp.scene.copy(), None, None, None, ())


def _block_size(inp: SplitInput, buffer: float, k: int, sub: tuple[int, ...]) -> float:
    """The configured block size (checked against the labelled extent) or the default."""
    ext_x, ext_y = extent(inp.xy, inp.rx, inp.ry)
    if inp.cfg.block_size is None:
        pix = max(inp.rx, inp.ry)
        return default_size(
            lambda s: int(np.unique(_unit_blocks(inp, _grid_cells(inp, s)[0], sub)).size),
            inp.patch_size * pix + buffer,
            pix,
            max(ext_x, ext_y),
            k,
        )
    size = float(inp.cfg.block_size)
    if size >= max(ext_x, ext_y):
        raise InputError(
            f"split.block_size={size:g} is not smaller than the labelled extent "
            f"({ext_x:g} x {ext_y:g} map units): every label would fall in one or very few blocks"
        )
    return size


def cuttable(inp: SplitInput, lay: Layout, classes: Any) -> tuple[int, ...]:
    """Of ``classes``, those not cut yet whose samples span two blocks of ``lay`` (cutting helps)."""
    if lay.size is None:
        raise ValueError("cuttable: a layout by scene has no blocks to cut polygons at")
    sblock = _grid_cells(inp, float(lay.size))[0]
    return tuple(int(c) for c in classes if c not in lay.sub_classes and np.unique(sblock[inp.cls == c]).size >= 2)


def plan_units(
    inp: SplitInput, buffer: float, k: int, force: tuple[int, ...] = (), keep_whole: tuple[int, ...] = ()
) -> Layout:
    """The assignment units for ``split.group_by`` (``auto``: cut the polygons of classes found in
    fewer than two units, and of ``force``, but never those of ``keep_whole``; the block size is
    chosen again after a cut)."""
    gb = inp.cfg.group_by
    if gb == "scene":
        return _scene_layout(inp)
    sub: tuple[int, ...] = (
        tuple(range(len(inp.names))) if gb == "block" else tuple(c for c in force if c not in keep_whole)
    )
    lay = _layout(inp, _block_size(inp, buffer, k, sub), sub)
    for _ in range(3):
        few = (
            tuple(c for c in cuttable(inp, lay, np.flatnonzero((lay.C > 0).sum(0) < 2)) if c not in keep_whole)
            if gb == "auto"
            else ()
        )
        if not few:
            break
        sub = tuple(sorted(set(sub) | set(few)))
        lay = _layout(inp, _block_size(inp, buffer, k, sub), sub)
    return lay


def warn_sub_blocks(inp: SplitInput, lay: Layout) -> None:
    """Say which classes ``auto`` cut into sub-blocks, and what their test is then worth."""
    if inp.cfg.group_by != "auto" or not lay.sub_classes or inp.quiet:
        return
    log.warning(
        "split: class(es) %s have too few polygons (or blocks) to reach both train and test, so their polygons "
        "are cut into sub-blocks of %g map units (group = polygon x block): their test measures "
        "generalisation to unseen parts of the same polygons, separated by the buffer, which is weaker "
        "evidence than unseen polygons. Set split.group_by: polygon | block | scene to choose otherwise",
        ", ".join(repr(inp.names[c]) for c in lay.sub_classes),
        lay.size,
    )


def layout_frame(inp: SplitInput, lay: Layout, unit_split: list[str], unit_fold: np.ndarray) -> gpd.GeoDataFrame:
    """:attr:`SplitResult.blocks <pipeline.split.types.SplitResult.blocks>` of ``lay``'s units, given
    each unit's split and fold."""
    first = np.unique(lay.unit_of, return_index=True)[1]  # units never span two scenes
    scene = [inp.scene_names[int(c)] for c in inp.scene[first]]
    return block_frame(
        inp.xy,
        lay.unit_of,
        lay.unit_ids,
        unit_split,
        unit_fold,
        scene,
        lay.cell,
        lay.grid,
        lay.size,
        (inp.rx, inp.ry),
        inp.crs,
    )


def sub_block_report(inp: SplitInput, lay: Layout) -> dict:
    """The ``group_by`` and ``sub_blocked_classes`` entries of the split report."""
    return {"group_by": inp.cfg.group_by, "sub_blocked_classes": [inp.names[c] for c in lay.sub_classes]}


def _apply_buffer(inp: SplitInput, labels: np.ndarray, buffer: float, where: str) -> tuple[np.ndarray, int]:
    """Exclude train/validation samples near test samples of the same scene; raise if a class
    loses all training data."""
    before = labels
    near = buffer_mask(inp.xy, labels == "test", np.isin(labels, ["train", "validation"]), buffer, inp.scene)
    labels = labels.copy()
    labels[near] = EXCLUDED
    if not np.any(labels == "train"):
        raise InputError(
            f"{where}: split.buffer={buffer:g} removes all {int(np.sum(before == 'train'))} training samples"
        )
    for c, name in enumerate(inp.names):
        had = int(np.sum((before == "train") & (inp.cls == c)))
        has = int(np.sum((labels == "train") & (inp.cls == c)))
        if has == 0 and had > 0:
            raise ClassWithoutTraining(
                f"{where}: split.buffer={buffer:g} removes all {had} training samples of class {name!r}", c
            )
        if has == 0 and np.any(inp.cls == c):
            raise ClassWithoutTraining(
                f"{where}: class {name!r} has no training samples (all its labels fell in test blocks)", c
            )
    return labels, int(np.sum(near))


def buffered_labels(
    inp: SplitInput, unit_labels: np.ndarray, lay: Layout, buffer: float, where: str
) -> tuple[np.ndarray, int, dict]:
    """Per-sample labels from per-unit labels, then the buffer, then the audit (which must be 0)."""
    labels0 = unit_labels.astype(str)[lay.unit_of]
    labels, dropped = _apply_buffer(inp, labels0, buffer, where)
    audit = audit_labels(inp, labels)
    size = "whole scenes" if lay.size is None else f"blocks of {lay.size:g}"
    check_no_leak(audit, f"{where} ({size}, buffer {buffer:g})")
    return labels, dropped, audit
