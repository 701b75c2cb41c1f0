"""Training of the patch networks, apart from the networks (:mod:`pipeline.models.nets`) and the
model that owns them (:class:`pipeline.models.deep.DeepModel`, which this module knows only as
the :class:`TrainableNet` protocol, so that it never imports the model back).

:func:`train_network` is the epoch loop: it draws each epoch's sample order (class-balanced
sampler, centre shifts), feeds batches through a ``DataLoader`` over the (memory-mapped)
patch store, steps the optimiser and learning-rate schedule, evaluates on the validation
set and stops early on validation macro-F1, restoring the best epoch's weights. The pieces
(:func:`make_optimizer`, :func:`epoch_order`, :class:`EarlyStopping`, :func:`train_epoch`)
are plain functions so that cancellation checks or other sample sources plug in at one place.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from pipeline.core.atomic import json_safe, write_figure, write_json
from pipeline.core.cancel import check_cancelled
from pipeline.models.base import PatchRows, TrainingData
from pipeline.models.device import DeviceSettings
from pipeline.models.settings import DeepConfig


class TrainableNet(Protocol):
    """What the epoch loop needs of the model it trains (:class:`pipeline.models.deep.DeepModel`)."""

    name: ClassVar[str]
    net: torch.nn.Module
    settings: DeepConfig
    seed: int
    device_settings: DeviceSettings
    progress: bool  # draw the progress bar at all

    def _norm_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-band (mean, std) as (1, bands, 1, 1) tensors on the model's device."""
        ...

    def _augment(self, x: torch.Tensor, gen: torch.Generator, norm: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """A batch of raw patches augmented and standardised for the network."""
        ...

    def _evaluate(self, data: TrainingData, y_idx: np.ndarray) -> tuple[float, float]:
        """(mean cross-entropy, macro-F1) of the network on ``data``."""
        ...


def band_stats(patches: PatchRows, chunk_bytes: int = 8 * 2**20) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std over the finite pixels of ``patches`` (n, bands, k, k), streamed.

    Rows are read in chunks of at most ``chunk_bytes`` of float64 (so 218 bands cost what 6 do).
    Bands with no valid pixel get mean 0, std 1; a constant band gets std 1.
    """
    b = patches.shape[1]
    chunk = max(1, chunk_bytes // (8 * int(np.prod(patches.shape[1:]))))
    s = np.zeros(b, np.float64)
    ss = np.zeros(b, np.float64)
    cnt = np.zeros(b, np.float64)
    for i in range(0, patches.shape[0], chunk):
        x = np.asarray(patches[i : i + chunk], dtype=np.float64)
        ok = np.isfinite(x)
        x = np.where(ok, x, 0.0)
        s += x.sum(axis=(0, 2, 3))
        ss += (x * x).sum(axis=(0, 2, 3))
        cnt += ok.sum(axis=(0, 2, 3))
    mean = np.divide(s, cnt, out=np.zeros(b), where=cnt > 0)
    var = np.divide(ss, cnt, out=np.ones(b), where=cnt > 0) - np.where(cnt > 0, mean**2, 0.0)
    std = np.sqrt(np.maximum(var, 0.0))
    std = np.where((std > 1e-12) & (cnt > 0), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic algorithms for the duration of a fit, without the NaN-filling of every new
    tensor that comes with them by default (a pure cost here: nothing reads uninitialised memory)."""
    import torch.utils.deterministic as tud

    # fill_uninitialized_memory is a property that torch adds by swapping the module's class at
    # import time (torch/utils/deterministic.py): mypy sees a plain module without it, hence the ignores.
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_fill = tud.fill_uninitialized_memory  # type: ignore[attr-defined]
    torch.use_deterministic_algorithms(True, warn_only=True)
    tud.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        tud.fill_uninitialized_memory = prev_fill  # type: ignore[attr-defined]


_TORCH_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with torch's global RNG seeded, restoring it afterwards.

    Dropout and stochastic depth draw from torch's process-wide generator, so two fits in
    threads of one process (e.g. a flow's thread-pool task runner) would interleave their
    draws and neither would be reproducible. Seeded regions therefore hold a process-wide
    lock: fits in threads run one after another (on a CPU they would compete for the same
    cores anyway); processes (Dask workers) are unaffected.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with _TORCH_RNG_LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class _BatchSource(torch.utils.data.Dataset):
    """Item = an array of row indices (sorted, for memmap locality) -> that batch of the patch store.

    Loader workers are spawned, not forked (forking a process that already runs threads, such as
    a Prefect or Dask client, can kill the child). A whole-file memmap therefore pickles as its
    file name and is reopened in the worker instead of being copied into it.
    """

    def __init__(self, patches: PatchRows, y_idx: np.ndarray):
        self.patches = patches
        self.y_idx = y_idx

    def __getitem__(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.ascontiguousarray(self.patches[idx], dtype=np.float32)
        return torch.from_numpy(x), torch.from_numpy(self.y_idx[idx].astype(np.int64))

    def __getstate__(self) -> dict:
        p = self.patches
        state: dict[str, Any] = {"y_idx": self.y_idx, "patches": p, "mm": None}
        if isinstance(p, np.memmap) and p.filename and p.flags.c_contiguous:
            # Only a memmap that spans its file to the end is the whole array (a slice keeps the
            # parent's offset); anything else is sent as data.
            if p.offset + p.nbytes == os.path.getsize(p.filename):
                state.update(patches=None, mm=(p.filename, p.dtype.str, p.shape, p.offset))
        return state

    def __setstate__(self, state: dict) -> None:
        self.y_idx = state["y_idx"]
        if state["mm"] is not None:
            fname, dtype, shape, offset = state["mm"]
            self.patches = np.memmap(fname, dtype=np.dtype(dtype), mode="r", shape=shape, offset=offset)
        else:
            self.patches = state["patches"]


class _EpochBatches(torch.utils.data.Sampler):
    """Yields the current epoch's batches; runs in the main process, so one persistent set of
    loader workers serves every epoch."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def shift_table(
    xy: np.ndarray, groups: np.ndarray, y: np.ndarray, shift: int, pixel_size: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices): for each sample, the samples of the same group and class within
    ``shift`` pixels (Chebyshev distance), itself included."""
    from scipy.spatial import cKDTree

    n = len(y)
    if pixel_size is None:
        steps = []
        for a in (xy[:, 0], xy[:, 1]):
            d = np.diff(np.unique(np.round(a, 9)))
            d = d[d > 1e-9]
            if d.size:
                steps.append(d.min())
        pixel_size = min(steps) if steps else 1.0
    pts = xy / float(pixel_size)
    tree = cKDTree(pts)
    lists = tree.query_ball_point(pts, r=shift + 1e-6, p=np.inf)
    indptr = np.zeros(n + 1, np.int64)
    chunks = []
    for i, nb in enumerate(lists):
        nb = np.asarray(nb, np.int64)
        nb = nb[(groups[nb] == groups[i]) & (y[nb] == y[i])]
        chunks.append(nb)
        indptr[i + 1] = indptr[i] + len(nb)
    return indptr, (np.concatenate(chunks) if chunks else np.zeros(0, np.int64))


def save_learning_curves(
    history: list[dict], json_path: str | Path, png_path: str | Path | None = None, note: str | None = None
) -> None:
    """Write the per-epoch history as JSON and plot train/val loss and val macro-F1 (PNG), atomically.

    The epoch whose weights the model keeps (rows with ``kept``) is marked in both panels, and
    ``note`` (how it was chosen, ``fit_info["epoch_selection"]``) is the figure's caption.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = json_safe(history)
    write_json(json_path, rows)
    if png_path is None:
        return
    ep = [h["epoch"] for h in rows]

    def series(key: str) -> list[float]:
        return [np.nan if h.get(key) is None else h[key] for h in rows]

    fig = Figure(figsize=(9, 3.9 if note else 3.5))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(ep, series("train_loss"), marker="o", label="train loss")
    ax1.plot(ep, series("val_loss"), marker="o", label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax2.plot(ep, series("val_macro_f1"), marker="o", color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation macro-F1")
    ax2.set_ylim(0, 1)
    kept = [h["epoch"] for h in rows if h.get("kept")]
    for ax in (ax1, ax2):
        if kept:
            ax.axvline(kept[0], color="0.4", linestyle="--", linewidth=1, label=f"kept: epoch {kept[0]}")
    ax1.legend(fontsize=8)
    if note:
        fig.suptitle(f"weights kept: {note}", fontsize=8, wrap=True)
    fig.tight_layout()
    write_figure(png_path, fig, format="png", dpi=100)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def class_weights(y_idx: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse class frequency (n / (classes present * count)); 0 for absent classes."""
    counts = np.bincount(y_idx, minlength=n_classes).astype(np.float64)
    present = counts > 0
    return np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)


def make_optimizer(net: torch.nn.Module, s: Any, steps_total: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW or SGD (Nesterov momentum 0.9), and the per-batch learning-rate schedule (or None)."""
    params = net.parameters()
    if s.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay, nesterov=True
        )
    else:
        opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    if s.schedule == "cosine":
        sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps_total))
    elif s.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=max(2, steps_total))
    else:
        sched = None
    return opt, sched


@dataclass
class EpochSampler:
    """How each epoch orders the n training samples: a permutation, or draws with ``sample_p``
    (class-balanced sampler), then each sample maybe moved to a neighbour (``shift_tab``)."""

    n: int
    batch_size: int
    sample_p: np.ndarray | None = None
    shift_tab: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n_batches(self) -> int:
        bs = self.batch_size
        return self.n // bs + (1 if self.n % bs >= 2 else 0)  # drop a trailing batch of 1 (batch norm needs 2)

    def batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        n = self.n
        order = rng.choice(n, size=n, p=self.sample_p) if self.sample_p is not None else rng.permutation(n)
        if self.shift_tab is not None:
            indptr, nbrs = self.shift_tab
            k = indptr[order + 1] - indptr[order]
            order = nbrs[indptr[order] + np.minimum((rng.random(n) * k).astype(np.int64), k - 1)]
        bs = self.batch_size
        return [np.sort(order[i * bs : (i + 1) * bs]) for i in range(self.n_batches)]


@dataclass
class EarlyStopping:
    """Keeps the weights of the best validation macro-F1 and stops after ``patience`` epochs
    without gain; with ``has_val`` False (no validation set, or selection by the schedule) every
    epoch runs and the last one is kept."""

    patience: int
    has_val: bool
    best_f1: float = -1.0
    best_epoch: int = 0
    best_state: dict | None = None
    since_best: int = 0

    def update(self, epoch: int, f1: float | None, net: torch.nn.Module) -> bool:
        """Record an epoch; True when training should stop."""
        if not self.has_val:
            self.best_epoch = epoch  # nothing held out: the last epoch is the model
            return False
        if f1 is not None and f1 > self.best_f1:
            self.best_f1, self.best_epoch, self.since_best = f1, epoch, 0
            self.best_state = copy.deepcopy(net.state_dict())
        else:
            self.since_best += 1
        return self.since_best >= self.patience


def train_epoch(
    model: TrainableNet,
    loader: Any,
    opt: torch.optim.Optimizer,
    sched: Any,
    scaler: Any,
    gen: torch.Generator,
    norm: Any,
    loss_w: torch.Tensor | None,
) -> tuple[float, int]:
    """One pass over the loader's batches: (sum of sample losses, samples seen)."""
    ds = model.device_settings
    model.net.train()
    tot_loss, tot_n = 0.0, 0
    for xb, yb in loader:
        check_cancelled()  # Ctrl-C / SIGTERM reach the main thread only; training may run in another
        xb = ds.to_device(xb)
        yb = ds.to_device(yb)
        x = model._augment(xb, gen, norm)
        with ds.autocast():
            logits = model.net(x).flatten(1)
        loss = F.cross_entropy(logits.float(), yb, weight=loss_w)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
        tot_loss += float(loss.detach()) * len(yb)
        tot_n += len(yb)
    return tot_loss, tot_n


@dataclass
class TrainingResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_f1: float | None = None
    stopped_early: bool = False
    samples_per_s: float = 0.0


def make_loader(
    patches: PatchRows, y_idx: np.ndarray, sampler: Any, num_workers: int, pin_memory: bool, seed: int
) -> torch.utils.data.DataLoader:
    """Batches of the patch store chosen by ``sampler``; one persistent set of spawned workers."""
    return torch.utils.data.DataLoader(
        _BatchSource(patches, y_idx),
        sampler=sampler,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        multiprocessing_context="spawn" if num_workers > 0 else None,
        pin_memory=pin_memory,
        # Its own generator: the loader's seed draw must not consume the global RNG that
        # dropout uses, or results would depend on num_workers.
        generator=torch.Generator().manual_seed(seed),
    )


def train_network(
    model: TrainableNet,
    train: TrainingData,
    y_idx: np.ndarray,
    validation: TrainingData | None,
    val_idx: np.ndarray | None,
    sampler: EpochSampler,
    loss_w: torch.Tensor | None,
    select_on_validation: bool = True,
) -> TrainingResult:
    """The epoch loop over ``model.net`` (already built, seeded by the caller).

    ``validation`` is evaluated after every epoch (the learning curves); it picks the epoch whose
    weights are kept (early stopping) only with ``select_on_validation``, else the last epoch is.
    """
    s, ds = model.settings, model.device_settings
    rng = np.random.default_rng(model.seed)
    gen = torch.Generator().manual_seed(model.seed)
    norm = model._norm_tensors()
    opt, sched = make_optimizer(model.net, s, s.epochs * sampler.n_batches)
    scaler = ds.grad_scaler()
    epoch_batches = _EpochBatches()
    loader = make_loader(train.patches, y_idx, epoch_batches, s.num_workers, ds.pin_memory, model.seed)
    stopper = EarlyStopping(s.patience, validation is not None and select_on_validation)
    res = TrainingResult()
    train_time, seen = 0.0, 0
    bar = tqdm(
        range(1, s.epochs + 1),
        desc=getattr(model, "progress_desc", None) or f"train {model.name}",
        unit="epoch",
        disable=not model.progress,
        leave=False,
    )
    for epoch in bar:
        t0 = time.perf_counter()
        epoch_batches.batches = sampler.batches(rng)
        tot_loss, tot_n = train_epoch(model, loader, opt, sched, scaler, gen, norm, loss_w)
        train_time += time.perf_counter() - t0
        seen += tot_n
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": tot_loss / max(tot_n, 1),
            "val_loss": None,
            "val_macro_f1": None,
        }
        if validation is not None and val_idx is not None:
            row["val_loss"], row["val_macro_f1"] = model._evaluate(validation, val_idx)
        stop = stopper.update(epoch, row["val_macro_f1"], model.net)
        res.history.append(row)
        post = {"loss": f"{row['train_loss']:.4f}"}
        if row["val_macro_f1"] is not None:
            post["val_f1"] = f"{row['val_macro_f1']:.3f}"
        bar.set_postfix(post)
        if stop:
            res.stopped_early = epoch < s.epochs
            break
    bar.close()
    if stopper.best_state is not None:
        model.net.load_state_dict(stopper.best_state)
    res.best_epoch = stopper.best_epoch
    res.best_f1 = stopper.best_f1 if stopper.has_val else None
    for row in res.history:
        row["kept"] = row["epoch"] == res.best_epoch
    res.samples_per_s = seen / max(train_time, 1e-9)
    return res
