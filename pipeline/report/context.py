"""What a report section reads: :class:`ReportContext`, loaded once from the run directory's
files (``metrics.json``, ``config.yaml``, ``manifest.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.report.ranking import rank_models

#: The run directory's folder for the figures drawn while building the report.
FIG_DIR = "report_files"


def read_json(path: Path) -> Any:
    """The JSON value in ``path``; ``None`` when the file is missing or not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _read_yaml(path: Path) -> Any:
    try:
        import yaml

        return yaml.safe_load(path.read_text())
    except Exception:
        return None


@dataclass
class ReportContext:
    """Everything a report section may read, loaded once from the run directory.

    ``order`` is the model names ranked best first (:func:`~pipeline.report.ranking.rank_models`);
    ``figs`` is the folder for figures made while building the report.
    """

    run_dir: Path
    metrics: dict
    cfg: dict
    manifest: dict
    classes: list[dict] = field(default_factory=list)
    models: dict[str, dict] = field(default_factory=dict)
    split: dict = field(default_factory=dict)
    pairwise: list[dict] = field(default_factory=list)
    contrast: dict = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    @property
    def figs(self) -> Path:
        return self.run_dir / FIG_DIR

    @classmethod
    def load(cls, run_dir: Path) -> ReportContext:
        metrics = read_json(run_dir / "metrics.json")
        if not isinstance(metrics, dict):
            from pipeline.core.errors import InputError

            raise InputError(f"{run_dir / 'metrics.json'}: missing or not valid JSON; run the assess stage first")
        models = metrics.get("models") or {}
        cfg = _read_yaml(run_dir / "config.yaml")
        return cls(
            run_dir=run_dir,
            metrics=metrics,
            cfg=cfg if isinstance(cfg, dict) else {},
            manifest=read_json(run_dir / "manifest.json") or {},
            classes=metrics.get("classes") or [],
            models=models,
            split=metrics.get("split") or {},
            pairwise=metrics.get("pairwise") or [],
            contrast=metrics.get("random_split_contrast") or {},
            order=rank_models(models),
        )

    def per_class(self, model: str, cls_name: str) -> dict:
        """``metrics.json`` per-class entry of one model and class (empty when absent)."""
        return (self.models[model].get("per_class") or {}).get(cls_name) or {}
