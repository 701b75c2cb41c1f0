"""Deep patch classifiers (compact CNN and ResNet) with exact dense inference.

Both networks classify the centre pixel of a ``k x k`` patch, for any number
of bands, and both are *dense-exact*: the trunk uses only valid (unpadded)
3x3 convolutions with no pooling and no stride, batch norm (a per-pixel affine
map in eval mode), ReLU, and 1x1 convolutions. A ``k x k`` patch therefore
collapses to ``1 x 1`` and the same network run once over a block
``(bands, H + 2h, W + 2h)`` (``h = k // 2``) yields ``(classes, H, W)`` logits
whose pixel ``[i, j]`` is the per-patch output of the patch centred at block
pixel ``[i + h, j + h]``. :meth:`DeepModel.predict_block` uses that (in row
chunks that overlap by the halo, so memory stays bounded and the result is
unchanged); :meth:`DeepModel.predict_patches` runs the network on patches.
Both run the same inference copy of the network: eval mode, batch norm folded
into the preceding convolution, channels-last on CUDA and (``cpu_channels_last``)
on the CPU, float32, under ``torch.inference_mode``; the copy is rebuilt when
the weights change. The speed-up of dense over per-patch inference is bounded
by the ratio of convolution work, ``sum over layers of (output size inside the
patch)^2`` to ``number of layers`` (about 35x for the 6-band, 6-layer CNN at
``k = 13``, 48x for the ResNet), unless per-patch inference is less efficient.

How ``k`` maps to depth (``L = (k - 1) / 2`` valid 3x3 convolutions)
------------------------------------------------------------------
* CNN: ``L`` layers of 3x3 conv + BN + ReLU with ``channels`` filters, then
  dropout and a 1x1 conv head. ``k = 13`` -> 6 conv layers. ``k = 1`` -> one
  1x1 conv + BN + ReLU layer (no spatial context).
* ResNet: a stem, then ``L // 2`` residual blocks of two valid 3x3 convs
  (each block shrinks by 2 on every side; the skip connection is centre-cropped
  by 2, with a 1x1 conv + BN projection when widths differ), then dropout and a
  1x1 conv head. The stem is a 3x3 valid conv + BN + ReLU when ``L`` is odd
  and a 1x1 conv + BN + ReLU when ``L`` is even, so that ``stem + 2 * blocks =
  L``. ``k = 13`` -> 1x1 stem + 3 blocks; ``k = 11`` -> 3x3 stem + 2 blocks;
  ``k = 9`` -> 1x1 stem + 2 blocks; ``k = 3`` -> 3x3 stem, no block.
  Stochastic depth: block ``i`` of ``N`` (1-based) keeps its residual branch
  with probability ``1 - stochastic_depth * i / N`` per sample in training
  (scaled by ``1/p`` when kept), and always at eval, so inference is exact.

Inputs and NaN
--------------
Inputs are float32 in raw raster units with NaN for nodata / outside the
raster. They are standardised with per-band mean and std computed over the
valid pixels of the training patches (stored with the model), then NaN -> 0
(the training mean), identically in training, ``predict_patches`` and
``predict_block``.

Training
--------
Seeded (model init, dropout, stochastic depth, sampling and augmentation all
come from the model's seed; the global RNG state is forked and restored) and
deterministic on the CPU (``torch.use_deterministic_algorithms`` is switched on
for the duration of ``fit`` and restored afterwards). Augmentation: a random
element of the dihedral group (8 flips / rotations) per patch, a per-patch
amplitude factor drawn in ``amplitude_scale`` (applied in raw units before
standardisation), and, with ``shift > 0``, a random shift of the patch centre by
up to ``shift`` pixels onto another labelled training pixel of the same group
(polygon) and class -- i.e. the shifted patch is that pixel's own patch; where
no such neighbour was sampled the patch is not shifted. The pixel size is taken
from ``meta.extra["pixel_size"]`` if present, otherwise from the spacing of the
training coordinates. Class balance by inverse-frequency loss weights or a
weighted sampler; AdamW or SGD (momentum 0.9); cosine / one-cycle / constant
learning rate, stepped per batch. Early stopping on validation macro-F1 with
``patience`` epochs and restore of the best epoch's weights. Without a
validation set (None or empty) nothing is held out, all epochs run and the
last epoch's weights are kept (``best_epoch`` = last epoch). ``val_loss`` is the
unweighted mean cross-entropy. On CUDA: pinned memory, non-blocking copies,
channels-last and float16 autocast with gradient scaling (inference stays
float32 so dense and per-patch outputs agree).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from pipeline.config import DeepConfig
from pipeline.device import DeviceSettings, select_device
from pipeline.errors import InputError
from pipeline.models import registry
from pipeline.models.base import ModelMeta, TrainingData

FORMAT = "landcover-deep/1"

__all__ = ["CNNModel", "ResNetModel", "DeepModel", "CompactCNN", "PatchResNet", "ResidualBlock", "load_deep",
           "save_learning_curves", "trunk_layers", "band_stats", "randomize_batchnorm"]


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------
def trunk_layers(patch_size: int) -> int:
    """Number of valid 3x3 convolutions that collapse a ``patch_size`` patch to 1 x 1."""
    if patch_size < 1 or patch_size % 2 == 0:
        raise InputError(f"patch.size: must be a positive odd number for the deep models, got {patch_size}")
    return (patch_size - 1) // 2


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=0, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CompactCNN(nn.Module):
    """``L = (k-1)/2`` valid 3x3 conv + BN + ReLU layers, dropout, 1x1 conv head."""

    def __init__(self, bands: int, n_classes: int, patch_size: int, channels: int = 64, dropout: float = 0.0):
        super().__init__()
        depth = trunk_layers(patch_size)
        layers: list[nn.Module] = []
        if depth == 0:
            layers += _conv_bn_relu(bands, channels, 1)
        cin = bands
        for _ in range(depth):
            layers += _conv_bn_relu(cin, channels, 3)
            cin = channels
        self.trunk = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Conv2d(channels, n_classes, 1)
        self.shrink = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.trunk(x)))


class ResidualBlock(nn.Module):
    """Two valid 3x3 convs with BN; the skip is centre-cropped by 2 (1x1 projection if widths differ).

    ``survival`` < 1 enables stochastic depth in training: per sample the residual branch is
    kept with probability ``survival`` and scaled by ``1 / survival``; at eval it is always kept.
    """

    def __init__(self, cin: int, cout: int, survival: float = 1.0):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = (nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
                     if cin != cout else nn.Identity())
        self.survival = float(survival)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        skip = self.proj(x[:, :, 2:-2, 2:-2])
        if self.training and self.survival < 1.0:
            keep = torch.empty((x.shape[0], 1, 1, 1), device=x.device, dtype=branch.dtype).bernoulli_(self.survival)
            branch = branch * keep / self.survival
        return F.relu(skip + branch)


class PatchResNet(nn.Module):
    """Stem (3x3 valid when ``L`` is odd, else 1x1), ``L // 2`` residual blocks, dropout, 1x1 head."""

    def __init__(self, bands: int, n_classes: int, patch_size: int, channels: int = 64, dropout: float = 0.0,
                 stochastic_depth: float = 0.0, widths: list[int] | None = None):
        super().__init__()
        depth = trunk_layers(patch_size)
        n_blocks = depth // 2
        widths = list(widths) if widths is not None else [channels] * n_blocks
        if len(widths) != n_blocks:
            raise ValueError(f"widths must have {n_blocks} entries for patch size {patch_size}")
        stem_kernel = 3 if depth % 2 else 1
        self.stem = nn.Sequential(*_conv_bn_relu(bands, channels, stem_kernel))
        blocks = []
        cin = channels
        for i, w in enumerate(widths):
            survival = 1.0 - stochastic_depth * (i + 1) / n_blocks
            blocks.append(ResidualBlock(cin, w, survival))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Conv2d(cin, n_classes, 1)
        self.shrink = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.blocks(self.stem(x))))


