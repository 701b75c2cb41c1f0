"""Benchmark: dense (whole-window) versus per-patch inference of the deep models.

For each of ``cnn`` and ``resnet`` a network of the trained shape (random
weights, non-trivial batch-norm statistics, standardisation set from the data)
classifies a synthetic raster twice in the same run:

* dense: ``predict_block``-style logits over windows read with a ``k // 2`` halo
  of NaN padding at the raster edge, as the mapper does;
* per-patch: one ``k x k`` patch cut around each pixel of a random subset of
  pixels, classified in batches (cutting included in the time).

It reports both rates in Mpx/s, their ratio, the largest absolute logit
difference on the subset and the label agreement, plus the training throughput
(one epoch of ``fit`` on synthetic patches). Results go to
``reports/bench/deep.json`` (atomic write).

Two diagnostics explain the ratio. ``layers``: the rate (GFLOP/s) each
convolution reaches in either mode, from one extra untimed pass with forward
hooks; where both modes run a convolution at the same rate, the speed-up can
only come from the smaller amount of work (``mac_ratio``). And
``naive_patch_mpx_per_s``: a plain per-patch loop (batches of 64, NCHW, batch
norm not folded) for context, since published dense-versus-patch figures are
often measured against such a loop; ``dense_speedup`` is always against the
library's own optimised per-patch path.

Usage: ``python -m bench.deep [--size 1024] [--patch-size 13] [--out reports/bench/deep.json]``
(or ``landcover bench deep``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.core.atomic import write_json

DEFAULT_OUT = Path("reports/bench/deep.json")


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }


def synthetic_raster(bands: int, size: int, seed: int) -> np.ndarray:
    """(bands, size, size) float32 in reflectance-like units with smooth structure plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size, 1)
    out = np.empty((bands, size, size), np.float32)
    for b in range(bands):
        fx, fy, ph = rng.uniform(2, 12), rng.uniform(2, 12), rng.uniform(0, 6.28)
        out[b] = 1500 + 800 * np.sin(fx * xx * 6.28 + ph) * np.cos(fy * yy * 6.28) + rng.normal(0, 120, (size, size))
    return out


def _build(kind: str, bands: int, classes: int, patch_size: int, channels: int, device: str, seed: int):
    from pipeline.models import registry
    from pipeline.models.base import ModelMeta
    from pipeline.models.deep import randomize_batchnorm

    spec = registry.get(kind)
    cls, cfg = spec.model_class(), spec.config
    meta = ModelMeta(
        kind,
        [f"b{i}" for i in range(bands)],
        list(range(1, classes + 1)),
        [f"c{i}" for i in range(classes)],
        ["#808080"] * classes,
        patch_size,
    )
    model = cls(settings=cfg(channels=channels), meta=meta, seed=seed, device=device)
    randomize_batchnorm(model.net, seed)
    model.progress = False
    return model


def conv_macs(net: torch.nn.Module, bands: int, patch_size: int) -> tuple[int, int]:
    """Multiply-accumulates of the convolutions: (per pixel in dense mode, per pixel per-patch).

    Dense mode evaluates every convolution once per output pixel (for a large window);
    per-patch mode evaluates it at every position of its output inside the k x k patch.
    Their ratio is the speed-up to expect when both run at the same arithmetic efficiency.
    """
    dense, patch = 0, 0
    hooks = []

    def hook(mod, _inp, out):
        nonlocal dense, patch
        per_pos = mod.in_channels * mod.out_channels * mod.kernel_size[0] * mod.kernel_size[1] // mod.groups
        dense += per_pos
        patch += per_pos * out.shape[-1] * out.shape[-2]

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(hook))
    was_training = net.training
    net.eval()
    with torch.inference_mode():
        net(torch.zeros(1, bands, patch_size, patch_size, device=next(net.parameters()).device))
    net.train(was_training)
    for h in hooks:
        h.remove()
    return dense, patch


