"""Benchmark: the deep models' accuracy before and after issue #22 (points 4 and 6), on real scenes.

``landcover bench deep_accuracy`` (or ``python -m bench.deep_accuracy``) prepares each scene
with the pipeline's own ``prepare`` stage (its default split, as ``landcover run`` makes it), then
fits the CNN and the ResNet on every fold of that split in two variants, interleaved seed by seed:

* ``before``: the training of 0.1.x: the epoch kept chosen on the validation set whatever its
  size (early stopping on validation macro-F1), no neighbourhood shift, and the ResNet in its
  0.1.x layout (``architecture=1``: no residual block at patch size 3, one at 5 and 7).
  Flips, 90-degree rotations and amplitude scaling were already on then and stay on.
* ``after``: the defaults now (augmentation with ``shift: 1``; ``selection: auto``, i.e. the
  validation set chooses the epoch only with at least ``min_validation_groups`` polygons, else
  the schedule runs to its end; ResNet architecture 2).

Both variants use the scene config's ``models.<model>`` settings (e.g. the demo's 30 epochs and
32 channels; the shared scenes' configs have none, so the defaults). Every fold's test pixels
are predicted; the figures pool them over folds:

* ``overall_accuracy`` and ``macro_f1``: over test *pixels* (the convention of metrics.json);
* ``group_accuracy``: the mean over test *groups* (polygons) of each group's accuracy, the
  unit of replication for a spatial split; ``groups_better`` / ``groups_worse``: how many test
  groups the ``after`` model classifies better / worse than ``before`` (same seed, paired).

Fit cost is the CPU time of each fit (``time.process_time``: on this shared machine wall time
follows the load of others) and the epochs run and kept. Torch runs on one thread unless
``--threads`` says otherwise. Results go to ``reports/bench/deep_accuracy.json``.

Usage: ``python -m bench.deep_accuracy [--scenes demo,ceholden,rstoolbox,sentinel2]
[--models cnn,resnet] [--seeds 42,1] [--set models.cnn.epochs=10 ...] [--out PATH]``.
Scenes whose data are absent (the shared scenes outside this machine) are skipped and listed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "reports" / "bench" / "deep_accuracy.json"
SCENES = {
    "demo": REPO / "configs" / "demo.yaml",
    "ceholden": REPO / "configs" / "landsat7_ceholden.yaml",
    "rstoolbox": REPO / "configs" / "landsat5_rstoolbox.yaml",
    "sentinel2": REPO / "configs" / "sentinel2_eolearn.yaml",
}
#: The 0.1.x training, as settings (plus the ResNet's 0.1.x layout, ``architecture=1``).
BEFORE = {"selection": "validation", "shift": 0}


def prepare(config: Path, workdir: Path, overrides: list[str], models: list[str]) -> tuple[Any, Path]:
    """Run the ``prepare`` stage of ``config`` into ``workdir``; (config, run directory)."""
    from pipeline.config.loading import load_config
    from pipeline.runner.context import init_run_dir
    from pipeline.runner.pipeline import run_one

    cfg, base = load_config(config, overrides, models)
    ctx = init_run_dir(cfg, base, out=workdir, run_id=cfg.name, device="cpu", progress=False)
    run_one(ctx, "prepare")
    return cfg, ctx.run_dir


def load_samples(run: Path) -> tuple[Any, list[dict], dict]:
    """(TrainingData of every sample, folds, labels.json) of a prepared run directory."""
    import pandas as pd

    from pipeline.models.base import TrainingData
    from pipeline.sampling.patches import open_patches

    samples = pd.read_parquet(run / "samples.parquet")
    labels = json.loads((run / "labels.json").read_text())
    multi = "scene" in samples and samples["scene"].nunique() > 1
    groups = (
        samples.groupby(["scene", "group"], sort=False).ngroup().to_numpy(np.int64)
        if multi
        else samples["group"].to_numpy(np.int64)
    )
    data = TrainingData(
        open_patches(run / "patches.npy"),
        samples["class_id"].to_numpy(np.int64),
        groups,
        samples[["x", "y"]].to_numpy(np.float64),
        labels["band_names"],
    )
    folds = json.loads((run / "folds.json").read_text())
    return data, folds, labels


def cross_validate(cfg: Any, data: Any, folds: list[dict], kind: str, variant: str, seed: int) -> dict:
    """Fit ``kind`` in ``variant`` on every fold; test predictions pooled and the fits' costs."""
    from pipeline.models.base import ModelMeta
    from pipeline.models.registry import get

    spec = get(kind)
    settings = getattr(cfg.models, kind) or spec.config()
    arch: dict[str, int] = {}
    if variant == "before":
        settings = settings.model_copy(update=BEFORE)
        arch = {"architecture": 1}
    c = cfg.classes
    meta = ModelMeta(
        kind, list(data.band_names), [x.id for x in c], [x.name for x in c], [x.color for x in c], cfg.patch.size, {}
    )
    idx, pred, fits = [], [], []
    for f in folds:
        test = np.asarray(f["test"], np.int64)
        val = np.asarray(f["validation"], np.int64)
        model = spec.model_class()(settings=settings, meta=meta, seed=seed, device="cpu", **arch)
        model.progress = False
        t0, w0 = time.process_time(), time.perf_counter()
        model.fit(data.subset(np.asarray(f["train"], np.int64)), data.subset(val) if len(val) else None)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        p, _ = model.predict_patches(data.subset(test).patches)
        idx.append(test)
        pred.append(p)
        info = model.fit_info
        fits.append(
            {
                "cpu_seconds": cpu,
                "wall_seconds": wall,
                "epochs_run": info["epochs_run"],
                "epoch_kept": info["best_epoch"],
                "selection": info.get("selection", "validation"),
                "validation_groups": int(np.unique(data.groups[val]).size),
            }
        )
    return {"test": np.concatenate(idx), "pred": np.concatenate(pred), "fits": fits, "info": info}