def randomize_batchnorm(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters (for tests/benchmarks)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return net


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d into the Conv2d that feeds it (in place; returns ``net``).

    Handles the ``Sequential`` conv/BN pairs of both networks and the ``conv1/bn1``,
    ``conv2/bn2`` pairs of :class:`ResidualBlock`; the BN becomes an identity.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net.eval()
    for mod in list(net.modules()):
        if isinstance(mod, nn.Sequential):
            kids = list(mod._modules.items())
            for (na, a), (nb, b) in zip(kids, kids[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    mod._modules[na] = fuse_conv_bn_eval(a, b)
                    mod._modules[nb] = nn.Identity()
        elif isinstance(mod, ResidualBlock):
            for c, b in (("conv1", "bn1"), ("conv2", "bn2")):
                if isinstance(getattr(mod, b), nn.BatchNorm2d):
                    setattr(mod, c, fuse_conv_bn_eval(getattr(mod, c), getattr(mod, b)))
                    setattr(mod, b, nn.Identity())
    return net


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def band_stats(patches: np.ndarray, chunk_bytes: int = 32 * 2 ** 20) -> tuple[np.ndarray, np.ndarray]:
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
        x = np.asarray(patches[i:i + chunk], dtype=np.float64)
        ok = np.isfinite(x)
        x = np.where(ok, x, 0.0)
        s += x.sum(axis=(0, 2, 3))
        ss += (x * x).sum(axis=(0, 2, 3))
        cnt += ok.sum(axis=(0, 2, 3))
    mean = np.divide(s, cnt, out=np.zeros(b), where=cnt > 0)
    var = np.divide(ss, cnt, out=np.ones(b), where=cnt > 0) - np.where(cnt > 0, mean ** 2, 0.0)
    std = np.sqrt(np.maximum(var, 0.0))
    std = np.where((std > 1e-12) & (cnt > 0), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def _atomic_write_bytes(path: Path, writer) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_learning_curves(history: list[dict], json_path: str | Path, png_path: str | Path | None = None) -> None:
    """Write the per-epoch history as JSON and plot train/val loss and val macro-F1 (PNG), atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in h.items()} for h in history]
    _atomic_write_bytes(Path(json_path), lambda p: p.write_text(json.dumps(rows, indent=2)))
    if png_path is None:
        return
    ep = [h["epoch"] for h in rows]

    def series(key: str) -> list[float]:
        return [np.nan if h.get(key) is None else h[key] for h in rows]

    fig = Figure(figsize=(9, 3.5))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(ep, series("train_loss"), marker="o", label="train loss")
    ax1.plot(ep, series("val_loss"), marker="o", label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax2.plot(ep, series("val_macro_f1"), marker="o", color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation macro-F1")
    ax2.set_ylim(0, 1)
    fig.tight_layout()
    _atomic_write_bytes(Path(png_path), lambda p: fig.savefig(p, format="png", dpi=100))


@contextlib.contextmanager
def _deterministic():
    """Deterministic algorithms for the duration of a fit, without the NaN-filling of every new
    tensor that comes with them by default (a pure cost here: nothing reads uninitialised memory)."""
    import torch.utils.deterministic as tud

    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_fill = tud.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    tud.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        tud.fill_uninitialized_memory = prev_fill


_TORCH_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
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

    def __init__(self, patches: np.ndarray, y_idx: np.ndarray):
        self.patches = patches
        self.y_idx = y_idx

    def __getitem__(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.ascontiguousarray(self.patches[idx], dtype=np.float32)
        return torch.from_numpy(x), torch.from_numpy(self.y_idx[idx].astype(np.int64))

    def __getstate__(self) -> dict:
        p = self.patches
        state = {"y_idx": self.y_idx, "patches": p, "mm": None}
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

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _shift_table(xy: np.ndarray, groups: np.ndarray, y: np.ndarray, shift: int,
                 pixel_size: float | None) -> tuple[np.ndarray, np.ndarray]:
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


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
class DeepModel:
    """Common training, inference and persistence for the patch networks (see module docstring)."""

    name: ClassVar[str] = ""
    map_workers = 1  # torch intra-op threads already use the cores

    def __init__(self, settings: DeepConfig | None = None, meta: ModelMeta | None = None, seed: int = 0,
                 device: str | torch.device = "cpu"):
        if meta is None:
            raise InputError(f"{self.name}: a ModelMeta is required")
        self.settings = settings if settings is not None else registry.get(self.name).config()
        self.meta = meta
        self.seed = int(seed)
        self.k = int(meta.patch_size)
        trunk_layers(self.k)
        self.n_bands = len(meta.band_names)
        self.n_classes = len(meta.class_ids)
        if self.n_classes < 2:
            raise InputError(f"{self.name}: at least two classes are needed")
        self.class_ids = np.asarray(meta.class_ids, dtype=np.int64)
        self.device = select_device(device)
        self.device_settings = DeviceSettings.for_device(self.device)
        self.norm_mean = np.zeros(self.n_bands, np.float32)
        self.norm_std = np.ones(self.n_bands, np.float32)
        self.history: list[dict[str, Any]] = []
        self.fit_info: dict[str, Any] = {}
        self.progress = True
        # Output pixels per forward pass in predict_block. Each chunk recomputes a 2h-row halo
        # (+19% work at 32k px of a 512-px window), yet 32k was still the fastest in an interleaved
        # A/B on this 2-core machine (CNN k=13: 0.53 Mpx/s vs 0.40 at 128k-256k): activations of
        # about 10 MB stay in cache. Memory stays bounded either way.
        self.dense_chunk_pixels = 1 << 15
        self.cpu_channels_last = True  # NHWC inference on the CPU (faster with oneDNN, same values)
        self.fold_batchnorm = True  # inference copy with BN folded into the convolutions
        self._infer_cache: tuple | None = None
        self.patch_batch = 2048  # patches per forward pass in predict_patches
        with _seeded(self.seed, self.device):
            self.net = self.device_settings.prepare_model(self.build_network())
        self.net.eval()

    # -- architecture ---------------------------------------------------------------------------
    def build_network(self) -> nn.Module:
        raise NotImplementedError

    @property
    def halo(self) -> int:
        return self.k // 2

    # -- preprocessing ----------------------------------------------------------------------------
    def _norm_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.as_tensor(self.norm_mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        std = torch.as_tensor(self.norm_std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        return mean, std

    def _standardise(self, x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor],
                     channels_last: bool | None = None) -> torch.Tensor:
        mean, std = norm
        x = (x - mean) / std
        x = torch.where(torch.isnan(x), torch.zeros((), dtype=x.dtype, device=x.device), x)
        if self.device_settings.channels_last if channels_last is None else channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _inference_net(self) -> tuple[nn.Module, bool]:
        """The network used for inference and whether inputs go channels-last.

        An eval-mode copy of :attr:`net` with every batch norm folded into the convolution
        before it (one pass less over each activation; the same function up to float rounding),
        in channels-last layout when the device settings say so, and on the CPU when
        ``cpu_channels_last`` (oneDNN convolutions run faster in NHWC). The copy is rebuilt
        whenever any weight or buffer of :attr:`net` changes (keyed on tensor versions), and
        both ``predict_patches`` and ``predict_block`` use it, so they stay exact to each other.
        """
        cl = bool(self.device_settings.channels_last or (self.device.type == "cpu" and self.cpu_channels_last))
        tensors = list(self.net.state_dict(keep_vars=True).values())
        key = (id(self.net), cl, self.fold_batchnorm, tuple((id(t), t._version) for t in tensors))
        if self._infer_cache is None or self._infer_cache[0] != key:
            net = copy.deepcopy(self.net).eval()
            if self.fold_batchnorm:
                net = fold_batchnorm(net)
            if cl:
                net = net.to(memory_format=torch.channels_last)
            for prm in net.parameters():
                prm.requires_grad_(False)
            self._infer_cache = (key, net)
        return self._infer_cache[1], cl

    def _check_bands(self, b: int, what: str) -> None:
        if b != self.n_bands:
            raise InputError(f"{self.name}: {what} has {b} bands, the model expects {self.n_bands} "
                             f"({', '.join(self.meta.band_names)})")

    # -- inference ----------------------------------------------------------------------------------
    def patch_logits(self, patches: np.ndarray) -> np.ndarray:
        """(n, bands, k', k') raw patches (k' >= k, centre-cropped to k) -> (n, classes) float32 logits."""
        if patches.ndim != 4:
            raise InputError(f"{self.name}: patches must be (n, bands, k, k), got shape {patches.shape}")
        self._check_bands(patches.shape[1], "patches")
        kp = patches.shape[-1]
        if patches.shape[-2] != kp or kp < self.k or (kp - self.k) % 2:
            raise InputError(f"{self.name}: patches are {patches.shape[-2]}x{kp}, the model needs {self.k}x{self.k}")
        c = (kp - self.k) // 2
        out = np.empty((patches.shape[0], self.n_classes), np.float32)
        net, cl = self._inference_net()
        norm = self._norm_tensors()
        with torch.inference_mode():
            # Bounded in bytes too: a batch of 2048 patches of 218 bands would be 145 MB.
            step = max(64, min(self.patch_batch, (32 * 2 ** 20) // (4 * int(np.prod(patches.shape[1:])))))
            for s in range(0, patches.shape[0], step):
                x = np.ascontiguousarray(patches[s:s + step, :, c:c + self.k, c:c + self.k], dtype=np.float32)
                xt = self._standardise(self.device_settings.to_device(torch.from_numpy(x)), norm, cl)
                out[s:s + len(x)] = net(xt).float().flatten(1).cpu().numpy()
        return out

    def block_logits(self, block: np.ndarray) -> np.ndarray:
        """(bands, H + 2h, W + 2h) raw block -> (classes, H, W) float32 logits, in row chunks overlapping by 2h."""
        if block.ndim != 3:
            raise InputError(f"{self.name}: a block must be (bands, rows, cols), got shape {block.shape}")
        self._check_bands(block.shape[0], "block")
        h = self.halo
        H, W = block.shape[1] - 2 * h, block.shape[2] - 2 * h
        if H <= 0 or W <= 0:
            raise InputError(f"{self.name}: block {block.shape[1]}x{block.shape[2]} is smaller than the patch size {self.k}")
        rows = max(1, self.dense_chunk_pixels // W)
        out = np.empty((self.n_classes, H, W), np.float32)
        net, cl = self._inference_net()
        norm = self._norm_tensors()
        with torch.inference_mode():
            for r0 in range(0, H, rows):
                r1 = min(H, r0 + rows)
                x = np.ascontiguousarray(block[None, :, r0:r1 + 2 * h, :], dtype=np.float32)
                xt = self._standardise(self.device_settings.to_device(torch.from_numpy(x)), norm, cl)
                out[:, r0:r1] = net(xt)[0].float().cpu().numpy()
        return out

    def _decide(self, logits: torch.Tensor | np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        t = torch.as_tensor(logits)
        idx = torch.argmax(t, dim=axis)
        conf = torch.softmax(t, dim=axis).amax(dim=axis)
        return self.class_ids[idx.numpy()], conf.numpy().astype(np.float32)

    def predict_patches(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._decide(self.patch_logits(patches), axis=1)

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._decide(self.block_logits(block), axis=0)

    # -- training -----------------------------------------------------------------------------------
    def _to_index(self, y: np.ndarray, what: str) -> np.ndarray:
        lookup = {int(c): i for i, c in enumerate(self.class_ids)}
        y = np.asarray(y)
        bad = sorted({int(v) for v in np.unique(y)} - set(lookup))
        if bad:
            raise InputError(f"{self.name}: {what} labels contain class id {bad[0]} not in the class table "
                             f"{list(map(int, self.class_ids))}")
        return np.fromiter((lookup[int(v)] for v in y), dtype=np.int64, count=len(y))

    def _check_training(self, data: TrainingData, what: str) -> None:
        if data.patches.ndim != 4 or data.patches.shape[-1] != self.k or data.patches.shape[-2] != self.k:
            raise InputError(f"{self.name}: {what} patches have shape {data.patches.shape}, "
                             f"expected (n, {self.n_bands}, {self.k}, {self.k})")
        self._check_bands(data.patches.shape[1], f"{what} patches")

    def _make_optimizer(self, steps_total: int):
        s = self.settings
        params = self.net.parameters()
        if s.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay, nesterov=True)
        else:
            opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
        if s.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps_total))
        elif s.schedule == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=max(2, steps_total))
        else:
            sched = None
        return opt, sched

    def _augment(self, x: torch.Tensor, gen: torch.Generator, norm) -> torch.Tensor:
        """Raw batch on device -> amplitude scaling, standardisation + NaN fill, random dihedral transform."""
        n = x.shape[0]
        lo, hi = self.settings.amplitude_scale
        if not (lo == 1.0 and hi == 1.0):
            f = torch.empty(n).uniform_(lo, hi, generator=gen) if hi > lo else torch.full((n,), float(lo))
            x = x * f.to(x.device).view(n, 1, 1, 1)
        x = self._standardise(x, norm)
        g = torch.randint(0, 8, (n,), generator=gen).to(x.device)
        out = torch.empty_like(x)
        for t in range(8):
            m = g == t
            sel = x[m]
            if t & 4:
                sel = sel.transpose(-1, -2)
            if t & 3:
                sel = torch.rot90(sel, t & 3, dims=(-2, -1))
            out[m] = sel
        if self.device_settings.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def _evaluate(self, data: TrainingData, y_idx: np.ndarray) -> tuple[float, float]:
        logits = self.patch_logits(data.patches)
        loss = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y_idx)))
        return loss, _macro_f1(y_idx, logits.argmax(axis=1))

    def fit(self, train: TrainingData, validation: TrainingData | None = None) -> "DeepModel":
        s = self.settings
        self._check_training(train, "training")
        n = len(train)
        if n < 2:
            raise InputError(f"{self.name}: need at least 2 training samples, got {n}")
        lo, hi = s.amplitude_scale
        if not (0 < lo <= hi):
            raise InputError(f"models.{self.name}.amplitude_scale: need 0 < low <= high, got {list(s.amplitude_scale)}")
        y_idx = self._to_index(train.y, "training")
        has_val = validation is not None and len(validation) > 0
        if has_val:
            self._check_training(validation, "validation")
            val_idx = self._to_index(validation.y, "validation")
        ds = self.device_settings
        t_start = time.perf_counter()
        self.norm_mean, self.norm_std = band_stats(train.patches)
        norm = self._norm_tensors()

        counts = np.bincount(y_idx, minlength=self.n_classes).astype(np.float64)
        present = counts > 0
        inv = np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
        loss_w = torch.as_tensor(inv, dtype=torch.float32, device=self.device) if s.class_balance == "loss" else None
        sample_p = inv[y_idx] / inv[y_idx].sum() if s.class_balance == "sampler" else None
        shift_tab = None
        if s.shift > 0:
            px = self.meta.extra.get("pixel_size") if isinstance(self.meta.extra, dict) else None
            shift_tab = _shift_table(np.asarray(train.xy, np.float64), np.asarray(train.groups), y_idx, s.shift,
                                     float(px) if px else None)

        bs = min(s.batch_size, n)
        n_batches = n // bs + (1 if n % bs >= 2 else 0)  # drop a trailing batch of 1 (batch norm needs 2)
        history: list[dict[str, Any]] = []
        best_f1, best_epoch, best_state, since_best = -1.0, 0, None, 0
        train_time, seen, stopped_early = 0.0, 0, False
        with _seeded(self.seed, self.device), _deterministic():
            rng = np.random.default_rng(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            self.net = ds.prepare_model(self.build_network())
            opt, sched = self._make_optimizer(s.epochs * n_batches)
            scaler = ds.grad_scaler()
            epoch_batches = _EpochBatches()
            nw = s.num_workers
            loader = torch.utils.data.DataLoader(
                _BatchSource(train.patches, y_idx), sampler=epoch_batches, batch_size=None, num_workers=nw,
                persistent_workers=nw > 0, multiprocessing_context="spawn" if nw > 0 else None,
                pin_memory=ds.pin_memory,
                # Its own generator: the loader's seed draw must not consume the global RNG that
                # dropout uses, or results would depend on num_workers.
                generator=torch.Generator().manual_seed(self.seed))
            bar = tqdm(range(1, s.epochs + 1), desc=f"train {self.name}", unit="epoch",
                       disable=not self.progress, leave=False)
            for epoch in bar:
                t0 = time.perf_counter()
                self.net.train()
                order = rng.choice(n, size=n, p=sample_p) if sample_p is not None else rng.permutation(n)
                if shift_tab is not None:
                    indptr, nbrs = shift_tab
                    k = indptr[order + 1] - indptr[order]
                    order = nbrs[indptr[order] + np.minimum((rng.random(n) * k).astype(np.int64), k - 1)]
                epoch_batches.batches = [np.sort(order[i * bs:(i + 1) * bs]) for i in range(n_batches)]
                tot_loss, tot_n = 0.0, 0
                for xb, yb in loader:
                    xb = ds.to_device(xb)
                    yb = ds.to_device(yb)
                    x = self._augment(xb, gen, norm)
                    with ds.autocast():
                        logits = self.net(x).flatten(1)
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
                train_time += time.perf_counter() - t0
                seen += tot_n
                row: dict[str, Any] = {"epoch": epoch, "train_loss": tot_loss / max(tot_n, 1),
                                       "val_loss": None, "val_macro_f1": None}
                if has_val:
                    row["val_loss"], row["val_macro_f1"] = self._evaluate(validation, val_idx)
                    if row["val_macro_f1"] > best_f1:
                        best_f1, best_epoch, since_best = row["val_macro_f1"], epoch, 0
                        best_state = copy.deepcopy(self.net.state_dict())
                    else:
                        since_best += 1
                else:
                    best_epoch = epoch
                history.append(row)
                post = {"loss": f"{row['train_loss']:.4f}"}
                if has_val:
                    post["val_f1"] = f"{row['val_macro_f1']:.3f}"
                bar.set_postfix(post)
                if has_val and since_best >= s.patience:
                    stopped_early = epoch < s.epochs
                    break
            bar.close()
            if best_state is not None:
                self.net.load_state_dict(best_state)
        self.net.eval()
        self.history = history
        self.fit_info = {
            "epochs_run": len(history), "best_epoch": int(best_epoch), "stopped_early": bool(stopped_early),
            "best_val_macro_f1": float(best_f1) if has_val else None,
            "device": str(self.device), "device_settings": ds.describe(),
            "train_samples": int(n), "n_train": int(n), "validation_samples": int(len(validation)) if has_val else 0,
            "train_samples_per_s": float(seen / max(train_time, 1e-9)),
            "fit_seconds": float(time.perf_counter() - t_start), "seed": self.seed,
            "parameters": int(sum(p.numel() for p in self.net.parameters())),
        }
        return self

    # -- persistence --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "kind": self.name, "meta": asdict(self.meta),
            "settings": self.settings.model_dump(mode="json"), "seed": self.seed,
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
            "norm_mean": torch.from_numpy(self.norm_mean.copy()), "norm_std": torch.from_numpy(self.norm_std.copy()),
            "history": json.loads(json.dumps(self.history)), "fit_info": json.loads(json.dumps(self.fit_info)),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        blob = self.to_dict()
        _atomic_write_bytes(path, lambda p: torch.save(blob, p))
        return path


class CNNModel(DeepModel):
    name = "cnn"

    def build_network(self) -> nn.Module:
        s = self.settings
        return CompactCNN(self.n_bands, self.n_classes, self.k, channels=s.channels, dropout=s.dropout)


class ResNetModel(DeepModel):
    name = "resnet"

    def build_network(self) -> nn.Module:
        s = self.settings
        return PatchResNet(self.n_bands, self.n_classes, self.k, channels=s.channels, dropout=s.dropout,
                           stochastic_depth=getattr(s, "stochastic_depth", 0.0))


def load_deep(path: str | Path, device: str | torch.device = "cpu") -> DeepModel:
    """Rebuild a model saved by :meth:`DeepModel.save` (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: model file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not our file"
        raise InputError(f"{path}: not a saved deep model ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    deep = [s for s in registry.specs() if s.deep]
    kinds = {s.name: s for s in deep}
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("kind") not in kinds:
        raise InputError(f"{path}: not a saved deep model (format {FORMAT} expected)")
    spec = kinds[blob["kind"]]
    cls = spec.model_class()
    meta = ModelMeta.from_dict(blob["meta"])
    settings = spec.config.model_validate(blob["settings"])
    model = cls(settings=settings, meta=meta, seed=int(blob.get("seed", 0)), device=device)
    model.net.load_state_dict(blob["state_dict"])
    model.net.eval()
    model.norm_mean = blob["norm_mean"].numpy().astype(np.float32)
    model.norm_std = blob["norm_std"].numpy().astype(np.float32)
    model.history = list(blob.get("history") or [])
    model.fit_info = dict(blob.get("fit_info") or {})
    return model