class _ConvTimer:
    """Wall time and multiply-accumulates of every Conv2d of ``net``, via forward hooks.

    Used on one extra, untimed pass of each mode to show where the time goes: the rate
    (GFLOP/s) each convolution reaches in dense and in per-patch mode.
    """

    def __init__(self, net: torch.nn.Module):
        self.convs = [(name, m) for name, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
        self.seconds = {name: 0.0 for name, _ in self.convs}
        self.macs = {name: 0 for name, _ in self.convs}
        self._t0: dict[str, float] = {}
        self._hooks: list = []

    def __enter__(self) -> _ConvTimer:
        for name, m in self.convs:
            self._hooks.append(
                m.register_forward_pre_hook(lambda _m, _i, n=name: self._t0.__setitem__(n, time.perf_counter()))
            )
            self._hooks.append(m.register_forward_hook(lambda mod, _i, out, n=name: self._stop(n, mod, out)))
        return self

    def _stop(self, name: str, mod: torch.nn.Conv2d, out: torch.Tensor) -> None:
        self.seconds[name] += time.perf_counter() - self._t0[name]
        self.macs[name] += (out.numel() * mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()


def layer_rates(model, run_dense, run_patch) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per convolution: GFLOP/s in dense and per-patch mode and its share of each mode's conv time;
    and per mode the rate of all convolutions together (total work over total time)."""
    net, _ = model._inference_net()
    timers = {}
    for mode, fn in (("dense", run_dense), ("patch", run_patch)):
        with _ConvTimer(net) as t:
            fn()
        timers[mode] = t
    rows = []
    for name, m in timers["dense"].convs:
        row: dict[str, Any] = {
            "layer": name,
            "in_channels": m.in_channels,
            "out_channels": m.out_channels,
            "kernel": m.kernel_size[0],
        }
        for mode, t in timers.items():
            sec = t.seconds[name]
            row[f"{mode}_macs"] = t.macs[name]
            row[f"{mode}_gflops"] = 2 * t.macs[name] / sec / 1e9 if sec > 0 else None
            row[f"{mode}_time_share"] = sec / max(sum(t.seconds.values()), 1e-12)
        rows.append(row)
    overall = {mode: 2 * sum(t.macs.values()) / max(sum(t.seconds.values()), 1e-12) / 1e9 for mode, t in timers.items()}
    return rows, overall


def naive_patch_rate(model, padded: np.ndarray, rows: np.ndarray, cols: np.ndarray, batch: int = 64) -> float:
    """Mpx/s of a plain per-patch loop, for context: batches of ``batch`` patches, NCHW, batch
    norm not folded (``model.net`` in eval mode) -- how a patch classifier is usually applied
    with a data loader. Not the baseline of ``dense_speedup``, which is the library's own
    optimised per-patch path."""
    k = model.k
    norm = model._norm_tensors()
    net = model.net.eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(rows), batch):
            cut = np.stack([padded[:, r : r + k, c : c + k] for r, c in zip(rows[s : s + batch], cols[s : s + batch])])
            x = model._standardise(model.device_settings.to_device(torch.from_numpy(cut)), norm, False)
            net(x).cpu()
    return len(rows) / 1e6 / (time.perf_counter() - t0)


def _bench_model(
    kind: str,
    img: np.ndarray,
    patch_size: int,
    channels: int,
    classes: int,
    window_size: int,
    patch_pixels: int,
    patch_batch: int,
    train_samples: int,
    train_batch: int,
    device: str,
    seed: int,
    repeats: int = 1,
    naive_pixels: int = 2048,
) -> dict[str, Any]:
    from pipeline.models.base import TrainingData
    from pipeline.models.deep import band_stats

    bands, size, _ = img.shape
    h = patch_size // 2
    model = _build(kind, bands, classes, patch_size, channels, device, seed)
    padded = np.pad(img, ((0, 0), (h, h), (h, h)), constant_values=np.nan)
    model.norm_mean, model.norm_std = band_stats(img[None])
    model.patch_batch = patch_batch

    # Warm-up on the shapes that are timed (oneDNN builds kernels per shape on first use).
    w0 = min(window_size, size)
    model.block_logits(padded[:, : w0 + 2 * h, : w0 + 2 * h])

    dense = np.empty((classes, size, size), np.float32)
    rng = np.random.default_rng(seed)
    n = min(patch_pixels, size * size)
    flat = rng.choice(size * size, size=n, replace=False)
    rows, cols = flat // size, flat % size
    warm = min(patch_batch, n)
    model.patch_logits(np.repeat(padded[None, :, :patch_size, :patch_size], warm, axis=0))  # warm-up
    patch = np.empty((n, classes), np.float32)

    def run_dense() -> float:
        t0 = time.perf_counter()
        for r in range(0, size, window_size):
            for c in range(0, size, window_size):
                hh, ww = min(window_size, size - r), min(window_size, size - c)
                block = padded[:, r : r + hh + 2 * h, c : c + ww + 2 * h]
                dense[:, r : r + hh, c : c + ww] = model.block_logits(block)
        return time.perf_counter() - t0

    def run_patch() -> float:
        t0 = time.perf_counter()
        for s in range(0, n, patch_batch):
            rr, cc = rows[s : s + patch_batch], cols[s : s + patch_batch]
            cut = np.stack([padded[:, r : r + patch_size, c : c + patch_size] for r, c in zip(rr, cc)])
            patch[s : s + len(rr)] = model.patch_logits(cut)
        return time.perf_counter() - t0

    # Interleaved (dense, patch, naive, dense, ...) so that load from other processes on a
    # shared machine hits every rate alike; best of each.
    n_naive = min(n, max(naive_pixels, 1))
    dense_times, patch_times, naive_rates = [], [], []
    for _ in range(repeats):
        dense_times.append(run_dense())
        patch_times.append(run_patch())
        naive_rates.append(naive_patch_rate(model, padded, rows[:n_naive], cols[:n_naive]))
    t_dense, t_patch = min(dense_times), min(patch_times)
    layers, conv_gflops = layer_rates(model, run_dense, run_patch)
    per_repeat = [(size * size / td) / (n / tp) for td, tp in zip(dense_times, patch_times)]

    ref = dense[:, rows, cols].T
    macs_dense, macs_patch = conv_macs(model.net, bands, patch_size)
    dense_rate = size * size / 1e6 / t_dense
    patch_rate = n / 1e6 / t_patch

    # Training throughput: one epoch of the real fit loop on synthetic patches.
    tr_n = max(train_batch * 2, train_samples)
    tr_rows = rng.integers(0, size, tr_n)
    tr_cols = rng.integers(0, size, tr_n)
    tr_patches = np.stack([padded[:, r : r + patch_size, c : c + patch_size] for r, c in zip(tr_rows, tr_cols)])
    y = rng.integers(1, classes + 1, tr_n).astype(np.int64)
    train = TrainingData(tr_patches, y, np.arange(tr_n), np.zeros((tr_n, 2)), model.meta.band_names)
    model.settings = model.settings.model_copy(update={"epochs": 1, "batch_size": train_batch})
    model.fit(train.subset(np.arange(min(tr_n, 2 * train_batch))), None)  # warm-up
    rates = []
    for _ in range(repeats):
        model.fit(train, None)
        rates.append(float(model.fit_info["train_samples_per_s"]))
    return {
        "dense_mpx_per_s": dense_rate,
        "patch_mpx_per_s": patch_rate,
        "dense_speedup": dense_rate / patch_rate,
        "max_logit_diff": float(np.abs(ref - patch).max()),
        "label_agreement": float(np.mean(ref.argmax(1) == patch.argmax(1))),
        # Each repetition's own ratio (its dense and per-patch timings ran back to back): the
        # median is steadier than best-over-best when the machine's load changes mid-run.
        "dense_speedup_per_repeat": per_repeat,
        "dense_speedup_median": float(np.median(per_repeat)),
        "naive_patch_mpx_per_s": max(naive_rates),
        "dense_speedup_vs_naive_patch": dense_rate / max(naive_rates),
        "layers": layers,
        # All convolutions together; speed-up ~ mac_ratio * dense_conv_gflops / patch_conv_gflops.
        "dense_conv_gflops": conv_gflops["dense"],
        "patch_conv_gflops": conv_gflops["patch"],
        "dense_seconds": t_dense,
        "dense_pixels": size * size,
        "patch_seconds": t_patch,
        "patch_pixels": n,
        "train_samples_per_s": max(rates),
        "train_samples": tr_n,
        "dense_seconds_all": dense_times,
        "patch_seconds_all": patch_times,
        "train_samples_per_s_all": rates,
        "train_batch": train_batch,
        "parameters": int(sum(p.numel() for p in model.net.parameters())),
        "conv_layers": (patch_size - 1) // 2,
        "macs_per_pixel_dense": macs_dense,
        "macs_per_pixel_patch": macs_patch,
        "mac_ratio": macs_patch / macs_dense,
    }


def run_bench(
    out_json: str | Path = DEFAULT_OUT,
    size: int = 1024,
    patch_size: int = 13,
    bands: int = 6,
    channels: int = 64,
    classes: int = 8,
    window_size: int = 512,
    patch_pixels: int = 8192,
    patch_batch: int = 1024,
    train_samples: int = 2048,
    train_batch: int = 256,
    device: str = "cpu",
    seed: int = 0,
    models: tuple[str, ...] = ("cnn", "resnet"),
    repeats: int = 5,
    log=print,
) -> dict[str, Any]:
    """Run the benchmark and write ``out_json``; returns the report.

    Each timing is repeated ``repeats`` times after a warm-up and the best is reported
    (all timings are kept in the report): on a shared machine the best run is the one
    least disturbed by other processes.
    """
    from pipeline.models.device import select_device

    dev = str(select_device(device))
    img = synthetic_raster(bands, size, seed)
    report: dict[str, Any] = {
        "benchmark": "deep",
        "machine": machine_info(),
        "device": dev,
        "params": {
            "size": size,
            "patch_size": patch_size,
            "bands": bands,
            "channels": channels,
            "classes": classes,
            "window_size": window_size,
            "patch_pixels": patch_pixels,
            "patch_batch": patch_batch,
            "train_samples": train_samples,
            "train_batch": train_batch,
            "seed": seed,
            "repeats": repeats,
        },
        "load_average_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "models": {},
    }
    for kind in models:
        res = _bench_model(
            kind,
            img,
            patch_size,
            channels,
            classes,
            window_size,
            patch_pixels,
            patch_batch,
            train_samples,
            train_batch,
            dev,
            seed,
            repeats,
        )
        report["models"][kind] = res
        if log:
            log(
                f"{kind}: dense {res['dense_mpx_per_s']:.4f} Mpx/s, per-patch {res['patch_mpx_per_s']:.5f} Mpx/s, "
                f"speed-up {res['dense_speedup']:.1f}x (median of repeats {res['dense_speedup_median']:.1f}x; MAC ratio {res['mac_ratio']:.1f}x), max logit diff {res['max_logit_diff']:.2e}, "
                f"train {res['train_samples_per_s']:.0f} samples/s"
            )
            log(
                f"  plain per-patch loop (batch 64, NCHW, BN not folded): {res['naive_patch_mpx_per_s']:.5f} Mpx/s, "
                f"dense is {res['dense_speedup_vs_naive_patch']:.0f}x that"
            )
            log(
                f"  all convolutions: {res['dense_conv_gflops']:.0f} GFLOP/s dense, {res['patch_conv_gflops']:.0f} per-patch"
            )
            log("  conv layer            GFLOP/s dense  per-patch   time share dense  per-patch")
            for row in res["layers"]:
                log(
                    f"  {row['layer']:<20s} {row['dense_gflops'] or 0:>13.0f} {row['patch_gflops'] or 0:>10.0f} "
                    f"{row['dense_time_share']:>17.1%} {row['patch_time_share']:>10.1%}"
                )
    report["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out = Path(out_json)
    write_json(out, report)  # atomic; NaN -> null
    if log:
        log(f"wrote {out}")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="landcover bench deep", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024, help="synthetic raster is SIZE x SIZE pixels (default 1024)")
    p.add_argument("--patch-size", type=int, default=13, help="odd patch size k; (k-1)/2 conv layers (default 13)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report JSON (default {DEFAULT_OUT})")
    p.add_argument("--bands", type=int, default=6)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--window-size", type=int, default=512)
    p.add_argument("--patch-pixels", type=int, default=8192, help="pixels classified per-patch (a random subset)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps (default cpu)")
    p.add_argument("--models", default="cnn,resnet")
    p.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed repetitions, dense and per-patch interleaved; the best of each is reported (default 5)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads for this run (default: torch's own choice)"
    )
    a = p.parse_args(argv)
    from pipeline.core.errors import InputError

    if a.patch_size < 1 or a.patch_size % 2 == 0:
        print(f"--patch-size: must be a positive odd number, got {a.patch_size}", file=sys.stderr)
        return 2
    models = tuple(m.strip() for m in a.models.split(",") if m.strip())
    from pipeline.models import registry

    deep = registry.deep_models()
    if not models or any(m not in deep for m in models):
        print(f"--models: choose from {','.join(deep)}, got {a.models!r}", file=sys.stderr)
        return 2
    if a.threads is not None:
        if a.threads < 1:
            print(f"--threads: must be at least 1, got {a.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(a.threads)
    try:
        run_bench(
            a.out,
            size=a.size,
            patch_size=a.patch_size,
            bands=a.bands,
            channels=a.channels,
            window_size=a.window_size,
            patch_pixels=a.patch_pixels,
            device=a.device,
            models=models,
            repeats=max(1, a.repeats),
        )
    except InputError as e:
        print(str(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