def scores(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> dict:
    """Pixel-pooled OA and macro-F1, and the mean of the groups' own accuracies (see the module doc)."""
    from sklearn.metrics import f1_score

    hit = (y == pred).astype(np.float64)
    ug, inv = np.unique(groups, return_inverse=True)
    per_group = np.bincount(inv, hit) / np.bincount(inv)
    return {
        "overall_accuracy": float(hit.mean()),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "group_accuracy": float(per_group.mean()),
        "_per_group": per_group,
    }


def bench_scene(name: str, config: Path, models: list[str], seeds: list[int], overrides: list[str], log: Any) -> dict:
    with tempfile.TemporaryDirectory(prefix="deep-acc-") as tmp:
        cfg, run = prepare(config, Path(tmp), overrides, models)
        data, folds, _ = load_samples(run)
        split = json.loads((run / "split.json").read_text()) if (run / "split.json").exists() else {}
        test_all = np.concatenate([np.asarray(f["test"], np.int64) for f in folds])
        out: dict[str, Any] = {
            "config": str(config.relative_to(REPO)) if config.is_relative_to(REPO) else str(config),
            "patch_size": cfg.patch.size,
            "split": {
                "strategy": cfg.split.strategy,
                "folds": len(folds),
                "test_pixels": int(test_all.size),
                "test_groups": int(np.unique(data.groups[test_all]).size),
                "validation_groups": [
                    int(np.unique(data.groups[np.asarray(f["validation"], np.int64)]).size) for f in folds
                ],
                "samples": len(data),
                "counts": split.get("counts"),
            },
            "models": {},
        }
        for kind in models:
            settings = getattr(cfg.models, kind)
            res: dict[str, Any] = {
                "settings": (settings.model_dump(mode="json") if settings is not None else None),
                "before": [],
                "after": [],
                "paired": [],
            }
            for seed in seeds:
                per: dict[str, Any] = {}
                for variant in ("before", "after"):  # interleaved: before and after of one seed back to back
                    cv = cross_validate(cfg, data, folds, kind, variant, seed)
                    y = data.y[cv["test"]]
                    sc = scores(y, cv["pred"], data.groups[cv["test"]])
                    per[variant] = sc
                    res[variant].append(
                        {
                            "seed": seed,
                            **{k: v for k, v in sc.items() if not k.startswith("_")},
                            "fits": cv["fits"],
                            "fit_cpu_seconds_mean": float(np.mean([f["cpu_seconds"] for f in cv["fits"]])),
                            "network": cv["info"].get("network"),
                            "augmentation": cv["info"].get("augmentation"),
                        }
                    )
                    if log:
                        log(
                            f"{name} {kind} {variant} seed {seed}: OA {sc['overall_accuracy']:.3f}, "
                            f"macro-F1 {sc['macro_f1']:.3f}, group accuracy {sc['group_accuracy']:.3f}, "
                            f"fit {res[variant][-1]['fit_cpu_seconds_mean']:.1f} CPU-s"
                        )
                d = per["after"]["_per_group"] - per["before"]["_per_group"]
                res["paired"].append(
                    {"seed": seed, "groups_better": int((d > 1e-12).sum()), "groups_worse": int((d < -1e-12).sum())}
                )
            for variant in ("before", "after"):
                runs = res[variant]
                res[f"{variant}_mean"] = {
                    k: float(np.mean([r[k] for r in runs]))
                    for k in ("overall_accuracy", "macro_f1", "group_accuracy", "fit_cpu_seconds_mean")
                }
            out["models"][kind] = res
        return out


def run_bench(
    out_json: str | Path = DEFAULT_OUT,
    scenes: list[str] | None = None,
    models: list[str] | None = None,
    seeds: list[int] | None = None,
    overrides: list[str] | None = None,
    threads: int = 1,
    configs: dict[str, Path] | None = None,
    log: Any = print,
) -> dict:
    """Run the benchmark on ``scenes`` (names of :data:`SCENES`, or of ``configs``) and write ``out_json``."""
    import platform

    import torch

    from pipeline.core.errors import InputError

    torch.set_num_threads(threads)
    table = {**SCENES, **(configs or {})}
    scenes = scenes or list(SCENES)
    models = models or ["cnn", "resnet"]
    seeds = seeds or [42, 1]
    report: dict[str, Any] = {
        "benchmark": "deep_accuracy",
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "torch_threads": threads},
        "before": {**BEFORE, "resnet_architecture": 1},
        "seeds": seeds,
        "overrides": overrides or [],
        "scenes": {},
        "skipped": {},
    }
    for name in scenes:
        if name not in table:
            raise InputError(f"--scenes: unknown scene {name!r} (known: {', '.join(sorted(table))})")
        t0 = time.perf_counter()
        try:
            report["scenes"][name] = bench_scene(name, table[name], models, seeds, overrides or [], log)
        except InputError as e:  # e.g. the shared scenes are not on this machine
            report["skipped"][name] = str(e)
            if log:
                log(f"{name}: skipped ({e})")
            continue
        report["scenes"][name]["seconds"] = time.perf_counter() - t0
        write_json(out_json, report)  # after every scene: a long run leaves what it measured
    write_json(out_json, report)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="landcover bench deep_accuracy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", default=",".join(SCENES), help="comma-separated: " + ", ".join(SCENES))
    ap.add_argument("--models", default="cnn,resnet")
    ap.add_argument("--seeds", default="42,1", help="comma-separated seeds (each: before and after)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    run_bench(
        a.out,
        scenes=[s for s in a.scenes.split(",") if s],
        models=[m for m in a.models.split(",") if m],
        seeds=[int(s) for s in a.seeds.split(",") if s],
        overrides=a.overrides,
        threads=a.threads,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
