"""A tiny synthetic project (raster, label raster, config) for tests of whole runs.

Three spectrally distinct classes in vertical stripes of a 3-band 96 x 96 uint16 raster,
with labelled squares spread over the scene so that a spatial split has blocks to work
with. A whole run of a decision tree on it takes about a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from conftest import write_raster

CLASSES = [
    {"id": 1, "name": "water", "color": "#2166ac"},
    {"id": 2, "name": "forest", "color": "#1b7837"},
    {"id": 3, "name": "urban", "color": "#e31a1c"},
]


def scene(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(bands, rows, cols) uint16 image and (rows, cols) uint8 labels (0 = unlabelled)."""
    rng = np.random.default_rng(seed)
    cls = np.minimum(np.arange(size) * 3 // size, 2)[None, :].repeat(size, 0) + 1  # stripes 1, 2, 3
    base = np.array([[900, 1400, 2600], [1800, 1200, 700], [2400, 2300, 2200]], dtype=np.float64)  # band x class
    img = np.stack([base[b][cls - 1] + rng.normal(0, 60, (size, size)) for b in range(3)]).clip(1, 65535)
    labels = np.zeros((size, size), np.uint8)
    for r in range(2, size - 6, 12):
        for c in range(2, size - 6, 12):
            labels[r : r + 5, c : c + 5] = cls[r, c]
    return img.astype(np.uint16), labels


def make_project(root: Path, name: str = "tiny", models: dict[str, Any] | None = None, **top: Any) -> Path:
    """Write scene.tif, labels.tif and config.yaml under ``root``; returns the config path."""
    root.mkdir(parents=True, exist_ok=True)
    img, labels = scene()
    write_raster(root / "scene.tif", img, nodata=0, descriptions=["blue", "red", "nir"])
    write_raster(root / "labels.tif", labels, nodata=0)
    cfg = {
        "name": name,
        "seed": 0,
        "rasters": {"paths": ["scene.tif"], "band_names": ["blue", "red", "nir"]},
        "labels": {"path": "labels.tif"},
        "classes": CLASSES,
        "patch": {"size": 3},
        "split": {"random_contrast": False},
        "models": models or {"decision_tree": {}},
        "mapping": {"window_size": 32, "workers": 1},
        **top,
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
