"""A split the user brings (``split.strategy: predefined``).

Two sources, honoured as given:

* a column of the label file (``split.column``, default ``split``) holding
  ``train``, ``validation`` or ``test`` per polygon or point; every pixel of a
  feature takes its feature's value;
* ``split.files``: per split, the scenes of a multi-scene run (by name, or by an
  image path whose file name or stem is the scene name), or CSV files listing
  such image paths one per line.

No buffer is applied and nothing is moved: the leakage audit reports what the
split is worth (see :mod:`pipeline.split.make`). :func:`split_predefined` is the strategy.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.inputs.settings import LabelConfig
from pipeline.split.settings import SplitConfig, SplitFiles
from pipeline.split.summary import as_given
from pipeline.split.types import SplitInput, SplitResult

__all__ = [
    "SPLIT_ALIASES",
    "attach_label_column",
    "check_split_files",
    "expand_split_files",
    "predefined_labels",
    "split_predefined",
]

log = logging.getLogger(__name__)

#: accepted spellings of each split (compared after strip + lower case)
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
    "testing": "test",
}


def attach_label_column(samples: pd.DataFrame, label_path: Path, labels: LabelConfig, column: str) -> pd.DataFrame:
    """Copy ``column`` of the vector label file onto its pixels (``group`` is the feature's row number).

    Returns ``samples`` with the column added; raises :class:`InputError` naming the file when
    the labels are a raster or the file has no such field.
    """
    import pyogrio

    if labels.is_raster:
        raise InputError(
            f"split.column: {label_path} is a label raster, which has no {column!r} field; "
            f"use vector labels with a {column!r} field, or split.files, or another split.strategy"
        )
    kw = {"layer": labels.layer} if labels.layer else {}
    if labels.is_table:  # a CSV or Parquet table of points: one row per feature, as in ingestion
        from pipeline.inputs.point_labels import read_table

        table = read_table(label_path)
        fields = [str(c) for c in table.columns]
    else:
        fields = list(pyogrio.read_info(label_path, **kw)["fields"])
    if column not in fields:
        raise InputError(
            f"split.column: {label_path} has no field {column!r} (fields: {', '.join(fields)}); "
            f"add a train/validation/test field or set split.column"
        )
    if not labels.is_table:
        table = pyogrio.read_dataframe(label_path, columns=[column], read_geometry=False, **kw)
    values = table[column].to_numpy(dtype=object)
    return samples.assign(**{column: values[samples["group"].to_numpy(dtype=np.int64)]})


def _normalise(values: pd.Series, where: str) -> np.ndarray:
    """train/validation/test per sample from user spellings; one error listing the bad values."""
    txt = values.astype("string").str.strip().str.lower()
    out = txt.map(SPLIT_ALIASES)
    bad = out.isna()
    if bad.any():
        ex = ", ".join(repr(v) for v in pd.unique(values[bad].astype(str))[:5])
        raise InputError(
            f"{where}: {int(bad.sum())} labelled pixels have a split value that is not train, "
            f"validation or test (e.g. {ex}); fix those features or drop them from the label file"
        )
    return out.to_numpy(dtype=str)


def _entries(items: list[str], base_dir: Path) -> list[str]:
    """Scene names or image paths; a ``.csv`` entry is replaced by the paths it lists."""
    out: list[str] = []
    for item in items:
        p = Path(item) if Path(item).is_absolute() else base_dir / item
        if item.lower().endswith(".csv"):
            if not p.exists():
                raise InputError(f"split.files: {p}: file not found")
            lines = [ln.strip().split(",")[0] for ln in p.read_text().splitlines()]
            out += [ln for ln in lines if ln and not ln.startswith("#")]
        else:
            out.append(item)
    return out


def _csv_first_lines(files: SplitFiles, base_dir: Path) -> set[str]:
    """The first entry of each CSV file named in ``files`` (a header line, if it matches no scene)."""
    out: set[str] = set()
    for item in [*files.train, *files.validation, *files.test]:
        if item.lower().endswith(".csv"):
            first = _entries([item], Path(base_dir))[:1]
            out.update(first)
    return out


def expand_split_files(files: SplitFiles, base_dir: Path) -> dict[str, list[str]]:
    """Per split, the scene names or image paths named by ``split.files`` (CSV files expanded)."""
    return {k: _entries(getattr(files, k), Path(base_dir)) for k in ("train", "validation", "test")}


def _matches(entry: str, scene: str) -> bool:
    e, s = Path(entry), Path(scene)
    return entry == scene or e.name == scene or e.stem == scene or e.stem == s.stem


def _scene_labels(samples: pd.DataFrame, files: SplitFiles, base_dir: Path) -> np.ndarray:
    if "scene" not in samples.columns:
        raise InputError(
            "split.files: the samples have no scene column (a single-image run); list the split "
            "per label feature with split.column instead"
        )
    scenes = samples["scene"].astype(str)
    lists = expand_split_files(files, base_dir)
    of: dict[str, str] = {}
    for split, entries in lists.items():
        for sc in scenes.unique():
            if any(_matches(e, sc) for e in entries):
                if sc in of and of[sc] != split:
                    raise InputError(f"split.files: scene {sc!r} is listed under both {of[sc]} and {split}")
                of[sc] = split
    unlisted = sorted(set(scenes.unique()) - set(of))
    if unlisted:
        raise InputError(
            f"split.files: scene(s) {', '.join(map(repr, unlisted))} are in no list; "
            f"add them to train, validation or test"
        )
    return scenes.map(of).to_numpy(dtype=str)


def check_split_files(
    files: SplitFiles, scene_names: list[str], base_dir: Path, all_scenes: list[str] | None = None
) -> None:
    """Before any work: ``split.files`` assigns every labelled scene of the run to one split, names
    no scene the run does not have (``all_scenes``, labelled or not; a typo would go unnoticed),
    the run has more than one scene, and training and test each get a scene (else :class:`InputError`)."""
    if len(scene_names) < 2:
        raise InputError(
            f"split.files: the run has {len(scene_names)} labelled scene(s) {scene_names} and split.files "
            "assigns whole scenes; "
            "list several scenes under 'scenes', or mark the split per label feature with split.column"
        )
    known = list(all_scenes if all_scenes is not None else scene_names)
    headers = _csv_first_lines(files, base_dir)  # a CSV's first line may be a header ("image")
    for split, entries in expand_split_files(files, base_dir).items():
        unknown = [e for e in entries if e not in headers and not any(_matches(e, sc) for sc in known)]
        if unknown:
            raise InputError(
                f"split.files.{split}: {', '.join(map(repr, unknown[:5]))} match(es) no scene of the run "
                f"(scenes: {', '.join(known[:10])}{' ...' if len(known) > 10 else ''})"
            )
    scenes = pd.DataFrame({"scene": scene_names})
    labels = _scene_labels(scenes, files, base_dir)
    for need in ("train", "test"):
        if not np.any(labels == need):
            raise InputError(f"split.files: no scene of the run is listed under {need}")


def predefined_labels(samples: pd.DataFrame, cfg: SplitConfig, base_dir: Path | None = None) -> tuple[np.ndarray, str]:
    """Per-sample split (shape (n,), train/validation/test) and a description of its source."""
    if cfg.files is not None:
        labels, source = _scene_labels(samples, cfg.files, Path(base_dir or Path.cwd())), "split.files"
    else:
        if cfg.column not in samples.columns:
            raise InputError(
                f"split.column: the labelled samples have no column {cfg.column!r}; add a "
                f"train/validation/test field to the label file or set split.column"
            )
        labels, source = _normalise(samples[cfg.column], f"split.column {cfg.column!r}"), f"column {cfg.column!r}"
    for need in ("train", "test"):
        if not np.any(labels == need):
            raise InputError(
                f"split ({source}): no labelled pixel is marked {need!r}; a predefined split needs "
                f"training and test data"
            )
    return labels, source


def split_predefined(inp: SplitInput) -> SplitResult:
    """``predefined``: the user's split column (or scene lists), as given; audited, never enforced."""
    labels, source = predefined_labels(inp.samples, inp.cfg)
    res = as_given(inp, "predefined", labels, {"source": source})
    leaks = sum(int(v) for k, v in res.report["audit"].items() if k != "min_train_test_distance")
    if leaks and not inp.quiet:
        a = res.report["audit"]
        log.warning(
            "split (predefined, %s): the leakage audit finds %d training patches touching test pixels "
            "and %d test patches touching training pixels: accuracy on this split is inflated by spatial "
            "leakage",
            source,
            a["train_patches_touching_test_pixels"],
            a["test_patches_touching_train_pixels"],
        )
    return res
